//! Routes in a test namespace: via a gateway, through a device, default, ECMP.
//!
//! Contract: a [`Route`] is a description, rendered into `ip route` arguments only when added,
//! and refused before any command runs if its destination is outside the test plan (the
//! default routes 0.0.0.0/0 and ::/0 are allowed), if a gateway is outside the plan and not
//! IPv6 link-local (fe80::/10, allowed for gateways only, and then a device is required), or
//! if a next hop has neither gateway nor device. An IPv4 route may have an IPv6 gateway
//! (RFC 5549, rendered `via inet6 GW`); an IPv6 route may not have an IPv4 one. Several next
//! hops make a multipath (ECMP) route.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::{gateway, route_destination};
use crate::error::{Error, Result};
use crate::netns::{Netns, validate_ifname};

/// An address family, for listing routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// One next hop of a [`Route`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NextHop {
    gateway: Option<String>,
    dev: Option<String>,
    weight: Option<u8>,
}

impl NextHop {
    /// A next hop through gateway `gateway`.
    pub fn via(gateway: &str) -> Self {
        Self {
            gateway: Some(gateway.to_owned()),
            ..Self::default()
        }
    }

    /// A next hop straight out of device `dev`.
    pub fn device(dev: &str) -> Self {
        Self {
            dev: Some(dev.to_owned()),
            ..Self::default()
        }
    }

    /// Sets the outgoing device.
    pub fn dev(mut self, dev: &str) -> Self {
        self.dev = Some(dev.to_owned());
        self
    }

    /// Sets the ECMP weight (1 to 255).
    pub fn weight(mut self, weight: u8) -> Self {
        self.weight = Some(weight);
        self
    }
}

/// A route to add to (or delete from) a namespace's main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    destination: String,
    nexthops: Vec<NextHop>,
    metric: Option<u32>,
}

impl Route {
    /// A route to `destination` (`198.18.2.0/24`, `2001:db8:2::/64`, or a bare address).
    pub fn to(destination: &str) -> Self {
        Self {
            destination: destination.to_owned(),
            nexthops: Vec::new(),
            metric: None,
        }
    }

    /// The IPv4 default route, 0.0.0.0/0.
    pub fn default_v4() -> Self {
        Self::to("0.0.0.0/0")
    }

    /// The IPv6 default route, ::/0.
    pub fn default_v6() -> Self {
        Self::to("::/0")
    }

    /// Sets the gateway of the first next hop.
    pub fn via(mut self, gateway: &str) -> Self {
        self.first().gateway = Some(gateway.to_owned());
        self
    }

    /// Sets the device of the first next hop.
    pub fn dev(mut self, dev: &str) -> Self {
        self.first().dev = Some(dev.to_owned());
        self
    }

    /// Adds a next hop; two or more make a multipath (ECMP) route.
    pub fn nexthop(mut self, nexthop: NextHop) -> Self {
        self.nexthops.push(nexthop);
        self
    }

    /// Sets the route's metric (preference; lower wins).
    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    fn first(&mut self) -> &mut NextHop {
        if self.nexthops.is_empty() {
            self.nexthops.push(NextHop::default());
        }
        &mut self.nexthops[0]
    }

    /// Checks the route and renders the arguments after `ip -n NS`, e.g.
    /// `-4 route add 198.18.2.0/24 via 198.19.1.2 dev eth0`.
    pub(crate) fn render(&self, verb: &str) -> Result<Vec<String>> {
        let destination = route_destination(&self.destination)?;
        let invalid = |reason: &str| Error::InvalidRoute {
            destination: self.destination.clone(),
            reason: reason.to_owned(),
        };
        if self.nexthops.is_empty() {
            return Err(invalid("it has no next hop (give a gateway, a device or both)"));
        }
        let v4 = matches!(destination, IpNet::V4(_));
        let mut args: Vec<String> = vec![if v4 { "-4" } else { "-6" }.into(), "route".into(), verb.into()];
        args.push(destination.to_string());
        let multipath = self.nexthops.len() > 1;
        for hop in &self.nexthops {
            if multipath {
                args.push("nexthop".into());
            }
            if hop.gateway.is_none() && hop.dev.is_none() {
                return Err(invalid("a next hop has neither gateway nor device"));
            }
            if let Some(text) = &hop.gateway {
                let address = gateway(text)?;
                match (v4, address) {
                    (true, IpAddr::V4(_)) | (false, IpAddr::V6(_)) => args.push("via".into()),
                    (true, IpAddr::V6(_)) => args.extend(["via".into(), "inet6".into()]),
                    (false, IpAddr::V4(_)) => return Err(invalid("an IPv6 route cannot have an IPv4 gateway")),
                }
                if matches!(address, IpAddr::V6(a) if a.is_unicast_link_local()) && hop.dev.is_none() {
                    return Err(invalid("a link-local gateway needs a device"));
                }
                args.push(address.to_string());
            }
            if let Some(dev) = &hop.dev {
                validate_ifname(dev)?;
                args.extend(["dev".into(), dev.clone()]);
            }
            if let Some(weight) = hop.weight {
                if !multipath {
                    return Err(invalid("a weight needs two or more next hops"));
                }
                if weight == 0 {
                    return Err(invalid("weights are 1 to 255"));
                }
                args.extend(["weight".into(), weight.to_string()]);
            }
        }
        if let Some(metric) = self.metric {
            args.extend(["metric".into(), metric.to_string()]);
        }
        Ok(args)
    }
}

impl Netns {
    /// Adds `route` to the main table.
    pub fn add_route(&self, route: &Route) -> Result<()> {
        self.route_command(route, "add")
    }

    /// Adds or replaces `route` in the main table.
    pub fn replace_route(&self, route: &Route) -> Result<()> {
        self.route_command(route, "replace")
    }

    /// Deletes `route` from the main table.
    pub fn del_route(&self, route: &Route) -> Result<()> {
        self.route_command(route, "del")
    }

    /// The main table of one family, one route per line (`ip -o route show`; the next hops of
    /// a multipath route are on its line).
    pub fn routes(&self, family: Family) -> Result<Vec<String>> {
        let flag = match family {
            Family::V4 => "-4",
            Family::V6 => "-6",
        };
        let output = self.ip(&[flag, "-o", "route", "show"])?;
        Ok(output.stdout.lines().map(str::to_owned).collect())
    }

    fn route_command(&self, route: &Route, verb: &str) -> Result<()> {
        let args = route.render(verb)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ip(&args).map(drop)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn line(route: &Route) -> String {
        route.render("add").unwrap().join(" ")
    }

    #[test]
    fn a_route_via_a_gateway_renders() {
        let route = Route::to("198.18.2.0/24").via("198.19.1.2").dev("eth0").metric(10);
        assert_eq!(
            line(&route),
            "-4 route add 198.18.2.0/24 via 198.19.1.2 dev eth0 metric 10"
        );
    }

    #[test]
    fn default_routes_render() {
        assert_eq!(
            line(&Route::default_v4().via("198.19.1.2")),
            "-4 route add 0.0.0.0/0 via 198.19.1.2"
        );
        assert_eq!(
            line(&Route::default_v6().via("fe80::1").dev("eth0")),
            "-6 route add ::/0 via fe80::1 dev eth0"
        );
    }

    #[test]
    fn an_ecmp_route_renders_one_clause_per_next_hop() {
        let route = Route::to("198.18.9.0/24")
            .nexthop(NextHop::via("198.19.1.2").dev("eth0").weight(2))
            .nexthop(NextHop::via("198.19.2.2").dev("eth1"));
        assert_eq!(
            line(&route),
            "-4 route add 198.18.9.0/24 nexthop via 198.19.1.2 dev eth0 weight 2 nexthop via 198.19.2.2 dev eth1"
        );
    }

    #[test]
    fn an_ipv4_route_may_use_an_ipv6_gateway() {
        let route = Route::to("198.18.3.0/24").via("fe80::1").dev("eth0");
        assert_eq!(line(&route), "-4 route add 198.18.3.0/24 via inet6 fe80::1 dev eth0");
    }

    #[test]
    fn bad_routes_are_refused() {
        for route in [
            Route::to("203.0.113.0/24").dev("eth0"),
            Route::to("198.18.0.0/24").via("203.0.113.1"),
            Route::to("198.18.0.0/24"),
            Route::to("2001:db8::/64").via("198.19.0.1"),
            Route::to("2001:db8::/64").via("fe80::1"),
            Route::to("198.18.0.0/24").via("198.19.0.1").weight_alone(),
        ] {
            assert!(route.render("add").is_err(), "{route:?}");
        }
    }

    impl Route {
        fn weight_alone(mut self) -> Self {
            self.first().weight = Some(3);
            self
        }
    }
}

//! Address safety: the kit only ever configures weft's test address plan.
//!
//! Contract (DESIGN.md, "Tests and the lab"): every address, prefix, gateway and ping target the
//! kit is given must lie inside [`PLAN_V4`] (198.18.0.0/15, RFC 2544 benchmarking space) or
//! [`PLAN_V6`] (2001:db8::/32, RFC 3849 documentation space). Anything else is refused with
//! [`Error::OutsidePlan`] naming the address, before any command runs. Two narrow exceptions:
//!
//! - route gateways may be IPv6 link-local (fe80::/10), because an IPv6 default route through a
//!   neighbour's link-local address is how hosts (and weft's CNI plugin) route; interface
//!   addresses and route destinations may never be link-local;
//! - route destinations may be the default route (0.0.0.0/0, ::/0), which names no address.
//!
//! A prefix is inside the plan only if all of it is: 198.18.0.1/14 is refused. This module does
//! no I/O.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::{Error, Result};

/// IPv4 test space: 198.18.0.0/15 (pods 198.18.0.0/16, links and loopbacks 198.19.0.0/16).
pub const PLAN_V4: Ipv4Net = Ipv4Net::new_assert(std::net::Ipv4Addr::new(198, 18, 0, 0), 15);

/// IPv6 test space: 2001:db8::/32.
pub const PLAN_V6: Ipv6Net = Ipv6Net::new_assert(std::net::Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0), 32);

/// IPv6 link-local space, allowed only for route gateways.
pub const LINK_LOCAL_V6: Ipv6Net = Ipv6Net::new_assert(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10);

const PLAN: &str = "198.18.0.0/15 or 2001:db8::/32";
const PLAN_OR_LINK_LOCAL: &str = "198.18.0.0/15, 2001:db8::/32 or a gateway in fe80::/10";
const PLAN_OR_DEFAULT: &str = "198.18.0.0/15, 2001:db8::/32 or a default route";

/// Is all of `net` inside the test plan?
pub fn in_plan(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => PLAN_V4.contains(n),
        IpNet::V6(n) => PLAN_V6.contains(n),
    }
}

/// Parses `198.18.0.1/24` or a bare `198.18.0.1` (taken as a host prefix, /32 or /128).
pub fn parse_net(text: &str) -> Result<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| Error::Parse {
        text: text.to_owned(),
        expected: "an address with optional prefix length (like 198.18.0.1/24)",
    })
}

/// Parses an address without prefix length.
pub fn parse_addr(text: &str) -> Result<IpAddr> {
    text.trim().parse::<IpAddr>().map_err(|_| Error::Parse {
        text: text.to_owned(),
        expected: "an address (like 198.18.0.1 or 2001:db8::1)",
    })
}

/// Parses and checks an interface address: inside the plan, never link-local.
pub fn interface_address(text: &str) -> Result<IpNet> {
    let net = parse_net(text)?;
    if in_plan(&net) {
        Ok(net)
    } else {
        Err(outside(text, PLAN))
    }
}

/// Parses and checks a single address (a ping target, a peer): inside the plan.
pub fn plan_address(text: &str) -> Result<IpAddr> {
    let addr = parse_addr(text)?;
    if in_plan(&IpNet::from(addr)) {
        Ok(addr)
    } else {
        Err(outside(text, PLAN))
    }
}

/// Parses and checks a route destination: inside the plan, or a default route.
pub fn route_destination(text: &str) -> Result<IpNet> {
    let net = parse_net(text)?;
    if in_plan(&net) || is_default(&net) {
        Ok(net)
    } else {
        Err(outside(text, PLAN_OR_DEFAULT))
    }
}

/// Parses and checks a route gateway: inside the plan, or IPv6 link-local.
pub fn gateway(text: &str) -> Result<IpAddr> {
    let addr = parse_addr(text)?;
    if in_plan(&IpNet::from(addr)) || is_link_local_v6(&addr) {
        Ok(addr)
    } else {
        Err(outside(text, PLAN_OR_LINK_LOCAL))
    }
}

/// Checks every argument of a raw `ip` command line that parses as an address or prefix: each
/// must be in the plan, IPv6 link-local, unspecified or a default route. Best effort: iproute2
/// also accepts abbreviated forms (`198.18/16`) that are not recognised here.
pub fn check_ip_arguments(args: &[&str]) -> Result<()> {
    for arg in args {
        let net = match (arg.parse::<IpNet>(), arg.parse::<IpAddr>()) {
            (Ok(net), _) => net,
            (_, Ok(addr)) => IpNet::from(addr),
            _ => continue,
        };
        let addr = net.addr();
        let fine = in_plan(&net)
            || is_default(&net)
            || addr.is_unspecified()
            || (is_link_local_v6(&addr) && net.prefix_len() >= 10);
        if !fine {
            return Err(outside(arg, "198.18.0.0/15, 2001:db8::/32, fe80::/10 or a default"));
        }
    }
    Ok(())
}

/// Is `net` 0.0.0.0/0 or ::/0?
pub fn is_default(net: &IpNet) -> bool {
    net.prefix_len() == 0 && net.addr().is_unspecified()
}

fn is_link_local_v6(addr: &IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if LINK_LOCAL_V6.contains(a))
}

fn outside(text: &str, allowed: &'static str) -> Error {
    Error::OutsidePlan {
        address: text.trim().to_owned(),
        allowed,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plan_addresses_are_accepted() {
        for ok in [
            "198.18.0.1/24",
            "198.19.255.254/16",
            "198.18.0.0/15",
            "2001:db8::1/64",
            "2001:db8:ffff::1",
        ] {
            interface_address(ok).unwrap();
        }
    }

    #[test]
    fn addresses_outside_the_plan_are_refused_by_name() {
        for bad in [
            "203.0.113.1/24",
            "198.17.255.255/32",
            "198.20.0.1/24",
            "198.18.0.1/14",
            "2001:db9::1/64",
            "2001:db8::1/31",
            "fe80::1/64",
            "::ffff:198.18.0.1",
        ] {
            let err = interface_address(bad).unwrap_err();
            assert!(matches!(err, Error::OutsidePlan { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn link_local_is_a_gateway_but_never_an_address_or_destination() {
        gateway("fe80::1").unwrap();
        interface_address("fe80::1/64").unwrap_err();
        route_destination("fe80::/64").unwrap_err();
        gateway("169.254.1.1").unwrap_err();
    }

    #[test]
    fn default_routes_are_destinations_but_not_addresses() {
        route_destination("0.0.0.0/0").unwrap();
        route_destination("::/0").unwrap();
        interface_address("0.0.0.0/0").unwrap_err();
        route_destination("0.0.0.0/1").unwrap_err();
    }

    #[test]
    fn raw_ip_arguments_are_checked() {
        check_ip_arguments(&["route", "add", "198.18.1.0/24", "via", "198.18.0.1"]).unwrap();
        check_ip_arguments(&["link", "set", "eth0", "mtu", "1400"]).unwrap();
        check_ip_arguments(&["-6", "route", "add", "::/0", "via", "fe80::1", "dev", "eth0"]).unwrap();
        let err = check_ip_arguments(&["addr", "add", "203.0.113.3/25", "dev", "eth0"]).unwrap_err();
        assert!(err.to_string().contains("203.0.113.3/25"));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(interface_address("198.18.0.300/24"), Err(Error::Parse { .. })));
    }
}

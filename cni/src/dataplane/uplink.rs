//! The pod's MTU when the configuration names none: the node's uplink's, so pods never send
//! packets the node's own network would have to fragment or drop.
//!
//! The rule, in order:
//! 1. the MTU of the interface holding the default route of the main table (IPv4; IPv6 when
//!    there is no IPv4 default); with several next hops, the lowest of their interfaces;
//! 2. else the lowest MTU among the node's up, non-virtual interfaces (not loopback, no link
//!    kind such as veth, bridge or vxlan: the NICs);
//! 3. else [`FALLBACK_MTU`].
//!
//! [`choose`] is the rule (pure); [`derive`] reads the kernel's routes and links for it.

use std::net::{Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteFlags, RouteMessage};
use rtnetlink::{Handle, RouteGetRequest, RouteMessageBuilder};

use super::{DataplaneError, kernel};

/// The MTU when neither a default route nor a NIC tells one (the kernel's veth default).
pub const FALLBACK_MTU: u32 = 1500;
/// The main routing table's id.
const MAIN_TABLE: u32 = 254;

/// What the rule needs of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    pub index: u32,
    pub mtu: u32,
    pub up: bool,
    pub loopback: bool,
    /// The link kind (`veth`, `bridge`, …); `None` for a NIC.
    pub kind: Option<String>,
}

impl LinkFacts {
    pub fn of(message: &LinkMessage) -> LinkFacts {
        let mut facts = LinkFacts {
            index: message.header.index,
            mtu: FALLBACK_MTU,
            up: message.header.flags.contains(LinkFlags::Up),
            loopback: message.header.flags.contains(LinkFlags::Loopback),
            kind: None,
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::Mtu(mtu) => facts.mtu = *mtu,
                LinkAttribute::LinkInfo(infos) => {
                    facts.kind = infos.iter().find_map(|info| match info {
                        LinkInfo::Kind(kind) => Some(kind.to_string()),
                        _ => None,
                    })
                }
                _ => {}
            }
        }
        facts
    }
}

/// The rule: `default_route` holds the interface indexes of the default route's next hops
/// (empty: no default route); `links` the node's interfaces.
pub fn choose(default_route: &[u32], links: &[LinkFacts]) -> u32 {
    let of_default = links
        .iter()
        .filter(|link| default_route.contains(&link.index))
        .map(|link| link.mtu)
        .min();
    let of_nics = || {
        links
            .iter()
            .filter(|link| link.up && !link.loopback && link.kind.is_none())
            .map(|link| link.mtu)
            .min()
    };
    of_default.or_else(of_nics).unwrap_or(FALLBACK_MTU)
}

/// Destinations looked up to find the default route: documentation and discard addresses,
/// which no node routes anywhere but by its default route. The kernel answers with the route
/// that matched (`RTM_F_FIB_MATCH`): one small request instead of a dump of every route (a node
/// holds one per local pod and, with BGP, one per remote block).
const PROBE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PROBE_V6: Ipv6Addr = Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 1);

/// Interfaces of the matched route's next hops, if it is the main table's default route.
fn default_route_interfaces(message: &RouteMessage) -> Vec<u32> {
    let table = message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table));
    if table != MAIN_TABLE || message.header.destination_prefix_length != 0 {
        return Vec::new();
    }
    message
        .attributes
        .iter()
        .flat_map(|a| match a {
            RouteAttribute::Oif(index) => vec![*index],
            RouteAttribute::MultiPath(hops) => hops.iter().map(|hop| hop.interface_index).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The route the kernel would use for the request's destination; `None` when it has none.
async fn matching_route(mut request: RouteGetRequest) -> Result<Option<RouteMessage>, DataplaneError> {
    request.message_mut().header.flags |= RouteFlags::FibMatch;
    match request.execute().try_next().await {
        Ok(route) => Ok(route),
        Err(rtnetlink::Error::NetlinkError(_)) => Ok(None),
        Err(source) => Err(kernel("look up the default route")(source)),
    }
}

async fn default_route(handle: &Handle) -> Result<Vec<u32>, DataplaneError> {
    let v4 = handle.route().get(
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(PROBE_V4, 32)
            .build(),
    );
    if let Some(route) = matching_route(v4).await? {
        let interfaces = default_route_interfaces(&route);
        if !interfaces.is_empty() {
            return Ok(interfaces);
        }
    }
    let v6 = handle.route().get(
        RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(PROBE_V6, 128)
            .build(),
    );
    Ok(matching_route(v6)
        .await?
        .map(|route| default_route_interfaces(&route))
        .unwrap_or_default())
}

/// The MTU the rule gives for the namespace `handle` talks to.
pub async fn derive(handle: &Handle) -> Result<u32, DataplaneError> {
    let default_route = default_route(handle).await?;
    let mut links = Vec::new();
    if default_route.is_empty() {
        let mut dump = handle.link().get().execute();
        while let Some(message) = dump.try_next().await.map_err(kernel("list links"))? {
            links.push(LinkFacts::of(&message));
        }
    } else {
        for index in &default_route {
            let mut found = handle.link().get().match_index(*index).execute();
            if let Some(message) = found
                .try_next()
                .await
                .map_err(kernel(format!("look up link {index}")))?
            {
                links.push(LinkFacts::of(&message));
            }
        }
    }
    Ok(choose(&default_route, &links))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, mtu: u32, kind: Option<&str>) -> LinkFacts {
        LinkFacts {
            index,
            mtu,
            up: true,
            loopback: false,
            kind: kind.map(str::to_owned),
        }
    }

    #[test]
    fn the_default_routes_interface_decides() {
        let links = [link(2, 9000, None), link(3, 1450, Some("vxlan"))];
        assert_eq!(choose(&[3], &links), 1450);
    }

    #[test]
    fn with_several_next_hops_the_lowest_mtu_wins() {
        let links = [link(2, 9000, None), link(3, 1500, None)];
        assert_eq!(choose(&[2, 3], &links), 1500);
    }

    #[test]
    fn without_a_default_route_the_lowest_up_nic_decides() {
        let mut down = link(4, 1280, None);
        down.up = false;
        let mut lo = link(1, 65536, None);
        lo.loopback = true;
        let links = [
            lo,
            link(2, 9000, None),
            link(3, 1400, Some("veth")),
            down,
            link(5, 8000, None),
        ];
        assert_eq!(choose(&[], &links), 8000, "loopback, veths and down NICs do not count");
    }

    #[test]
    fn nothing_known_gives_the_fallback() {
        assert_eq!(choose(&[], &[link(3, 1400, Some("veth"))]), FALLBACK_MTU);
    }
}

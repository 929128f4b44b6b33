//! Route reflection (RFC 4456): which iBGP-learned routes a route reflector passes to which
//! iBGP peers, the attributes it adds, and the loops they reveal.
//!
//! A reflector (a speaker with a cluster id and at least one client) reflects (§6):
//! - a route from a client to every other iBGP peer, clients and non-clients;
//! - a route from a non-client to its clients only.
//!
//! Never back to the peer it came from, nor to the router that originated it in the AS. A
//! reflected route gets ORIGINATOR_ID (the originator's router id, unless already set) and our
//! cluster id prepended to CLUSTER_LIST (§8). A route that carries our router id as
//! ORIGINATOR_ID or our cluster id in its CLUSTER_LIST has looped and is ignored (§8).
//!
//! Must never: reflect to or from an eBGP peer (export strips both attributes towards eBGP).

use std::net::Ipv4Addr;

use crate::route::{PathAttributes, PeerInfo};

/// Whether a route from `from` may be reflected to `to`, both iBGP peers.
pub fn may_reflect(from: &PeerInfo, to: &PeerInfo) -> bool {
    from.internal && to.internal && from.address != to.address && (from.reflector_client || to.reflector_client)
}

/// The router id that originated a route learned from `from` (RFC 4456 §8).
pub fn originator(attributes: &PathAttributes, from: &PeerInfo) -> Ipv4Addr {
    attributes.originator_id.unwrap_or(from.router_id)
}

/// The attributes of a route learned from `from`, as reflected by cluster `cluster_id`.
pub fn reflected(attributes: &PathAttributes, from: &PeerInfo, cluster_id: Ipv4Addr) -> PathAttributes {
    let mut cluster_list = Vec::with_capacity(attributes.cluster_list.len() + 1);
    cluster_list.push(cluster_id);
    cluster_list.extend_from_slice(&attributes.cluster_list);
    PathAttributes {
        originator_id: Some(originator(attributes, from)),
        cluster_list,
        ..attributes.clone()
    }
}

/// Whether an iBGP route has come back to us: our router id as its ORIGINATOR_ID, or our
/// cluster id in its CLUSTER_LIST.
pub fn has_looped(attributes: &PathAttributes, router_id: Ipv4Addr, cluster_id: Ipv4Addr) -> bool {
    attributes.originator_id == Some(router_id) || attributes.cluster_list.contains(&cluster_id)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::route::{AsPath, Origin};

    fn peer(last: u8, client: bool) -> PeerInfo {
        PeerInfo {
            address: IpAddr::V4(Ipv4Addr::new(198, 19, 0, last)),
            router_id: Ipv4Addr::new(198, 19, 1, last),
            asn: 65001,
            internal: true,
            reflector_client: client,
        }
    }

    fn attributes() -> PathAttributes {
        PathAttributes {
            origin: Origin::Igp,
            as_path: AsPath::default(),
            next_hop: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
            med: None,
            local_pref: Some(100),
            communities: Vec::new(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            aggregator: None,
            atomic_aggregate: false,
        }
    }

    #[test]
    fn client_routes_go_to_everyone_and_non_client_routes_to_clients_only() {
        let (client, other_client, non_client, other_non_client) =
            (peer(1, true), peer(2, true), peer(3, false), peer(4, false));
        assert!(may_reflect(&client, &other_client));
        assert!(may_reflect(&client, &non_client));
        assert!(may_reflect(&non_client, &client));
        assert!(!may_reflect(&non_client, &other_non_client));
        assert!(!may_reflect(&client, &client));
    }

    #[test]
    fn reflection_sets_the_originator_once_and_prepends_the_cluster_id() {
        let cluster = Ipv4Addr::new(198, 19, 9, 9);
        let first = reflected(&attributes(), &peer(1, true), cluster);
        assert_eq!(first.originator_id, Some(Ipv4Addr::new(198, 19, 1, 1)));
        assert_eq!(first.cluster_list, vec![cluster]);
        let second = reflected(&first, &peer(2, true), Ipv4Addr::new(198, 19, 8, 8));
        assert_eq!(second.originator_id, Some(Ipv4Addr::new(198, 19, 1, 1)), "kept");
        assert_eq!(second.cluster_list, vec![Ipv4Addr::new(198, 19, 8, 8), cluster]);
    }

    #[test]
    fn our_router_id_or_cluster_id_in_a_route_is_a_loop() {
        let (router_id, cluster) = (Ipv4Addr::new(198, 19, 0, 2), Ipv4Addr::new(198, 19, 9, 9));
        assert!(!has_looped(&attributes(), router_id, cluster));
        let mine = PathAttributes {
            originator_id: Some(router_id),
            ..attributes()
        };
        assert!(has_looped(&mine, router_id, cluster));
        let through_us = reflected(&attributes(), &peer(1, true), cluster);
        assert!(has_looped(&through_us, router_id, cluster));
    }
}

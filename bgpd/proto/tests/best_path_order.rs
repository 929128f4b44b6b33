//! Property: the best path to a prefix does not depend on the order in which its paths arrived
//! (RFC 4271 §9.1.2 is a function of the set), whether they are inserted into the Loc-RIB one by
//! one or handed to the decision process as a slice.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use proptest::prelude::*;
use weft_bgp_proto::best_path::best_path;
use weft_bgp_proto::route::{AsPath, AsPathSegment, Origin};
use weft_bgp_proto::{LocRib, Path, PathAttributes, PathSource, PeerInfo, Prefix};

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)]
}

/// Paths from distinct peers (one path per peer, as without add-path), with attributes drawn
/// from small ranges so that ties at every step are common.
fn paths() -> impl Strategy<Value = Vec<Path>> {
    let attributes = (
        origin(),
        prop::collection::vec(65000u32..65004, 0..4),
        prop::option::of(0u32..3),
        prop::option::of(99u32..102),
        any::<bool>(),
        0u8..3,
    );
    prop::collection::vec(attributes, 1..8).prop_map(|drawn| {
        drawn
            .into_iter()
            .enumerate()
            .map(|(i, (origin, as_path, med, local_pref, internal, id))| {
                let index = u8::try_from(i).unwrap_or(u8::MAX);
                let source = if i == 7 {
                    PathSource::Local
                } else {
                    PathSource::Peer(PeerInfo {
                        address: IpAddr::V4(Ipv4Addr::new(198, 19, 0, index + 1)),
                        // Few identifiers: the peer address must break ties.
                        router_id: Ipv4Addr::new(198, 19, 1, id),
                        asn: if internal {
                            65001
                        } else {
                            as_path.first().copied().unwrap_or(65000)
                        },
                        internal,
                        reflector_client: false,
                    })
                };
                Path {
                    source,
                    attributes: Arc::new(PathAttributes {
                        origin,
                        as_path: AsPath(vec![AsPathSegment::Sequence(as_path)]),
                        next_hop: IpAddr::V4(Ipv4Addr::new(198, 19, 0, index + 1)),
                        med,
                        local_pref,
                        communities: Vec::new(),
                        large_communities: Vec::new(),
                        originator_id: None,
                        cluster_list: Vec::new(),
                        aggregator: None,
                        atomic_aggregate: false,
                    }),
                }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn best_path_does_not_depend_on_arrival_order(
        (paths, order) in paths().prop_flat_map(|paths| {
            let n = paths.len();
            (Just(paths), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        })
    ) {
        let shuffled: Vec<Path> = order.iter().map(|&i| paths[i].clone()).collect();
        let best = best_path(&paths).map(|i| paths[i].source);
        prop_assert_eq!(best_path(&shuffled).map(|i| shuffled[i].source), best);

        let prefix: Prefix = "198.18.1.0/24".parse().expect("prefix");
        let mut rib = LocRib::default();
        for path in &shuffled {
            rib.insert(prefix, path.clone());
        }
        prop_assert_eq!(rib.best(&prefix).map(|p| p.source), best);
    }

    #[test]
    fn withdrawing_a_path_gives_the_best_of_the_rest(
        (paths, withdrawn) in paths().prop_flat_map(|paths| {
            let n = paths.len();
            (Just(paths), 0..n)
        })
    ) {
        let prefix: Prefix = "198.18.1.0/24".parse().expect("prefix");
        let mut rib = LocRib::default();
        for path in &paths {
            rib.insert(prefix, path.clone());
        }
        rib.remove(&prefix, &paths[withdrawn].source);
        let rest: Vec<Path> = paths.iter().enumerate().filter(|(i, _)| *i != withdrawn).map(|(_, p)| p.clone()).collect();
        prop_assert_eq!(rib.best(&prefix).map(|p| p.source), best_path(&rest).map(|i| rest[i].source));
    }
}

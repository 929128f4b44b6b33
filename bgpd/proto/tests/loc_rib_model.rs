//! Property: the Loc-RIB (best path kept first, one path inline, per-source counters) behaves as
//! a plain model does: a map from prefix to the paths of each source, the best chosen by
//! [`best_path`] over them, a source's count the prefixes it has a path to. After every insert
//! or remove, the best path, the "best changed" answer, the ECMP set and the counters agree.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use proptest::prelude::*;
use weft_bgp_proto::best_path::{best_path, multipath};
use weft_bgp_proto::route::{AsPath, AsPathSegment, Origin};
use weft_bgp_proto::{LocRib, Path, PathAttributes, PathSource, PeerInfo, Prefix};

const PREFIXES: [&str; 3] = ["198.18.1.0/24", "198.18.2.0/24", "2001:db8:1::/48"];

fn source(peer: u8) -> PathSource {
    if peer == 0 {
        return PathSource::Local;
    }
    PathSource::Peer(PeerInfo {
        address: IpAddr::V4(Ipv4Addr::new(198, 19, 0, peer)),
        router_id: Ipv4Addr::new(198, 19, 1, peer % 2),
        asn: 65000 + u32::from(peer % 2),
        internal: peer > 3,
        reflector_client: false,
    })
}

fn attributes(as_path: Vec<u32>, med: Option<u32>, local_pref: Option<u32>, hop: u8) -> Arc<PathAttributes> {
    Arc::new(PathAttributes {
        origin: Origin::Igp,
        as_path: AsPath(vec![AsPathSegment::Sequence(as_path)]),
        next_hop: IpAddr::V4(Ipv4Addr::new(198, 19, 2, hop)),
        med,
        local_pref,
        communities: Vec::new(),
        large_communities: Vec::new(),
        originator_id: None,
        cluster_list: Vec::new(),
        aggregator: None,
        atomic_aggregate: false,
    })
}

#[derive(Debug, Clone)]
enum Operation {
    Insert {
        prefix: usize,
        peer: u8,
        attributes: Arc<PathAttributes>,
    },
    Remove {
        prefix: usize,
        peer: u8,
    },
}

fn operation() -> impl Strategy<Value = Operation> {
    let insert = (
        0..PREFIXES.len(),
        0u8..6,
        prop::collection::vec(65000u32..65003, 1..3),
        prop::option::of(0u32..2),
        prop::option::of(99u32..101),
        0u8..2,
    )
        .prop_map(|(prefix, peer, as_path, med, local_pref, hop)| Operation::Insert {
            prefix,
            peer,
            attributes: attributes(as_path, med, local_pref, hop),
        });
    let remove = (0..PREFIXES.len(), 0u8..6).prop_map(|(prefix, peer)| Operation::Remove { prefix, peer });
    prop_oneof![3 => insert, 2 => remove]
}

type Model = BTreeMap<Prefix, BTreeMap<PathSource, Path>>;

fn model_best(model: &Model, prefix: &Prefix) -> Option<Path> {
    let paths: Vec<Path> = model.get(prefix)?.values().cloned().collect();
    best_path(&paths).map(|i| paths[i].clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn loc_rib_agrees_with_a_map_of_paths(operations in prop::collection::vec(operation(), 1..40)) {
        let prefixes: Vec<Prefix> = PREFIXES.iter().map(|p| p.parse().expect("prefix")).collect();
        let mut rib = LocRib::default();
        let mut model = Model::new();
        for operation in operations {
            let prefix = match &operation {
                Operation::Insert { prefix, .. } | Operation::Remove { prefix, .. } => prefixes[*prefix],
            };
            let before = model_best(&model, &prefix);
            let changed = match operation {
                Operation::Insert { peer, attributes, .. } => {
                    let path = Path { source: source(peer), attributes };
                    model.entry(prefix).or_default().insert(path.source, path.clone());
                    rib.insert(prefix, path)
                }
                Operation::Remove { peer, .. } => {
                    if let Some(paths) = model.get_mut(&prefix) {
                        paths.remove(&source(peer));
                        if paths.is_empty() {
                            model.remove(&prefix);
                        }
                    }
                    rib.remove(&prefix, &source(peer))
                }
            };
            let after = model_best(&model, &prefix);
            prop_assert_eq!(changed, before != after, "best changed for {}", prefix);
            prop_assert_eq!(rib.best(&prefix).cloned(), after);
            let paths: Vec<Path> = model.get(&prefix).map(|p| p.values().cloned().collect()).unwrap_or_default();
            let ecmp: Vec<IpAddr> = multipath(&paths, 4).into_iter().map(|i| paths[i].attributes.next_hop).collect();
            let rib_ecmp: Vec<IpAddr> = rib.multipath(&prefix, 4).into_iter().map(|p| p.attributes.next_hop).collect();
            prop_assert_eq!(rib_ecmp, ecmp);
            prop_assert_eq!(rib.len(), model.len());
            for peer in 0u8..6 {
                let count = model.values().filter(|paths| paths.contains_key(&source(peer))).count();
                prop_assert_eq!(rib.count(&source(peer)), count);
            }
        }
    }
}

/// Prefixes from a small space, so that runs fill, split and empty.
fn map_prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        (0u32..400).prop_map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0xC612_0000 + (i << 8))), 24).expect("prefix")),
        (0u16..50).prop_map(
            |i| Prefix::new(IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 0)), 48).expect("prefix")
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The prefix map holds what a BTreeMap holds, in the same order, through inserts in
    /// ascending order (as tables arrive), in any order, and removals.
    #[test]
    fn prefix_map_agrees_with_a_btree_map(
        ascending in 0usize..300,
        operations in prop::collection::vec((map_prefix(), any::<bool>(), any::<u16>()), 0..600),
    ) {
        use weft_bgp_proto::prefix_map::PrefixMap;
        let mut map = PrefixMap::default();
        let mut model = BTreeMap::new();
        for i in 0..ascending {
            let prefix = Prefix::new(IpAddr::V4(Ipv4Addr::from(0xC612_0000 + ((i as u32) << 8))), 24).expect("prefix");
            prop_assert_eq!(map.insert(prefix, i as u16), model.insert(prefix, i as u16));
        }
        for (prefix, insert, value) in operations {
            if insert {
                prop_assert_eq!(map.insert(prefix, value), model.insert(prefix, value));
            } else {
                prop_assert_eq!(map.remove(&prefix), model.remove(&prefix));
            }
            prop_assert_eq!(map.get(&prefix), model.get(&prefix));
            prop_assert_eq!(map.len(), model.len());
        }
        let entries: Vec<(Prefix, u16)> = map.iter().map(|(p, v)| (*p, *v)).collect();
        let expected: Vec<(Prefix, u16)> = model.iter().map(|(p, v)| (*p, *v)).collect();
        prop_assert_eq!(entries, expected);
        for (prefix, value) in &model {
            prop_assert_eq!(map.get(prefix), Some(value));
            prop_assert!(map.contains_key(prefix));
        }
    }
}

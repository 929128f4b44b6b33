//! Best-path selection: the Decision Process of RFC 4271 §9.1.2, as a pure function of the set of
//! paths to one prefix.
//!
//! Each step eliminates paths from the candidate set, in this order:
//! 0. a path originated here beats any learned path (what BIRD and FRR call a static route's
//!    preference; weft originates at most one path per prefix);
//! 1. highest degree of preference, [`Path::local_pref`] (§9.1.1, §9.1.2.2 before a);
//! 2. shortest AS_PATH, an AS_SET counting as one (§9.1.2.2 a);
//! 3. lowest ORIGIN (§9.1.2.2 b);
//! 4. lowest MULTI_EXIT_DISC among paths from the same neighbouring AS, a missing MED being the
//!    lowest value (§9.1.2.2 c);
//! 5. eBGP-learned before iBGP-learned (§9.1.2.2 d); (e, interior cost to the next hop, needs
//!    the FIB and is not applied yet);
//! 6. lowest BGP Identifier of the advertising peer (§9.1.2.2 f), its ORIGINATOR_ID in its
//!    stead for a reflected route (RFC 4456 §9), then the shortest CLUSTER_LIST (RFC 4456 §9);
//! 7. lowest peer address (§9.1.2.2 g).
//!
//! Because every step works on the whole set and the last one is a total order on peers (one
//! path per peer per prefix), the result does not depend on the order in which paths arrived.
//!
//! ECMP ([`multipath`]): the paths that survive steps 0 to 5 together with the best one and
//! carry the same AS_PATH are installed together, up to a configured maximum.
//!
//! Must never: look at the FIB, the clock, or anything outside the paths it is given.

use std::collections::HashMap;

use crate::route::{Path, PathSource};

/// The index of the best of `paths`, or `None` if there are none.
pub fn best_path(paths: &[Path]) -> Option<usize> {
    if paths.len() < 2 {
        // Nothing to compare (the common case): no candidate list to build.
        return (!paths.is_empty()).then_some(0);
    }
    let mut candidates = equal_up_to_tie_break(paths);
    keep_min_by_key(&mut candidates, |i| tie_break(&paths[i]));
    candidates.first().copied()
}

/// The paths to install together with the best one (ECMP), best first, at most `max_paths`:
/// those that survive steps 0 to 5 with it (equal up to the router id tie-break) and carry the
/// same AS_PATH, as FRR's `maximum-paths` requires by default (without `as-path
/// multipath-relax`). Paths originated here are never multipath. Empty if `paths` is.
pub fn multipath(paths: &[Path], max_paths: usize) -> Vec<usize> {
    let mut candidates = equal_up_to_tie_break(paths);
    candidates.sort_by_key(|&i| tie_break(&paths[i]));
    let Some(&best) = candidates.first() else {
        return Vec::new();
    };
    if paths[best].source == PathSource::Local {
        return vec![best];
    }
    let as_path = &paths[best].attributes.as_path;
    candidates.retain(|&i| &paths[i].attributes.as_path == as_path);
    candidates.truncate(max_paths.max(1));
    candidates
}

/// §9.1.2.2 (f) and (g): lowest BGP Identifier (the ORIGINATOR_ID of a reflected route, RFC
/// 4456 §9), shortest CLUSTER_LIST, then lowest peer address.
fn tie_break(path: &Path) -> (u32, usize, Option<std::net::IpAddr>) {
    match path.source {
        PathSource::Peer(peer) => (
            u32::from(path.attributes.originator_id.unwrap_or(peer.router_id)),
            path.attributes.cluster_list.len(),
            Some(peer.address),
        ),
        PathSource::Local => (0, 0, None),
    }
}

/// Steps 0 to 5: the candidates the router id would decide between.
fn equal_up_to_tie_break(paths: &[Path]) -> Vec<usize> {
    let mut candidates: Vec<usize> = (0..paths.len()).collect();
    keep_min_by_key(&mut candidates, |i| u8::from(paths[i].source != PathSource::Local));
    keep_min_by_key(&mut candidates, |i| std::cmp::Reverse(paths[i].local_pref()));
    keep_min_by_key(&mut candidates, |i| paths[i].attributes.as_path.length());
    keep_min_by_key(&mut candidates, |i| paths[i].attributes.origin);
    eliminate_by_med(paths, &mut candidates);
    keep_min_by_key(&mut candidates, |i| match paths[i].source {
        PathSource::Peer(peer) => u8::from(peer.internal),
        PathSource::Local => 0,
    });
    candidates
}

fn keep_min_by_key<K: Ord>(candidates: &mut Vec<usize>, key: impl Fn(usize) -> K) {
    if let Some(min) = candidates.iter().map(|&i| key(i)).min() {
        candidates.retain(|&i| key(i) == min);
    }
}

/// §9.1.2.2 (c): within each group of paths from the same neighbouring AS, keep only those with
/// the lowest MED. Paths from different neighbouring ASes are not compared.
fn eliminate_by_med(paths: &[Path], candidates: &mut Vec<usize>) {
    let med = |i: usize| paths[i].attributes.med.unwrap_or(0);
    let mut lowest: HashMap<Option<u32>, u32> = HashMap::new();
    for &i in candidates.iter() {
        let entry = lowest
            .entry(paths[i].attributes.as_path.neighbor_as())
            .or_insert(u32::MAX);
        *entry = (*entry).min(med(i));
    }
    candidates.retain(|&i| lowest.get(&paths[i].attributes.as_path.neighbor_as()) == Some(&med(i)));
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::*;
    use crate::route::{AsPath, AsPathSegment, Origin, PathAttributes, PeerInfo};

    fn peer(last: u8, asn: u32, internal: bool) -> PathSource {
        PathSource::Peer(PeerInfo {
            address: IpAddr::V4(Ipv4Addr::new(198, 19, 0, last)),
            router_id: Ipv4Addr::new(198, 19, 1, last),
            asn,
            internal,
            reflector_client: false,
        })
    }

    fn path(source: PathSource, as_path: &[u32], med: Option<u32>, local_pref: Option<u32>) -> Path {
        Path {
            source,
            attributes: Arc::new(PathAttributes {
                origin: Origin::Igp,
                as_path: AsPath(vec![AsPathSegment::Sequence(as_path.to_vec())]),
                next_hop: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
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
    }

    #[test]
    fn a_reflected_route_ties_on_its_originator_id_then_on_its_cluster_list() {
        let reflected = |last: u8, originator: [u8; 4], clusters: usize| {
            let mut path = path(peer(last, 65001, true), &[65000], None, None);
            let attributes = Arc::make_mut(&mut path.attributes);
            attributes.originator_id = Some(Ipv4Addr::from(originator));
            attributes.cluster_list = vec![Ipv4Addr::new(198, 19, 9, 9); clusters];
            path
        };
        // Peer 1 has the lower router id, but peer 2's route comes from a lower originator.
        let paths = [reflected(1, [198, 19, 5, 5], 1), reflected(2, [198, 19, 4, 4], 1)];
        assert_eq!(best_path(&paths), Some(1));
        let paths = [reflected(1, [198, 19, 4, 4], 2), reflected(2, [198, 19, 4, 4], 1)];
        assert_eq!(best_path(&paths), Some(1), "the shorter CLUSTER_LIST");
    }

    #[test]
    fn shorter_as_path_wins() {
        let paths = [
            path(peer(1, 65000, false), &[65000, 65100], None, None),
            path(peer(2, 65002, false), &[65002], None, None),
        ];
        assert_eq!(best_path(&paths), Some(1));
    }

    #[test]
    fn local_pref_from_ibgp_beats_a_shorter_path() {
        let paths = [
            path(peer(1, 65000, false), &[65000], None, None),
            path(peer(2, 65001, true), &[65000, 65100], None, Some(200)),
        ];
        assert_eq!(best_path(&paths), Some(1));
    }

    #[test]
    fn local_pref_set_by_import_policy_ranks_ebgp_paths() {
        // A LOCAL_PREF an eBGP peer sent is dropped at import (export::import); one on an
        // eBGP-learned path is our import policy's and beats the lower router id.
        let paths = [
            path(peer(1, 65000, false), &[65000], None, None),
            path(peer(2, 65002, false), &[65002], None, Some(500)),
        ];
        assert_eq!(best_path(&paths), Some(1));
    }

    #[test]
    fn med_is_compared_only_within_the_same_neighbor_as() {
        let paths = [
            path(peer(1, 65000, false), &[65000], Some(50), None),
            path(peer(2, 65000, false), &[65000], Some(10), None),
            path(peer(3, 65002, false), &[65002], Some(90), None),
        ];
        // Path 0 loses to path 1 on MED; path 2 is not compared by MED and path 1 wins on
        // router id.
        assert_eq!(best_path(&paths), Some(1));
        assert_eq!(best_path(&[paths[0].clone(), paths[2].clone()]), Some(0));
    }

    #[test]
    fn ebgp_beats_ibgp() {
        let paths = [
            path(peer(1, 65001, true), &[65000], None, Some(100)),
            path(peer(2, 65000, false), &[65000], None, None),
        ];
        assert_eq!(best_path(&paths), Some(1));
    }

    #[test]
    fn originated_path_beats_learned_paths() {
        let paths = [
            path(peer(1, 65000, false), &[], None, None),
            path(PathSource::Local, &[], None, None),
        ];
        assert_eq!(best_path(&paths), Some(1));
    }

    #[test]
    fn equal_paths_from_two_peers_of_one_as_are_multipath_best_first() {
        let paths = [
            path(peer(2, 65000, false), &[65000], None, None),
            path(peer(1, 65000, false), &[65000], None, None),
            path(peer(3, 65000, false), &[65000, 65100], None, None),
        ];
        assert_eq!(multipath(&paths, 8), [1, 0], "the longer AS_PATH is not equal");
        assert_eq!(multipath(&paths, 1), [1], "max_paths 1: the best path alone");
        assert_eq!(best_path(&paths), Some(1));
    }

    #[test]
    fn paths_through_different_ases_are_not_multipath() {
        let paths = [
            path(peer(1, 65000, false), &[65000], None, None),
            path(peer(2, 65002, false), &[65002], None, None),
        ];
        assert_eq!(multipath(&paths, 8), [0]);
    }

    #[test]
    fn a_lower_med_or_local_pref_keeps_a_path_out_of_multipath() {
        let paths = [
            path(peer(1, 65000, false), &[65000], Some(20), None),
            path(peer(2, 65000, false), &[65000], Some(10), None),
        ];
        assert_eq!(multipath(&paths, 8), [1]);
        let paths = [
            path(peer(1, 65001, true), &[65000], None, Some(100)),
            path(peer(2, 65001, true), &[65000], None, Some(200)),
        ];
        assert_eq!(multipath(&paths, 8), [1]);
    }

    #[test]
    fn an_originated_path_is_never_multipath() {
        let paths = [
            path(PathSource::Local, &[], None, None),
            path(peer(1, 65000, false), &[], None, None),
        ];
        assert_eq!(multipath(&paths, 8), [0]);
        assert!(multipath(&[], 8).is_empty());
    }

    #[test]
    fn no_paths_no_best() {
        assert_eq!(best_path(&[]), None);
    }
}

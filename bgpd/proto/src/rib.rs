//! The Routing Information Bases of RFC 4271 §3.2: Adj-RIB-In, Loc-RIB and Adj-RIB-Out.
//!
//! - [`AdjRibIn`]: what one peer advertised to us and has not withdrawn, before import policy.
//! - [`LocRib`]: every accepted path per prefix and the best of them ([`crate::best_path`]).
//!   Changes report whether the best path changed, so the caller knows what to re-export.
//! - [`AdjRibOut`]: what we advertised to one peer, so a new best path is sent only when the
//!   attributes the peer would see change, and withdrawn only if it was sent.
//!
//! The Loc-RIB and the Adj-RIB-Out are [`PrefixMap`]s: a full table costs its entries, not
//! half-empty tree nodes.
//!
//! Must never: do I/O, apply policy (the caller filters before [`LocRib::insert`] and before
//! [`AdjRibOut::update`]), or hold more than one path per source and prefix (no add-path yet).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use smallvec::{SmallVec, smallvec};

use crate::best_path::best_path;
use crate::prefix_map::PrefixMap;
use crate::route::{Path, PathAttributes, PathSource, Prefix};

/// What one peer advertised, before import policy (RFC 4271 §3.2).
#[derive(Debug, Clone, Default)]
pub struct AdjRibIn {
    routes: BTreeMap<Prefix, Arc<PathAttributes>>,
}

impl AdjRibIn {
    /// Records an advertisement, replacing an earlier one for the prefix (implicit withdraw).
    pub fn insert(&mut self, prefix: Prefix, attributes: Arc<PathAttributes>) {
        self.routes.insert(prefix, attributes);
    }

    /// Records a withdrawal; whether the prefix was there.
    pub fn remove(&mut self, prefix: &Prefix) -> bool {
        self.routes.remove(prefix).is_some()
    }

    /// How many prefixes the peer advertises.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the peer advertises nothing.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Empties it (the session went down), returning the prefixes it held.
    pub fn clear(&mut self) -> Vec<Prefix> {
        std::mem::take(&mut self.routes).into_keys().collect()
    }

    /// Every prefix and its attributes.
    pub fn iter(&self) -> impl Iterator<Item = (&Prefix, &Arc<PathAttributes>)> {
        self.routes.iter()
    }
}

/// Every path to one prefix, the best first.
///
/// One path, by far the most common case, is held inline: a destination costs no allocation of
/// its own until a second source has a path to it.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// The best path at index 0, the others in no particular order.
    paths: SmallVec<[Path; 1]>,
}

/// The paths of one ECMP route, best first: one inline.
pub type Multipath<'a> = SmallVec<[&'a Path; 1]>;

impl Destination {
    /// All paths, the best first, the others in no particular order.
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// The best path.
    pub fn best(&self) -> Option<&Path> {
        self.paths.first()
    }

    /// The paths to install together (ECMP, [`crate::best_path::multipath`]), best first.
    pub fn multipath(&self, max_paths: usize) -> Multipath<'_> {
        if let [only] = self.paths.as_slice() {
            return smallvec![only];
        }
        crate::best_path::multipath(&self.paths, max_paths)
            .into_iter()
            .filter_map(|i| self.paths.get(i))
            .collect()
    }

    /// Moves the best path to the front after a change; the source of the best path now.
    fn reselect(&mut self) -> Option<PathSource> {
        if let Some(best) = best_path(&self.paths) {
            self.paths.swap(0, best);
        }
        self.paths.first().map(|path| path.source)
    }
}

/// The Loc-RIB: accepted paths per prefix and the best of each (RFC 4271 §3.2, §9.1).
///
/// It also counts the paths of each source, so that a peer's accepted prefixes
/// ([`LocRib::count`]) cost no walk.
#[derive(Debug, Clone, Default)]
pub struct LocRib {
    destinations: PrefixMap<Destination>,
    counts: HashMap<PathSource, usize>,
}

impl LocRib {
    /// Adds or replaces the path of `path.source` to `prefix`; whether the best path changed.
    pub fn insert(&mut self, prefix: Prefix, path: Path) -> bool {
        let destination = self.destinations.get_or_insert_with(prefix, Destination::default);
        let before = destination.best().map(|best| best.source);
        let source = path.source;
        let replaced = match destination.paths.iter_mut().find(|p| p.source == source) {
            Some(existing) => Some(std::mem::replace(existing, path)),
            None => {
                destination.paths.push(path);
                *self.counts.entry(source).or_default() += 1;
                None
            }
        };
        let after = destination.reselect();
        if before != after {
            return true;
        }
        // The same source is best: the change shows only if it was its path that changed.
        match (replaced, destination.best()) {
            (Some(old), Some(best)) if best.source == source => old.attributes != best.attributes,
            _ => false,
        }
    }

    /// Removes the path of `source` to `prefix`, if any; whether the best path changed.
    pub fn remove(&mut self, prefix: &Prefix, source: &PathSource) -> bool {
        let Some(destination) = self.destinations.get_mut(prefix) else {
            return false;
        };
        let Some(index) = destination.paths.iter().position(|p| &p.source == source) else {
            return false;
        };
        let before = destination.best().map(|best| best.source);
        destination.paths.swap_remove(index);
        if let Some(count) = self.counts.get_mut(source) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(source);
            }
        }
        let after = destination.reselect();
        if destination.paths.is_empty() {
            self.destinations.remove(prefix);
        }
        before != after
    }

    /// The paths to `prefix` to install together (ECMP), best first; empty if none.
    pub fn multipath(&self, prefix: &Prefix, max_paths: usize) -> Multipath<'_> {
        self.destinations
            .get(prefix)
            .map_or_else(SmallVec::new, |destination| destination.multipath(max_paths))
    }

    /// Whether `source` has a path to `prefix`.
    pub fn contains(&self, prefix: &Prefix, source: &PathSource) -> bool {
        self.destinations
            .get(prefix)
            .is_some_and(|destination| destination.paths.iter().any(|p| &p.source == source))
    }

    /// How many prefixes `source` has a path to.
    pub fn count(&self, source: &PathSource) -> usize {
        self.counts.get(source).copied().unwrap_or(0)
    }

    /// The best path to `prefix`.
    pub fn best(&self, prefix: &Prefix) -> Option<&Path> {
        self.destinations.get(prefix).and_then(Destination::best)
    }

    /// Every prefix with at least one path, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (&Prefix, &Destination)> {
        self.destinations.iter()
    }

    /// How many prefixes have a path.
    pub fn len(&self) -> usize {
        self.destinations.len()
    }

    /// Whether no prefix has a path.
    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty()
    }
}

/// What the Adj-RIB-Out says to send for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutChange {
    /// Advertise with these attributes.
    Advertise(Arc<PathAttributes>),
    /// Withdraw it.
    Withdraw,
}

/// What we advertised to one peer (RFC 4271 §3.2).
#[derive(Debug, Clone, Default)]
pub struct AdjRibOut {
    routes: PrefixMap<Arc<PathAttributes>>,
}

impl AdjRibOut {
    /// Sets what the peer should see for `prefix` (`None`: nothing) and says what to send, if
    /// anything differs from what was sent.
    pub fn update(&mut self, prefix: Prefix, wanted: Option<Arc<PathAttributes>>) -> Option<OutChange> {
        match wanted {
            Some(attributes) => {
                if self.routes.get(&prefix) == Some(&attributes) {
                    return None;
                }
                self.routes.insert(prefix, attributes.clone());
                Some(OutChange::Advertise(attributes))
            }
            None => self.routes.remove(&prefix).map(|_| OutChange::Withdraw),
        }
    }

    /// What was sent for `prefix`, if it is advertised.
    pub fn sent(&self, prefix: &Prefix) -> Option<&Arc<PathAttributes>> {
        self.routes.get(prefix)
    }

    /// How many prefixes are advertised.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether nothing is advertised.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Forgets everything (the session went down).
    pub fn clear(&mut self) {
        self.routes = PrefixMap::default();
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::route::{AsPath, Origin, PeerInfo};

    fn attributes(next_hop: u8) -> Arc<PathAttributes> {
        Arc::new(PathAttributes {
            origin: Origin::Igp,
            as_path: AsPath::default().prepend(65000),
            next_hop: IpAddr::V4(Ipv4Addr::new(198, 19, 0, next_hop)),
            med: None,
            local_pref: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            aggregator: None,
            atomic_aggregate: false,
        })
    }

    fn from_peer(last: u8) -> PathSource {
        PathSource::Peer(PeerInfo {
            address: IpAddr::V4(Ipv4Addr::new(198, 19, 0, last)),
            router_id: Ipv4Addr::new(198, 19, 1, last),
            asn: 65000,
            internal: false,
            reflector_client: false,
        })
    }

    fn prefix() -> Prefix {
        "198.18.1.0/24".parse().expect("prefix")
    }

    #[test]
    fn removing_the_best_path_selects_the_next() {
        let mut rib = LocRib::default();
        assert!(rib.insert(
            prefix(),
            Path {
                source: from_peer(2),
                attributes: attributes(2)
            }
        ));
        assert!(rib.insert(
            prefix(),
            Path {
                source: from_peer(1),
                attributes: attributes(1)
            }
        ));
        assert_eq!(rib.best(&prefix()).map(|p| p.source), Some(from_peer(1)));
        assert!(!rib.remove(&prefix(), &from_peer(3)));
        assert!(rib.remove(&prefix(), &from_peer(1)));
        assert_eq!(rib.best(&prefix()).map(|p| p.source), Some(from_peer(2)));
        assert!(rib.remove(&prefix(), &from_peer(2)));
        assert!(rib.is_empty());
    }

    #[test]
    fn adding_a_worse_path_does_not_change_the_best() {
        let mut rib = LocRib::default();
        assert!(rib.insert(
            prefix(),
            Path {
                source: from_peer(1),
                attributes: attributes(1)
            }
        ));
        assert!(!rib.insert(
            prefix(),
            Path {
                source: from_peer(2),
                attributes: attributes(2)
            }
        ));
    }

    #[test]
    fn adj_rib_out_sends_only_differences() {
        let mut out = AdjRibOut::default();
        assert_eq!(out.update(prefix(), None), None, "nothing to withdraw");
        assert_eq!(
            out.update(prefix(), Some(attributes(1))),
            Some(OutChange::Advertise(attributes(1)))
        );
        assert_eq!(out.update(prefix(), Some(attributes(1))), None, "unchanged");
        assert_eq!(out.update(prefix(), None), Some(OutChange::Withdraw));
        assert!(out.is_empty());
    }
}

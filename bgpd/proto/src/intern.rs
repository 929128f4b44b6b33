//! [`AttributeSets`]: one shared copy of each distinct set of path attributes.
//!
//! A full table arrives as thousands of UPDATEs that mostly carry the same attributes, and an
//! import policy that sets something makes a new set per prefix. Interned, every path with the
//! same attributes points at one allocation, whichever UPDATE or policy made it. Sets no path
//! holds any more are dropped when the table has doubled since the last sweep.
//!
//! Must never: change attributes, or keep a set alive for longer than one sweep after its last
//! path went.

use std::collections::HashSet;
use std::sync::Arc;

use crate::route::PathAttributes;

/// Fewest sets held before a sweep is worth it.
const FIRST_SWEEP: usize = 1024;

/// The interned attribute sets.
#[derive(Debug, Clone)]
pub struct AttributeSets {
    sets: HashSet<Arc<PathAttributes>>,
    sweep_at: usize,
}

impl Default for AttributeSets {
    fn default() -> Self {
        Self {
            sets: HashSet::new(),
            sweep_at: FIRST_SWEEP,
        }
    }
}

impl AttributeSets {
    /// The shared copy of `attributes`: the one held already if equal, else `attributes`, held.
    pub fn intern(&mut self, attributes: Arc<PathAttributes>) -> Arc<PathAttributes> {
        if let Some(held) = self.sets.get(&attributes) {
            return held.clone();
        }
        if self.sets.len() >= self.sweep_at {
            // Held only here: no path uses it.
            self.sets.retain(|set| Arc::strong_count(set) > 1);
            self.sweep_at = (self.sets.len() * 2).max(FIRST_SWEEP);
        }
        self.sets.insert(attributes.clone());
        attributes
    }

    /// How many distinct sets are held.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::route::{AsPath, Origin};

    fn attributes(med: u32) -> Arc<PathAttributes> {
        Arc::new(PathAttributes {
            origin: Origin::Igp,
            as_path: AsPath::default().prepend(65000),
            next_hop: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
            med: Some(med),
            local_pref: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            aggregator: None,
            atomic_aggregate: false,
        })
    }

    #[test]
    fn equal_sets_share_one_copy_and_unused_ones_are_swept() {
        let mut sets = AttributeSets::default();
        let first = sets.intern(attributes(1));
        let again = sets.intern(attributes(1));
        assert!(Arc::ptr_eq(&first, &again), "one copy for equal attributes");
        assert_eq!(sets.len(), 1);
        // Sets nobody holds: swept once there are FIRST_SWEEP of them.
        for med in 2..=u32::try_from(FIRST_SWEEP).unwrap_or(u32::MAX) + 1 {
            sets.intern(attributes(med));
        }
        assert!(sets.len() <= 2, "{} sets held", sets.len());
        assert!(Arc::ptr_eq(&sets.intern(attributes(1)), &first), "a set in use stays");
    }
}

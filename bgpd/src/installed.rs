//! What weft has installed in the kernel: the next hops of each prefix. Each distinct set of
//! next hops is held once (a full table learned from one peer has one, or a few), so a route
//! costs its prefix and a 4-octet index.
//!
//! Must never: talk to the kernel (the FIB task does, [`crate::kernel`]).

use std::collections::HashMap;

use weft_bgp_proto::Prefix;
use weft_bgp_proto::prefix_map::PrefixMap;

use crate::kernel::NextHops;

/// The installed routes, next hop sets interned.
#[derive(Debug, Default)]
pub struct Installed {
    routes: PrefixMap<u32>,
    /// Each set and how many routes use it; a set no route uses is free for reuse.
    sets: Vec<(NextHops, usize)>,
    ids: HashMap<NextHops, u32>,
    free: Vec<u32>,
}

impl Installed {
    /// The next hops of the route to `prefix`.
    pub fn get(&self, prefix: &Prefix) -> Option<&NextHops> {
        let id = *self.routes.get(prefix)?;
        self.sets.get(id as usize).map(|(next_hops, _)| next_hops)
    }

    /// Whether there is a route to `prefix`.
    pub fn contains(&self, prefix: &Prefix) -> bool {
        self.routes.contains_key(prefix)
    }

    /// Records the route to `prefix` via `next_hops`; the next hops it had before.
    pub fn insert(&mut self, prefix: Prefix, next_hops: NextHops) -> Option<NextHops> {
        let id = self.intern(next_hops);
        let before = self.routes.insert(prefix, id)?;
        Some(self.release(before))
    }

    /// Forgets the route to `prefix`; the next hops it had.
    pub fn remove(&mut self, prefix: &Prefix) -> Option<NextHops> {
        let id = self.routes.remove(prefix)?;
        Some(self.release(id))
    }

    /// How many routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Every prefix with a route, emptying the table.
    pub fn take_prefixes(&mut self) -> Vec<Prefix> {
        let prefixes = self.routes.iter().map(|(prefix, _)| *prefix).collect();
        *self = Self::default();
        prefixes
    }

    fn intern(&mut self, next_hops: NextHops) -> u32 {
        if let Some(&id) = self.ids.get(&next_hops) {
            if let Some((_, users)) = self.sets.get_mut(id as usize) {
                *users += 1;
            }
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.sets[id as usize] = (next_hops.clone(), 1);
                id
            }
            None => {
                // More distinct sets than u32 can count would need more peers than exist.
                let id = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
                self.sets.push((next_hops.clone(), 1));
                id
            }
        };
        self.ids.insert(next_hops, id);
        id
    }

    /// One route less uses set `id`; the set.
    fn release(&mut self, id: u32) -> NextHops {
        let Some((next_hops, users)) = self.sets.get_mut(id as usize) else {
            return NextHops::new();
        };
        *users = users.saturating_sub(1);
        let next_hops = next_hops.clone();
        if *users == 0 {
            self.ids.remove(&next_hops);
            self.free.push(id);
        }
        next_hops
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn hops(addresses: &[&str]) -> NextHops {
        addresses
            .iter()
            .map(|a| a.parse::<IpAddr>().expect("address"))
            .collect()
    }

    fn prefix(p: &str) -> Prefix {
        p.parse().expect("prefix")
    }

    #[test]
    fn routes_share_one_set_of_next_hops_and_a_set_no_route_uses_is_reused() {
        let mut installed = Installed::default();
        let one = hops(&["198.19.0.1"]);
        let two = hops(&["198.19.0.1", "198.19.0.3"]);
        assert_eq!(installed.insert(prefix("198.18.1.0/24"), one.clone()), None);
        assert_eq!(installed.insert(prefix("198.18.2.0/24"), one.clone()), None);
        assert_eq!(installed.sets.len(), 1, "one set for both routes");
        assert_eq!(
            installed.insert(prefix("198.18.1.0/24"), two.clone()),
            Some(one.clone())
        );
        assert_eq!(installed.get(&prefix("198.18.1.0/24")), Some(&two));
        assert_eq!(installed.get(&prefix("198.18.2.0/24")), Some(&one));
        assert_eq!(installed.remove(&prefix("198.18.2.0/24")), Some(one.clone()));
        assert_eq!(installed.free.len(), 1, "the first set is used by no route");
        assert_eq!(installed.insert(prefix("198.18.3.0/24"), hops(&["198.19.0.9"])), None);
        assert_eq!(installed.sets.len(), 2, "the free set was reused");
        assert_eq!(installed.get(&prefix("198.18.3.0/24")), Some(&hops(&["198.19.0.9"])));
        assert_eq!(installed.get(&prefix("198.18.1.0/24")), Some(&two));
        assert!(!installed.contains(&prefix("198.18.2.0/24")));
        assert_eq!(installed.len(), 2);
        let mut prefixes = installed.take_prefixes();
        prefixes.sort_unstable();
        assert_eq!(prefixes, [prefix("198.18.1.0/24"), prefix("198.18.3.0/24")]);
        assert_eq!(installed.len(), 0);
    }
}

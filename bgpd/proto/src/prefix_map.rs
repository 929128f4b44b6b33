//! [`PrefixMap`]: a map from prefixes to values, in prefix order, compact for full tables.
//!
//! The entries sit in sorted runs of at most [`RUN`] entries, the runs in a `BTreeMap` by a
//! lower bound of their prefixes. A `BTreeMap` filled in ascending order (as a peer sends a
//! table) leaves its nodes half empty; here a prefix past the end of a full run starts a new
//! run, so a table that arrives in order fills its runs, and one that does not fills them at
//! least half. A run whose entries are mostly gone gives its room back.
//!
//! Invariant: the runs are non-empty and sorted; every prefix of a run is at or above its bound
//! and below the bound of the next run. A prefix below every bound goes into the first run and
//! becomes its bound.
//!
//! Must never: depend on what the values are (the RIBs give them meaning).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::route::Prefix;

/// Most entries in one run: a binary search and an insertion shift stay cheap.
pub const RUN: usize = 64;

/// A map from prefixes to values, in prefix order.
#[derive(Debug, Clone)]
pub struct PrefixMap<V> {
    runs: BTreeMap<Prefix, Vec<(Prefix, V)>>,
    len: usize,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        Self {
            runs: BTreeMap::new(),
            len: 0,
        }
    }
}

fn by_prefix<V>(prefix: &Prefix) -> impl Fn(&(Prefix, V)) -> Ordering + '_ {
    move |(p, _)| p.cmp(prefix)
}

impl<V> PrefixMap<V> {
    /// The bound of the run that holds, or would hold, `prefix`.
    fn run_of(&self, prefix: &Prefix) -> Option<Prefix> {
        self.runs
            .range(..=*prefix)
            .next_back()
            .or_else(|| self.runs.iter().next())
            .map(|(bound, _)| *bound)
    }

    /// The value of `prefix`.
    pub fn get(&self, prefix: &Prefix) -> Option<&V> {
        let run = self.runs.get(&self.run_of(prefix)?)?;
        let index = run.binary_search_by(by_prefix(prefix)).ok()?;
        run.get(index).map(|(_, value)| value)
    }

    /// The value of `prefix`, to change.
    pub fn get_mut(&mut self, prefix: &Prefix) -> Option<&mut V> {
        let bound = self.run_of(prefix)?;
        let run = self.runs.get_mut(&bound)?;
        let index = run.binary_search_by(by_prefix(prefix)).ok()?;
        run.get_mut(index).map(|(_, value)| value)
    }

    /// The value of `prefix`, `make`'s if it had none.
    pub fn get_or_insert_with(&mut self, prefix: Prefix, make: impl FnOnce() -> V) -> &mut V {
        let bound = match self.run_of(&prefix) {
            Some(bound) => bound,
            None => {
                let mut run = Vec::with_capacity(RUN);
                run.push((prefix, make()));
                self.len += 1;
                return &mut self.runs.entry(prefix).or_insert(run)[0].1;
            }
        };
        // Where it is or goes, found before any run is borrowed to change.
        let (found, len) = self
            .runs
            .get(&bound)
            .map_or((Err(0), 0), |run| (run.binary_search_by(by_prefix(&prefix)), run.len()));
        let index = match found {
            Ok(index) => return &mut self.runs.entry(bound).or_default()[index].1,
            Err(index) => index,
        };
        self.len += 1;
        let bound = if prefix < bound {
            // Below every bound: the first run takes it, and it becomes that run's bound.
            let run = self.runs.remove(&bound).unwrap_or_default();
            self.runs.insert(prefix, run);
            prefix
        } else {
            bound
        };
        if len < RUN {
            let run = self.runs.entry(bound).or_default();
            run.insert(index, (prefix, make()));
            return &mut run[index].1;
        }
        if index == len {
            // Past the end of a full run (a table arriving in order): a new run of its own.
            let mut next = Vec::with_capacity(RUN);
            next.push((prefix, make()));
            return &mut self.runs.entry(prefix).or_insert(next)[0].1;
        }
        let tail = self.runs.entry(bound).or_default().split_off(RUN / 2);
        let tail_bound = tail[0].0;
        let (bound, index) = if prefix < tail_bound {
            self.runs.insert(tail_bound, tail);
            (bound, index)
        } else {
            self.runs.insert(tail_bound, tail);
            (tail_bound, index - RUN / 2)
        };
        let run = self.runs.entry(bound).or_default();
        run.insert(index, (prefix, make()));
        &mut run[index].1
    }

    /// Sets the value of `prefix`; the one it had.
    pub fn insert(&mut self, prefix: Prefix, value: V) -> Option<V> {
        if let Some(slot) = self.get_mut(&prefix) {
            return Some(std::mem::replace(slot, value));
        }
        self.get_or_insert_with(prefix, || value);
        None
    }

    /// Removes `prefix`; the value it had.
    pub fn remove(&mut self, prefix: &Prefix) -> Option<V> {
        let bound = self.run_of(prefix)?;
        let run = self.runs.get_mut(&bound)?;
        let index = run.binary_search_by(by_prefix(prefix)).ok()?;
        let (_, value) = run.remove(index);
        self.len -= 1;
        if run.is_empty() {
            self.runs.remove(&bound);
        } else if run.len() <= run.capacity() / 4 {
            run.shrink_to_fit();
        }
        Some(value)
    }

    /// Whether `prefix` has a value.
    pub fn contains_key(&self, prefix: &Prefix) -> bool {
        self.get(prefix).is_some()
    }

    /// Every prefix and its value, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (&Prefix, &V)> {
        self.runs
            .values()
            .flat_map(|run| run.iter().map(|(prefix, value)| (prefix, value)))
    }

    /// How many prefixes have a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no prefix has a value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

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

use std::collections::BTreeMap;

use crate::route::Prefix;

/// Most entries in one run: a binary search and an insertion shift stay cheap.
pub const RUN: usize = 64;

/// A map from prefixes to values, in prefix order.
#[derive(Debug, Clone)]
pub struct PrefixMap<V> {
    runs: BTreeMap<Prefix, Run<V>>,
    len: usize,
}

/// One run: its prefixes, sorted, and their values, apart (no padding between a prefix's 18
/// octets and a value's alignment).
#[derive(Debug, Clone)]
struct Run<V> {
    prefixes: Vec<Prefix>,
    values: Vec<V>,
}

impl<V> Default for Run<V> {
    fn default() -> Self {
        Self {
            prefixes: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<V> Run<V> {
    fn with(prefix: Prefix, value: V) -> Self {
        let mut prefixes = Vec::with_capacity(RUN);
        let mut values = Vec::with_capacity(RUN);
        prefixes.push(prefix);
        values.push(value);
        Self { prefixes, values }
    }

    fn find(&self, prefix: &Prefix) -> Result<usize, usize> {
        self.prefixes.binary_search(prefix)
    }

    fn len(&self) -> usize {
        self.prefixes.len()
    }

    fn insert(&mut self, index: usize, prefix: Prefix, value: V) -> &mut V {
        self.prefixes.insert(index, prefix);
        self.values.insert(index, value);
        &mut self.values[index]
    }

    fn split_off(&mut self, at: usize) -> Self {
        Self {
            prefixes: self.prefixes.split_off(at),
            values: self.values.split_off(at),
        }
    }
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        Self {
            runs: BTreeMap::new(),
            len: 0,
        }
    }
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
        run.values.get(run.find(prefix).ok()?)
    }

    /// The value of `prefix`, to change.
    pub fn get_mut(&mut self, prefix: &Prefix) -> Option<&mut V> {
        let bound = self.run_of(prefix)?;
        let run = self.runs.get_mut(&bound)?;
        let index = run.find(prefix).ok()?;
        run.values.get_mut(index)
    }

    /// The value of `prefix`, `make`'s if it had none.
    pub fn get_or_insert_with(&mut self, prefix: Prefix, make: impl FnOnce() -> V) -> &mut V {
        let Some(bound) = self.run_of(&prefix) else {
            self.len += 1;
            return &mut self.runs.entry(prefix).or_insert(Run::with(prefix, make())).values[0];
        };
        // Where it is or goes, found before any run is borrowed to change.
        let (found, len) = self
            .runs
            .get(&bound)
            .map_or((Err(0), 0), |run| (run.find(&prefix), run.len()));
        let index = match found {
            Ok(index) => return &mut self.runs.entry(bound).or_default().values[index],
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
            return self.runs.entry(bound).or_default().insert(index, prefix, make());
        }
        if index == len {
            // Past the end of a full run (a table arriving in order): a new run of its own.
            return &mut self.runs.entry(prefix).or_insert(Run::with(prefix, make())).values[0];
        }
        let tail = self.runs.entry(bound).or_default().split_off(RUN / 2);
        let tail_bound = tail.prefixes[0];
        self.runs.insert(tail_bound, tail);
        let (bound, index) = if prefix < tail_bound {
            (bound, index)
        } else {
            (tail_bound, index - RUN / 2)
        };
        self.runs.entry(bound).or_default().insert(index, prefix, make())
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
        let index = run.find(prefix).ok()?;
        run.prefixes.remove(index);
        let value = run.values.remove(index);
        self.len -= 1;
        if run.prefixes.is_empty() {
            self.runs.remove(&bound);
        } else if run.len() <= run.prefixes.capacity() / 4 {
            run.prefixes.shrink_to_fit();
            run.values.shrink_to_fit();
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
            .flat_map(|run| run.prefixes.iter().zip(run.values.iter()))
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

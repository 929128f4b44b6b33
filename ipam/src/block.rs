//! One address block: which of its addresses are free, who holds the others. Pure.
//!
//! Addresses are numbered by ordinal from the block's first address. Free ordinals form a FIFO
//! (`unallocated`): allocation takes from the front, release appends at the back, so a freed
//! address is handed out again as late as possible; a cooldown can hold it back longer still.
//! Every allocation bumps the block's sequence number and remembers it per ordinal, so a
//! release that names a sequence number (the GC's) cannot free an address that was released
//! and handed out again meanwhile.
//!
//! Never: an ordinal both free and allocated, an allocation without a handle.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use weft_api::resources::{AllocationAttribute, IPAMBlockSpec};

/// The largest block this allocator accepts: /16 for IPv4, /112 for IPv6.
pub const MAX_BLOCK_ADDRESSES: u32 = 1 << 16;

/// What is wrong with a stored block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block {cidr} is inconsistent: {reason}")]
pub struct BlockError {
    pub cidr: String,
    pub reason: String,
}

/// One allocation in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub address: IpAddr,
    pub ordinal: u32,
    pub handle: String,
    pub sequence: u64,
    pub attributes: BTreeMap<String, String>,
}

/// A block whose stored form was checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    cidr: IpNet,
    spec: IPAMBlockSpec,
}

/// Number of addresses in a block of this CIDR, if it is not too large.
pub fn block_size(cidr: &IpNet) -> Option<u32> {
    let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
    (host_bits <= 16).then(|| 1u32 << host_bits)
}

fn address_at(cidr: &IpNet, ordinal: u32) -> IpAddr {
    match cidr {
        IpNet::V4(net) => IpAddr::V4((u32::from(net.network()) + ordinal).into()),
        IpNet::V6(net) => IpAddr::V6((u128::from(net.network()) + u128::from(ordinal)).into()),
    }
}

fn ordinal_of(cidr: &IpNet, address: IpAddr) -> Option<u32> {
    if !cidr.contains(&address) {
        return None;
    }
    let offset = match (cidr, address) {
        (IpNet::V4(net), IpAddr::V4(address)) => u128::from(u32::from(address) - u32::from(net.network())),
        (IpNet::V6(net), IpAddr::V6(address)) => u128::from(address) - u128::from(net.network()),
        _ => return None,
    };
    u32::try_from(offset).ok()
}

impl Block {
    /// A new, empty block.
    pub fn new(cidr: IpNet, affinity: Option<String>, strict_affinity: bool) -> Result<Block, BlockError> {
        let size = block_size(&cidr).ok_or_else(|| BlockError {
            cidr: cidr.to_string(),
            reason: format!("more than {MAX_BLOCK_ADDRESSES} addresses"),
        })?;
        Ok(Block {
            cidr: cidr.trunc(),
            spec: IPAMBlockSpec {
                cidr: cidr.trunc().to_string(),
                affinity,
                strict_affinity,
                allocations: vec![None; size as usize],
                unallocated: (0..size).collect(),
                attributes: Vec::new(),
                sequence_number: 0,
                sequence_number_for_allocation: BTreeMap::new(),
                released_at: BTreeMap::new(),
                deleted: false,
            },
        })
    }

    /// Checks a stored block: every ordinal free exactly once or allocated to a handle.
    pub fn from_spec(spec: IPAMBlockSpec) -> Result<Block, BlockError> {
        let fail = |reason: String| BlockError {
            cidr: spec.cidr.clone(),
            reason,
        };
        let cidr: IpNet = spec.cidr.parse().map_err(|_| fail("the cidr does not parse".into()))?;
        let size = block_size(&cidr).ok_or_else(|| fail("too many addresses".into()))?;
        if spec.allocations.len() != size as usize {
            return Err(fail(format!(
                "{} allocation slots for {size} addresses",
                spec.allocations.len()
            )));
        }
        let mut free = vec![false; size as usize];
        for &ordinal in &spec.unallocated {
            let slot = free
                .get_mut(ordinal as usize)
                .ok_or_else(|| fail(format!("free ordinal {ordinal} is outside the block")))?;
            if *slot {
                return Err(fail(format!("ordinal {ordinal} is free twice")));
            }
            *slot = true;
        }
        for (ordinal, slot) in spec.allocations.iter().enumerate() {
            match (slot, free[ordinal]) {
                (Some(_), true) => return Err(fail(format!("ordinal {ordinal} is both free and allocated"))),
                (None, false) => return Err(fail(format!("ordinal {ordinal} is neither free nor allocated"))),
                (Some(index), false) => {
                    let attribute = spec
                        .attributes
                        .get(*index as usize)
                        .ok_or_else(|| fail(format!("ordinal {ordinal} points at a missing attribute")))?;
                    if attribute.handle_id.is_none() {
                        return Err(fail(format!("ordinal {ordinal} is allocated without a handle")));
                    }
                }
                (None, true) => {}
            }
        }
        Ok(Block { cidr, spec })
    }

    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    pub fn spec(&self) -> &IPAMBlockSpec {
        &self.spec
    }

    pub fn into_spec(self) -> IPAMBlockSpec {
        self.spec
    }

    pub fn affinity(&self) -> Option<&str> {
        self.spec.affinity.as_deref()
    }

    pub fn set_affinity(&mut self, affinity: Option<String>) {
        self.spec.affinity = affinity;
    }

    pub fn size(&self) -> u32 {
        self.spec.allocations.len() as u32
    }

    pub fn free_count(&self) -> usize {
        self.spec.unallocated.len()
    }

    pub fn is_empty(&self) -> bool {
        self.free_count() == self.spec.allocations.len()
    }

    /// The address at `ordinal`.
    pub fn address(&self, ordinal: u32) -> IpAddr {
        address_at(&self.cidr, ordinal)
    }

    pub fn ordinal(&self, address: IpAddr) -> Option<u32> {
        ordinal_of(&self.cidr, address)
    }

    /// Every allocation, in address order.
    pub fn held(&self) -> Vec<Held> {
        self.spec
            .allocations
            .iter()
            .enumerate()
            .filter_map(|(ordinal, slot)| {
                let attribute = self.spec.attributes.get((*slot)? as usize)?;
                let ordinal = ordinal as u32;
                Some(Held {
                    address: self.address(ordinal),
                    ordinal,
                    handle: attribute.handle_id.clone().unwrap_or_default(),
                    sequence: self.sequence_of(ordinal),
                    attributes: attribute.secondary.clone(),
                })
            })
            .collect()
    }

    fn sequence_of(&self, ordinal: u32) -> u64 {
        self.spec
            .sequence_number_for_allocation
            .get(&ordinal.to_string())
            .copied()
            .unwrap_or(0)
    }

    /// Takes up to `count` free addresses for `handle`, oldest-freed first, skipping those
    /// still cooling down (released less than `cooldown_seconds` before `now`) and those
    /// `reserved` says to keep. Returns what it took (maybe fewer than asked).
    pub fn allocate(
        &mut self,
        count: usize,
        handle: &str,
        attributes: &BTreeMap<String, String>,
        now: u64,
        cooldown_seconds: u64,
        reserved: &dyn Fn(IpAddr) -> bool,
    ) -> Vec<IpAddr> {
        if count == 0 || self.spec.deleted {
            return Vec::new();
        }
        let cidr = self.cidr;
        let released_at = &self.spec.released_at;
        let eligible = |ordinal: u32| {
            let rested = released_at
                .get(&ordinal.to_string())
                .is_none_or(|&at| now >= at.saturating_add(cooldown_seconds));
            rested && !reserved(address_at(&cidr, ordinal))
        };
        let mut taken = Vec::new();
        let mut remaining = Vec::with_capacity(self.spec.unallocated.len());
        for &ordinal in &self.spec.unallocated {
            if taken.len() < count && eligible(ordinal) {
                taken.push(ordinal);
            } else {
                remaining.push(ordinal);
            }
        }
        if taken.is_empty() {
            return Vec::new();
        }
        self.spec.unallocated = remaining;
        let attribute = AllocationAttribute {
            handle_id: Some(handle.to_owned()),
            secondary: attributes.clone(),
        };
        let index = match self.spec.attributes.iter().position(|a| *a == attribute) {
            Some(index) => index,
            None => {
                self.spec.attributes.push(attribute);
                self.spec.attributes.len() - 1
            }
        } as u32;
        self.spec.sequence_number += 1;
        for &ordinal in &taken {
            self.spec.allocations[ordinal as usize] = Some(index);
            self.spec
                .sequence_number_for_allocation
                .insert(ordinal.to_string(), self.spec.sequence_number);
            self.spec.released_at.remove(&ordinal.to_string());
        }
        taken.into_iter().map(|ordinal| self.address(ordinal)).collect()
    }

    /// Frees every address `handle` holds here; returns them.
    pub fn release_handle(&mut self, handle: &str, now: u64) -> Vec<IpAddr> {
        let ordinals: Vec<u32> = self
            .held()
            .into_iter()
            .filter(|held| held.handle == handle)
            .map(|held| held.ordinal)
            .collect();
        self.free(&ordinals, now)
    }

    /// Frees `address` if it is allocated and, when `sequence` is given, still the same
    /// allocation (not released and handed out again since). Returns whether it freed it.
    pub fn release_address(&mut self, address: IpAddr, sequence: Option<u64>, now: u64) -> bool {
        let Some(ordinal) = self.ordinal(address) else {
            return false;
        };
        if self.spec.allocations[ordinal as usize].is_none() {
            return false;
        }
        if sequence.is_some_and(|sequence| sequence != self.sequence_of(ordinal)) {
            return false;
        }
        !self.free(&[ordinal], now).is_empty()
    }

    fn free(&mut self, ordinals: &[u32], now: u64) -> Vec<IpAddr> {
        let mut freed = Vec::new();
        for &ordinal in ordinals {
            let slot = &mut self.spec.allocations[ordinal as usize];
            if slot.take().is_some() {
                self.spec.unallocated.push(ordinal);
                self.spec.sequence_number_for_allocation.remove(&ordinal.to_string());
                self.spec.released_at.insert(ordinal.to_string(), now);
                freed.push(self.address(ordinal));
            }
        }
        if !freed.is_empty() {
            self.compact_attributes();
        }
        freed
    }

    /// Drops attributes no allocation points at and renumbers the rest.
    fn compact_attributes(&mut self) {
        let used: BTreeSet<u32> = self.spec.allocations.iter().flatten().copied().collect();
        let mut renumber = BTreeMap::new();
        let mut kept = Vec::with_capacity(used.len());
        for (index, attribute) in self.spec.attributes.drain(..).enumerate() {
            if used.contains(&(index as u32)) {
                renumber.insert(index as u32, kept.len() as u32);
                kept.push(attribute);
            }
        }
        self.spec.attributes = kept;
        for slot in self.spec.allocations.iter_mut().flatten() {
            *slot = renumber[slot];
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn block(cidr: &str) -> Block {
        Block::new(cidr.parse().unwrap(), Some("node-1".into()), false).unwrap()
    }

    fn none(_: IpAddr) -> bool {
        false
    }

    #[test]
    fn a_new_block_hands_out_addresses_in_order_and_remembers_the_handle() {
        let mut b = block("198.18.0.0/30");
        let got = b.allocate(2, "h1", &BTreeMap::new(), 0, 0, &none);
        assert_eq!(
            got,
            ["198.18.0.0".parse::<IpAddr>().unwrap(), "198.18.0.1".parse().unwrap()]
        );
        assert_eq!(b.free_count(), 2);
        let held = b.held();
        assert!(held.iter().all(|h| h.handle == "h1" && h.sequence == 1));
        Block::from_spec(b.spec().clone()).unwrap();
    }

    #[test]
    fn released_addresses_go_to_the_back_of_the_queue() {
        let mut b = block("198.18.0.0/30");
        let first = b.allocate(1, "h1", &BTreeMap::new(), 0, 0, &none);
        b.release_handle("h1", 10);
        let next = b.allocate(4, "h2", &BTreeMap::new(), 10, 0, &none);
        assert_eq!(next.last(), first.last(), "the released address comes last");
        assert!(b.allocate(1, "h3", &BTreeMap::new(), 10, 0, &none).is_empty(), "full");
    }

    #[test]
    fn a_cooling_down_address_is_not_reused_until_its_time() {
        let mut b = block("2001:db8::/127");
        let a = b.allocate(2, "h1", &BTreeMap::new(), 0, 30, &none);
        assert_eq!(a.len(), 2);
        b.release_handle("h1", 100);
        assert!(b.allocate(1, "h2", &BTreeMap::new(), 129, 30, &none).is_empty());
        assert_eq!(b.allocate(2, "h2", &BTreeMap::new(), 130, 30, &none).len(), 2);
    }

    #[test]
    fn a_stale_release_cannot_free_a_reused_address() {
        let mut b = block("198.18.0.0/31");
        b.allocate(2, "old", &BTreeMap::new(), 0, 0, &none);
        let stale = b.held()[0].clone();
        b.release_handle("old", 1);
        b.allocate(2, "new", &BTreeMap::new(), 1, 0, &none);
        assert!(
            !b.release_address(stale.address, Some(stale.sequence), 2),
            "the sequence moved on"
        );
        assert_eq!(b.held()[0].handle, "new");
        let current = b.held()[0].sequence;
        assert!(b.release_address(stale.address, Some(current), 2));
    }

    #[test]
    fn attributes_are_shared_and_compacted() {
        let mut b = block("198.18.0.0/29");
        b.allocate(2, "a", &BTreeMap::new(), 0, 0, &none);
        b.allocate(1, "b", &BTreeMap::new(), 0, 0, &none);
        assert_eq!(b.spec().attributes.len(), 2);
        b.release_handle("a", 0);
        assert_eq!(b.spec().attributes.len(), 1);
        assert_eq!(b.held()[0].handle, "b");
        Block::from_spec(b.spec().clone()).unwrap();
    }

    #[test]
    fn reserved_addresses_are_skipped() {
        let mut b = block("198.18.0.0/30");
        let reserved = |a: IpAddr| a == "198.18.0.0".parse::<IpAddr>().unwrap();
        let got = b.allocate(4, "h", &BTreeMap::new(), 0, 0, &reserved);
        assert_eq!(got.len(), 3);
        assert!(!got.contains(&"198.18.0.0".parse().unwrap()));
    }

    #[test]
    fn inconsistent_blocks_are_refused() {
        let mut spec = block("198.18.0.0/30").into_spec();
        spec.unallocated.push(0);
        assert!(
            Block::from_spec(spec.clone())
                .unwrap_err()
                .reason
                .contains("free twice")
        );
        let mut spec = block("198.18.0.0/30").into_spec();
        spec.allocations.pop();
        assert!(Block::from_spec(spec).is_err());
        let mut spec = block("198.18.0.0/30").into_spec();
        spec.unallocated.retain(|&o| o != 2);
        assert!(
            Block::from_spec(spec)
                .unwrap_err()
                .reason
                .contains("neither free nor allocated")
        );
    }
}

//! A lab: several test namespaces owned and torn down together.
//!
//! Contract: a [`Lab`] owns its namespaces, addressed by label (unique within the lab). On
//! drop it first ends the processes of every namespace (so no daemon watches its peers vanish
//! one by one), then removes the namespaces in reverse order of creation. It is the unit the
//! topology runner builds from a containerlab file.

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::veth::VethPair;

/// Namespaces made and removed together.
#[derive(Debug, Default)]
pub struct Lab {
    nodes: Vec<Netns>,
}

impl Lab {
    /// An empty lab.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes a namespace labelled `label` (see [`Netns::new`]) in the lab.
    pub fn add(&mut self, label: &str) -> Result<&Netns> {
        if self.nodes.iter().any(|n| n.label() == label) {
            return Err(Error::DuplicateNetns {
                label: label.to_owned(),
            });
        }
        let netns = Netns::new(label)?;
        self.nodes.push(netns);
        self.netns(label)
    }

    /// The namespace labelled `label`.
    pub fn netns(&self, label: &str) -> Result<&Netns> {
        self.nodes
            .iter()
            .find(|n| n.label() == label)
            .ok_or_else(|| Error::UnknownNetns {
                label: label.to_owned(),
            })
    }

    /// Joins interface `a_if` of namespace `a` and `b_if` of `b` with a veth pair (both up).
    pub fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) -> Result<VethPair> {
        self.netns(a)?.veth(a_if, self.netns(b)?, b_if)
    }

    /// The namespaces, in order of creation.
    pub fn iter(&self) -> impl Iterator<Item = &Netns> {
        self.nodes.iter()
    }

    /// How many namespaces the lab has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Has the lab no namespace?
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for netns in &self.nodes {
            if let Err(err) = netns.stop_processes() {
                eprintln!("weft test kit: cannot end the processes of {}: {err}", netns.name());
            }
        }
        while let Some(netns) = self.nodes.pop() {
            drop(netns);
        }
    }
}

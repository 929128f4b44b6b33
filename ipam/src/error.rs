//! Why an IPAM operation failed, by what a person or the caller can do about it.

use weft_api::StoreError;

use crate::block::BlockError;
use crate::pools::Family;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// No enabled pool of the family selects the node.
    #[error("no enabled {family} pool selects node {node}: add one with `weftctl ipam pool add CIDR`")]
    NoPool { family: Family, node: String },
    /// A requested pool does not exist.
    #[error("pool {cidr} does not exist (see `weftctl ipam show`)")]
    UnknownPool { cidr: String },
    /// A requested pool exists but may not be used here.
    #[error("{reason}")]
    PoolNotUsable { reason: String },
    /// Every usable pool is full.
    #[error("pools exhausted: node {node} got {got} of {wanted} {family} addresses from {pools}")]
    Exhausted {
        family: Family,
        node: String,
        wanted: usize,
        got: usize,
        pools: String,
    },
    /// The node holds `maxBlocksPerHost` blocks, all full, and may not borrow.
    #[error(
        "node {node} holds its maximum of {max} blocks (IPAMConfig maxBlocksPerHost), all full, and strictAffinity forbids borrowing"
    )]
    BlockCapReached { node: String, max: u32 },
    /// Other writers kept changing an object; gave up after a bounded number of attempts.
    #[error("{object} kept changing under concurrent writers; gave up after {attempts} attempts")]
    Contention { object: String, attempts: u32 },
    /// A stored block breaks the allocator's invariants: refuse to touch it.
    #[error(transparent)]
    CorruptBlock(#[from] BlockError),
    /// The request itself is wrong.
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    /// The datastore failed (unreachable, corrupt object, …).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IpamError {
    /// True when the store could not be reached (CNI: try again later).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, IpamError::Store(StoreError::Unreachable { .. }))
    }
}

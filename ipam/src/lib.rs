//! weft's IPAM: pools are cut into blocks, a block is affine to one node, every allocation
//! carries a handle (DESIGN.md "IPAM"; Calico's model without its known failures).
//!
//! - [`block`] and [`pools`]: the decisions, pure (which addresses, which pools, which block);
//! - [`allocator`]: those decisions applied to the datastore by compare-and-swap;
//! - [`gc`]: finds and releases what no live owner holds;
//! - [`loadbalancer`]: addresses for `type: LoadBalancer` Services from LoadBalancer pools;
//! - [`cni`]: the `weft-ipam` CNI IPAM plugin on top.

pub mod allocator;
pub mod block;
pub mod cni;
pub mod error;
pub mod gc;
pub mod loadbalancer;
pub mod names;
pub mod pools;
mod retry;

pub use allocator::{Allocator, Assigned, Request};
pub use error::IpamError;
pub use pools::Family;

//! weft's API: the resource types of group `weft.io/v1`, the Kubernetes kinds weft reads, and the
//! datastore they live in.
//!
//! This crate owns the shapes of stored objects and the [`store::Store`] contract. It must never
//! make a networking decision: allocators, speakers and policy agents build on it.

pub mod crd;
pub mod kinds;
pub mod resources;
pub mod selector;
pub mod store;
pub mod testing;

pub use store::{Key, Kind, Object, ObjectList, Revision, Store, StoreError, StoreExt, WatchEvent, Write};

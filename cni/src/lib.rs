//! weft's CNI plugin (DESIGN.md "CNI"): a veth per pod, host routes and proxy ARP instead of a
//! bridge, addresses from weft's IPAM library.
//!
//! - [`config`]: the plugin object, parsed and checked (pure);
//! - [`dataplane`]: veth, addresses, routes and sysctls through rtnetlink;
//! - [`plugin`]: the CNI verbs on top.

pub mod config;
pub mod dataplane;
pub mod plugin;

pub use plugin::WeftCni;

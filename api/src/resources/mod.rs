//! weft's resource types (group `weft.io`, version `v1`), each a Kubernetes custom resource.
//!
//! The CRD manifests are generated from these types (`weftctl crds`); the same types are what
//! the file and etcd stores hold. Every spec has a `validate()` for what the schema cannot say.

mod bgp;
mod endpoint;
mod ipam;
pub mod validate;

pub use bgp::{
    BGPConfiguration, BGPConfigurationSpec, BGPFilter, BGPFilterSpec, BGPPeer, BGPPeerSpec, BindMode, Community,
    FilterAction, FilterRule, MatchOperator, NodeBgp, PasswordSource, PrefixAdvertisement, PrefixLength,
    SecretKeyRef, ServiceCidr, SourceAddress, WeftNode, WeftNodeSpec, peer_address,
};
pub use endpoint::{EndpointPort, WorkloadEndpoint, WorkloadEndpointSpec};
pub use ipam::{
    AffinityState, AllocationAttribute, AllowedUse, BlockAffinity, BlockAffinitySpec, IPAMBlock, IPAMBlockSpec,
    IPAMConfig, IPAMConfigSpec, IPAMHandle, IPAMHandleSpec, IPPool, IPPoolSpec,
};

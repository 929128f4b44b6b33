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
    FilterAction, FilterRule, MatchOperator, NodeBgp, PasswordSource, PrefixAdvertisement, PrefixLength, SecretKeyRef,
    ServiceCidr, SourceAddress, WeftNode, WeftNodeSpec, peer_address,
};
pub use endpoint::{EndpointPort, WorkloadEndpoint, WorkloadEndpointSpec};
pub use ipam::{
    AffinityState, AllocationAttribute, AllowedUse, BlockAffinity, BlockAffinitySpec, IPAMBlock, IPAMBlockSpec,
    IPAMConfig, IPAMConfigSpec, IPAMHandle, IPAMHandleSpec, IPPool, IPPoolSpec,
};

use serde::de::DeserializeOwned;
use validate::Problems;

/// Checks a weft object given as JSON: it must decode as its type and pass that type's
/// `validate()`. Kinds that are not weft's own pass unchecked (the API server checks them in
/// Kubernetes mode; in file/etcd mode weft reads only the fields it uses).
pub fn validate_value(kind: &str, value: &serde_json::Value) -> Result<(), Problems> {
    fn check<K: DeserializeOwned>(
        value: &serde_json::Value,
        validate: impl FnOnce(&K) -> Result<(), Problems>,
    ) -> Result<(), Problems> {
        match serde_json::from_value::<K>(value.clone()) {
            Ok(object) => validate(&object),
            Err(error) => Err(Problems(vec![("object".into(), error.to_string())])),
        }
    }
    match kind {
        "IPPool" => check(value, |o: &IPPool| o.spec.validate()),
        "IPAMBlock" => check(value, |o: &IPAMBlock| o.spec.validate()),
        "BlockAffinity" => check(value, |o: &BlockAffinity| o.spec.validate()),
        "IPAMHandle" => check(value, |_: &IPAMHandle| Ok(())),
        "IPAMConfig" => check(value, |o: &IPAMConfig| o.spec.validate()),
        "BGPConfiguration" => check(value, |o: &BGPConfiguration| o.spec.validate()),
        "BGPPeer" => check(value, |o: &BGPPeer| o.spec.validate()),
        "BGPFilter" => check(value, |o: &BGPFilter| o.spec.validate()),
        "WeftNode" => check(value, |o: &WeftNode| o.spec.validate()),
        "WorkloadEndpoint" => check(value, |o: &WorkloadEndpoint| o.spec.validate()),
        _ => Ok(()),
    }
}

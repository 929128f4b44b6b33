//! Every kind weft stores or reads: its own resources and the Kubernetes kinds it watches
//! (Pod, Namespace, Node, Service, EndpointSlice, NetworkPolicy, and Secret for the BGP
//! passwords of `BGPPeer.password.secretKeyRef`), which in file/etcd mode live in the same
//! store (`weftctl apply -f`).

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::resources::{
    BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, IPAMBlock, IPAMConfig, IPAMHandle, IPPool, WeftNode,
    WorkloadEndpoint,
};
use crate::store::Kind;

/// weft's own kinds (group `weft.io`), in the order their CRDs are printed.
pub fn weft() -> Vec<Kind> {
    vec![
        Kind::of::<IPPool>(),
        Kind::of::<IPAMBlock>(),
        Kind::of::<BlockAffinity>(),
        Kind::of::<IPAMHandle>(),
        Kind::of::<IPAMConfig>(),
        Kind::of::<BGPConfiguration>(),
        Kind::of::<BGPPeer>(),
        Kind::of::<BGPFilter>(),
        Kind::of::<WeftNode>(),
        Kind::of::<WorkloadEndpoint>(),
    ]
}

/// The Kubernetes kinds weft reads.
pub fn kubernetes() -> Vec<Kind> {
    vec![
        Kind::of::<Namespace>(),
        Kind::of::<Pod>(),
        Kind::of::<Node>(),
        Kind::of::<Service>(),
        Kind::of::<EndpointSlice>(),
        Kind::of::<NetworkPolicy>(),
        Kind::of::<Secret>(),
    ]
}

/// Every kind, weft's first.
pub fn all() -> Vec<Kind> {
    let mut kinds = weft();
    kinds.extend(kubernetes());
    kinds
}

/// The kind an object's `apiVersion` and `kind` name, if weft knows it.
pub fn find(api_version: &str, kind: &str) -> Option<Kind> {
    all()
        .into_iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
}

/// The kind a user names on the command line: `IPPool`, `ippools`, `ippool` (any case).
pub fn by_name(name: &str) -> Option<Kind> {
    let name = name.to_ascii_lowercase();
    all().into_iter().find(|k| {
        let kind = k.kind.to_ascii_lowercase();
        kind == name || k.plural == name
    })
}

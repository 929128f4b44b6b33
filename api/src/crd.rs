//! The CustomResourceDefinitions of weft's resources, as `weftctl crds` prints them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::resources::{
    BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, IPAMBlock, IPAMConfig, IPAMHandle, IPPool, WeftNode,
    WorkloadEndpoint,
};

/// Every CRD, in the order of [`crate::kinds::weft`].
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        IPPool::crd(),
        IPAMBlock::crd(),
        BlockAffinity::crd(),
        IPAMHandle::crd(),
        IPAMConfig::crd(),
        BGPConfiguration::crd(),
        BGPPeer::crd(),
        BGPFilter::crd(),
        WeftNode::crd(),
        WorkloadEndpoint::crd(),
    ]
}

/// All CRDs as one multi-document YAML stream.
pub fn manifests_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

//! `WorkloadEndpoint`: one pod interface as the CNI plugin made it, for felix (policy, routes)
//! and bgpd (borrowed addresses). Tied to its Pod by namespace and pod name.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::{Problems, check_cidr};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "WorkloadEndpoint",
    doc = "One pod interface as the CNI plugin made it.",
    plural = "workloadendpoints",
    namespaced,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Pod","type":"string","jsonPath":".spec.pod"}"#,
    printcolumn = r#"{"name":"Interface","type":"string","jsonPath":".spec.interfaceName"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEndpointSpec {
    /// The node the pod runs on.
    pub node: String,
    /// Who made the pod: `k8s`, `podman`, `cni`.
    #[serde(default)]
    pub orchestrator: String,
    /// The pod's name (`K8S_POD_NAME`); its namespace is the endpoint's namespace.
    #[serde(default)]
    pub pod: String,
    #[serde(default, rename = "containerID")]
    pub container_id: String,
    /// The interface inside the pod (`CNI_IFNAME`).
    #[serde(default)]
    pub endpoint: String,
    /// The host side of the veth (`wft…`).
    pub interface_name: String,
    /// MAC address of the pod side.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The pod's addresses, /32 and /128.
    #[serde(default, rename = "ipNetworks")]
    pub ip_networks: Vec<String>,
    /// Named container ports, for NetworkPolicy's named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct EndpointPort {
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

impl WorkloadEndpointSpec {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::default();
        if self.node.is_empty() {
            problems.add("spec.node", "must name a node".into());
        }
        if self.interface_name.is_empty() || self.interface_name.len() > 15 {
            problems.add(
                "spec.interfaceName",
                format!(
                    "{:?} is not a Linux interface name (1 to 15 bytes)",
                    self.interface_name
                ),
            );
        }
        for (i, network) in self.ip_networks.iter().enumerate() {
            check_cidr(&mut problems, &format!("spec.ipNetworks[{i}]"), network);
        }
        for (i, port) in self.ports.iter().enumerate() {
            if !matches!(port.protocol.as_str(), "TCP" | "UDP" | "SCTP") {
                problems.add(
                    format!("spec.ports[{i}].protocol"),
                    format!("{:?} is not TCP, UDP or SCTP", port.protocol),
                );
            }
        }
        problems.into_result()
    }
}

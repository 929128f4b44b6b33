//! BGP resources: the cluster's BGP settings, peers, route filters and per-node BGP identity
//! (DESIGN.md "BGP"; Calico's BGPConfiguration, BGPPeer and BGPFilter, and the BGP part of its
//! Node).
//!
//! Shapes only: sessions and route decisions live in `weft-bgpd`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::{Problems, check_asn, check_cidr, check_ip};

/// Cluster-wide BGP settings; the object named `default` applies to every node, one named
/// `node.<nodename>` overrides it for that node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "BGPConfiguration",
    doc = "Cluster-wide BGP settings (default) or one node's override (node.NAME).",
    plural = "bgpconfigurations"
)]
#[serde(rename_all = "camelCase")]
pub struct BGPConfigurationSpec {
    /// The nodes' default AS number (default 64512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub as_number: Option<u32>,
    /// Every node peers with every other node (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// Service cluster IP ranges announced from every node.
    #[serde(default, rename = "serviceClusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub service_cluster_ips: Vec<ServiceCidr>,
    /// Service external IP ranges that may be announced.
    #[serde(default, rename = "serviceExternalIPs", skip_serializing_if = "Vec::is_empty")]
    pub service_external_ips: Vec<ServiceCidr>,
    /// Service LoadBalancer IP ranges that may be announced.
    #[serde(default, rename = "serviceLoadBalancerIPs", skip_serializing_if = "Vec::is_empty")]
    pub service_load_balancer_ips: Vec<ServiceCidr>,
    /// Communities attached to announced prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// Named communities, usable by name in `prefixAdvertisements`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// TCP port the speakers listen on (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub listen_port: Option<u16>,
    /// Listen on every address (default) or on the node's BGP address only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ServiceCidr {
    #[schemars(pattern(super::validate::CIDR_PATTERN))]
    pub cidr: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PrefixAdvertisement {
    #[schemars(pattern(super::validate::CIDR_PATTERN))]
    pub cidr: String,
    /// Community values (`65000:100`, large `65000:1:2`) or names from `communities`.
    #[serde(default)]
    pub communities: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Community {
    pub name: String,
    /// `AA:NN` (standard) or `AA:NN:MM` (large).
    #[schemars(pattern(r"^[0-9]+:[0-9]+(:[0-9]+)?$"))]
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BindMode {
    None,
    NodeIP,
}

impl BGPConfigurationSpec {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::default();
        if let Some(asn) = self.as_number {
            check_asn(&mut problems, "spec.asNumber", asn);
        }
        for (field, list) in [
            ("spec.serviceClusterIPs", &self.service_cluster_ips),
            ("spec.serviceExternalIPs", &self.service_external_ips),
            ("spec.serviceLoadBalancerIPs", &self.service_load_balancer_ips),
        ] {
            for (i, entry) in list.iter().enumerate() {
                check_cidr(&mut problems, &format!("{field}[{i}].cidr"), &entry.cidr);
            }
        }
        for (i, advertisement) in self.prefix_advertisements.iter().enumerate() {
            check_cidr(
                &mut problems,
                &format!("spec.prefixAdvertisements[{i}].cidr"),
                &advertisement.cidr,
            );
        }
        for (i, community) in self.communities.iter().enumerate() {
            if !is_community(&community.value) {
                problems.add(
                    format!("spec.communities[{i}].value"),
                    format!("{:?} is neither AA:NN nor AA:NN:MM", community.value),
                );
            }
        }
        problems.into_result()
    }
}

/// `AA:NN` with 16-bit parts or `AA:NN:MM` with 32-bit parts.
fn is_community(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.len() {
        2 => parts.iter().all(|p| p.parse::<u16>().is_ok()),
        3 => parts.iter().all(|p| p.parse::<u32>().is_ok()),
        _ => false,
    }
}

/// A BGP peer of some or all nodes: a ToR, a route reflector, an external router.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "BGPPeer",
    doc = "A BGP peer of some or all nodes.",
    plural = "bgppeers",
    printcolumn = r#"{"name":"Peer","type":"string","jsonPath":".spec.peerIP"}"#,
    printcolumn = r#"{"name":"ASN","type":"integer","jsonPath":".spec.asNumber"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// Peer with this address (`198.19.0.1`, `[2001:db8::1]:1179` with a port).
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// The peer's AS number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub as_number: Option<u32>,
    /// Only this node peers (empty: see `nodeSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Label selector of the nodes that peer (empty with no `node`: every node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Label selector of weft nodes to peer with (instead of `peerIP`), e.g. route reflectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// TCP MD5 password (RFC 2385).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
    /// Keep the route's original next hop when re-announcing to this peer.
    #[serde(default)]
    pub keep_original_next_hop: bool,
    /// How long to keep a restarting peer's routes (graceful restart), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time_seconds: Option<u32>,
    /// GTSM (RFC 5082): accept packets only from at most this many hops away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 255))]
    pub ttl_security: Option<u8>,
    /// Source address of the session: `UseNodeIP` (default) or `None` (kernel's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// Names of `BGPFilter`s applied to this peer's routes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// Most prefixes accepted from the peer before the session is reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prefixes: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSource {
    /// A key of a Secret in weft's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A file on the node holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SourceAddress {
    UseNodeIP,
    None,
}

impl BGPPeerSpec {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::default();
        match (&self.peer_ip, &self.peer_selector) {
            (None, None) => problems.add("spec", "needs peerIP or peerSelector".into()),
            (Some(_), Some(_)) => problems.add("spec", "takes peerIP or peerSelector, not both".into()),
            (Some(ip), None) => {
                let address = peer_address(ip);
                check_ip(&mut problems, "spec.peerIP", address);
                if self.as_number.is_none() {
                    problems.add("spec.asNumber", "is required with peerIP".into());
                }
            }
            (None, Some(_)) => {}
        }
        if let Some(asn) = self.as_number {
            check_asn(&mut problems, "spec.asNumber", asn);
        }
        for (field, selector) in [
            ("spec.nodeSelector", &self.node_selector),
            ("spec.peerSelector", &self.peer_selector),
        ] {
            if let Some(Err(error)) = selector.as_deref().map(crate::selector::Selector::parse) {
                problems.add(field, error.to_string());
            }
        }
        if self.node.is_some() && self.node_selector.is_some() {
            problems.add("spec", "takes node or nodeSelector, not both".into());
        }
        if let Some(password) = &self.password
            && password.secret_key_ref.is_some() == password.file.is_some()
        {
            problems.add("spec.password", "takes exactly one of secretKeyRef and file".into());
        }
        problems.into_result()
    }
}

/// The address part of `peerIP` (`198.19.0.1`, `198.19.0.1:1179`, `[2001:db8::1]:1179`).
pub fn peer_address(peer_ip: &str) -> &str {
    if let Some(rest) = peer_ip.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match peer_ip.rsplit_once(':') {
        Some((address, port)) if !address.contains(':') && port.parse::<u16>().is_ok() => address,
        _ => peer_ip,
    }
}

/// Import and export rules for routes, by family, applied in order; the first match decides.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "BGPFilter",
    doc = "Import and export rules for BGP routes.",
    plural = "bgpfilters"
)]
#[serde(rename_all = "camelCase")]
pub struct BGPFilterSpec {
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<FilterRule>,
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<FilterRule>,
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<FilterRule>,
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<FilterRule>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilterRule {
    #[schemars(pattern(super::validate::CIDR_PATTERN))]
    pub cidr: String,
    pub match_operator: MatchOperator,
    pub action: FilterAction,
    /// Also match only prefixes whose length is in this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MatchOperator {
    Equal,
    NotEqual,
    In,
    NotIn,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FilterAction {
    Accept,
    Reject,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 128))]
    pub min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 128))]
    pub max: Option<u8>,
}

impl BGPFilterSpec {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::default();
        for (field, rules, v6) in [
            ("spec.exportV4", &self.export_v4, false),
            ("spec.importV4", &self.import_v4, false),
            ("spec.exportV6", &self.export_v6, true),
            ("spec.importV6", &self.import_v6, true),
        ] {
            for (i, rule) in rules.iter().enumerate() {
                let here = format!("{field}[{i}]");
                if let Some(net) = check_cidr(&mut problems, &format!("{here}.cidr"), &rule.cidr)
                    && matches!(net, ipnet::IpNet::V6(_)) != v6
                {
                    problems.add(format!("{here}.cidr"), format!("{} is of the wrong family", rule.cidr));
                }
                if let Some(PrefixLength {
                    min: Some(min),
                    max: Some(max),
                }) = rule.prefix_length
                    && min > max
                {
                    problems.add(format!("{here}.prefixLength"), format!("min {min} is above max {max}"));
                }
            }
        }
        problems.into_result()
    }
}

/// A node's BGP identity: its addresses, AS number and route-reflector role.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "WeftNode",
    doc = "A node's BGP identity: addresses, AS number, route-reflector role.",
    plural = "weftnodes",
    printcolumn = r#"{"name":"IPv4","type":"string","jsonPath":".spec.bgp.ipv4Address"}"#,
    printcolumn = r#"{"name":"ASN","type":"integer","jsonPath":".spec.bgp.asNumber"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WeftNodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgp>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBgp {
    /// The node's IPv4 BGP address with its prefix length (`198.19.1.2/24`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(super::validate::CIDR_PATTERN))]
    pub ipv4_address: Option<String>,
    /// The node's IPv6 BGP address with its prefix length (`2001:db8:1::2/64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(super::validate::CIDR_PATTERN))]
    pub ipv6_address: Option<String>,
    /// Overrides the cluster's AS number for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub as_number: Option<u32>,
    /// Makes the node a route reflector with this cluster id (RFC 4456), an IPv4 address.
    #[serde(default, rename = "routeReflectorClusterID", skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(super::validate::IP_PATTERN))]
    pub route_reflector_cluster_id: Option<String>,
}

impl WeftNodeSpec {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::default();
        if let Some(bgp) = &self.bgp {
            for (field, address, v6) in [
                ("spec.bgp.ipv4Address", &bgp.ipv4_address, false),
                ("spec.bgp.ipv6Address", &bgp.ipv6_address, true),
            ] {
                if let Some(text) = address {
                    match text.parse::<ipnet::IpNet>() {
                        Ok(net) if matches!(net, ipnet::IpNet::V6(_)) == v6 => {}
                        Ok(_) => problems.add(field, format!("{text} is of the wrong family")),
                        Err(_) => problems.add(field, format!("{text:?} is not an address/prefix-length")),
                    }
                }
            }
            if let Some(asn) = bgp.as_number {
                check_asn(&mut problems, "spec.bgp.asNumber", asn);
            }
            if let Some(id) = &bgp.route_reflector_cluster_id
                && id.parse::<std::net::Ipv4Addr>().is_err()
            {
                problems.add(
                    "spec.bgp.routeReflectorClusterID",
                    format!("{id:?} is not an IPv4 address (RFC 4456 cluster ids are 4 octets)"),
                );
            }
        }
        problems.into_result()
    }
}

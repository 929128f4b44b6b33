//! IPAM resources: pools are cut into blocks, a block is affine to one node, every allocation
//! carries a handle (DESIGN.md "IPAM"; Calico's model).
//!
//! Shapes only: allocation decisions live in `weft-ipam`.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::{Problems, check_cidr};

/// A range of pod (or LoadBalancer) addresses, cut into blocks of `blockSize`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "IPPool",
    doc = "A range of pod or LoadBalancer addresses, cut into blocks.",
    plural = "ippools",
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// The pool's range, IPv4 or IPv6 (`198.18.0.0/16`, `2001:db8:100::/56`).
    #[schemars(pattern(super::validate::CIDR_PATTERN))]
    pub cidr: String,
    /// Prefix length of the pool's blocks: default 26 for IPv4, 122 for IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    pub block_size: Option<u8>,
    /// A disabled pool hands out no new addresses; existing ones stay.
    #[serde(default)]
    pub disabled: bool,
    /// Label selector of the nodes that may use this pool (`all()` or empty: every node).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    /// Masquerade pod traffic leaving every pool.
    #[serde(default)]
    pub nat_outgoing: bool,
    /// Do not announce this pool's blocks over BGP.
    #[serde(default, rename = "disableBGPExport")]
    pub disable_bgp_export: bool,
    /// What the pool's addresses are for (default: Workload).
    #[serde(default = "default_allowed_uses")]
    pub allowed_uses: Vec<AllowedUse>,
}

fn default_allowed_uses() -> Vec<AllowedUse> {
    vec![AllowedUse::Workload]
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AllowedUse {
    /// Pod addresses.
    Workload,
    /// Service LoadBalancer addresses.
    LoadBalancer,
}

impl IPPoolSpec {
    /// The block prefix length, applying the family's default.
    pub fn effective_block_size(&self) -> Option<u8> {
        let net: ipnet::IpNet = self.cidr.parse().ok()?;
        Some(self.block_size.unwrap_or(match net {
            ipnet::IpNet::V4(_) => 26,
            ipnet::IpNet::V6(_) => 122,
        }))
    }

    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::default();
        if let Some(net) = check_cidr(&mut problems, "spec.cidr", &self.cidr) {
            let (max, family) = match net {
                ipnet::IpNet::V4(_) => (32, "IPv4"),
                ipnet::IpNet::V6(_) => (128, "IPv6"),
            };
            if let Some(size) = self.block_size {
                if size > max {
                    problems.add("spec.blockSize", format!("{size} is longer than an {family} address"));
                } else if size < net.prefix_len() {
                    problems.add(
                        "spec.blockSize",
                        format!("/{size} blocks do not fit in the /{} pool", net.prefix_len()),
                    );
                }
            }
        }
        if let Err(error) = crate::selector::Selector::parse(&self.node_selector) {
            problems.add("spec.nodeSelector", error.to_string());
        }
        if self.allowed_uses.is_empty() {
            problems.add("spec.allowedUses", "must name at least one use".into());
        }
        problems.into_result()
    }
}

/// A block of addresses cut from a pool, and who holds each of them.
///
/// Addresses are numbered by their ordinal from the block's first address. Every write bumps
/// `sequenceNumber`; each allocation remembers the sequence number it was made at, so a stale
/// release (of an address since freed and handed out again) can be told apart and refused.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "IPAMBlock",
    doc = "A block of addresses cut from a pool, and who holds each of them.",
    plural = "ipamblocks",
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"Affinity","type":"string","jsonPath":".spec.affinity"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMBlockSpec {
    #[schemars(pattern(super::validate::CIDR_PATTERN))]
    pub cidr: String,
    /// The node this block is affine to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Whether the block may lend addresses to other nodes (false under strictAffinity).
    #[serde(default)]
    pub strict_affinity: bool,
    /// Per address ordinal: the index into `attributes` of its allocation, or null when free.
    #[serde(default)]
    pub allocations: Vec<Option<u32>>,
    /// Free ordinals, oldest-freed first (FIFO, so an address is reused as late as possible).
    #[serde(default)]
    pub unallocated: Vec<u32>,
    #[serde(default)]
    pub attributes: Vec<AllocationAttribute>,
    #[serde(default)]
    pub sequence_number: u64,
    /// Ordinal (as a string) → the sequence number its allocation was made at.
    #[serde(default)]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    /// Ordinal (as a string) → unix time (seconds) it was released, for the reuse cooldown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub released_at: BTreeMap<String, u64>,
    /// Set while the block is being removed: allocate nothing from it.
    #[serde(default)]
    pub deleted: bool,
}

/// Who holds an allocation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocationAttribute {
    /// The handle the allocation belongs to (`network.containerid.interface`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Free-form owner details (node, namespace, pod, timestamp).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
}

impl IPAMBlockSpec {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::default();
        if let Some(net) = check_cidr(&mut problems, "spec.cidr", &self.cidr) {
            let bits = match net {
                ipnet::IpNet::V4(_) => 32,
                ipnet::IpNet::V6(_) => 128,
            };
            let size = 1u128.checked_shl(bits - u32::from(net.prefix_len())).unwrap_or(0);
            if size > 1 << 16 {
                problems.add("spec.cidr", "a block holds at most 65536 addresses".into());
            } else if !self.allocations.is_empty() && self.allocations.len() as u128 != size {
                problems.add(
                    "spec.allocations",
                    format!("has {} entries for a block of {size} addresses", self.allocations.len()),
                );
            }
        }
        for (ordinal, slot) in self.allocations.iter().enumerate() {
            if let Some(index) = slot
                && *index as usize >= self.attributes.len()
            {
                problems.add(
                    format!("spec.allocations[{ordinal}]"),
                    format!("points at attribute {index}, but there are {}", self.attributes.len()),
                );
            }
        }
        problems.into_result()
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AffinityState {
    /// Claimed, block not written yet.
    Pending,
    /// The node owns the block.
    Confirmed,
    /// Being released: the node allocates nothing new from it.
    PendingDeletion,
}

/// A node's claim on a block. Two nodes never both hold a confirmed affinity for one block.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "BlockAffinity",
    doc = "A node's claim on an address block.",
    plural = "blockaffinities",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BlockAffinitySpec {
    pub node: String,
    #[schemars(pattern(super::validate::CIDR_PATTERN))]
    pub cidr: String,
    pub state: AffinityState,
    #[serde(default)]
    pub deleted: bool,
}

impl BlockAffinitySpec {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::default();
        check_cidr(&mut problems, "spec.cidr", &self.cidr);
        if self.node.is_empty() {
            problems.add("spec.node", "must name a node".into());
        }
        problems.into_result()
    }
}

/// Everything one owner (a pod's interface) holds: block CIDR → number of addresses in it.
/// DEL releases exactly what the handle lists.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "IPAMHandle",
    doc = "Every address one owner (a pod interface) holds.",
    plural = "ipamhandles"
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMHandleSpec {
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Block CIDR → how many of the handle's addresses are in that block.
    #[serde(default)]
    pub block: BTreeMap<String, u32>,
    #[serde(default)]
    pub deleted: bool,
}

/// Cluster-wide IPAM settings; the object named `default` is the one in force.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weft.io",
    version = "v1",
    kind = "IPAMConfig",
    doc = "Cluster-wide IPAM settings; the object named default is in force.",
    plural = "ipamconfigs"
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMConfigSpec {
    /// Never borrow addresses from another node's block.
    #[serde(default)]
    pub strict_affinity: bool,
    /// Most blocks one node may hold; 0 means unlimited (the default).
    #[serde(default)]
    pub max_blocks_per_host: u32,
    /// Claim new blocks when a node's blocks are full (default true).
    #[serde(default = "default_true")]
    pub auto_allocate_blocks: bool,
    /// Seconds a released address rests before it is handed out again.
    #[serde(default)]
    pub reuse_cooldown_seconds: u32,
    /// Addresses never handed out (a gateway, an address used outside weft), as CIDRs.
    #[serde(default, rename = "reservedCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub reserved_cidrs: Vec<String>,
}

impl IPAMConfigSpec {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::default();
        for (i, cidr) in self.reserved_cidrs.iter().enumerate() {
            check_cidr(&mut problems, &format!("spec.reservedCIDRs[{i}]"), cidr);
        }
        problems.into_result()
    }
}

impl Default for IPAMConfigSpec {
    fn default() -> Self {
        IPAMConfigSpec {
            strict_affinity: false,
            max_blocks_per_host: 0,
            auto_allocate_blocks: true,
            reuse_cooldown_seconds: 0,
            reserved_cidrs: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

//! What a node originates in cluster mode (Calico's semantics, DESIGN.md "BGP"):
//! - its confirmed affine blocks, each backed by a blackhole route (an unused address of the
//!   node's own block is dropped here, not sent back out by a default route);
//! - borrowed addresses: a /32 (/128) for each address of an endpoint on this node that lies in
//!   a block affine to another node (the longer prefix draws its traffic here; no blackhole:
//!   the endpoint's own host route serves it);
//! - the Service addresses [`super::services`] chooses, with their communities;
//! - communities of `BGPConfiguration.prefixAdvertisements` on every prefix inside their CIDR.
//!
//! Must never: originate a block the node does not own (a block affine to another node, or
//! only pending), blackhole an address it does not own, or do I/O.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use weft_api::resources::{AffinityState, BGPConfigurationSpec, BlockAffinity, IPPool, WorkloadEndpoint};

use super::Problem;
use crate::config::Originated;

/// The node's confirmed blocks, and every confirmed block's owner, from the affinities.
#[derive(Debug, Default)]
pub struct Blocks {
    /// Block → the node it is confirmed affine to.
    pub owners: BTreeMap<IpNet, String>,
}

impl Blocks {
    /// Reads the confirmed, not deleted affinities; a bad one is a problem and left out.
    pub fn new(affinities: &[BlockAffinity], problems: &mut Vec<Problem>) -> Self {
        let mut owners = BTreeMap::new();
        for affinity in affinities {
            if affinity.spec.state != AffinityState::Confirmed || affinity.spec.deleted {
                continue;
            }
            let object = format!("BlockAffinity/{}", affinity.metadata.name.as_deref().unwrap_or("?"));
            let block = match affinity.spec.cidr.parse::<IpNet>() {
                Ok(block) if block.trunc() == block => block,
                _ => {
                    problems.push(Problem::new(
                        object,
                        "spec.cidr",
                        format!("{:?} is not a block CIDR", affinity.spec.cidr),
                    ));
                    continue;
                }
            };
            match owners.get(&block) {
                Some(owner) if *owner != affinity.spec.node => {
                    problems.push(Problem::new(
                        object,
                        "spec.node",
                        format!(
                            "{block} is confirmed affine to {owner} already; left to neither \
                             (announcing a block twice would split its traffic)"
                        ),
                    ));
                    owners.insert(block, String::new());
                }
                _ => {
                    owners.insert(block, affinity.spec.node.clone());
                }
            }
        }
        owners.retain(|_, owner| !owner.is_empty());
        Self { owners }
    }

    /// The block holding `address`'s network, with its owner.
    fn holding(&self, address: &IpNet) -> Option<(&IpNet, &str)> {
        self.owners
            .iter()
            .filter(|(block, _)| block.contains(address))
            .max_by_key(|(block, _)| block.prefix_len())
            .map(|(block, owner)| (block, owner.as_str()))
    }
}

/// Everything `node` originates, sorted by prefix, communities merged per prefix.
pub fn originate(
    node: &str,
    blocks: &Blocks,
    pools: &[IPPool],
    endpoints: &[WorkloadEndpoint],
    services: &BTreeMap<IpNet, BTreeSet<String>>,
    configuration: &BGPConfigurationSpec,
    problems: &mut Vec<Problem>,
) -> Vec<Originated> {
    let mut originated: BTreeMap<IpNet, Originated> = BTreeMap::new();
    let unexported: Vec<IpNet> = pools
        .iter()
        .filter(|pool| pool.spec.disable_bgp_export)
        .filter_map(|pool| pool.spec.cidr.parse::<IpNet>().ok())
        .collect();
    let exported = |prefix: &IpNet| !unexported.iter().any(|pool| pool.contains(prefix));
    for (block, owner) in &blocks.owners {
        if owner == node && exported(block) {
            originated.insert(*block, Originated::plain(*block, true));
        }
    }
    for endpoint in endpoints.iter().filter(|endpoint| endpoint.spec.node == node) {
        let object = format!(
            "WorkloadEndpoint/{}/{}",
            endpoint.metadata.namespace.as_deref().unwrap_or("?"),
            endpoint.metadata.name.as_deref().unwrap_or("?")
        );
        for (i, network) in endpoint.spec.ip_networks.iter().enumerate() {
            let Ok(network) = network.parse::<IpNet>() else {
                problems.push(Problem::new(
                    object.clone(),
                    format!("spec.ipNetworks[{i}]"),
                    format!("{network:?} is not an address/prefix-length"),
                ));
                continue;
            };
            let host = IpNet::from(network.addr());
            match blocks.holding(&host) {
                Some((_, owner)) if owner != node && exported(&host) => {
                    originated.entry(host).or_insert_with(|| Originated::plain(host, false));
                }
                _ => {}
            }
        }
    }
    for (prefix, communities) in services {
        let entry = originated
            .entry(prefix.trunc())
            .or_insert_with(|| Originated::plain(prefix.trunc(), false));
        for community in communities {
            match parse_community(community) {
                Ok(parsed) => parsed.add_to(entry),
                Err(message) => problems.push(Problem::new("Service", format!("{prefix} community"), message)),
            }
        }
    }
    advertise_communities(configuration, &mut originated, problems);
    originated.into_values().collect()
}

/// Adds the communities of `prefixAdvertisements` to every originated prefix inside their CIDR.
fn advertise_communities(
    configuration: &BGPConfigurationSpec,
    originated: &mut BTreeMap<IpNet, Originated>,
    problems: &mut Vec<Problem>,
) {
    let names: BTreeMap<&str, &str> = configuration
        .communities
        .iter()
        .map(|community| (community.name.as_str(), community.value.as_str()))
        .collect();
    for (i, advertisement) in configuration.prefix_advertisements.iter().enumerate() {
        let key = format!("spec.prefixAdvertisements[{i}]");
        let Ok(cidr) = advertisement.cidr.parse::<IpNet>() else {
            problems.push(Problem::new(
                "BGPConfiguration",
                format!("{key}.cidr"),
                format!("{:?} is not a CIDR", advertisement.cidr),
            ));
            continue;
        };
        let mut parsed = Vec::new();
        for (j, community) in advertisement.communities.iter().enumerate() {
            let value = names.get(community.as_str()).copied().unwrap_or(community);
            match parse_community(value) {
                Ok(community) => parsed.push(community),
                Err(message) => problems.push(Problem::new(
                    "BGPConfiguration",
                    format!("{key}.communities[{j}]"),
                    format!("{message} (nor the name of one in spec.communities)"),
                )),
            }
        }
        for (prefix, entry) in originated.iter_mut() {
            if cidr.contains(prefix) {
                for community in &parsed {
                    community.add_to(entry);
                }
            }
        }
    }
}

/// A standard or large community.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Community {
    /// `AA:NN` (RFC 1997).
    Standard(u32),
    /// `GA:LD1:LD2` (RFC 8092).
    Large([u32; 3]),
}

impl Community {
    fn add_to(self, originated: &mut Originated) {
        match self {
            Self::Standard(value) if !originated.communities.contains(&value) => originated.communities.push(value),
            Self::Large(value) if !originated.large_communities.contains(&value) => {
                originated.large_communities.push(value);
            }
            _ => {}
        }
    }
}

/// Parses `65000:100` (16-bit halves) or `65000:1:2` (32-bit parts).
pub fn parse_community(text: &str) -> Result<Community, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let bad = || format!("{text:?} is neither AA:NN nor AA:NN:MM");
    match parts.as_slice() {
        [high, low] => {
            let high: u16 = high.parse().map_err(|_| bad())?;
            let low: u16 = low.parse().map_err(|_| bad())?;
            Ok(Community::Standard(u32::from(high) << 16 | u32::from(low)))
        }
        [a, b, c] => Ok(Community::Large([
            a.parse().map_err(|_| bad())?,
            b.parse().map_err(|_| bad())?,
            c.parse().map_err(|_| bad())?,
        ])),
        _ => Err(bad()),
    }
}

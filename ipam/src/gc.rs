//! Garbage collection: releases addresses no live owner holds, handles that hold nothing,
//! and affinities of empty blocks. Never releases the address of a live pod.
//!
//! An allocation's owner is read from its attributes:
//! - a `WorkloadEndpoint` with the allocation's `container` id → alive;
//! - a LoadBalancer address (attribute `service`, [`crate::loadbalancer`]): alive while that
//!   Service exists (with the same uid, when recorded); its `node` is no node, and the blocks
//!   of [`crate::loadbalancer::LOAD_BALANCER_NODE`] keep their affinity;
//! - else, with `namespace` and `pod`: alive while that `Pod` exists in the store;
//! - else, with `node`: dead when the cluster tracks nodes (`WeftNode` or `Node` objects exist)
//!   and that node is not among them;
//! - otherwise (no owner known, e.g. an address taken under another CNI plugin outside
//!   Kubernetes) it is never released here: the runtime's CNI GC or `weftctl ipam release` does.
//!
//! A dead owner's address is released only after `grace_seconds` from its allocation, and
//! only if, re-checked just before, the owner is still gone and the address is still the same
//! allocation (its sequence number): a pod that appeared meanwhile, or an address released and
//! handed out again, is left alone. A node keeps its last block even when it is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use serde::Serialize;
use weft_api::resources::{AffinityState, BlockAffinity, IPAMBlock, IPAMHandle, WeftNode, WorkloadEndpoint};
use weft_api::{Key, Kind, Revision, StoreError, StoreExt};

use crate::allocator::{ATTRIBUTE_NODE, ATTRIBUTE_TIMESTAMP, Allocator};
use crate::block::{Block, Held};
use crate::error::IpamError;
use crate::loadbalancer::{ATTRIBUTE_SERVICE, ATTRIBUTE_UID, LOAD_BALANCER_NODE};
use crate::names::{affinity_name, block_name};

/// Attribute keys naming an allocation's owner (set by the CNI plugins).
pub const ATTRIBUTE_NAMESPACE: &str = "namespace";
pub const ATTRIBUTE_POD: &str = "pod";
pub const ATTRIBUTE_CONTAINER: &str = "container";

#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Leave allocations younger than this alone (a pod being created).
    pub grace_seconds: u64,
    /// Report what would be released, release nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace_seconds: 300,
            dry_run: false,
        }
    }
}

/// An allocation whose owner is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leak {
    pub address: IpAddr,
    pub handle: String,
    pub block: String,
    pub reason: String,
    #[serde(skip)]
    pub sequence: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Allocations whose owner is gone (released unless dry run).
    pub leaks: Vec<Leak>,
    /// Addresses actually released.
    pub released: Vec<IpAddr>,
    /// Handles removed because they held nothing.
    pub handles_removed: Vec<String>,
    /// Blocks given up by their node (empty, not the node's last, or the node is gone).
    pub blocks_released: Vec<String>,
}

/// What the GC knows about owners, read once per pass.
struct Owners {
    pods: BTreeSet<(String, String)>,
    containers: BTreeSet<String>,
    /// Services by namespace and name, with their uid.
    services: BTreeMap<(String, String), Option<String>>,
    nodes: Option<BTreeSet<String>>,
}

impl Owners {
    async fn read(allocator: &Allocator) -> Result<Owners, IpamError> {
        let store = allocator.store();
        let (pods, _) = store.list_as::<Pod>(None).await?;
        let (endpoints, _) = store.list_as::<WorkloadEndpoint>(None).await?;
        let (weft_nodes, _) = store.list_as::<WeftNode>(None).await?;
        let (nodes, _) = store.list_as::<Node>(None).await?;
        let (services, _) = store.list_as::<Service>(None).await?;
        let node_names: BTreeSet<String> = weft_nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .chain(nodes.iter().filter_map(|n| n.metadata.name.clone()))
            .collect();
        Ok(Owners {
            pods: pods
                .iter()
                .filter_map(|p| Some((p.metadata.namespace.clone()?, p.metadata.name.clone()?)))
                .collect(),
            containers: endpoints
                .iter()
                .map(|e| e.spec.container_id.clone())
                .filter(|c| !c.is_empty())
                .collect(),
            services: services
                .iter()
                .filter_map(|s| {
                    let key = (s.metadata.namespace.clone()?, s.metadata.name.clone()?);
                    Some((key, s.metadata.uid.clone()))
                })
                .collect(),
            nodes: (!node_names.is_empty()).then_some(node_names),
        })
    }

    /// Why the owner of an allocation is gone, or `None` while it may be alive.
    fn gone(&self, attributes: &BTreeMap<String, String>) -> Option<String> {
        if attributes
            .get(ATTRIBUTE_CONTAINER)
            .is_some_and(|c| self.containers.contains(c))
        {
            return None;
        }
        if let Some(service) = attributes.get(ATTRIBUTE_SERVICE) {
            let namespace = attributes.get(ATTRIBUTE_NAMESPACE).cloned().unwrap_or_default();
            return match self.services.get(&(namespace.clone(), service.clone())) {
                Some(uid)
                    if attributes
                        .get(ATTRIBUTE_UID)
                        .is_none_or(|wanted| uid.as_ref() == Some(wanted)) =>
                {
                    None
                }
                Some(_) => Some(format!("service {namespace}/{service} was replaced by a new one")),
                None => Some(format!("service {namespace}/{service} is gone")),
            };
        }
        if let (Some(namespace), Some(pod)) = (attributes.get(ATTRIBUTE_NAMESPACE), attributes.get(ATTRIBUTE_POD)) {
            if self.pods.contains(&(namespace.clone(), pod.clone())) {
                return None;
            }
            return Some(format!("pod {namespace}/{pod} is gone"));
        }
        if let (Some(node), Some(nodes)) = (attributes.get(ATTRIBUTE_NODE), &self.nodes)
            && !nodes.contains(node)
        {
            return Some(format!("node {node} is gone"));
        }
        None
    }

    fn node_gone(&self, node: &str) -> bool {
        node != LOAD_BALANCER_NODE && self.nodes.as_ref().is_some_and(|nodes| !nodes.contains(node))
    }
}

fn revision_of<K: kube::Resource>(object: &K) -> Option<Revision> {
    object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .map(Revision)
}

/// Finds leaks (and, unless `dry_run`, releases them), drops empty handles and blocks.
pub async fn collect(allocator: &Allocator, options: GcOptions, now: u64) -> Result<GcReport, IpamError> {
    let store = allocator.store();
    let mut report = GcReport::default();
    let owners = Owners::read(allocator).await?;
    let (blocks, _) = store.list_as::<IPAMBlock>(None).await?;
    for stored in &blocks {
        let block = Block::from_spec(stored.spec.clone())?;
        for Held {
            address,
            handle,
            sequence,
            attributes,
            ..
        } in block.held()
        {
            let Some(reason) = owners.gone(&attributes) else {
                continue;
            };
            let allocated_at: u64 = attributes
                .get(ATTRIBUTE_TIMESTAMP)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            if now < allocated_at.saturating_add(options.grace_seconds) {
                continue;
            }
            report.leaks.push(Leak {
                address,
                handle,
                block: block.cidr().to_string(),
                reason,
                sequence,
            });
        }
    }
    if options.dry_run {
        return Ok(report);
    }

    // Re-check the owners just before releasing: a pod may have appeared meanwhile.
    let owners = Owners::read(allocator).await?;
    for leak in &report.leaks {
        let Ok(cidr) = leak.block.parse::<IpNet>() else {
            continue;
        };
        let block = match allocator.store().get_as::<IPAMBlock>(None, &block_name(&cidr)).await? {
            Some(b) => Block::from_spec(b.spec)?,
            None => continue,
        };
        let still_gone = block
            .held()
            .iter()
            .find(|h| h.address == leak.address && h.sequence == leak.sequence)
            .is_some_and(|h| owners.gone(&h.attributes).is_some());
        if still_gone && allocator.release_address(leak.address, Some(leak.sequence)).await? {
            tracing::info!(address = %leak.address, handle = %leak.handle, reason = %leak.reason, "released leaked address");
            report.released.push(leak.address);
        }
    }

    // Handles that hold nothing any more.
    let (blocks, _) = store.list_as::<IPAMBlock>(None).await?;
    let mut held_now: BTreeSet<String> = BTreeSet::new();
    for stored in &blocks {
        held_now.extend(
            Block::from_spec(stored.spec.clone())?
                .held()
                .into_iter()
                .map(|h| h.handle),
        );
    }
    let (handles, _) = store.list_as::<IPAMHandle>(None).await?;
    for handle in handles {
        if held_now.contains(&handle.spec.handle_id) {
            continue;
        }
        let Some(name) = handle.metadata.name.clone() else {
            continue;
        };
        let key = Key::new(&Kind::of::<IPAMHandle>(), None, &name);
        match store.delete(&key, revision_of(&handle)).await {
            Ok(_) => report.handles_removed.push(handle.spec.handle_id.clone()),
            Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }

    release_blocks(allocator, &owners, &blocks, &mut report).await?;
    Ok(report)
}

/// Gives up empty blocks a node does not need (keeping its last) and the blocks of nodes that
/// are gone (an empty one is deleted; one still holding addresses loses its affinity and
/// becomes borrowable until it empties).
async fn release_blocks(
    allocator: &Allocator,
    owners: &Owners,
    blocks: &[IPAMBlock],
    report: &mut GcReport,
) -> Result<(), IpamError> {
    let store = allocator.store();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for block in blocks {
        if let Some(node) = &block.spec.affinity {
            *per_node.entry(node.clone()).or_default() += 1;
        }
    }
    for stored in blocks {
        let Some(node) = stored.spec.affinity.clone() else {
            continue;
        };
        let block = Block::from_spec(stored.spec.clone())?;
        let node_gone = owners.node_gone(&node);
        let count = per_node.get(&node).copied().unwrap_or(0);
        let spare = block.is_empty() && count > 1;
        if !(spare || node_gone) {
            continue;
        }
        let cidr: IpNet = block.cidr();
        let affinity_key = Key::new(&Kind::of::<BlockAffinity>(), None, &affinity_name(&node, &cidr));
        if let Some(affinity) = store
            .get_as::<BlockAffinity>(None, &affinity_name(&node, &cidr))
            .await?
        {
            let mut pending = affinity.clone();
            pending.spec.state = AffinityState::PendingDeletion;
            if store.update_as(&pending).await.is_err() {
                continue;
            }
        }
        let block_key = Key::new(&Kind::of::<IPAMBlock>(), None, &block_name(&cidr));
        let result = if block.is_empty() {
            store.delete(&block_key, revision_of(stored)).await.map(|_| ())
        } else {
            let mut unaffine = stored.clone();
            unaffine.spec.affinity = None;
            store.update_as(&unaffine).await.map(|_| ())
        };
        match result {
            Ok(()) => {
                let _ = store.delete(&affinity_key, None).await;
                per_node.entry(node.clone()).and_modify(|c| *c -= 1);
                tracing::info!(%node, block = %cidr, "released block");
                report.blocks_released.push(cidr.to_string());
            }
            // Someone allocated meanwhile: the node keeps the block.
            Err(StoreError::Conflict { .. }) => {
                if let Some(mut affinity) = store
                    .get_as::<BlockAffinity>(None, &affinity_name(&node, &cidr))
                    .await?
                {
                    affinity.spec.state = AffinityState::Confirmed;
                    let _ = store.update_as(&affinity).await;
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

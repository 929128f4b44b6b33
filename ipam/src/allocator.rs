//! The allocator on the datastore: pools → blocks → affinities → handles (DESIGN.md "IPAM").
//!
//! Order of writes, chosen so that a process killed between any two leaves nothing a later
//! run cannot find or finish:
//! 1. the handle lists the block before the block records the allocation (a crash leaves a
//!    handle naming a block with nothing of it: harmless, release and GC clear it);
//! 2. a block is claimed by creating its `BlockAffinity` (pending), then the `IPAMBlock` with
//!    the node as affinity (the create is the arbiter: two nodes never both own a block), then
//!    confirming the affinity; a pending affinity whose block is ours is confirmed later, one
//!    whose block is someone else's is removed.
//!
//! Every write is a compare-and-swap on the object's revision, retried a bounded number of
//! times with jittered backoff ([`crate::retry`]). Decisions (which addresses, which block)
//! are made by the pure [`crate::block`] and [`crate::pools`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use weft_api::resources::{
    AffinityState, AllowedUse, BlockAffinity, BlockAffinitySpec, IPAMBlock, IPAMConfig, IPAMConfigSpec, IPAMHandle,
    IPAMHandleSpec, IPPool, WeftNode,
};
use weft_api::{Key, Store, StoreError, StoreExt, Write};

use crate::block::Block;
use crate::error::IpamError;
use crate::names::{affinity_name, block_name, handle_name};
use crate::pools::{Family, Pool, next_free_block, select_pools};
use crate::retry::Backoff;

/// Most addresses one request may ask for, per family.
pub const MAX_PER_REQUEST: usize = 256;

/// What to allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub node: String,
    /// Who will hold the addresses: `network.containerid.interface` for a pod interface.
    pub handle: String,
    pub ipv4: usize,
    pub ipv6: usize,
    /// Pools to use (any family); empty: every pool selecting the node.
    pub pools: Vec<IpNet>,
    /// Owner details kept with each address (namespace, pod, container, …).
    pub attributes: BTreeMap<String, String>,
    pub allowed_use: AllowedUse,
    /// Keep each block's first two addresses (and, IPv4, its last) out of this allocation:
    /// for plugins that give pods the block's prefix with the second address as their
    /// gateway (the reference `ptp` and `bridge` plugins), see [`block_gateway`].
    pub reserve_gateway: bool,
}

/// The gateway of a block for plugins that use one: its second address.
pub fn block_gateway(block: &IpNet) -> IpAddr {
    crate::block::Block::new(*block, None, false)
        .map(|b| b.address(1))
        .unwrap_or(block.network())
}

/// True when `address` is one a gateway-style network keeps out of pods: the block's network
/// address, its gateway and, for IPv4, its broadcast address.
fn is_block_infrastructure(block: &IpNet, address: IpAddr) -> bool {
    address == block.network()
        || address == block_gateway(block)
        || (block.addr().is_ipv4() && address == block.broadcast())
}

/// One address handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub address: IpAddr,
    /// The block it came from.
    pub block: IpNet,
}

/// What [`Allocator::context`] reads.
#[derive(Debug, Clone)]
pub struct Context {
    config: IPAMConfigSpec,
    pools: Vec<IPPool>,
    labels: BTreeMap<String, String>,
}

/// The allocator. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Allocator {
    store: Arc<dyn Store>,
    clock: fn() -> u64,
    attempts: u32,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Attribute keys the allocator sets itself.
pub const ATTRIBUTE_NODE: &str = "node";
pub const ATTRIBUTE_TIMESTAMP: &str = "timestamp";

impl Allocator {
    pub fn new(store: Arc<dyn Store>) -> Allocator {
        Allocator {
            store,
            clock: unix_now,
            attempts: 64,
        }
    }

    /// Uses `clock` (Unix seconds) instead of the system clock: for tests of cooldown and GC.
    pub fn with_clock(mut self, clock: fn() -> u64) -> Allocator {
        self.clock = clock;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The IPAM settings in force (the `default` IPAMConfig, or the defaults).
    pub async fn config(&self) -> Result<IPAMConfigSpec, IpamError> {
        Ok(self
            .store
            .get_as::<IPAMConfig>(None, "default")
            .await?
            .map(|config| config.spec)
            .unwrap_or_default())
    }

    /// A node's labels, from its `WeftNode`, else its Kubernetes `Node`.
    async fn node_labels(&self, node: &str) -> Result<BTreeMap<String, String>, IpamError> {
        if let Some(weft_node) = self.store.get_as::<WeftNode>(None, node).await? {
            return Ok(weft_node.metadata.labels.unwrap_or_default());
        }
        Ok(self
            .store
            .get_as::<Node>(None, node)
            .await?
            .and_then(|n| n.metadata.labels)
            .unwrap_or_default())
    }

    /// Addresses `handle` holds now.
    pub async fn addresses_of(&self, handle: &str) -> Result<Vec<Assigned>, IpamError> {
        let Some(stored) = self.store.get_as::<IPAMHandle>(None, &handle_name(handle)).await? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for cidr in stored.spec.block.keys() {
            let Ok(cidr) = cidr.parse::<IpNet>() else { continue };
            if let Some(block) = self.load_block(&cidr).await? {
                found.extend(
                    block
                        .held()
                        .into_iter()
                        .filter(|held| held.handle == handle)
                        .map(|held| Assigned {
                            address: held.address,
                            block: cidr,
                        }),
                );
            }
        }
        found.sort_by_key(|a| a.address);
        Ok(found)
    }

    async fn load_block(&self, cidr: &IpNet) -> Result<Option<Block>, IpamError> {
        match self.store.get_as::<IPAMBlock>(None, &block_name(cidr)).await? {
            Some(stored) => Ok(Some(Block::from_spec(stored.spec)?)),
            None => Ok(None),
        }
    }

    /// Allocates what `request` asks for, or nothing: on failure, whatever this call took is
    /// released again. Asking again for a handle that already holds enough addresses returns
    /// those (a repeated CNI ADD).
    pub async fn allocate(&self, request: &Request) -> Result<Vec<Assigned>, IpamError> {
        let context = self.context(&request.node).await?;
        self.allocate_in_context(request, &context).await
    }

    /// What an allocation for `node` reads before it changes anything: the settings, the pools
    /// and the node's labels. A caller that serialises allocations on a host (a CNI plugin's
    /// lock) reads this first, outside its lock, to hold the lock for less time; nothing in it
    /// changes as pods come and go.
    pub async fn context(&self, node: &str) -> Result<Context, IpamError> {
        Ok(Context {
            config: self.config().await?,
            pools: self.store.list_as::<IPPool>(None).await?.0,
            labels: self.node_labels(node).await?,
        })
    }

    /// [`Allocator::allocate`] with the [`Context`] already read (for `request.node`).
    pub async fn allocate_in_context(&self, request: &Request, context: &Context) -> Result<Vec<Assigned>, IpamError> {
        if request.handle.is_empty() || request.node.is_empty() {
            return Err(IpamError::InvalidRequest {
                reason: "a handle and a node are required".into(),
            });
        }
        if request.ipv4 > MAX_PER_REQUEST || request.ipv6 > MAX_PER_REQUEST {
            return Err(IpamError::InvalidRequest {
                reason: format!("at most {MAX_PER_REQUEST} addresses per family"),
            });
        }
        let existing = self.addresses_of(&request.handle).await?;
        let count_of = |family: Family| existing.iter().filter(|a| Family::of(&a.block) == family).count();
        if count_of(Family::V4) >= request.ipv4 && count_of(Family::V6) >= request.ipv6 && !existing.is_empty() {
            return Ok(existing);
        }
        let Context { config, pools, labels } = context;
        let mut attributes = request.attributes.clone();
        attributes.insert(ATTRIBUTE_NODE.into(), request.node.clone());
        attributes.insert(ATTRIBUTE_TIMESTAMP.into(), self.now().to_string());

        let mut taken: Vec<Assigned> = Vec::new();
        for (family, wanted) in [(Family::V4, request.ipv4), (Family::V6, request.ipv6)] {
            let missing = wanted.saturating_sub(count_of(family));
            if missing == 0 {
                continue;
            }
            let result = async {
                let selected = select_pools(
                    pools,
                    family,
                    &request.node,
                    labels,
                    &request.pools,
                    request.allowed_use,
                )?;
                self.allocate_family(request, config, &selected, family, missing, &attributes)
                    .await
            }
            .await;
            match result {
                Ok(got) => taken.extend(got),
                Err(error) => {
                    self.undo(&request.handle, &taken).await;
                    return Err(error);
                }
            }
        }
        let mut all = existing;
        all.extend(taken);
        all.sort_by_key(|a| a.address);
        Ok(all)
    }

    /// Best effort: gives back what a failed call took. What this cannot release (the store
    /// went away) the GC finds later: it is held by a handle whose owner is gone.
    async fn undo(&self, handle: &str, taken: &[Assigned]) {
        for assigned in taken {
            if let Err(error) = self.release_address(assigned.address, None).await {
                tracing::warn!(address = %assigned.address, %handle, %error, "could not undo an allocation");
            }
        }
    }

    async fn allocate_family(
        &self,
        request: &Request,
        config: &IPAMConfigSpec,
        pools: &[Pool],
        family: Family,
        wanted: usize,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Vec<Assigned>, IpamError> {
        let in_pools = |cidr: &IpNet| pools.iter().any(|p| p.cidr.contains(cidr));
        let mut got = Vec::new();

        // 1. The node's own blocks.
        let affine = self.affine_blocks(&request.node).await?;
        for cidr in affine.iter().filter(|c| in_pools(c)) {
            if got.len() == wanted {
                break;
            }
            got.extend(
                self.allocate_in(cidr, wanted - got.len(), request, config, attributes, false)
                    .await?,
            );
        }

        // 2. New blocks for the node.
        let mut claimed = affine.iter().filter(|c| Family::of(c) == family).count();
        let cap = config.max_blocks_per_host as usize;
        let mut cap_hit = false;
        while got.len() < wanted && config.auto_allocate_blocks {
            if cap > 0 && claimed >= cap {
                cap_hit = true;
                break;
            }
            let Some(cidr) = self.claim_block(&request.node, pools, config).await? else {
                break; // every pool is full of blocks
            };
            claimed += 1;
            got.extend(
                self.allocate_in(&cidr, wanted - got.len(), request, config, attributes, false)
                    .await?,
            );
        }

        // 3. Borrow from other nodes' blocks.
        if got.len() < wanted && !config.strict_affinity {
            let (blocks, _) = self.store.list_as::<IPAMBlock>(None).await?;
            for stored in blocks {
                if got.len() == wanted {
                    break;
                }
                let Ok(cidr) = stored.spec.cidr.parse::<IpNet>() else {
                    continue;
                };
                let ours = stored.spec.affinity.as_deref() == Some(request.node.as_str());
                if ours || !in_pools(&cidr) || stored.spec.strict_affinity || stored.spec.unallocated.is_empty() {
                    continue;
                }
                got.extend(
                    self.allocate_in(&cidr, wanted - got.len(), request, config, attributes, true)
                        .await?,
                );
            }
        }

        if got.len() < wanted {
            if cap_hit && config.strict_affinity {
                self.undo(&request.handle, &got).await;
                return Err(IpamError::BlockCapReached {
                    node: request.node.clone(),
                    max: config.max_blocks_per_host,
                });
            }
            self.undo(&request.handle, &got).await;
            return Err(IpamError::Exhausted {
                family,
                node: request.node.clone(),
                wanted,
                got: got.len(),
                pools: pools.iter().map(|p| p.cidr.to_string()).collect::<Vec<_>>().join(", "),
            });
        }
        Ok(got)
    }

    /// Blocks affine to `node`, confirming pending claims whose block is the node's.
    async fn affine_blocks(&self, node: &str) -> Result<Vec<IpNet>, IpamError> {
        let (affinities, _) = self.store.list_as::<BlockAffinity>(None).await?;
        let mut blocks = BTreeSet::new();
        for affinity in affinities.into_iter().filter(|a| a.spec.node == node) {
            let Ok(cidr) = affinity.spec.cidr.parse::<IpNet>() else {
                continue;
            };
            match affinity.spec.state {
                AffinityState::Confirmed => {
                    blocks.insert(cidr);
                }
                AffinityState::Pending => {
                    let block = self.store.get_as::<IPAMBlock>(None, &block_name(&cidr)).await?;
                    if block.is_some_and(|b| b.spec.affinity.as_deref() == Some(node)) {
                        self.set_affinity_state(&affinity, AffinityState::Confirmed).await?;
                        blocks.insert(cidr);
                    }
                }
                AffinityState::PendingDeletion => {}
            }
        }
        Ok(blocks.into_iter().collect())
    }

    async fn set_affinity_state(&self, affinity: &BlockAffinity, state: AffinityState) -> Result<(), IpamError> {
        let mut updated = affinity.clone();
        updated.spec.state = state;
        match self.store.update_as(&updated).await {
            Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Claims a free block for `node` in the first pool with room; `None` when all are full.
    async fn claim_block(
        &self,
        node: &str,
        pools: &[Pool],
        config: &IPAMConfigSpec,
    ) -> Result<Option<IpNet>, IpamError> {
        let mut backoff = Backoff::new(self.attempts);
        loop {
            let (blocks, _) = self.store.list_as::<IPAMBlock>(None).await?;
            let taken: BTreeSet<IpNet> = blocks.iter().filter_map(|b| b.spec.cidr.parse().ok()).collect();
            let Some((cidr, _pool)) = pools
                .iter()
                .find_map(|pool| next_free_block(pool, &taken, node).map(|cidr| (cidr, pool)))
            else {
                return Ok(None);
            };
            let affinity = BlockAffinity::new(
                &affinity_name(node, &cidr),
                BlockAffinitySpec {
                    node: node.to_owned(),
                    cidr: cidr.to_string(),
                    state: AffinityState::Pending,
                    deleted: false,
                },
            );
            let pending = match self.store.create_as(&affinity).await {
                Ok(created) => created,
                Err(StoreError::AlreadyExists { .. }) => {
                    match self
                        .store
                        .get_as::<BlockAffinity>(None, &affinity_name(node, &cidr))
                        .await?
                    {
                        Some(existing) => existing,
                        None => {
                            backoff.wait("a block affinity").await?;
                            continue;
                        }
                    }
                }
                Err(error) => return Err(error.into()),
            };
            let block = Block::new(cidr, Some(node.to_owned()), config.strict_affinity)?;
            match self
                .store
                .create_as(&IPAMBlock::new(&block_name(&cidr), block.into_spec()))
                .await
            {
                Ok(_) => {
                    self.set_affinity_state(&pending, AffinityState::Confirmed).await?;
                    tracing::info!(%node, block = %cidr, "claimed block");
                    return Ok(Some(cidr));
                }
                Err(StoreError::AlreadyExists { .. })
                    if self
                        .store
                        .get_as::<IPAMBlock>(None, &block_name(&cidr))
                        .await?
                        .is_some_and(|b| b.spec.affinity.as_deref() == Some(node)) =>
                {
                    // Our own claim, left unconfirmed by a run that died: finish it.
                    self.set_affinity_state(&pending, AffinityState::Confirmed).await?;
                    return Ok(Some(cidr));
                }
                Err(StoreError::AlreadyExists { .. }) => {
                    // Another node won this block: drop our claim and look again.
                    let _ = self
                        .store
                        .delete(
                            &weft_api::Key::new(
                                &weft_api::Kind::of::<BlockAffinity>(),
                                None,
                                &affinity_name(node, &cidr),
                            ),
                            None,
                        )
                        .await;
                    backoff.wait("claiming a block").await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Allocates up to `count` addresses in one block (its handle listed first).
    async fn allocate_in(
        &self,
        cidr: &IpNet,
        count: usize,
        request: &Request,
        config: &IPAMConfigSpec,
        attributes: &BTreeMap<String, String>,
        borrowing: bool,
    ) -> Result<Vec<Assigned>, IpamError> {
        self.list_block_in_handle(&request.handle, cidr).await?;
        let reserved = reserved_set(config);
        let is_reserved = |address: IpAddr| {
            reserved.iter().any(|net| net.contains(&address))
                || (request.reserve_gateway && is_block_infrastructure(cidr, address))
        };
        let mut backoff = Backoff::new(self.attempts);
        loop {
            let Some(stored) = self.store.get_as::<IPAMBlock>(None, &block_name(cidr)).await? else {
                return Ok(Vec::new());
            };
            if borrowing && stored.spec.strict_affinity {
                return Ok(Vec::new());
            }
            let mut block = Block::from_spec(stored.spec.clone())?;
            let addresses = block.allocate(
                count,
                &request.handle,
                attributes,
                self.now(),
                u64::from(config.reuse_cooldown_seconds),
                &is_reserved,
            );
            if addresses.is_empty() {
                return Ok(Vec::new());
            }
            let mut updated = stored;
            updated.spec = block.into_spec();
            match self.store.update_as(&updated).await {
                Ok(_) => {
                    return Ok(addresses
                        .into_iter()
                        .map(|address| Assigned { address, block: *cidr })
                        .collect());
                }
                Err(StoreError::Conflict { .. }) => backoff.wait(&format!("block {cidr}")).await?,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Makes sure `handle`'s object lists `block` (creating the handle if needed).
    async fn list_block_in_handle(&self, handle: &str, block: &IpNet) -> Result<(), IpamError> {
        let name = handle_name(handle);
        let mut backoff = Backoff::new(self.attempts);
        loop {
            let result = match self.store.get_as::<IPAMHandle>(None, &name).await? {
                Some(stored) if stored.spec.block.contains_key(&block.to_string()) => return Ok(()),
                Some(mut stored) => {
                    stored.spec.block.insert(block.to_string(), 1);
                    self.store.update_as(&stored).await.map(|_| ())
                }
                None => {
                    let spec = IPAMHandleSpec {
                        handle_id: handle.to_owned(),
                        block: BTreeMap::from([(block.to_string(), 1)]),
                        deleted: false,
                    };
                    self.store.create_as(&IPAMHandle::new(&name, spec)).await.map(|_| ())
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(error) if error.is_conflict() => backoff.wait(&format!("handle {handle}")).await?,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Releases everything `handle` holds and removes the handle. Idempotent: a handle that
    /// is gone releases nothing and succeeds.
    pub async fn release_handle(&self, handle: &str) -> Result<Vec<IpAddr>, IpamError> {
        self.release_handle_with(handle, &[]).await
    }

    /// [`Allocator::release_handle`], also deleting the objects at `also_delete` that exist
    /// (the attachment's endpoint record): the blocks, the handle and those objects are written
    /// in one transaction (one commit on the file store and etcd), re-read and retried as a
    /// whole when another writer came first.
    pub async fn release_handle_with(&self, handle: &str, also_delete: &[Key]) -> Result<Vec<IpAddr>, IpamError> {
        let name = handle_name(handle);
        let mut backoff = Backoff::new(self.attempts);
        loop {
            let Some(stored) = self.store.get_as::<IPAMHandle>(None, &name).await? else {
                // No handle object (a GC removed it while an allocation was in flight, or it
                // was never written): look for the handle's addresses anyway.
                let released = self.release_orphans(handle).await?;
                self.delete_existing(also_delete).await?;
                return Ok(released);
            };
            let mut writes = Vec::new();
            let mut released = Vec::new();
            for cidr in stored.spec.block.keys() {
                let Ok(cidr) = cidr.parse::<IpNet>() else { continue };
                let Some(mut block) = self.store.get_as::<IPAMBlock>(None, &block_name(&cidr)).await? else {
                    continue;
                };
                let mut allocations = Block::from_spec(block.spec.clone())?;
                let freed = allocations.release_handle(handle, self.now());
                if !freed.is_empty() {
                    block.spec = allocations.into_spec();
                    writes.push(Write::update_of(&block)?);
                    released.extend(freed);
                }
            }
            writes.push(Write::delete_of(&stored)?);
            for key in also_delete {
                if let Some(object) = self.store.get(key).await? {
                    writes.push(Write::Delete {
                        key: key.clone(),
                        expected: Some(object.revision),
                    });
                }
            }
            match self.store.transact(writes).await {
                Ok(_) => return Ok(released),
                // Something changed meanwhile (a concurrent ADD gave the handle a block, a GC
                // removed the handle): read again.
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                    backoff.wait(&format!("handle {handle}")).await?
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Deletes the objects at `keys` that exist; one gone meanwhile is fine.
    async fn delete_existing(&self, keys: &[Key]) -> Result<(), IpamError> {
        for key in keys {
            match self.store.delete(key, None).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Releases `handle`'s addresses found in any block (no handle object to say where).
    async fn release_orphans(&self, handle: &str) -> Result<Vec<IpAddr>, IpamError> {
        let (blocks, _) = self.store.list_as::<IPAMBlock>(None).await?;
        let mut released = Vec::new();
        for stored in blocks {
            let holds = stored
                .spec
                .attributes
                .iter()
                .any(|a| a.handle_id.as_deref() == Some(handle));
            if let (true, Ok(cidr)) = (holds, stored.spec.cidr.parse::<IpNet>()) {
                released.extend(
                    self.release_in_block(&cidr, |block, now| block.release_handle(handle, now))
                        .await?,
                );
            }
        }
        Ok(released)
    }

    /// Releases one address; with `sequence`, only if it is still that allocation (the GC's
    /// guard against freeing an address released and handed out again meanwhile).
    pub async fn release_address(&self, address: IpAddr, sequence: Option<u64>) -> Result<bool, IpamError> {
        let (blocks, _) = self.store.list_as::<IPAMBlock>(None).await?;
        let Some(cidr) = blocks
            .iter()
            .filter_map(|b| b.spec.cidr.parse::<IpNet>().ok())
            .find(|cidr| cidr.contains(&address))
        else {
            return Ok(false);
        };
        let released = self
            .release_in_block(&cidr, |block, now| {
                if block.release_address(address, sequence, now) {
                    vec![address]
                } else {
                    Vec::new()
                }
            })
            .await?;
        Ok(!released.is_empty())
    }

    /// Applies a release to one block by compare-and-swap.
    async fn release_in_block(
        &self,
        cidr: &IpNet,
        release: impl Fn(&mut Block, u64) -> Vec<IpAddr>,
    ) -> Result<Vec<IpAddr>, IpamError> {
        let mut backoff = Backoff::new(self.attempts);
        loop {
            let Some(stored) = self.store.get_as::<IPAMBlock>(None, &block_name(cidr)).await? else {
                return Ok(Vec::new());
            };
            let mut block = Block::from_spec(stored.spec.clone())?;
            let released = release(&mut block, self.now());
            if released.is_empty() {
                return Ok(released);
            }
            let mut updated = stored;
            updated.spec = block.into_spec();
            match self.store.update_as(&updated).await {
                Ok(_) => return Ok(released),
                Err(StoreError::Conflict { .. }) => backoff.wait(&format!("block {cidr}")).await?,
                Err(error) => return Err(error.into()),
            }
        }
    }
}

fn reserved_set(config: &IPAMConfigSpec) -> Vec<IpNet> {
    config
        .reserved_cidrs
        .iter()
        .filter_map(|cidr| cidr.parse().ok())
        .collect()
}

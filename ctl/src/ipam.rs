//! `weftctl ipam`: pools, blocks, allocations, consistency checks, release and GC.
//!
//! `show --json` prints an object with at least `pools`, `blocks` (each with `cidr` and
//! `affinity`) and `allocations` (each with `address` and `handle`): a stable contract.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use ipnet::IpNet;
use serde::Serialize;
use weft_api::resources::{AllowedUse, BlockAffinity, IPAMBlock, IPAMHandle, IPPool, IPPoolSpec};
use weft_api::{Key, Kind, StoreExt};
use weft_ipam::Allocator;
use weft_ipam::block::{Block, block_size};
use weft_ipam::gc::{GcOptions, collect};

#[derive(Debug, Subcommand)]
pub enum IpamCommand {
    /// Manage pools.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Pools, blocks with their affinity and use, every allocation, use per node.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Look for inconsistencies and leaks; exits non-zero when something is wrong.
    Check {
        #[arg(long)]
        json: bool,
        /// Allocations younger than this are not called leaks.
        #[arg(long, default_value_t = 300)]
        grace: u64,
    },
    /// Release what a handle holds, or one address.
    Release(ReleaseArgs),
    /// Release allocations whose owner is gone, handles that hold nothing, spare empty blocks.
    Gc {
        /// Leave allocations younger than this many seconds alone.
        #[arg(long, default_value_t = 300)]
        grace: u64,
        /// Only report what would be released.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Add a pool.
    Add(PoolAddArgs),
    /// Remove a pool (refused while it has blocks, unless --force).
    Delete {
        /// The pool's name or CIDR.
        pool: String,
    },
}

#[derive(Debug, Args)]
pub struct PoolAddArgs {
    /// The pool's range (`198.18.0.0/16`, `2001:db8:100::/56`).
    cidr: IpNet,
    /// Its name (default: derived from the CIDR).
    #[arg(long)]
    name: Option<String>,
    /// Prefix length of its blocks (default 26 for IPv4, 122 for IPv6).
    #[arg(long)]
    block_size: Option<u8>,
    #[arg(long)]
    disabled: bool,
    #[arg(long)]
    nat_outgoing: bool,
    /// Which nodes may use it (Calico selector syntax, e.g. `rack == 'r1'`).
    #[arg(long, default_value = "")]
    node_selector: String,
    #[arg(long, value_enum, default_value_t = Use::Workload)]
    allowed_use: Use,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Use {
    Workload,
    LoadBalancer,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ReleaseArgs {
    /// Everything this handle holds (`network.containerid.ifname`).
    #[arg(long)]
    handle: Option<String>,
    /// One address.
    #[arg(long)]
    address: Option<IpAddr>,
}

#[derive(Serialize)]
struct PoolView {
    name: String,
    cidr: String,
    #[serde(rename = "blockSize")]
    block_size: Option<u8>,
    disabled: bool,
    #[serde(rename = "natOutgoing")]
    nat_outgoing: bool,
    #[serde(rename = "nodeSelector")]
    node_selector: String,
    blocks: usize,
    used: usize,
}

#[derive(Serialize)]
struct BlockView {
    cidr: String,
    affinity: Option<String>,
    size: u32,
    used: usize,
}

#[derive(Serialize)]
struct AllocationView {
    address: IpAddr,
    handle: String,
    block: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attributes: BTreeMap<String, String>,
}

#[derive(Serialize, Default)]
struct NodeView {
    blocks: usize,
    capacity: u64,
    used: usize,
}

#[derive(Serialize)]
struct Show {
    pools: Vec<PoolView>,
    blocks: Vec<BlockView>,
    allocations: Vec<AllocationView>,
    nodes: BTreeMap<String, NodeView>,
}

pub async fn run(setting: &str, command: IpamCommand) -> anyhow::Result<()> {
    let store = weft_api::store::open(setting).await?;
    let allocator = Allocator::new(store.clone());
    match command {
        IpamCommand::Pool(PoolCommand::Add(args)) => pool_add(store.as_ref(), args).await,
        IpamCommand::Pool(PoolCommand::Delete { pool }) => pool_delete(store.as_ref(), &pool).await,
        IpamCommand::Show { json } => show(store.as_ref(), json).await,
        IpamCommand::Check { json, grace } => check(&allocator, json, grace).await,
        IpamCommand::Release(args) => {
            if let Some(handle) = args.handle {
                let released = allocator.release_handle(&handle).await?;
                println!("released {} address(es) of {handle}: {released:?}", released.len());
            } else if let Some(address) = args.address {
                if !allocator.release_address(address, None).await? {
                    bail!("{address} is not allocated");
                }
                println!("released {address}");
            }
            Ok(())
        }
        IpamCommand::Gc { grace, dry_run, json } => {
            let options = GcOptions {
                grace_seconds: grace,
                dry_run,
            };
            let report = collect(&allocator, options, weft_ipam::allocator::unix_now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for leak in &report.leaks {
                    println!("leak: {} held by {} ({})", leak.address, leak.handle, leak.reason);
                }
                println!(
                    "{} leak(s){}; released {} address(es), {} handle(s), {} block(s)",
                    report.leaks.len(),
                    if dry_run { " (dry run)" } else { "" },
                    report.released.len(),
                    report.handles_removed.len(),
                    report.blocks_released.len()
                );
            }
            Ok(())
        }
    }
}

async fn pool_add(store: &dyn weft_api::Store, args: PoolAddArgs) -> anyhow::Result<()> {
    let name = args
        .name
        .unwrap_or_else(|| format!("pool-{}", weft_ipam::names::block_name(&args.cidr)));
    let spec = IPPoolSpec {
        cidr: args.cidr.to_string(),
        block_size: args.block_size,
        disabled: args.disabled,
        node_selector: args.node_selector,
        nat_outgoing: args.nat_outgoing,
        disable_bgp_export: false,
        allowed_uses: vec![match args.allowed_use {
            Use::Workload => AllowedUse::Workload,
            Use::LoadBalancer => AllowedUse::LoadBalancer,
        }],
    };
    spec.validate().map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let (pools, _) = store.list_as::<IPPool>(None).await?;
    for pool in &pools {
        if let Ok(other) = pool.spec.cidr.parse::<IpNet>()
            && (other.contains(&args.cidr.network()) || args.cidr.contains(&other.network()))
        {
            bail!(
                "{} overlaps pool {} ({other})",
                args.cidr,
                pool.metadata.name.as_deref().unwrap_or("?")
            );
        }
    }
    store
        .create_as(&IPPool::new(&name, spec))
        .await
        .with_context(|| format!("adding pool {name}"))?;
    println!("ippools/{name} created");
    Ok(())
}

async fn pool_delete(store: &dyn weft_api::Store, pool: &str) -> anyhow::Result<()> {
    let (pools, _) = store.list_as::<IPPool>(None).await?;
    let found = pools
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(pool) || p.spec.cidr == pool)
        .with_context(|| format!("no pool named {pool}"))?;
    let cidr: IpNet = found.spec.cidr.parse()?;
    let (blocks, _) = store.list_as::<IPAMBlock>(None).await?;
    if let Some(block) = blocks
        .iter()
        .find(|b| b.spec.cidr.parse::<IpNet>().is_ok_and(|c| cidr.contains(&c)))
    {
        bail!(
            "pool {pool} still has block {}: disable the pool and let its addresses be released first",
            block.spec.cidr
        );
    }
    let name = found.metadata.name.clone().unwrap_or_default();
    store
        .delete(&Key::new(&Kind::of::<IPPool>(), None, &name), None)
        .await?;
    println!("ippools/{name} deleted");
    Ok(())
}

async fn show(store: &dyn weft_api::Store, json: bool) -> anyhow::Result<()> {
    let (pools, _) = store.list_as::<IPPool>(None).await?;
    let (stored_blocks, _) = store.list_as::<IPAMBlock>(None).await?;
    let mut blocks = Vec::new();
    let mut allocations = Vec::new();
    let mut nodes: BTreeMap<String, NodeView> = BTreeMap::new();
    let mut parsed = Vec::new();
    for stored in stored_blocks {
        let block = Block::from_spec(stored.spec.clone())?;
        let held = block.held();
        if let Some(node) = block.affinity() {
            let view = nodes.entry(node.to_owned()).or_default();
            view.blocks += 1;
            view.capacity += u64::from(block.size());
            view.used += held.len();
        }
        blocks.push(BlockView {
            cidr: block.cidr().to_string(),
            affinity: block.affinity().map(str::to_owned),
            size: block.size(),
            used: held.len(),
        });
        allocations.extend(held.into_iter().map(|h| AllocationView {
            address: h.address,
            handle: h.handle,
            block: block.cidr().to_string(),
            attributes: h.attributes,
        }));
        parsed.push(block);
    }
    let pools: Vec<PoolView> = pools
        .iter()
        .map(|pool| {
            let cidr = pool.spec.cidr.parse::<IpNet>().ok();
            let inside: Vec<&Block> = parsed
                .iter()
                .filter(|b| cidr.is_some_and(|c| c.contains(&b.cidr())))
                .collect();
            PoolView {
                name: pool.metadata.name.clone().unwrap_or_default(),
                cidr: pool.spec.cidr.clone(),
                block_size: pool.spec.effective_block_size(),
                disabled: pool.spec.disabled,
                nat_outgoing: pool.spec.nat_outgoing,
                node_selector: pool.spec.node_selector.clone(),
                blocks: inside.len(),
                used: inside.iter().map(|b| b.held().len()).sum(),
            }
        })
        .collect();
    let show = Show {
        pools,
        blocks,
        allocations,
        nodes,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&show)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<22} {:>6} {:>7} {:>6}  STATE",
        "POOL", "CIDR", "BLOCK", "BLOCKS", "USED"
    );
    for pool in &show.pools {
        println!(
            "{:<24} {:<22} {:>6} {:>7} {:>6}  {}",
            pool.name,
            pool.cidr,
            pool.block_size.map(|b| format!("/{b}")).unwrap_or_default(),
            pool.blocks,
            pool.used,
            if pool.disabled { "disabled" } else { "enabled" }
        );
    }
    println!();
    println!("{:<24} {:<20} {:>9}", "BLOCK", "AFFINITY", "USED");
    for block in &show.blocks {
        println!(
            "{:<24} {:<20} {:>4}/{:<4}",
            block.cidr,
            block.affinity.as_deref().unwrap_or("-"),
            block.used,
            block.size
        );
    }
    println!();
    println!("{:<20} {:>7} {:>9} {:>6}", "NODE", "BLOCKS", "CAPACITY", "USED");
    for (node, view) in &show.nodes {
        println!("{:<20} {:>7} {:>9} {:>6}", node, view.blocks, view.capacity, view.used);
    }
    println!();
    println!("{} allocation(s)", show.allocations.len());
    for allocation in &show.allocations {
        println!("  {:<40} {}", allocation.address, allocation.handle);
    }
    Ok(())
}

#[derive(Serialize)]
struct CheckReport {
    problems: Vec<String>,
    leaks: Vec<weft_ipam::gc::Leak>,
    blocks: usize,
    allocations: usize,
}

/// Looks for everything that must never happen (an address held twice, overlapping or
/// inconsistent blocks, allocations without a handle, affinities contradicting their block)
/// and for leaks.
async fn check(allocator: &Allocator, json: bool, grace: u64) -> anyhow::Result<()> {
    let store = allocator.store();
    let (pools, _) = store.list_as::<IPPool>(None).await?;
    let (stored_blocks, _) = store.list_as::<IPAMBlock>(None).await?;
    let (handles, _) = store.list_as::<IPAMHandle>(None).await?;
    let (affinities, _) = store.list_as::<BlockAffinity>(None).await?;
    let mut problems = Vec::new();
    let mut blocks: Vec<Block> = Vec::new();
    for stored in stored_blocks {
        match Block::from_spec(stored.spec) {
            Ok(block) => blocks.push(block),
            Err(error) => problems.push(error.to_string()),
        }
    }
    for (i, a) in blocks.iter().enumerate() {
        for b in &blocks[i + 1..] {
            if a.cidr().contains(&b.cidr().network()) || b.cidr().contains(&a.cidr().network()) {
                problems.push(format!("blocks {} and {} overlap", a.cidr(), b.cidr()));
            }
        }
        let in_pool = pools
            .iter()
            .any(|p| p.spec.cidr.parse::<IpNet>().is_ok_and(|c| c.contains(&a.cidr())));
        if !in_pool {
            problems.push(format!("block {} is in no pool", a.cidr()));
        }
        if block_size(&a.cidr()).is_none() {
            problems.push(format!("block {} is too large", a.cidr()));
        }
    }
    let mut holders: BTreeMap<IpAddr, String> = BTreeMap::new();
    let handle_ids: std::collections::BTreeSet<&str> = handles.iter().map(|h| h.spec.handle_id.as_str()).collect();
    let mut allocations = 0;
    for block in &blocks {
        for held in block.held() {
            allocations += 1;
            if let Some(other) = holders.insert(held.address, held.handle.clone()) {
                problems.push(format!(
                    "{} is held twice: by {other} and by {}",
                    held.address, held.handle
                ));
            }
            if !handle_ids.contains(held.handle.as_str()) {
                problems.push(format!(
                    "{} is held by {}, which has no handle object",
                    held.address, held.handle
                ));
            }
        }
    }
    for affinity in &affinities {
        if affinity.spec.state != weft_api::resources::AffinityState::Confirmed {
            continue;
        }
        let owner = blocks
            .iter()
            .find(|b| b.cidr().to_string() == affinity.spec.cidr)
            .map(|b| b.affinity().map(str::to_owned));
        match owner {
            None => problems.push(format!(
                "node {} has a confirmed affinity for {}, which does not exist",
                affinity.spec.node, affinity.spec.cidr
            )),
            Some(owner) if owner.as_deref() != Some(affinity.spec.node.as_str()) => problems.push(format!(
                "node {} has a confirmed affinity for {}, whose affinity is {}",
                affinity.spec.node,
                affinity.spec.cidr,
                owner.unwrap_or_else(|| "nobody".into())
            )),
            Some(_) => {}
        }
    }
    let options = GcOptions {
        grace_seconds: grace,
        dry_run: true,
    };
    let leaks = collect(allocator, options, weft_ipam::allocator::unix_now())
        .await?
        .leaks;
    let report = CheckReport {
        problems,
        leaks,
        blocks: blocks.len(),
        allocations,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} block(s), {} allocation(s)", report.blocks, report.allocations);
        for problem in &report.problems {
            println!("problem: {problem}");
        }
        for leak in &report.leaks {
            println!("leak: {} held by {} ({})", leak.address, leak.handle, leak.reason);
        }
        if report.problems.is_empty() && report.leaks.is_empty() {
            println!("no problems, no leaks");
        }
    }
    if !report.problems.is_empty() {
        bail!("{} problem(s) found", report.problems.len());
    }
    Ok(())
}

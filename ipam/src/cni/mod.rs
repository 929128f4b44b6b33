//! `weft-ipam`, the CNI IPAM plugin (spec 1.1.0, 1.0.0, 0.4.0, 0.3.1) on weft's allocator, so
//! any CNI plugin can take pod addresses from weft's pools.
//!
//! - ADD: allocates for the handle `network.containerid.ifname` (a repeated ADD returns what
//!   the handle holds) and returns the addresses (see [`config`] for the gateway modes).
//! - DEL: releases everything the handle holds; succeeds when it holds nothing.
//! - CHECK: the handle still holds every address of `prevResult`.
//! - STATUS: the store answers and a pool selects this node.
//! - GC: releases the network's attachments missing from `cni.dev/valid-attachments`.
//!
//! Allocations on one host are serialised by a file lock (`lock_file`), so many pods starting
//! at once on one node queue briefly instead of racing for the same block. Errors are CNI error
//! objects: 7 for a wrong configuration, 11 when the store is unreachable or contended (try
//! again), 100 pools exhausted, 101 block cap reached, 5 for a damaged store.

pub mod config;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use nix::fcntl::{Flock, FlockArg};
use rscni_plugin::error::Error as CniError;
use rscni_plugin::types::{Args, CNIResult, IpConfig, Route};
use weft_api::resources::{AllowedUse, IPAMBlock, IPPool};
use weft_api::{Store, StoreError, StoreExt};

use self::config::{ConfigError, GatewayMode, IpamConfig, PodRef, parse_cni_args};
use crate::allocator::{Allocator, Request, block_gateway};
use crate::block::Block;
use crate::error::IpamError;
use crate::gc::{ATTRIBUTE_CONTAINER, ATTRIBUTE_NAMESPACE, ATTRIBUTE_POD};
use crate::pools::{Family, select_pools};

/// Pod and namespace annotations naming the pools to use (JSON lists of CIDRs or pool names).
pub const ANNOTATION_IPV4_POOLS: &str = "weft.io/ipv4pools";
pub const ANNOTATION_IPV6_POOLS: &str = "weft.io/ipv6pools";
/// The allocation attribute naming the pod's interface.
pub const ATTRIBUTE_IFNAME: &str = "ifname";

/// Codes of weft-ipam's own errors (the spec leaves 100 and up to plugins).
pub const CODE_POOLS_EXHAUSTED: u32 = 100;
pub const CODE_BLOCK_CAP: u32 = 101;

/// The plugin. It keeps nothing between calls: each reads its configuration and the store.
#[derive(Debug, Default)]
pub struct WeftIpam;

fn config_error(error: ConfigError) -> CniError {
    CniError::InvalidNetworkConfig(error.to_string())
}

/// Maps an IPAM failure to the CNI error a runtime and a person can act on.
pub fn cni_error(error: IpamError) -> CniError {
    let message = error.to_string();
    match error {
        IpamError::Exhausted { .. } => CniError::Custom(CODE_POOLS_EXHAUSTED, "pools exhausted".into(), message),
        IpamError::BlockCapReached { .. } => CniError::Custom(CODE_BLOCK_CAP, "block cap reached".into(), message),
        IpamError::NoPool { .. }
        | IpamError::UnknownPool { .. }
        | IpamError::PoolNotUsable { .. }
        | IpamError::InvalidRequest { .. } => CniError::InvalidNetworkConfig(message),
        IpamError::Contention { .. } => CniError::TryAgainLater(message),
        IpamError::Store(StoreError::Unreachable { .. }) => CniError::TryAgainLater(message),
        IpamError::CorruptBlock(_) | IpamError::Store(_) => CniError::IOFailure(message),
    }
}

fn store_error(error: StoreError) -> CniError {
    cni_error(IpamError::Store(error))
}

/// What one call needs: the parsed configuration, the store and the host lock.
struct Call {
    config: IpamConfig,
    network: String,
    allocator: Allocator,
    _lock: Flock<File>,
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

impl Call {
    async fn open(args: &Args) -> Result<Call, CniError> {
        let netconf = args.config();
        let ipam = netconf
            .ipam
            .as_ref()
            .ok_or_else(|| CniError::InvalidNetworkConfig("the configuration has no \"ipam\" section".into()))?;
        let config = IpamConfig::parse(&ipam.custom).map_err(config_error)?;
        log_to_file(config.log_file.as_deref(), &config.log_level);
        let lock = lock_host(&config.lock_file)?;
        let store: Arc<dyn Store> = weft_api::store::open(&config.store).await.map_err(store_error)?;
        Ok(Call {
            network: netconf.name.clone(),
            allocator: Allocator::new(store),
            config,
            _lock: lock,
        })
    }

    fn node(&self) -> String {
        self.config.nodename.clone().unwrap_or_else(hostname)
    }

    fn handle(&self, args: &Args) -> Result<String, CniError> {
        let container = args
            .container_id()
            .ok_or_else(|| CniError::missing_env(&["CNI_CONTAINERID"]))?;
        let ifname = args.ifname().ok_or_else(|| CniError::missing_env(&["CNI_IFNAME"]))?;
        Ok(format!("{}.{}.{}", self.network, container.as_ref(), ifname.as_ref()))
    }

    /// Pools from the pod's annotation, else its namespace's, else the configuration.
    async fn pools(&self, pod: &PodRef) -> Result<Vec<IpNet>, CniError> {
        let store = self.allocator.store();
        let mut annotations: Vec<BTreeMap<String, String>> = Vec::new();
        if let Some(namespace) = &pod.namespace {
            if let Some(name) = &pod.name
                && let Some(pod) = store.get_as::<Pod>(Some(namespace), name).await.map_err(store_error)?
            {
                annotations.push(pod.metadata.annotations.unwrap_or_default());
            }
            if let Some(ns) = store.get_as::<Namespace>(None, namespace).await.map_err(store_error)? {
                annotations.push(ns.metadata.annotations.unwrap_or_default());
            }
        }
        if annotations
            .iter()
            .all(|a| !a.contains_key(ANNOTATION_IPV4_POOLS) && !a.contains_key(ANNOTATION_IPV6_POOLS))
        {
            return Ok(self.config.pools.clone());
        }
        let (pools, _) = store.list_as::<IPPool>(None).await.map_err(store_error)?;
        for source in annotations {
            let mut chosen = Vec::new();
            for key in [ANNOTATION_IPV4_POOLS, ANNOTATION_IPV6_POOLS] {
                if let Some(text) = source.get(key) {
                    chosen.extend(resolve_pool_list(key, text, &pools)?);
                }
            }
            if !chosen.is_empty() {
                return Ok(chosen);
            }
        }
        Ok(self.config.pools.clone())
    }
}

/// Parses an annotation's JSON list of CIDRs or pool names.
fn resolve_pool_list(key: &str, text: &str, pools: &[IPPool]) -> Result<Vec<IpNet>, CniError> {
    let names: Vec<String> = serde_json::from_str(text).map_err(|_| {
        CniError::InvalidNetworkConfig(format!(
            "annotation {key} must be a JSON list like [\"198.18.0.0/16\"], not {text}"
        ))
    })?;
    names
        .iter()
        .map(|name| {
            if let Ok(cidr) = name.parse::<IpNet>() {
                return Ok(cidr);
            }
            pools
                .iter()
                .find(|pool| pool.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|pool| pool.spec.cidr.parse().ok())
                .ok_or_else(|| {
                    CniError::InvalidNetworkConfig(format!("annotation {key} names pool {name}, which does not exist"))
                })
        })
        .collect()
}

/// Sends this process's logs to `path` at `level`, if a path is given: a CNI plugin's stdout
/// carries its result, so logs never go there. Shared by weft-ipam and weft-cni.
pub fn log_to_file(path: Option<&Path>, level: &str) {
    let Some(path) = path else { return };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let Ok(file) = OpenOptions::new().create(true).append(true).open(path) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .try_init();
}

/// Serialises IPAM work on this host (weft-ipam and weft-cni take the same lock): an exclusive
/// flock on `path`, held until the returned guard is dropped (or the process dies).
pub fn lock_host(path: &Path) -> Result<Flock<File>, CniError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CniError::IOFailure(format!("cannot create {}: {e}", dir.display())))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| CniError::IOFailure(format!("cannot open lock file {}: {e}", path.display())))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| CniError::IOFailure(format!("cannot lock {}: {errno}", path.display())))
}

fn result_of(config: &IpamConfig, assigned: &[crate::Assigned]) -> CNIResult {
    let ips = assigned
        .iter()
        .map(|a| match config.gateway {
            GatewayMode::Block => IpConfig {
                interface: None,
                address: IpNet::new(a.address, a.block.prefix_len()).unwrap_or_else(|_| IpNet::from(a.address)),
                gateway: Some(block_gateway(&a.block)),
            },
            GatewayMode::None => IpConfig {
                interface: None,
                address: IpNet::from(a.address),
                gateway: None,
            },
        })
        .collect();
    let routes = config
        .routes
        .iter()
        .map(|(dst, gw)| Route {
            dst: *dst,
            gw: *gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        })
        .collect();
    CNIResult {
        interfaces: Vec::new(),
        ips,
        routes,
        dns: None,
    }
}

/// STATUS of weft-ipam and weft-cni: the store answers and, for each family wanted, a pool
/// selects `node` (else code 50, naming why).
pub async fn pools_usable(
    store: &dyn Store,
    node: &str,
    requested: &[IpNet],
    ipv4: bool,
    ipv6: bool,
) -> Result<(), CniError> {
    let (pools, _) = store
        .list_as::<IPPool>(None)
        .await
        .map_err(|error| CniError::PluginNotAvailable(error.to_string()))?;
    for (family, wanted) in [(Family::V4, ipv4), (Family::V6, ipv6)] {
        if wanted {
            select_pools(&pools, family, node, &BTreeMap::new(), requested, AllowedUse::Workload)
                .map_err(|error| CniError::PluginNotAvailable(error.to_string()))?;
        }
    }
    Ok(())
}

/// The `(container id, interface)` pairs a GC call names as still in use.
pub fn valid_attachments(args: &Args) -> BTreeSet<(String, String)> {
    args.config()
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect()
}

/// GC of weft-ipam and weft-cni: the handles of `network` whose attachment (container id,
/// interface, from the allocation's attributes) is missing from `cni.dev/valid-attachments`.
pub async fn stale_attachments(
    store: &dyn Store,
    network: &str,
    args: &Args,
) -> Result<BTreeMap<String, (String, String)>, CniError> {
    let valid = valid_attachments(args);
    let prefix = format!("{network}.");
    let (blocks, _) = store.list_as::<IPAMBlock>(None).await.map_err(store_error)?;
    let mut stale = BTreeMap::new();
    for stored in blocks {
        let block = Block::from_spec(stored.spec).map_err(|e| cni_error(e.into()))?;
        for held in block.held().into_iter().filter(|h| h.handle.starts_with(&prefix)) {
            let attachment = (
                held.attributes.get(ATTRIBUTE_CONTAINER).cloned().unwrap_or_default(),
                held.attributes.get(ATTRIBUTE_IFNAME).cloned().unwrap_or_default(),
            );
            if !valid.contains(&attachment) {
                stale.insert(held.handle, attachment);
            }
        }
    }
    Ok(stale)
}

#[async_trait::async_trait]
impl rscni_plugin::async_cni::Cni for WeftIpam {
    async fn add(&self, args: Args) -> Result<CNIResult, CniError> {
        let call = Call::open(&args).await?;
        let handle = call.handle(&args)?;
        let pod = parse_cni_args(args.args());
        let pools = call.pools(&pod).await?;
        let (ipv4, ipv6) = if pools.is_empty() {
            (call.config.assign_ipv4, call.config.assign_ipv6)
        } else {
            (
                pools.iter().any(|p| p.addr().is_ipv4()),
                pools.iter().any(|p| p.addr().is_ipv6()),
            )
        };
        let mut attributes = BTreeMap::new();
        if let Some(container) = args.container_id() {
            attributes.insert(ATTRIBUTE_CONTAINER.to_owned(), container.as_ref().to_owned());
        }
        if let Some(ifname) = args.ifname() {
            attributes.insert(ATTRIBUTE_IFNAME.to_owned(), ifname.as_ref().to_owned());
        }
        if let (Some(namespace), Some(name)) = (&pod.namespace, &pod.name) {
            attributes.insert(ATTRIBUTE_NAMESPACE.to_owned(), namespace.clone());
            attributes.insert(ATTRIBUTE_POD.to_owned(), name.clone());
        }
        let request = Request {
            node: call.node(),
            handle: handle.clone(),
            ipv4: usize::from(ipv4),
            ipv6: usize::from(ipv6),
            pools,
            attributes,
            allowed_use: AllowedUse::Workload,
            reserve_gateway: call.config.gateway == GatewayMode::Block,
        };
        let assigned = call.allocator.allocate(&request).await.map_err(cni_error)?;
        tracing::info!(%handle, addresses = ?assigned.iter().map(|a| a.address).collect::<Vec<_>>(), "allocated");
        Ok(result_of(&call.config, &assigned))
    }

    async fn del(&self, args: Args) -> Result<(), CniError> {
        let call = Call::open(&args).await?;
        let handle = call.handle(&args)?;
        let released = call.allocator.release_handle(&handle).await.map_err(cni_error)?;
        tracing::info!(%handle, ?released, "released");
        Ok(())
    }

    async fn check(&self, args: Args) -> Result<(), CniError> {
        let call = Call::open(&args).await?;
        let handle = call.handle(&args)?;
        let held: BTreeSet<IpAddr> = call
            .allocator
            .addresses_of(&handle)
            .await
            .map_err(cni_error)?
            .into_iter()
            .map(|a| a.address)
            .collect();
        if held.is_empty() {
            return Err(CniError::Custom(
                102,
                "no allocation".into(),
                format!("handle {handle} holds no address"),
            ));
        }
        if let Some(previous) = &args.config().prev_result {
            for ip in &previous.ips {
                if !held.contains(&ip.address.addr()) {
                    return Err(CniError::Custom(
                        102,
                        "address not held".into(),
                        format!("{} of the previous result is not held by {handle}", ip.address),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn status(&self, args: Args) -> Result<(), CniError> {
        let call = Call::open(&args)
            .await
            .map_err(|error| CniError::PluginNotAvailable(error.to_string()))?;
        pools_usable(
            call.allocator.store().as_ref(),
            &call.node(),
            &call.config.pools,
            call.config.assign_ipv4,
            call.config.assign_ipv6,
        )
        .await
    }

    async fn gc(&self, args: Args) -> Result<(), CniError> {
        let call = Call::open(&args).await?;
        let stale = stale_attachments(call.allocator.store().as_ref(), &call.network, &args).await?;
        let mut failures = Vec::new();
        for handle in stale.into_keys() {
            match call.allocator.release_handle(&handle).await {
                Ok(released) => tracing::info!(%handle, ?released, "released by CNI GC"),
                Err(error) => failures.push(format!("{handle}: {error}")),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CniError::IOFailure(format!(
                "could not release: {}",
                failures.join("; ")
            )))
        }
    }
}

/// The `main` of a weft CNI plugin binary (`weft-cni`, `weft-ipam`): refuses to run without
/// `CNI_COMMAND` (after clap has answered `--help`/`--version`), then serves one call with
/// spec versions 0.3.1 to 1.1.0 on a current-thread runtime. `about` is what VERSION reports
/// as the plugin's message (name and version).
pub fn run_plugin<T: rscni_plugin::async_cni::Cni>(name: &str, about: &str, plugin: &T) -> std::process::ExitCode {
    use rscni_plugin::version::SpecVersion;
    use std::process::ExitCode;
    if std::env::var_os("CNI_COMMAND").is_none() {
        eprintln!("{name} is a CNI plugin: run it with CNI_COMMAND set (see --help)");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            // No runtime, no logging set-up yet: the error object is all the runtime gets.
            println!("{{\"cniVersion\":\"1.0.0\",\"code\":5,\"msg\":\"I/O failure\",\"details\":\"{error}\"}}");
            return ExitCode::FAILURE;
        }
    };
    let server = rscni_plugin::async_cni::Plugin::new(
        SpecVersion::new(1, 1, 0),
        vec![
            SpecVersion::new(0, 3, 1),
            SpecVersion::new(0, 4, 0),
            SpecVersion::new(1, 0, 0),
            SpecVersion::new(1, 1, 0),
        ],
    )
    .msg(about);
    match runtime.block_on(server.run(plugin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::warn!(%error, "CNI call failed");
            ExitCode::FAILURE
        }
    }
}

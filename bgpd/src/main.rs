//! `weft-bgpd`: the node's BGP speaker.
//!
//! Standalone mode (`--config FILE.yaml`, DESIGN.md "BGP") runs: one session task per configured
//! peer ([`session`], kept by [`peers`]), the listener ([`listener`]), the instance that owns the
//! RIBs ([`instance`]), the FIB task when `kernel.install` is on ([`kernel`]), the control socket
//! ([`control`]) and, with `metrics_listen`, `/metrics` ([`metrics`]), all under one
//! cancellation token. SIGHUP reloads the file ([`reload`]).
//! SIGTERM or SIGINT cancels it: every session sends a Cease (Administrative Shutdown) and the
//! process exits 0. SIGUSR1 stops it for a restart (graceful restart on): no Cease, kernel
//! routes left for the next run ([`shutdown`]).
//!
//! Cluster mode (`--store S --nodename N`) runs the same daemon on a configuration derived from
//! the datastore ([`cluster`]): it starts once the node's configuration can be derived, and
//! every change of it is applied as a reload is (unchanged sessions stay up). SIGHUP does
//! nothing there: the datastore is followed.
//!
//! Exit codes: 0 after a clean shutdown, 1 for an invalid configuration or a socket that cannot
//! be bound (the message names the key or the address), 2 for a command line without a mode.

mod cluster;
mod config;
mod connector;
mod control;
mod installed;
mod instance;
mod kernel;
mod listener;
mod md5;
mod metrics;
mod peers;
mod policy_config;
mod reload;
mod route_batch;
mod session;
mod shutdown;
mod ttl;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::mpsc;

use weft_bgp_proto::AddressType;
use weft_bgp_proto::capabilities::GracefulRestartConfig;

use crate::config::Config;
use crate::instance::Instance;
use crate::peers::Peers;
use crate::shutdown::Shutdown;

/// Events queued from all session tasks to the instance (an UPDATE each, decoded: at most a
/// few MiB waiting when the instance is behind).
const EVENT_QUEUE: usize = 128;
/// Control requests queued onto the instance.
const CONTROL_QUEUE: usize = 16;
/// Batches of best-path changes (one per UPDATE, at most 1024 prefixes) queued from the
/// instance to the FIB task: the instance runs that far ahead of the kernel. The batched FIB
/// keeps pace with ingestion; a deeper queue only let a backlog build (more memory, and a FIB
/// still being written long after the Loc-RIB was complete).
const FIB_QUEUE: usize = 4;
/// How long tasks get to finish after cancellation (a Cease per session).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// weft's BGP speaker: announces the node's pod blocks and Service addresses to its peers and
/// installs learned routes into the kernel.
#[derive(Debug, Parser)]
#[command(name = "weft-bgpd", version, about)]
struct Args {
    /// Standalone mode: the YAML configuration file (asn, router_id, peers, originate, …).
    #[arg(long, conflicts_with = "store")]
    config: Option<PathBuf>,
    /// Cluster mode: the datastore (file:DIR, etcd:URL, kubernetes).
    #[arg(long, env = "WEFT_STORE")]
    store: Option<String>,
    /// This node's name in the datastore (default: the host name).
    #[arg(long, env = "WEFT_NODENAME")]
    nodename: Option<String>,
    /// Cluster mode: the unix control socket (`weftctl --socket`).
    #[arg(long, conflicts_with = "config", default_value = config::DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
    /// Cluster mode: serve Prometheus `GET /metrics` on this ADDRESS:PORT.
    #[arg(long, conflicts_with = "config")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Where the configuration comes from.
#[derive(Debug)]
enum Source {
    /// Standalone: the file, read again on SIGHUP.
    File(PathBuf),
    /// Cluster mode: each configuration derived from the datastore.
    Cluster(tokio::sync::watch::Receiver<Option<Config>>),
}

/// What to start.
enum Mode {
    Standalone(Box<Config>, PathBuf),
    Cluster {
        store: String,
        node: String,
        local: cluster::Local,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mode = match (args.config, args.store) {
        (Some(path), _) => match Config::load(&path) {
            Ok(config) => Mode::Standalone(Box::new(config), path),
            Err(error) => {
                eprintln!("weft-bgpd: invalid configuration {}: {error:#}", path.display());
                return ExitCode::FAILURE;
            }
        },
        (None, Some(store)) => {
            let node = match args.nodename.or_else(host_name) {
                Some(node) if !node.is_empty() => node,
                _ => {
                    eprintln!("weft-bgpd: give --nodename N (or WEFT_NODENAME): the host name is unknown");
                    return ExitCode::from(2);
                }
            };
            Mode::Cluster {
                store,
                node,
                local: cluster::Local {
                    control_socket: args.control_socket,
                    metrics_listen: args.metrics_listen,
                },
            }
        }
        (None, None) => {
            eprintln!("weft-bgpd: give --config FILE.yaml (standalone mode) or --store S --nodename N (cluster mode)");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weft-bgpd: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let signals = Signals::new()?;
        match mode {
            Mode::Standalone(config, path) => run(*config, Source::File(path), signals).await,
            Mode::Cluster { store, node, local } => run_cluster(&store, node, local, signals).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weft-bgpd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The host name, the default node name.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
}

/// Cluster mode: follows the datastore, starts the daemon on the node's first configuration
/// and hands it every later one.
async fn run_cluster(setting: &str, node: String, local: cluster::Local, mut signals: Signals) -> anyhow::Result<()> {
    let store = weft_api::store::open(setting)
        .await
        .with_context(|| format!("cannot open the datastore {setting} (--store)"))?;
    let (configs_tx, mut configs) = tokio::sync::watch::channel(None);
    let cancel = tokio_util::sync::CancellationToken::new();
    tracing::info!(store = %setting, %node, "cluster mode: waiting for the node's configuration in the datastore");
    let follow = tokio::spawn(cluster::run(store, node, local, configs_tx, cancel.clone()));
    let first = loop {
        tokio::select! {
            first = configs.wait_for(Option::is_some) => match first {
                Ok(first) => break first.clone(),
                Err(_) => anyhow::bail!("the datastore loop ended before the node had a configuration"),
            },
            signal = signals.next() => {
                if let Signal::Stop { .. } = signal {
                    cancel.cancel();
                    return Ok(());
                }
                tracing::info!("SIGHUP ignored: in cluster mode the datastore is followed");
            }
        }
    };
    let Some(first) = first else {
        anyhow::bail!("the datastore loop published no configuration");
    };
    configs.borrow_and_update();
    let result = run(first, Source::Cluster(configs), signals).await;
    cancel.cancel();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, follow).await.is_err() {
        tracing::warn!("the datastore loop did not end within the shutdown deadline");
    }
    result
}

/// The listening sockets `config` asks for (none with port 0), with its peers' TCP MD5 keys.
fn bind_listeners(config: &Config) -> anyhow::Result<Vec<tokio::net::TcpListener>> {
    if config.listen_port == 0 {
        return Ok(Vec::new());
    }
    let keys: Vec<(std::net::IpAddr, &[u8])> = config
        .peers
        .iter()
        .filter_map(|peer| Some((peer.address, peer.password.as_ref()?.0.as_slice())))
        .collect();
    listener::bind(&config.listen_addresses, config.listen_port, &keys).with_context(|| {
        if config.listen_addresses.is_empty() {
            format!("cannot listen on port {} (listen_port)", config.listen_port)
        } else {
            format!(
                "cannot listen on port {} of {:?} (listen_port, listen_addresses)",
                config.listen_port, config.listen_addresses
            )
        }
    })
}

/// The listener tasks, stopped together when the datastore moves the listening port or
/// addresses (established sessions are not theirs: they stay up).
struct Listening {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Listening {
    fn start(
        listeners: Vec<tokio::net::TcpListener>,
        config: &Config,
        peers: &Peers,
        parent: &tokio_util::sync::CancellationToken,
    ) -> Listening {
        let keys: Vec<(std::net::IpAddr, Vec<u8>)> = config
            .peers
            .iter()
            .filter_map(|peer| Some((peer.address, peer.password.as_ref()?.0.clone())))
            .collect();
        let cancel = parent.child_token();
        let tasks = listeners
            .into_iter()
            .map(|listener| {
                if let Ok(address) = listener.local_addr() {
                    tracing::info!(%address, "listening");
                }
                tokio::spawn(listener::run(
                    listener,
                    peers.listener_peers(),
                    keys.clone(),
                    cancel.clone(),
                ))
            })
            .collect();
        Listening { tasks, cancel }
    }

    /// Closes the sockets and listens as `new` says (port and addresses taken into `config`);
    /// if that fails, listens as before again and logs why.
    async fn rebind(
        self,
        config: &mut Config,
        new: &Config,
        peers: &Peers,
        parent: &tokio_util::sync::CancellationToken,
    ) -> Listening {
        self.cancel.cancel();
        // The old sockets must be closed before the new ones bind the same port.
        if tokio::time::timeout(SHUTDOWN_DEADLINE, futures_join(self.tasks))
            .await
            .is_err()
        {
            tracing::warn!("the old listeners did not stop within the shutdown deadline");
        }
        let mut wanted = config.clone();
        wanted.listen_port = new.listen_port;
        wanted.listen_addresses.clone_from(&new.listen_addresses);
        match bind_listeners(&wanted) {
            Ok(listeners) => {
                config.listen_port = new.listen_port;
                config.listen_addresses.clone_from(&new.listen_addresses);
                tracing::info!(port = config.listen_port, addresses = ?config.listen_addresses, "listening as the datastore now says");
                Listening::start(listeners, config, peers, parent)
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot listen as the datastore now says; listening as before");
                match bind_listeners(config) {
                    Ok(listeners) => Listening::start(listeners, config, peers, parent),
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "cannot listen as before either: only outgoing sessions until the datastore changes");
                        Listening {
                            tasks: Vec::new(),
                            cancel: parent.child_token(),
                        }
                    }
                }
            }
        }
    }
}

/// The next configuration the datastore gives (never, in standalone mode or once the loop
/// has ended).
async fn next_config(source: &mut Source) -> Config {
    if let Source::Cluster(configs) = source {
        if configs.changed().await.is_ok() {
            if let Some(config) = configs.borrow_and_update().clone() {
                return config;
            }
        } else {
            tracing::error!("the datastore loop ended: the configuration no longer follows the datastore");
            *source = Source::File(PathBuf::new());
        }
    }
    std::future::pending().await
}

async fn run(config: Config, mut source: Source, mut signals: Signals) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let cancel = shutdown.token().clone();
    let listeners = bind_listeners(&config)?;
    let control_listener = control::bind(&config.control_socket).with_context(|| {
        format!(
            "cannot bind the control socket {} (control_socket)",
            config.control_socket.display()
        )
    })?;

    let metrics_listener = match config.metrics_listen {
        None => None,
        Some(address) => Some(
            metrics::bind(address)
                .await
                .with_context(|| format!("cannot serve metrics on {address} (metrics_listen)"))?,
        ),
    };
    let kernel_routes = metrics::KernelRoutes::default();

    // The kernel first: the weft routes a previous run left tell whether this is a restart.
    let mut previous = Vec::new();
    let netlink = if config.kernel_install || config.kernel_blackhole {
        let mut netlink = kernel::NetlinkFib::connect().context("cannot program the kernel (kernel.install)")?;
        previous = kernel::Fib::list(&mut netlink)
            .await
            .context("cannot list the kernel's routes (kernel.install)")?;
        Some(netlink)
    } else {
        None
    };
    // RFC 4724 §4.1: routes kept across a restart make this a graceful restart; the peers
    // keep our routes meanwhile, and our Forwarding State flag tells them the FIB was kept.
    // (Blackholes alone are no forwarding state worth a restart: they are simply made again.)
    let restarting = config.graceful_restart.is_some() && config.kernel_install && !previous.is_empty();
    let graceful_restart = config.graceful_restart.map(|restart_time| GracefulRestartConfig {
        restart_time,
        restarting,
        forwarding_preserved: vec![AddressType::Ipv4Unicast, AddressType::Ipv6Unicast],
        notification: false,
    });

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let mut peers = Peers::new(
        config.asn,
        config.router_id,
        graceful_restart,
        events_tx,
        shutdown.clone(),
    );
    let commands: BTreeMap<_, _> = config
        .peers
        .iter()
        .map(|peer| (peer.address, peers.prepare(peer)))
        .collect();
    let mut tasks = Vec::new();
    // With only kernel.blackhole, nobody sends changes: this sender keeps the FIB task's queue
    // open (a closed queue ends the task) until the process ends.
    let mut fib_queue = None;
    let fib = if let Some(netlink) = netlink {
        let (fib_tx, fib_rx) = mpsc::channel(FIB_QUEUE);
        let shutdown = shutdown.clone();
        let blackholes = if config.kernel_blackhole {
            config::blackholes(&config.originate)
        } else {
            Vec::new()
        };
        let kept = if restarting {
            std::mem::take(&mut previous)
        } else {
            Vec::new()
        };
        if !restarting {
            // Without graceful restart, a previous run's routes are not trusted: they go now.
            for route in &previous {
                let mut netlink = netlink.clone();
                if let Err(error) = kernel::Fib::delete(&mut netlink, route.prefix).await {
                    tracing::warn!(%error, "stale weft route left in the kernel");
                }
            }
            if !previous.is_empty() {
                tracing::info!(count = previous.len(), "stale weft routes removed from the kernel");
            }
        }
        let kernel_routes = kernel_routes.clone();
        tasks.push(tokio::spawn(async move {
            kernel::run(netlink, fib_rx, blackholes, kept, kernel_routes, shutdown).await;
        }));
        // Learned paths reach the FIB task only with kernel.install.
        fib_queue = Some(fib_tx.clone());
        config.kernel_install.then_some(fib_tx)
    } else {
        None
    };
    let instance = Instance::new(&config, commands, fib, restarting);
    tasks.push(tokio::spawn(instance.run(events_rx, control_rx, cancel.clone())));
    // The instance knows every peer: their session tasks may start.
    peers.spawn_prepared();
    let mut listening = Listening::start(listeners, &config, &peers, &cancel);
    if let Some(listener) = metrics_listener {
        tracing::info!(address = ?config.metrics_listen, "serving metrics");
        tasks.push(tokio::spawn(metrics::run(
            listener,
            control_tx.clone(),
            kernel_routes,
            cancel.clone(),
        )));
    }
    tasks.push(tokio::spawn(control::run(
        control_listener,
        control_tx.clone(),
        cancel.clone(),
    )));
    tracing::info!(
        asn = config.asn,
        router_id = %config.router_id,
        peers = config.peers.len(),
        originate = config.originate.len(),
        "weft-bgpd started"
    );

    let mut config = config;
    let for_restart = loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Reload => match &source {
                    Source::File(path) if !path.as_os_str().is_empty() => {
                        tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration");
                        reload::reload(path, &mut config, &mut peers, &control_tx, fib_queue.as_ref()).await;
                    }
                    _ => tracing::info!("SIGHUP ignored: in cluster mode the datastore is followed"),
                },
                Signal::Stop { for_restart } => break for_restart && config.graceful_restart.is_some(),
            },
            new = next_config(&mut source) => {
                let mut new = new;
                if (new.listen_port, &new.listen_addresses) != (config.listen_port, &config.listen_addresses) {
                    listening = listening.rebind(&mut config, &new, &peers, &cancel).await;
                }
                let later = reload::keep_restart_keys(&config, &mut new);
                if !later.is_empty() {
                    tracing::warn!(keys = ?later, "changed in the datastore; takes effect when weft-bgpd restarts");
                }
                match reload::plan_live(&config, &new) {
                    Ok(plan) => reload::apply(plan, new, &mut config, &mut peers, &control_tx, fib_queue.as_ref()).await,
                    Err(error) => tracing::error!(%error, "configuration from the datastore not applied; the one in force stays"),
                }
            }
        }
    };
    if for_restart {
        tracing::info!("stopping for a restart: kernel routes kept, sessions closed without a notification");
    } else {
        tracing::info!("shutting down: sending Cease to every peer");
    }
    shutdown.stop(for_restart);
    tasks.extend(listening.tasks);
    tasks.extend(peers.into_tasks());
    let all = futures_join(tasks);
    if tokio::time::timeout(SHUTDOWN_DEADLINE, all).await.is_err() {
        tracing::warn!("tasks did not finish within the shutdown deadline");
    }
    if let Err(error) = std::fs::remove_file(&config.control_socket) {
        tracing::debug!(%error, "control socket not removed");
    }
    Ok(())
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        if let Err(error) = task.await {
            tracing::error!(%error, "task failed");
        }
    }
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGHUP: read the configuration file again.
    Reload,
    /// SIGTERM or SIGINT (`for_restart: false`: a clean stop) or SIGUSR1 (a stop for a restart).
    Stop { for_restart: bool },
}

/// The signals weft-bgpd acts on, handled from start-up on (SIGHUP would otherwise end it).
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    restart: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            restart: signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?,
            hangup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// Waits for the next one.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.terminate.recv() => Signal::Stop { for_restart: false },
            _ = self.interrupt.recv() => Signal::Stop { for_restart: false },
            _ = self.restart.recv() => Signal::Stop { for_restart: true },
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}

//! `weft-bgpd`: the node's BGP speaker.
//!
//! Standalone mode (`--config FILE.yaml`, DESIGN.md "BGP") runs: one session task per configured
//! peer ([`session`]), the listener ([`listener`]), the instance that owns the RIBs
//! ([`instance`]), the FIB task when `kernel.install` is on ([`kernel`]) and the control socket
//! ([`control`]), all under one cancellation token.
//! SIGTERM or SIGINT cancels it: every session sends a Cease (Administrative Shutdown) and the
//! process exits 0. Cluster mode (`--store`) is not built yet and says so.
//!
//! Exit codes: 0 after a clean shutdown, 1 for an invalid configuration or a socket that cannot
//! be bound (the message names the key or the address), 2 for what is not implemented yet.

mod config;
mod connector;
mod control;
mod instance;
mod kernel;
mod listener;
mod md5;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::instance::Instance;
use crate::session::{Channels, PeerSession};

/// Events queued from all session tasks to the instance.
const EVENT_QUEUE: usize = 1024;
/// Commands queued from the instance to one session task.
const COMMAND_QUEUE: usize = 64;
/// Connections the listener may hand one session task before it looks at them.
const INBOUND_QUEUE: usize = 2;
/// Control requests queued onto the instance.
const CONTROL_QUEUE: usize = 16;
/// Best-path changes queued from the instance to the FIB task.
const FIB_QUEUE: usize = 4096;
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(path) = args.config else {
        if args.store.is_some() {
            eprintln!("weft-bgpd: cluster mode (--store) is not implemented yet; use --config FILE.yaml");
            return ExitCode::from(2);
        }
        eprintln!("weft-bgpd: give --config FILE.yaml (standalone mode)");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("weft-bgpd: invalid configuration {}: {error:#}", path.display());
            return ExitCode::FAILURE;
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
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weft-bgpd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let keys: Vec<(std::net::IpAddr, &[u8])> = config
        .peers
        .iter()
        .filter_map(|peer| Some((peer.address, peer.password.as_ref()?.0.as_slice())))
        .collect();
    let listener = if config.listen_port == 0 {
        None
    } else {
        Some(
            listener::bind(config.listen_port, &keys)
                .with_context(|| format!("cannot listen on port {} (listen_port)", config.listen_port))?,
        )
    };
    let control_listener = control::bind(&config.control_socket).with_context(|| {
        format!(
            "cannot bind the control socket {} (control_socket)",
            config.control_socket.display()
        )
    })?;

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let mut commands = BTreeMap::new();
    let mut inbound = HashMap::new();
    let mut tasks = Vec::new();
    for peer in &config.peers {
        let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        commands.insert(peer.address, command_tx);
        inbound.insert(peer.address, inbound_tx);
        let channels = Channels {
            inbound: inbound_rx,
            commands: command_rx,
            events: events_tx.clone(),
        };
        let span = tracing::info_span!("peer", addr = %peer.address, asn = peer.asn);
        tasks.push(tokio::spawn(
            PeerSession::run(
                peer.clone(),
                config.asn,
                config.router_id,
                session::BGP_PORT,
                channels,
                cancel.clone(),
            )
            .instrument(span),
        ));
    }
    drop(events_tx);
    // With only kernel.blackhole, nobody sends changes: this sender keeps the FIB task's queue
    // open (a closed queue ends the task) until the process ends.
    let mut _fib_queue_open = None;
    let fib = if config.kernel_install || config.kernel_blackhole {
        let netlink = kernel::NetlinkFib::connect().context("cannot program the kernel (kernel.install)")?;
        let (fib_tx, fib_rx) = mpsc::channel(FIB_QUEUE);
        let cancel = cancel.clone();
        let blackholes = if config.kernel_blackhole {
            config.originate.clone()
        } else {
            Vec::new()
        };
        tasks.push(tokio::spawn(async move {
            kernel::run(netlink, fib_rx, blackholes, cancel).await;
        }));
        // Learned paths reach the FIB task only with kernel.install.
        _fib_queue_open = Some(fib_tx.clone());
        config.kernel_install.then_some(fib_tx)
    } else {
        None
    };
    let instance = Instance::new(&config, commands, fib);
    tasks.push(tokio::spawn(instance.run(events_rx, control_rx, cancel.clone())));
    if let Some(listener) = listener {
        tasks.push(tokio::spawn(listener::run(listener, inbound, cancel.clone())));
    }
    tasks.push(tokio::spawn(control::run(control_listener, control_tx, cancel.clone())));
    tracing::info!(
        asn = config.asn,
        router_id = %config.router_id,
        peers = config.peers.len(),
        originate = config.originate.len(),
        "weft-bgpd started"
    );

    wait_for_signal().await?;
    tracing::info!("shutting down: sending Cease to every peer");
    cancel.cancel();
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

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

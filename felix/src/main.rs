//! `weft-felix --store URL --nodename NAME`: the node's policy agent (see felix/README.md).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use weft_felix::daemon::{self, Config};
use weft_felix::metrics::Metrics;
use weft_felix::nft::NftBinary;

/// weft's policy agent: turns NetworkPolicy into nftables, keeps endpoint routes and NAT
/// outgoing.
#[derive(Debug, Parser)]
#[command(name = "weft-felix", version, about)]
struct Args {
    /// The datastore (file:DIR, etcd:URL, kubernetes).
    #[arg(long, env = "WEFT_STORE", default_value = "file:/var/lib/weft/store")]
    store: String,
    /// This node's name in the datastore (default: the host name).
    #[arg(long, env = "WEFT_NODENAME")]
    nodename: Option<String>,
    /// Seconds between comparisons of the kernel's table with the wanted one.
    #[arg(long, default_value_t = 10.0)]
    resync_seconds: f64,
    /// Milliseconds to gather store changes before recomputing.
    #[arg(long, default_value_t = 20)]
    debounce_ms: u64,
    /// Serve Prometheus metrics on this address (`GET /metrics`), e.g. 127.0.0.1:9091.
    #[arg(long, env = "WEFT_FELIX_METRICS")]
    metrics_address: Option<std::net::SocketAddr>,
    /// Log filter (`info`, `debug`, `weft_felix=debug`).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    let node = match args
        .nodename
        .clone()
        .or_else(|| nix::unistd::gethostname().ok()?.into_string().ok())
    {
        Some(node) => node,
        None => {
            eprintln!("weft-felix: no --nodename given and the host name is unreadable");
            return ExitCode::from(2);
        }
    };
    if !(0.05..=86_400.0).contains(&args.resync_seconds) {
        eprintln!("weft-felix: --resync-seconds must be between 0.05 and 86400");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weft-felix: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let store = weft_api::store::open(&args.store)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open store {}: {e}", args.store))?;
        let metrics = Metrics::new();
        let _server = match args.metrics_address {
            Some(address) => Some(
                metrics
                    .clone()
                    .serve(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot serve metrics on {address}: {e}"))?,
            ),
            None => None,
        };
        let config = Config {
            node: node.clone(),
            resync: Duration::from_secs_f64(args.resync_seconds),
            debounce: Duration::from_millis(args.debounce_ms),
            metrics,
        };
        tracing::info!(store = %args.store, node = %node, "weft-felix starting");
        daemon::run(store, Arc::new(NftBinary), config, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weft-felix: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

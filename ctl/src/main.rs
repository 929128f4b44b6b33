//! `weftctl`: the operator's CLI.
//!
//! Owns argument parsing and printing; every decision about stored objects is the api crate's.
//! Output meant for scripts (`--json`) is stable; the human tables may change.

mod apply;
mod bgp;
mod get;
mod ipam;
mod policy;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const DEFAULT_STORE: &str = "file:/var/lib/weft/store";

/// weft's operator CLI: the datastore's contents, CRD manifests, and (as they are built) BGP,
/// IPAM and policy status.
#[derive(Debug, Parser)]
#[command(name = "weftctl", version, about)]
struct Cli {
    /// The datastore: file:DIR, etcd:http://HOST:2379[,…], or kubernetes[:KUBECONFIG].
    #[arg(long, global = true, env = "WEFT_STORE", default_value = DEFAULT_STORE)]
    store: String,
    /// The node to act for (default: the host name).
    #[arg(long, global = true, env = "WEFT_NODENAME")]
    nodename: Option<String>,
    /// weft-bgpd's control socket (for `bgp`).
    #[arg(long, global = true, env = "WEFT_BGPD_SOCKET", default_value = bgp::DEFAULT_BGPD_SOCKET)]
    socket: std::path::PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of weft's resources (apiextensions.k8s.io/v1 YAML).
    Crds,
    /// Show whether the store answers and what it holds.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print stored objects of a kind (`ippools`, `IPPool`, `pods`, …).
    Get(get::GetArgs),
    /// Create or update the objects of a YAML file (`-` for stdin) in the store.
    Apply(apply::FileArgs),
    /// Remove the objects of a YAML file (`-` for stdin) from the store.
    Delete(apply::DeleteArgs),
    /// BGP sessions and routes of a running weft-bgpd (its control socket).
    Bgp(bgp::BgpArgs),
    /// Pools, blocks and allocations; consistency checks, release and GC.
    #[command(subcommand)]
    Ipam(ipam::IpamCommand),
    /// Policies in force on endpoints, rule hit counters, invalid policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds => match weft_api::crd::manifests_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                Ok(())
            }
            Err(error) => Err(anyhow::anyhow!("cannot print the CRDs: {error}")),
        },
        Command::Status { json } => status::run(&cli.store, json).await,
        Command::Get(args) => get::run(&cli.store, args).await,
        Command::Apply(args) => apply::apply(&cli.store, args).await,
        Command::Delete(args) => apply::delete(&cli.store, args).await,
        Command::Bgp(args) => bgp::run(&cli.socket, args).await,
        Command::Ipam(command) => ipam::run(&cli.store, command).await,
        Command::Policy(command) => policy::run(&cli.store, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weftctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}

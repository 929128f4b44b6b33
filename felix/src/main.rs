//! `weft-felix`: the node's policy agent.
//!
//! Not built yet: it answers `--help` and `--version`, and any real run exits non-zero saying so.

use std::process::ExitCode;

use clap::Parser;

/// weft's policy agent: turns NetworkPolicy into nftables, keeps endpoint routes and NAT
/// outgoing.
#[derive(Debug, Parser)]
#[command(name = "weft-felix", version, about)]
struct Args {
    /// The datastore (file:DIR, etcd:URL, kubernetes).
    #[arg(long, env = "WEFT_STORE")]
    store: Option<String>,
    /// This node's name in the datastore (default: the host name).
    #[arg(long, env = "WEFT_NODENAME")]
    nodename: Option<String>,
}

fn main() -> ExitCode {
    let _args = Args::parse();
    eprintln!("weft-felix: not implemented yet (the policy agent is an open issue)");
    ExitCode::from(2)
}

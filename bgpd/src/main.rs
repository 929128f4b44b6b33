//! `weft-bgpd`: the node's BGP speaker.
//!
//! Not built yet: it answers `--help` and `--version`, and any real run exits non-zero saying so,
//! so that no lab or script mistakes it for a running speaker.

use std::process::ExitCode;

use clap::Parser;

/// weft's BGP speaker: announces the node's pod blocks and Service addresses to its peers and
/// installs learned routes into the kernel.
#[derive(Debug, Parser)]
#[command(name = "weft-bgpd", version, about)]
struct Args {
    /// Standalone mode: the YAML configuration file (asn, router_id, peers, originate, …).
    #[arg(long, conflicts_with = "store")]
    config: Option<std::path::PathBuf>,
    /// Cluster mode: the datastore (file:DIR, etcd:URL, kubernetes).
    #[arg(long, env = "WEFT_STORE")]
    store: Option<String>,
    /// This node's name in the datastore (default: the host name).
    #[arg(long, env = "WEFT_NODENAME")]
    nodename: Option<String>,
}

fn main() -> ExitCode {
    let _args = Args::parse();
    eprintln!("weft-bgpd: not implemented yet (the BGP speaker is an open issue)");
    ExitCode::from(2)
}

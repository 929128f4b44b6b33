//! `weft-cni`: the CNI plugin, called by the container runtime with `CNI_*` variables and the
//! network configuration on stdin. The result or a CNI error object goes to stdout; logs only
//! to the configured `log_file`.

use std::process::ExitCode;

use clap::Parser;
use weft_cni::WeftCni;
use weft_cni::dataplane::Kernel;

/// weft's CNI plugin: gives each pod a veth, its addresses and routes. Run by a container
/// runtime, not by hand.
#[derive(Debug, Parser)]
#[command(name = "weft-cni", version, about)]
struct Args {}

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_none() {
        let _args = Args::parse();
    }
    weft_ipam::cni::run_plugin(
        "weft-cni",
        concat!("weft-cni ", env!("CARGO_PKG_VERSION")),
        &WeftCni { dataplane: Kernel },
    )
}

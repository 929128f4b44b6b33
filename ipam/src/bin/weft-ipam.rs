//! `weft-ipam`: the CNI IPAM plugin. A runtime (or a CNI plugin such as `ptp` or `bridge`)
//! runs it with `CNI_*` variables and the network configuration on stdin; the result or a CNI
//! error object goes to stdout, logs only to the configured `log_file`.

use std::process::ExitCode;

use clap::Parser;
use weft_ipam::cni::WeftIpam;

/// weft's CNI IPAM plugin: hands out pod addresses from weft's block allocator, under any CNI
/// plugin (`"ipam": {"type": "weft-ipam"}`). Run by a container runtime, not by hand.
#[derive(Debug, Parser)]
#[command(name = "weft-ipam", version, about)]
struct Args {}

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_none() {
        let _args = Args::parse();
    }
    weft_ipam::cni::run_plugin("weft-ipam", concat!("weft-ipam ", env!("CARGO_PKG_VERSION")), &WeftIpam)
}

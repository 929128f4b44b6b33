//! `weft-ipam`: the CNI IPAM plugin. A runtime (or a CNI plugin such as `ptp` or `bridge`)
//! runs it with `CNI_*` variables and the network configuration on stdin; the result or a CNI
//! error object goes to stdout, logs only to the configured `log_file`.

use std::process::ExitCode;

use clap::Parser;
use rscni_plugin::async_cni::Plugin;
use rscni_plugin::version::SpecVersion;
use weft_ipam::cni::WeftIpam;

/// weft's CNI IPAM plugin: hands out pod addresses from weft's block allocator, under any CNI
/// plugin (`"ipam": {"type": "weft-ipam"}`). Run by a container runtime, not by hand.
#[derive(Debug, Parser)]
#[command(name = "weft-ipam", version, about)]
struct Args {}

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_none() {
        let _args = Args::parse();
        eprintln!("weft-ipam is a CNI plugin: run it with CNI_COMMAND set (see --help)");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("{{\"cniVersion\":\"1.0.0\",\"code\":5,\"msg\":\"I/O failure\",\"details\":\"{error}\"}}");
            return ExitCode::FAILURE;
        }
    };
    let plugin = Plugin::new(
        SpecVersion::new(1, 1, 0),
        vec![
            SpecVersion::new(0, 3, 1),
            SpecVersion::new(0, 4, 0),
            SpecVersion::new(1, 0, 0),
            SpecVersion::new(1, 1, 0),
        ],
    )
    .msg(concat!("weft-ipam ", env!("CARGO_PKG_VERSION")));
    let result = runtime.block_on(plugin.run(&WeftIpam));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::warn!(%error, "CNI call failed");
            ExitCode::FAILURE
        }
    }
}

//! `weft-cni`: the CNI plugin, called by the container runtime with `CNI_*` variables and the
//! network configuration on stdin. The result or a CNI error object goes to stdout; logs only
//! to the configured `log_file`.

use std::process::ExitCode;

use clap::Parser;
use rscni_plugin::async_cni::Plugin;
use rscni_plugin::version::SpecVersion;
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
        eprintln!("weft-cni is a CNI plugin: run it with CNI_COMMAND set (see --help)");
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
    .msg(concat!("weft-cni ", env!("CARGO_PKG_VERSION")));
    match runtime.block_on(plugin.run(&WeftCni { dataplane: Kernel })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::warn!(%error, "CNI call failed");
            ExitCode::FAILURE
        }
    }
}

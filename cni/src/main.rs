//! `weft-cni`: a CNI plugin, called by the container runtime with `CNI_*` variables and the
//! network configuration on stdin.
//!
//! Not built yet. `--help` and `--version` work; a runtime's call gets a CNI error object
//! on stdout and a non-zero exit, never a fake success.

use std::process::ExitCode;

use clap::Parser;

/// weft's CNI plugin: gives each pod a veth, its addresses and routes.
#[derive(Debug, Parser)]
#[command(name = "weft-cni", version, about)]
struct Args {}

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_none() {
        let _args = Args::parse();
    }
    let message = "weft-cni is not implemented yet";
    // CNI error object (spec 1.0.0 §Error): code 999 and up are plugin-specific.
    println!("{{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"{message}\"}}");
    eprintln!("weft-cni: not implemented yet");
    ExitCode::from(1)
}

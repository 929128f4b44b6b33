//! `weft-lab`: brings containerlab topologies up on this machine's network namespaces.
//!
//! Not built yet: `--help` and `--version` work, `up`, `down` and `status` exit non-zero saying so.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runs containerlab topology files on network namespaces, with real routers as ToRs.
#[derive(Debug, Parser)]
#[command(name = "weft-lab", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring a topology up.
    Up { file: std::path::PathBuf },
    /// Tear a topology down.
    Down { file: std::path::PathBuf },
    /// Show a topology's nodes and links.
    Status { file: std::path::PathBuf },
}

fn main() -> ExitCode {
    let _args = Args::parse();
    eprintln!("weft-lab: not implemented yet (the lab is an open issue)");
    ExitCode::from(2)
}

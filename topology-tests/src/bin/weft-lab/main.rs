//! `weft-lab`: brings containerlab topology files up on this machine's network namespaces.
//!
//! Nodes become namespaces named as containerlab names containers (`clab-<lab>-<node>`), links
//! become veth pairs, images map to local programs (FRR and BIRD from Debian, weft's own
//! daemons for the weft node image; see `role.rs`), `binds` give them their configs and `exec`
//! commands run inside. State lives in `/run/weft-lab/<lab>/`; `down` removes exactly what
//! `up` made. Needs root. Exit codes: 0 done, 1 failed (the message names the node or link).

mod lab;
mod role;
mod shell;
mod state;
mod topology;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Runs containerlab topology files on network namespaces, with real routers as ToRs.
#[derive(Debug, Parser)]
#[command(name = "weft-lab", version, about)]
struct Args {
    /// Use this lab name instead of the file's `name` (as `containerlab deploy --name`).
    #[arg(long, global = true)]
    name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a topology file (containerlab's schema, then what namespaces can run).
    Validate { file: PathBuf },
    /// Bring a topology up (a lab already up is left as it is).
    Up { file: PathBuf },
    /// Tear a topology down.
    Down { file: PathBuf },
    /// Show a topology's nodes, programs and pods.
    Status { file: PathBuf },
    /// Stop a node's programs and start them again (links, addresses and pods stay).
    Restart {
        file: PathBuf,
        node: String,
        /// SIGKILL instead of SIGTERM: a crash, not a clean stop.
        #[arg(long)]
        kill: bool,
    },
    /// Add one more pod to a weft node of a running lab (through weft-cni, as a runtime would).
    Pod { file: PathBuf, node: String },
    /// Run a command on a node (vtysh, birdc and weftctl find the node's sockets).
    Exec {
        file: PathBuf,
        node: String,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("weft-lab: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(file: &std::path::Path, name: &Option<String>) -> Result<lab::Lab> {
    let mut topology = topology::Topology::load(file)?;
    if let Some(name) = name {
        topology.name = name.clone();
        topology.check()?;
    }
    lab::Lab::new(topology).with_context(|| format!("{} is not a topology weft-lab can run", file.display()))
}

fn run(args: Args) -> Result<ExitCode> {
    match &args.command {
        Command::Validate { file } => {
            let lab = load(file, &args.name)?;
            println!(
                "{}: valid (lab {}, {} nodes, {} links)",
                file.display(),
                lab.name(),
                lab.topology.nodes.len(),
                lab.topology.links.len()
            );
        }
        Command::Up { file } => {
            let lab = load(file, &args.name)?;
            lab.up()?;
            print!("{}", lab.status()?);
        }
        Command::Down { file } => load(file, &args.name)?.down()?,
        Command::Status { file } => print!("{}", load(file, &args.name)?.status()?),
        Command::Restart { file, node, kill } => load(file, &args.name)?.restart(node, *kill)?,
        Command::Pod { file, node } => println!("{}", load(file, &args.name)?.add_one_pod(node)?),
        Command::Exec { file, node, command } => {
            let lab = load(file, &args.name)?;
            let argv = lab.exec_argv(node, command)?;
            let status = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .status()
                .with_context(|| format!("cannot run {}", argv.join(" ")))?;
            return Ok(ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

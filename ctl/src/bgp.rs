//! `weftctl bgp peers|routes|neighbor ADDR [--json]`: asks a running weft-bgpd over its
//! control socket.
//!
//! The daemon answers one command line with one line of JSON (weft-bgpd's `control` module).
//! `--json` prints that array unchanged apart from indentation: `peers` objects carry at least
//! `address`, `asn`, `state`, `prefixes_received`, `prefixes_sent`, `uptime_seconds` (DESIGN.md);
//! the tables without `--json` are for people and may change.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const DEFAULT_SOCKET: &str = "/run/weft/bgpd.sock";
/// How long the daemon may take to answer.
const DEADLINE: Duration = Duration::from_secs(10);
/// The largest answer read (a full table of a large RIB fits).
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

/// weft-bgpd's control socket when `--socket` does not say.
pub const DEFAULT_BGPD_SOCKET: &str = DEFAULT_SOCKET;

/// Options of `weftctl bgp`.
#[derive(Debug, Args)]
pub struct BgpArgs {
    #[command(subcommand)]
    command: BgpCommand,
}

#[derive(Debug, Subcommand)]
enum BgpCommand {
    /// The configured peers: session state, prefix counts, uptime.
    Peers {
        #[arg(long)]
        json: bool,
    },
    /// Every path in the Loc-RIB; `*` marks the best.
    Routes {
        #[arg(long)]
        json: bool,
    },
    /// One session in detail: state, timers, negotiated capabilities, counters.
    Neighbor {
        /// The peer's address, as configured.
        address: std::net::IpAddr,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(socket: &Path, args: BgpArgs) -> anyhow::Result<()> {
    let (command, json) = match args.command {
        BgpCommand::Peers { json } => ("peers".to_owned(), json),
        BgpCommand::Routes { json } => ("routes".to_owned(), json),
        BgpCommand::Neighbor { address, json } => (format!("neighbor {address}"), json),
    };
    let answer = tokio::time::timeout(DEADLINE, ask(socket, &command))
        .await
        .with_context(|| format!("weft-bgpd at {} did not answer in time", socket.display()))??;
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        bail!("weft-bgpd: {error}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    match (&answer, command.as_str()) {
        (Value::Array(items), "peers") => print_peers(items),
        (Value::Array(items), "routes") => print_routes(items),
        (Value::Object(_), _) => print_neighbor(&answer),
        _ => bail!("weft-bgpd: unexpected answer to `{command}`"),
    }
    Ok(())
}

async fn ask(socket: &Path, command: &str) -> anyhow::Result<Value> {
    let mut stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach weft-bgpd at {} (is it running? --socket)",
            socket.display()
        )
    })?;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut bytes = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut bytes).await?;
    serde_json::from_slice(&bytes).context("weft-bgpd's answer is not JSON")
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn print_peers(peers: &[Value]) {
    println!(
        "{:<28} {:>10} {:<12} {:>8} {:>9} {:>9} {:>6}",
        "ADDRESS", "ASN", "STATE", "UPTIME", "RECEIVED", "ACCEPTED", "SENT"
    );
    for peer in peers {
        println!(
            "{:<28} {:>10} {:<12} {:>8} {:>9} {:>9} {:>6}",
            text(peer, "address"),
            text(peer, "asn"),
            text(peer, "state"),
            text(peer, "uptime_seconds"),
            text(peer, "prefixes_received"),
            text(peer, "prefixes_accepted"),
            text(peer, "prefixes_sent"),
        );
    }
}

fn print_routes(routes: &[Value]) {
    println!("  {:<44} {:<28} {:<28} AS-PATH", "PREFIX", "NEXT-HOP", "FROM");
    for route in routes {
        let best = if route.get("best").and_then(Value::as_bool) == Some(true) {
            "*"
        } else {
            " "
        };
        let as_path = route
            .get("as_path")
            .and_then(Value::as_array)
            .map(|asns| asns.iter().map(Value::to_string).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        println!(
            "{best} {:<44} {:<28} {:<28} {as_path}",
            text(route, "prefix"),
            text(route, "next_hop"),
            text(route, "from"),
        );
    }
}

/// `weftctl bgp neighbor ADDR` for people: one `key: value` line per field, nested ones indented.
fn print_neighbor(neighbor: &Value) {
    fn print(value: &Value, indent: usize) {
        let Value::Object(fields) = value else { return };
        for (key, value) in fields {
            match value {
                Value::Object(_) => {
                    println!("{:indent$}{key}:", "");
                    print(value, indent + 2);
                }
                Value::Array(items) => {
                    let items: Vec<String> = items
                        .iter()
                        .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_owned))
                        .collect();
                    println!("{:indent$}{key}: {}", "", items.join(", "));
                }
                _ => println!("{:indent$}{key}: {}", "", scalar(value)),
            }
        }
    }
    print(neighbor, 0);
}

/// A scalar as the tables print it: strings without quotes, null as `-`.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

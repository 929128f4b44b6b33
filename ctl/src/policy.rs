//! `weftctl policy show [ENDPOINT] [--json]`: the policies isolating each endpoint, rule hit
//! counters from this host's `inet weft` table when it can be read (run it on the node, as
//! root), and every NetworkPolicy weft-felix leaves out as invalid. The calculation is
//! weft-felix's own, so this shows what felix programs.

use anyhow::Context;
use clap::{Args, Subcommand};
use weft_felix::inputs::Cache;
use weft_felix::nft::{Nft, NftBinary};
use weft_felix::show::{DirectionView, Report, report};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Policies selecting an endpoint (all endpoints without one), with rule hit counters.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// `namespace/pod`, a pod name, or a host interface name (`wft…`).
    pub endpoint: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(setting: &str, command: PolicyCommand) -> anyhow::Result<()> {
    let PolicyCommand::Show(args) = command;
    let store = weft_api::store::open(setting)
        .await
        .with_context(|| format!("store {setting} does not answer"))?;
    let cache = Cache::load(store.as_ref())
        .await
        .with_context(|| format!("reading policies and endpoints from {setting}"))?;
    // Counters only where the table is readable (on the node, as root); without them the
    // rest of the report still stands.
    let kernel = NftBinary.list().ok().flatten();
    let mut report = report(&cache, kernel.as_ref());
    if let Some(wanted) = &args.endpoint {
        report
            .endpoints
            .retain(|e| format!("{}/{}", e.namespace, e.pod) == *wanted || e.pod == *wanted || e.interface == *wanted);
        if report.endpoints.is_empty() {
            anyhow::bail!("no endpoint {wanted:?} in {setting} (give namespace/pod, a pod name or an interface)");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(())
}

fn print_human(report: &Report) {
    for endpoint in &report.endpoints {
        let addresses: Vec<String> = endpoint.addresses.iter().map(ToString::to_string).collect();
        println!(
            "{}/{}  node {}  interface {}  {}",
            endpoint.namespace,
            endpoint.pod,
            endpoint.node,
            endpoint.interface,
            addresses.join(", ")
        );
        print_direction("ingress", &endpoint.ingress, report.counters);
        print_direction("egress", &endpoint.egress, report.counters);
    }
    if report.endpoints.is_empty() {
        println!("no endpoints");
    }
    if !report.unreadable.is_empty() {
        println!();
        println!("unreadable objects (left out):");
        for problem in &report.unreadable {
            println!("  {problem}");
        }
    }
    if !report.invalid_policies.is_empty() {
        println!();
        println!("invalid policies (left out; every other policy is in force):");
        for invalid in &report.invalid_policies {
            println!("  {}: {}: {}", invalid.policy, invalid.field, invalid.reason);
        }
    }
}

fn print_direction(name: &str, direction: &DirectionView, counters: bool) {
    if !direction.isolated {
        println!("  {name:<8} open (no policy selects it)");
        return;
    }
    println!("  {name:<8} isolated by {}", direction.policies.join(", "));
    if counters {
        for rule in &direction.rules {
            println!("    {:>10} pkts {:>12} bytes  {}", rule.packets, rule.bytes, rule.rule);
        }
    }
}

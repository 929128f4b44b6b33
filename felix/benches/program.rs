//! Policy programming cost (issue 5's benchmark, first part): 1k and 5k endpoints × 10
//! policies, the full table load of weft's ruleset (sets and verdict maps) next to
//! `iptables-restore` (legacy and nft back ends) of an equivalent linear ruleset (12 rules per
//! endpoint: a dispatch jump, ten allow rules, a drop), then one pod added and removed with the
//! table full: the element-only batch alone (felix's own nf_tables netlink batch, no `nft`
//! binary), and felix's agent end to end (the WorkloadEndpoint and Pod events in, the
//! incremental calculation, the batch, the kernel's answer).
//!
//! `cargo bench -p weft-felix --bench program` (root) prints a table. Everything runs in one
//! namespace of the kit, from a thread that entered it (no `ip netns exec` wrapper); addresses
//! from 198.18.0.0/16 only. Data-path packets per second and throughput are not measured here
//! yet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::json;
use weft_felix::calc::{Endpoint, Inputs, NamedPort, calculate};
use weft_felix::daemon::Agent;
use weft_felix::inputs::kinds;
use weft_felix::listing::Listing;
use weft_felix::metrics::Metrics;
use weft_felix::nft::{Nft, NftBinary, NftError};
use weft_felix::policy::Protocol;
use weft_felix::render::{self, Batch};
use weft_felix::ruleset::Ruleset;
use weft_topology_tests::{Netns, require_netns};

const SIZES: [usize; 2] = [1000, 5000];
const NAMESPACES: usize = 10;
const POD_CHANGES: usize = 20;

fn address(i: usize) -> IpAddr {
    IpAddr::from([198, 18, (i / 250) as u8, (i % 250 + 1) as u8])
}

fn endpoint(i: usize) -> Endpoint {
    Endpoint {
        namespace: format!("ns{}", i % NAMESPACES),
        pod: format!("pod{i}"),
        node: "n1".into(),
        interface: format!("wft{i:011x}"),
        addresses: vec![address(i)],
        labels: [("app".to_string(), format!("app{}", i % 7))].into(),
        ports: vec![NamedPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
    }
}

fn inputs(endpoints: usize) -> Inputs {
    let policies = (0..10)
        .map(|p| {
            serde_json::from_value(json!({
                "metadata": {"namespace": format!("ns{p}"), "name": format!("policy{p}")},
                "spec": {"podSelector": {},
                         "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", p % 3)}},
                                                "podSelector": {"matchLabels": {"app": format!("app{}", p % 7)}}},
                                               {"ipBlock": {"cidr": "198.19.0.0/16", "except": ["198.19.1.0/24"]}}],
                                      "ports": [{"port": 80}, {"port": 443}, {"port": "http"}]}],
                         "egress": [{"to": [{"namespaceSelector": {}}]}]}
            }))
            .unwrap()
        })
        .collect();
    Inputs {
        node: "n1".into(),
        endpoints: (0..endpoints).map(endpoint).collect(),
        namespaces: (0..NAMESPACES)
            .map(|n| (format!("ns{n}"), [("team".to_string(), format!("t{}", n % 3))].into()))
            .collect(),
        policies,
        pools: vec![],
    }
}

/// The same endpoint as the store holds it: its WorkloadEndpoint and its Pod.
fn stored(i: usize) -> (Value, Value) {
    let e = endpoint(i);
    (
        json!({"metadata": {"namespace": e.namespace, "name": format!("n1-{}-eth0", e.pod)},
               "spec": {"node": "n1", "pod": e.pod, "interfaceName": e.interface,
                        "ipNetworks": [format!("{}/32", e.addresses[0])]}}),
        json!({"metadata": {"namespace": e.namespace, "name": e.pod, "labels": e.labels},
               "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}),
    )
}

/// The store's objects of `inputs(endpoints)` (index into `kinds()`, object).
fn objects(endpoints: usize) -> Vec<(usize, Value)> {
    let inputs = inputs(endpoints);
    let mut objects = Vec::new();
    for i in 0..endpoints {
        let (endpoint, pod) = stored(i);
        objects.push((0, endpoint));
        objects.push((1, pod));
    }
    for (name, labels) in &inputs.namespaces {
        objects.push((2, json!({"metadata": {"name": name, "labels": labels}})));
    }
    for policy in &inputs.policies {
        objects.push((3, serde_json::to_value(policy).unwrap()));
    }
    objects
}

/// felix's agent on the kernel of the namespace the calling thread is in, fed the store's
/// objects and programmed (the table already there: a resync that finds it right); then
/// `POD_CHANGES` pods added and removed, each a WorkloadEndpoint and a Pod event followed by
/// the agent's programming, timed from the first event to the kernel's answer.
///
/// With `kernel` the agent programs the kernel and the table is checked against `kernel`
/// (the bench's ruleset) before and after; without, it programs [`AcceptingNft`] (its own
/// cost alone).
fn agent_pod_changes(size: usize, kernel: Option<&Ruleset>) -> (Vec<Duration>, Vec<Duration>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let kinds = kinds();
        let nft: Arc<dyn Nft> = match kernel {
            Some(_) => Arc::new(NftBinary),
            None => Arc::new(AcceptingNft),
        };
        let mut agent = Agent::new(nft, "n1", Metrics::new());
        for (kind, object) in objects(size) {
            agent.upsert(&kinds[kind], object);
        }
        agent.program(true).await;
        let check = |what: &str, same: bool| {
            if let Some(ruleset) = kernel {
                let listed = NftBinary.list().unwrap().unwrap();
                assert_eq!(render::matches_kernel(ruleset, &listed), same, "{what}");
            }
        };
        check("the agent computes the bench's table", true);
        let (mut add, mut del) = (Vec::new(), Vec::new());
        for n in 0..POD_CHANGES {
            let (endpoint_object, pod_object) = stored(size + n);
            let started = Instant::now();
            agent.upsert(&kinds[0], endpoint_object.clone());
            agent.upsert(&kinds[1], pod_object.clone());
            agent.program(false).await;
            add.push(started.elapsed());
            if n == 0 {
                check("the pod's elements reached the kernel", false);
            }
            let started = Instant::now();
            agent.remove(&kinds[0], &endpoint_object);
            agent.remove(&kinds[1], &pod_object);
            agent.program(false).await;
            del.push(started.elapsed());
        }
        check("every pod added was removed", true);
        (add, del)
    })
}

/// nftables that takes every batch at once: what the agent costs by itself.
#[derive(Debug)]
struct AcceptingNft;

impl Nft for AcceptingNft {
    fn apply(&self, _batch: &Batch) -> Result<(), NftError> {
        Ok(())
    }

    fn list(&self) -> Result<Option<Listing>, NftError> {
        Ok(None)
    }
}

/// The linear iptables equivalent: per endpoint a jump from FORWARD and a chain of ten
/// allow rules and a drop.
fn linear(endpoints: usize) -> String {
    let mut text = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..endpoints {
        text.push_str(&format!(":to-{i} - [0:0]\n"));
    }
    for i in 0..endpoints {
        text.push_str(&format!("-A FORWARD -o wft{i:011x} -j to-{i}\n"));
        for r in 0..10 {
            text.push_str(&format!(
                "-A to-{i} -s 198.18.{r}.0/24 -p tcp -m tcp --dport 80 -j ACCEPT\n"
            ));
        }
        text.push_str(&format!("-A to-{i} -j DROP\n"));
    }
    text.push_str("COMMIT\n");
    text
}

fn run(program: &str, args: &[&str], stdin: &str) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

fn timed(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let Some(_support) = require_netns() else { return };
    println!(
        "{:>9} {:>7} {:>7} | {:>10} {:>12} {:>10} | {:>10} {:>12} {:>12} | {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "endpoints",
        "rules",
        "elems",
        "calc",
        "render text",
        "nft full",
        "linear",
        "legacy",
        "iptables-nft",
        "pod add",
        "pod del",
        "agent add",
        "agent del",
        "own add",
        "own del"
    );
    for size in SIZES {
        let netns = Netns::new("felix-bench").unwrap();
        let inputs = inputs(size);
        let mut calculation = None;
        let calc_time = timed(|| calculation = Some(calculate(&inputs)));
        let ruleset = calculation.unwrap().ruleset;
        let rules: usize = ruleset.chains.values().map(|c| c.rules.len()).sum();
        let elements: usize = ruleset.sets.values().map(|s| s.elements.len()).sum::<usize>()
            + ruleset.maps.values().map(|m| m.len()).sum::<usize>();
        let mut batch = Batch::Text(String::new());
        let render_time = timed(|| batch = render::full(&ruleset, None));
        let load = netns.within(|| timed(|| NftBinary.apply(&batch).unwrap())).unwrap();
        // One pod added and removed with the table full, as felix applies it.
        let mut add = Vec::new();
        let mut del = Vec::new();
        let mut grown = inputs.clone();
        for n in 0..POD_CHANGES {
            grown.endpoints.push(endpoint(size + n));
            let bigger = calculate(&grown).ruleset;
            let forward = Batch::of(render::diff(&ruleset, &bigger).unwrap());
            let backward = Batch::of(render::diff(&bigger, &ruleset).unwrap());
            assert!(
                matches!(forward, Batch::Elements(_)) && matches!(backward, Batch::Elements(_)),
                "a pod add/remove is element-only: {forward:?}"
            );
            let (a, d) = netns
                .within(|| {
                    (
                        timed(|| NftBinary.apply(&forward).unwrap()),
                        timed(|| NftBinary.apply(&backward).unwrap()),
                    )
                })
                .unwrap();
            add.push(a);
            del.push(d);
            grown.endpoints.pop();
        }
        // The same through felix's agent, end to end: store events in, kernel programmed.
        let (agent_add, agent_del) = netns.within(|| agent_pod_changes(size, Some(&ruleset))).unwrap();
        let (own_add, own_del) = agent_pod_changes(size, None);
        let text = linear(size);
        let (legacy, iptables_nft) = netns
            .within(|| {
                (
                    run("iptables-legacy-restore", &[], &text),
                    run("iptables-nft-restore", &[], &text),
                )
            })
            .unwrap();
        println!(
            "{:>9} {:>7} {:>7} | {:>10} {:>12} {:>10} | {:>10} {:>12} {:>12} | {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            size,
            rules,
            elements,
            ms(calc_time),
            ms(render_time),
            ms(load),
            size * 12,
            ms(legacy),
            ms(iptables_nft),
            ms(median(add)),
            ms(median(del)),
            ms(median(agent_add)),
            ms(median(agent_del)),
            ms(median(own_add)),
            ms(median(own_del)),
        );
        drop(netns);
    }
    println!(
        "(pod add/del: median of {POD_CHANGES}, one netlink element batch each, table full; agent add/del: \
         felix's agent end to end, a WorkloadEndpoint and a Pod event in, the kernel programmed, median of \
         {POD_CHANGES}; own add/del: the same agent with an nftables that takes every batch at once, its own \
         cost alone)"
    );
}

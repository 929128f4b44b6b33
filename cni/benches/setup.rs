//! Pod network setup as a runtime sees it: the time of one CNI ADD, and of the matching DEL, of
//! `weft-cni` (file store) next to the reference `ptp` + `host-local`, in one run.
//!
//! `cargo bench -p weft-cni --bench setup` prints a table (ADD p50/p99, DEL p50, ADD p50
//! against ptp + host-local's). Every pod gets a fresh network namespace of the kit, and every
//! call is a real process exec of the plugin inside one "node" namespace (through
//! `ip netns exec`, which both plugins pay alike) with `CNI_*` variables and the configuration on
//! stdin: 1 pod at a time, then 8 threads at once. Each pod is ADDed, then DELed, then its
//! namespace removed. Addresses only from 198.18.0.0/16; both plugins use the whole range, one
//! after the other, so nothing of one is left when the other runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_api::StoreExt;
use weft_api::resources::{IPPool, IPPoolSpec};
use weft_topology_tests::{Netns, require_netns};

const PTP: &str = "/usr/lib/cni/ptp";
const HOST_LOCAL: &str = "/usr/lib/cni/host-local";
const PODS: usize = 100;

/// One pod's figures: ADD and DEL latency, and whether both succeeded.
struct Pod {
    add: Duration,
    del: Duration,
    ok: bool,
}

struct Sample {
    add: Vec<Duration>,
    del: Vec<Duration>,
    failures: usize,
}

fn call(node: &Netns, plugin: &str, command: &str, container: &str, pod: &Path, config: &str) -> (Duration, bool) {
    let started = Instant::now();
    let output = node
        .command(plugin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", pod.display().to_string())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={container}"),
        )
        .stdin(config.to_owned())
        .timeout(Duration::from_secs(60))
        .output();
    let elapsed = started.elapsed();
    match output {
        Ok(output) if output.success() => (elapsed, true),
        Ok(output) => {
            eprintln!("{plugin} {command} {container}: {}", output.stdout.trim());
            (elapsed, false)
        }
        Err(err) => {
            eprintln!("{plugin} {command} {container}: {err}");
            (elapsed, false)
        }
    }
}

fn pod(node: &Netns, plugin: &str, config: &str, container: &str) -> Pod {
    let netns = Netns::new("pod").expect("a pod namespace");
    let (add, added) = call(node, plugin, "ADD", container, netns.path(), config);
    let (del, deleted) = call(node, plugin, "DEL", container, netns.path(), config);
    netns.remove().expect("the pod namespace is removed");
    Pod {
        add,
        del,
        ok: added && deleted,
    }
}

/// `clients` threads, `PODS / clients` pods each (rounded up), all started together.
fn measure(node: &Netns, plugin: &str, config: &str, clients: usize, tag: &str) -> Sample {
    let per_client = PODS.div_ceil(clients);
    let barrier = Arc::new(Barrier::new(clients));
    let pods: Vec<Pod> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|client| {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    barrier.wait();
                    (0..per_client)
                        .map(|i| pod(node, plugin, config, &format!("{tag}-{client}-{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let failures = pods.iter().filter(|p| !p.ok).count();
    let mut add: Vec<Duration> = pods.iter().map(|p| p.add).collect();
    let mut del: Vec<Duration> = pods.iter().map(|p| p.del).collect();
    add.sort();
    del.sort();
    Sample { add, del, failures }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn add_pool(store: &str) {
    let store = weft_api::store::open(store).await.unwrap();
    let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": "198.18.0.0/16"})).unwrap();
    spec.block_size = Some(26);
    store.create_as(&IPPool::new("bench", spec)).await.unwrap();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let weft = env!("CARGO_BIN_EXE_weft-cni");
    if !Path::new(PTP).exists() || !Path::new(HOST_LOCAL).exists() {
        eprintln!("needs {PTP} and {HOST_LOCAL} (containernetworking-plugins): bash scripts/install-deps.sh");
        std::process::exit(1);
    }
    let Some(_support) = require_netns() else {
        eprintln!("needs network namespaces (root)");
        std::process::exit(1);
    };
    let node = Netns::new("node").unwrap();
    let mut rows: Vec<(&str, usize, Sample)> = Vec::new();
    for clients in [1usize, 8] {
        let dir = tempfile::tempdir().unwrap();
        let reference = json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "type": "ptp",
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "198.18.0.0/16"}]],
                "dataDir": dir.path().join("host-local"),
            },
        })
        .to_string();
        rows.push((
            "ptp + host-local",
            clients,
            measure(&node, PTP, &reference, clients, "ref"),
        ));

        let store = format!("file:{}", dir.path().join("store").display());
        add_pool(&store).await;
        let config = json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "type": "weft-cni",
            "store": store,
            "nodename": "bench-node",
            "lock_file": dir.path().join("cni.lock"),
            "ipam": {"type": "weft-ipam", "pools": ["198.18.0.0/16"]},
        })
        .to_string();
        rows.push((
            "weft-cni, file store",
            clients,
            measure(&node, weft, &config, clients, "weft"),
        ));
    }
    let leftovers: Vec<String> = node.links().unwrap().into_iter().filter(|l| l != "lo").collect();

    let baseline = |clients: usize| {
        rows.iter()
            .find(|(name, c, _)| name.starts_with("ptp") && *c == clients)
            .map(|(_, _, s)| percentile(&s.add, 0.5))
            .unwrap()
    };
    println!();
    println!("CNI ADD and DEL of one pod, one process exec per call, a fresh netns per pod (release build)");
    println!();
    println!(
        "| plugin | clients | pods | failures | ADD p50 ms | ADD p99 ms | DEL p50 ms | ADD p50 vs ptp+host-local |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, clients, sample) in &rows {
        let p50 = percentile(&sample.add, 0.5);
        println!(
            "| {name} | {clients} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2}× |",
            sample.add.len(),
            sample.failures,
            ms(p50),
            ms(percentile(&sample.add, 0.99)),
            ms(percentile(&sample.del, 0.5)),
            ms(p50) / ms(baseline(*clients)),
        );
    }
    println!();
    if leftovers.is_empty() {
        println!("no interface left in the node namespace after every DEL");
    } else {
        println!("left in the node namespace after every DEL: {leftovers:?}");
    }
}

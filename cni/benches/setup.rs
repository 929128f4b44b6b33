//! Pod network set-up as a runtime sees it (issue 4's benchmark): CNI ADD and DEL of
//! `weft-cni` (file store) next to the reference `ptp` + `host-local`, measured in one run.
//!
//! `cargo bench -p weft-cni --bench setup` prints a table: for each plugin, 200 pods one after
//! the other, then 20 pods at once, then 50 pods at once; ADD and DEL p50/p99 per call, the
//! wall time of each burst (first call started to last call answered) and the failures. Every
//! call is a real exec of the plugin binary with `CNI_*` variables and the configuration on
//! stdin, forked from a thread that entered one "node" namespace (as a runtime runs its
//! plugins: no `ip netns exec` wrapper, whose own 5–6 ms would blur both plugins' figures).
//! Every pod gets a fresh network namespace of the kit, made before its calls and not timed.
//! Addresses only from 198.18.0.0/16; the plugins run one after the other, each with its own
//! store (weft-cni) or data directory (host-local), kept for all of its runs as a node keeps
//! them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use weft_api::StoreExt;
use weft_api::resources::{IPPool, IPPoolSpec};
use weft_topology_tests::{Netns, Route, require_netns};

const PTP: &str = "/usr/lib/cni/ptp";
const HOST_LOCAL: &str = "/usr/lib/cni/host-local";
const SEQUENTIAL_PODS: usize = 200;
const BURSTS: [usize; 2] = [20, 50];
/// No call may take longer; one that does is killed and counted as a failure.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

struct Plugin {
    name: &'static str,
    binary: PathBuf,
    config: String,
}

/// One call's latency and outcome.
struct Call {
    started: Instant,
    took: Duration,
    ok: bool,
}

/// The figures of one run of one plugin.
struct Run {
    plugin: &'static str,
    label: String,
    adds: Vec<Duration>,
    dels: Vec<Duration>,
    failures: usize,
    /// Wall time of the ADD and DEL bursts (`None` for the sequential run).
    add_wall: Option<Duration>,
    del_wall: Option<Duration>,
}

/// One CNI call, forked from the calling thread (so in the namespace that thread is in).
async fn call(plugin: &Plugin, command: &str, container: &str, pod: &Path) -> Call {
    let started = Instant::now();
    let outcome = async {
        let mut child = tokio::process::Command::new(&plugin.binary)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", pod)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={container}"),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().expect("a piped stdin");
        stdin.write_all(plugin.config.as_bytes()).await?;
        drop(stdin);
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(CALL_TIMEOUT, outcome).await;
    let took = started.elapsed();
    let ok = match output {
        Ok(Ok(output)) if output.status.success() => true,
        Ok(Ok(output)) => {
            eprintln!(
                "{} {command} {container}: {}",
                plugin.name,
                String::from_utf8_lossy(&output.stdout).trim()
            );
            false
        }
        Ok(Err(error)) => {
            eprintln!("{} {command} {container}: {error}", plugin.name);
            false
        }
        Err(_) => {
            eprintln!("{} {command} {container}: no answer in {CALL_TIMEOUT:?}", plugin.name);
            false
        }
    };
    Call { started, took, ok }
}

/// Runs `work` on a thread inside `node` with a runtime of its own.
fn in_node<T: Send>(node: &Netns, work: impl FnOnce() -> T + Send) -> T {
    node.within(work).expect("a thread in the node namespace")
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// `pods` pods one after the other: ADD, then DEL, each in a fresh namespace.
fn sequential(node: &Netns, plugin: &Plugin, pods: usize) -> Run {
    let mut run = Run {
        plugin: plugin.name,
        label: format!("{pods} one by one"),
        adds: Vec::new(),
        dels: Vec::new(),
        failures: 0,
        add_wall: None,
        del_wall: None,
    };
    for i in 0..pods {
        let netns = Netns::new("pod").expect("a pod namespace");
        let container = format!("seq-{i}");
        let (add, del) = in_node(node, || {
            block_on(async {
                let add = call(plugin, "ADD", &container, netns.path()).await;
                let del = call(plugin, "DEL", &container, netns.path()).await;
                (add, del)
            })
        });
        run.failures += usize::from(!add.ok) + usize::from(!del.ok);
        run.adds.push(add.took);
        run.dels.push(del.took);
        netns.remove().expect("the pod namespace is removed");
    }
    run
}

/// `pods` ADDs started at once (one thread each), then, once all answered, `pods` DELs at once.
fn burst(node: &Netns, plugin: &Plugin, pods: usize) -> Run {
    let namespaces: Vec<Netns> = (0..pods).map(|_| Netns::new("pod").expect("a pod namespace")).collect();
    let barrier = Arc::new(Barrier::new(pods));
    let results: Vec<(Call, Call)> = std::thread::scope(|scope| {
        let workers: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(i, netns)| {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    in_node(node, || {
                        let container = format!("burst{pods}-{i}");
                        barrier.wait();
                        let add = block_on(call(plugin, "ADD", &container, netns.path()));
                        barrier.wait();
                        let del = block_on(call(plugin, "DEL", &container, netns.path()));
                        (add, del)
                    })
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    // First call started to last call answered, from the calls' own clocks.
    let wall = |calls: Vec<&Call>| {
        let first = calls.iter().map(|c| c.started).min().unwrap();
        let last = calls.iter().map(|c| c.started + c.took).max().unwrap();
        last - first
    };
    let add_wall = wall(results.iter().map(|(a, _)| a).collect());
    let del_wall = wall(results.iter().map(|(_, d)| d).collect());
    for netns in namespaces {
        netns.remove().expect("the pod namespace is removed");
    }
    Run {
        plugin: plugin.name,
        label: format!("{pods} at once"),
        failures: results
            .iter()
            .map(|(a, d)| usize::from(!a.ok) + usize::from(!d.ok))
            .sum(),
        adds: results.iter().map(|(a, _)| a.took).collect(),
        dels: results.iter().map(|(_, d)| d.took).collect(),
        add_wall: Some(add_wall),
        del_wall: Some(del_wall),
    }
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn add_pool(store: &str) {
    let store = weft_api::store::open(store).await.unwrap();
    let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": "198.18.0.0/16"})).unwrap();
    spec.block_size = Some(26);
    store.create_as(&IPPool::new("bench", spec)).await.unwrap();
}

fn main() {
    if !Path::new(PTP).exists() || !Path::new(HOST_LOCAL).exists() {
        eprintln!("needs {PTP} and {HOST_LOCAL} (containernetworking-plugins): bash scripts/install-deps.sh");
        std::process::exit(1);
    }
    let Some(_support) = require_netns() else {
        eprintln!("needs network namespaces (root)");
        std::process::exit(1);
    };
    // A node as nodes are: an uplink holding the default route (weft-cni takes its MTU).
    let node = Netns::new("node").unwrap();
    let upstream = Netns::new("upstream").unwrap();
    node.veth("uplink0", &upstream, "down0").unwrap();
    node.add_address("uplink0", "198.19.0.1/30").unwrap();
    upstream.add_address("down0", "198.19.0.2/30").unwrap();
    node.add_route(&Route::default_v4().via("198.19.0.2")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().join("store").display());
    block_on(add_pool(&store));
    let plugins = [
        Plugin {
            name: "ptp + host-local",
            binary: PathBuf::from(PTP),
            config: json!({
                "cniVersion": "1.0.0",
                "name": "bench",
                "type": "ptp",
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "198.18.0.0/16"}]],
                    "dataDir": dir.path().join("host-local"),
                },
            })
            .to_string(),
        },
        Plugin {
            name: "weft-cni, file store",
            binary: PathBuf::from(env!("CARGO_BIN_EXE_weft-cni")),
            config: json!({
                "cniVersion": "1.0.0",
                "name": "bench",
                "type": "weft-cni",
                "store": store,
                "nodename": "bench-node",
                "lock_file": dir.path().join("cni.lock"),
                "ipam": {"type": "weft-ipam", "pools": ["198.18.0.0/16"]},
            })
            .to_string(),
        },
    ];
    let mut runs = Vec::new();
    for plugin in &plugins {
        runs.push(sequential(&node, plugin, SEQUENTIAL_PODS));
    }
    for pods in BURSTS {
        for plugin in &plugins {
            runs.push(burst(&node, plugin, pods));
        }
    }
    let leftovers: Vec<String> = node
        .links()
        .unwrap()
        .into_iter()
        .filter(|l| l != "lo" && l != "uplink0")
        .collect();

    println!();
    println!("CNI ADD and DEL, one exec per call from the node namespace, a fresh netns per pod (release build)");
    println!();
    println!(
        "| plugin | pods | failures | ADD p50 ms | ADD p99 ms | DEL p50 ms | DEL p99 ms | ADD wall ms | DEL wall ms |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for run in &runs {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.plugin,
            run.label,
            run.failures,
            ms(percentile(&run.adds, 0.5)),
            ms(percentile(&run.adds, 0.99)),
            ms(percentile(&run.dels, 0.5)),
            ms(percentile(&run.dels, 0.99)),
            run.add_wall.map_or("-".into(), ms),
            run.del_wall.map_or("-".into(), ms),
        );
    }
    println!();
    if leftovers.is_empty() {
        println!("no interface left in the node namespace after every DEL");
    } else {
        println!("left in the node namespace after every DEL: {leftovers:?}");
    }
}

//! Fabric convergence and memory: weft-bgpd on the nodes next to BIRD on the nodes, in one run.
//!
//! A leaf-spine fabric (BIRD on spines and leaves, eBGP everywhere, ECMP) where every node
//! originates one /26 is generated as a containerlab topology and brought up with `weft-lab`,
//! once with weft-bgpd on the nodes and once with BIRD on the nodes. Measured per run: the time
//! from `weft-lab up` starting until every node has every other node's /26 in its kernel FIB,
//! the time `up` itself took (namespaces, links, daemons; the same work for both), and the peak
//! RSS (VmHWM) of the node daemons. Printed as a table with the ratios weft / BIRD.
//!
//! ```sh
//! cargo bench -p weft-topology-tests --bench fabric                 # 2 spines, 8 leaves, 40 nodes
//! cargo bench -p weft-topology-tests --bench fabric -- --large      # and 4 spines, 20 leaves, 400 nodes
//! ```
//! Needs root. Addresses: pods 198.18.0.0/16, links 198.19.0.0/16, in the lab's namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a fabric may take to converge before the run is reported as failed.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy)]
struct Fabric {
    spines: usize,
    leaves: usize,
    nodes_per_leaf: usize,
}

impl Fabric {
    fn nodes(&self) -> usize {
        self.leaves * self.nodes_per_leaf
    }

    fn describe(&self) -> String {
        format!("{} spines, {} leaves, {} nodes", self.spines, self.leaves, self.nodes())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum NodeDaemon {
    Weft,
    Bird,
}

impl NodeDaemon {
    fn name(self) -> &'static str {
        match self {
            NodeDaemon::Weft => "weft-bgpd",
            NodeDaemon::Bird => "BIRD",
        }
    }
}

struct Measured {
    up: Duration,
    converged: Duration,
    rss_median_kib: u64,
    rss_max_kib: u64,
    /// Proportional memory (PSS): private pages plus each shared page divided by the processes
    /// mapping it, what each node's daemon costs when all the lab's nodes run on one machine.
    pss_median_kib: u64,
    /// Private memory (USS: Private_Clean + Private_Dirty): what one more node costs when the
    /// daemon's code is already in memory.
    private_median_kib: u64,
}

fn main() {
    if let Err(why) = weft_topology_tests::netns_support() {
        eprintln!("fabric bench: skipped: {why}");
        return;
    }
    let large = std::env::args().any(|a| a == "--large");
    build_binaries();
    let mut fabrics = vec![Fabric {
        spines: 2,
        leaves: 8,
        nodes_per_leaf: 5,
    }];
    if large {
        fabrics.push(Fabric {
            spines: 4,
            leaves: 20,
            nodes_per_leaf: 20,
        });
    }
    let mut table = String::new();
    writeln!(
        table,
        "| fabric | nodes run | up s | converged s | node RSS median MiB | node RSS max MiB | node PSS MiB | node private MiB | converged vs BIRD | RSS vs BIRD | PSS vs BIRD | private vs BIRD |"
    )
    .unwrap();
    writeln!(
        table,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    .unwrap();
    for fabric in fabrics {
        let bird = run(fabric, NodeDaemon::Bird);
        let weft = run(fabric, NodeDaemon::Weft);
        for (daemon, measured) in [(NodeDaemon::Bird, &bird), (NodeDaemon::Weft, &weft)] {
            let ratio = |ours: f64, theirs: f64| format!("{:.2}×", ours / theirs);
            let (time_ratio, rss_ratio, pss_ratio, private_ratio) = (
                ratio(measured.converged.as_secs_f64(), bird.converged.as_secs_f64()),
                ratio(measured.rss_median_kib as f64, bird.rss_median_kib as f64),
                ratio(measured.pss_median_kib as f64, bird.pss_median_kib as f64),
                ratio(measured.private_median_kib as f64, bird.private_median_kib as f64),
            );
            writeln!(
                table,
                "| {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {time_ratio} | {rss_ratio} | {pss_ratio} | {private_ratio} |",
                fabric.describe(),
                daemon.name(),
                measured.up.as_secs_f64(),
                measured.converged.as_secs_f64(),
                measured.rss_median_kib as f64 / 1024.0,
                measured.rss_max_kib as f64 / 1024.0,
                measured.pss_median_kib as f64 / 1024.0,
                measured.private_median_kib as f64 / 1024.0,
            )
            .unwrap();
        }
    }
    println!("\n{table}");
    println!("converged: from `weft-lab up` starting until every node has every other node's /26 in its FIB.");
    println!("RSS: peak resident memory (VmHWM) of each node's BGP daemon once converged, its code included;");
    println!(
        "PSS: its proportional share then (shared pages divided among the processes mapping them), each node's cost in this lab;"
    );
    println!("private: its private memory (USS) then, what each further node adds once the code is in memory.");
}

fn build_binaries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "weft-bgpd",
            "-p",
            "weft-topology-tests",
            "--bins",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release")
}

fn run(fabric: Fabric, daemon: NodeDaemon) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let name = format!(
        "b{}{}{}",
        std::process::id(),
        fabric.nodes(),
        if daemon == NodeDaemon::Weft { "w" } else { "b" }
    );
    let file = write_topology(dir.path(), &name, fabric, daemon);
    let weft_lab = bin_dir().join("weft-lab");
    let lab = Lab {
        weft_lab: weft_lab.clone(),
        file: file.clone(),
    };
    eprintln!(
        "fabric bench: {} with {} on the nodes",
        fabric.describe(),
        daemon.name()
    );
    let started = Instant::now();
    let out = Command::new(&weft_lab).arg("up").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "weft-lab up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = started.elapsed();
    let converged = wait_converged(&name, fabric, daemon, started);
    let (rss_median_kib, rss_max_kib) = node_memory(&name, daemon, "/status", "VmHWM:");
    let (pss_median_kib, _) = node_memory(&name, daemon, "/smaps_rollup", "Pss:");
    let (private_median_kib, _) = node_memory(&name, daemon, "/smaps_rollup", "Private_");
    drop(lab);
    Measured {
        up,
        converged,
        rss_median_kib,
        rss_max_kib,
        pss_median_kib,
        private_median_kib,
    }
}

/// `weft-lab down` when dropped, also when the bench panics.
struct Lab {
    weft_lab: PathBuf,
    file: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = Command::new(&self.weft_lab).arg("down").arg(&self.file).output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!("weft-lab down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn node_block(n: usize) -> String {
    // Node n (1-based) gets the n-th /26 of 198.18.0.0/16.
    let offset = n * 64;
    format!("198.18.{}.{}/26", offset / 256, offset % 256)
}

fn link_pair(base: u8, k: usize) -> (String, String) {
    // The k-th /31 (0-based) of 198.19.<base>.0/20-ish space.
    let third = usize::from(base) + k / 128;
    let fourth = (k % 128) * 2;
    (
        format!("198.19.{third}.{fourth}"),
        format!("198.19.{third}.{}", fourth + 1),
    )
}

fn write_topology(dir: &Path, name: &str, fabric: Fabric, daemon: NodeDaemon) -> PathBuf {
    let mut nodes = String::new();
    let mut links = String::new();
    let mut bird_peers: Vec<Vec<(String, String, u32)>> = Vec::new(); // per router: (name, addr, asn)
    let spine_asn = 65000u32;
    let leaf_asn = |l: usize| 65100 + u32::try_from(l).unwrap();
    let node_asn = |n: usize| 4_210_000_000 + u32::try_from(n).unwrap();
    let routers: Vec<String> = (1..=fabric.spines)
        .map(|s| format!("spine{s}"))
        .chain((1..=fabric.leaves).map(|l| format!("leaf{l}")))
        .collect();
    bird_peers.resize(routers.len(), Vec::new());
    let mut k = 0;
    for l in 1..=fabric.leaves {
        for s in 1..=fabric.spines {
            let (a, b) = link_pair(0, k);
            k += 1;
            writeln!(
                links,
                "    - endpoints: [\"spine{s}:eth{l}\", \"leaf{l}:eth{s}\"]\n      ipv4: [\"{a}/31\", \"{b}/31\"]"
            )
            .unwrap();
            bird_peers[s - 1].push((format!("leaf{l}"), b.clone(), leaf_asn(l)));
            bird_peers[fabric.spines + l - 1].push((format!("spine{s}"), a.clone(), spine_asn));
        }
    }
    let mut node_configs = Vec::new();
    let mut k = 0;
    for l in 1..=fabric.leaves {
        for i in 1..=fabric.nodes_per_leaf {
            let n = (l - 1) * fabric.nodes_per_leaf + i;
            let (leaf_side, node_side) = link_pair(16, k);
            k += 1;
            let port = fabric.spines + i;
            writeln!(
                links,
                "    - endpoints: [\"leaf{l}:eth{port}\", \"node{n}:eth1\"]\n      ipv4: [\"{leaf_side}/31\", \"{node_side}/31\"]"
            )
            .unwrap();
            bird_peers[fabric.spines + l - 1].push((format!("node{n}"), node_side.clone(), node_asn(n)));
            node_configs.push((n, leaf_side, leaf_asn(l), node_side));
        }
    }
    for (index, router) in routers.iter().enumerate() {
        let asn = if index < fabric.spines {
            spine_asn
        } else {
            leaf_asn(index - fabric.spines + 1)
        };
        let mut conf = bird_router(&format!("198.19.255.{}", index + 1), asn, None);
        for (peer, address, peer_asn) in &bird_peers[index] {
            writeln!(
                conf,
                "protocol bgp {peer} from fabric {{ neighbor {address} as {peer_asn}; }}"
            )
            .unwrap();
        }
        std::fs::write(dir.join(format!("{router}.conf")), conf).unwrap();
        writeln!(
            nodes,
            "    {router}: {{ kind: linux, image: bird:2, binds: [\"{router}.conf:/etc/bird/bird.conf\"] }}"
        )
        .unwrap();
    }
    for (n, leaf_address, leaf, own) in node_configs {
        let block = node_block(n);
        match daemon {
            NodeDaemon::Weft => {
                let conf = format!(
                    "asn: {}\nrouter_id: {own}\noriginate: [{block}]\nkernel: {{ install: true }}\npeers:\n  - address: {leaf_address}\n    asn: {leaf}\n    families: [ipv4-unicast]\n    import: accept\n    export: accept\n    hold_time: 9\n    connect_retry_time: 2\n",
                    node_asn(n)
                );
                std::fs::write(dir.join(format!("node{n}.yaml")), conf).unwrap();
                writeln!(
                    nodes,
                    "    node{n}: {{ kind: linux, image: weft-node, env: {{ WEFT_FELIX: \"false\" }}, binds: [\"node{n}.yaml:/etc/weft/bgpd.yaml\"] }}"
                )
                .unwrap();
            }
            NodeDaemon::Bird => {
                let mut conf = bird_router(&own, node_asn(n), Some(&block));
                writeln!(
                    conf,
                    "protocol bgp leaf from fabric {{ neighbor {leaf_address} as {leaf}; }}"
                )
                .unwrap();
                std::fs::write(dir.join(format!("node{n}.conf")), conf).unwrap();
                writeln!(
                    nodes,
                    "    node{n}: {{ kind: linux, image: bird:2, binds: [\"node{n}.conf:/etc/bird/bird.conf\"] }}"
                )
                .unwrap();
            }
        }
    }
    let file = dir.join("fabric.clab.yml");
    std::fs::write(
        &file,
        format!("name: {name}\ntopology:\n  nodes:\n{nodes}  links:\n{links}"),
    )
    .unwrap();
    file
}

/// A BIRD router of the fabric: kernel export with ECMP, a BGP template, and (for a node) its
/// block as a static blackhole announced to its leaf.
fn bird_router(router_id: &str, asn: u32, block: Option<&str>) -> String {
    let mut conf = format!(
        "router id {router_id};\nprotocol device {{ }}\n\
         protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; merge paths on; }}\n"
    );
    let export = match block {
        Some(block) => {
            writeln!(conf, "protocol static {{ ipv4; route {block} blackhole; }}").unwrap();
            "export where source = RTS_STATIC"
        }
        None => "export all",
    };
    writeln!(
        conf,
        "template bgp fabric {{ local as {asn}; hold time 9; connect retry time 2; ipv4 {{ import all; {export}; }}; }}"
    )
    .unwrap();
    conf
}

fn wait_converged(name: &str, fabric: Fabric, daemon: NodeDaemon, started: Instant) -> Duration {
    let expected = fabric.nodes() - 1;
    let pending: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new((1..=fabric.nodes()).collect()));
    let latest = Arc::new(Mutex::new(Duration::ZERO));
    let failures = Arc::new(AtomicUsize::new(0));
    let proto = if daemon == NodeDaemon::Weft { "87" } else { "bird" };
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (pending, latest, failures) = (pending.clone(), latest.clone(), failures.clone());
            let name = name.to_owned();
            std::thread::spawn(move || {
                loop {
                    let Some(node) = pending.lock().unwrap().pop() else {
                        return;
                    };
                    let netns = format!("clab-{name}-node{node}");
                    loop {
                        let out = Command::new("ip")
                            .args(["-n", &netns, "-4", "route", "show", "proto", proto])
                            .output()
                            .unwrap();
                        let learned = String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .filter(|line| line.contains("/26") && !line.starts_with("blackhole"))
                            .count();
                        if learned >= expected {
                            let mut latest = latest.lock().unwrap();
                            *latest = (*latest).max(started.elapsed());
                            break;
                        }
                        if started.elapsed() > CONVERGENCE_LIMIT {
                            failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!("node{node}: {learned} of {expected} blocks after {CONVERGENCE_LIMIT:?}");
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "the fabric did not converge");
    *latest.lock().unwrap()
}

/// Median and maximum over the node daemons of the sum of the `field…` lines (kB) of
/// `/proc/PID<file>`.
fn node_memory(name: &str, daemon: NodeDaemon, file: &str, field: &str) -> (u64, u64) {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("/run/weft-lab/{name}/state.json")).unwrap()).unwrap();
    let program = if daemon == NodeDaemon::Weft {
        "weft-bgpd"
    } else {
        "bird"
    };
    let mut values: Vec<u64> = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["program"] == program && p["node"].as_str().is_some_and(|n| n.starts_with("node")))
        .filter_map(|p| {
            let text = std::fs::read_to_string(format!("/proc/{}{file}", p["pid"])).ok()?;
            let sum = text
                .lines()
                .filter(|line| line.starts_with(field))
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            Some(sum)
        })
        .collect();
    values.sort_unstable();
    assert!(!values.is_empty(), "no node daemon found running");
    (values[values.len() / 2], *values.last().unwrap())
}

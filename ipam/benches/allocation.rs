//! Pod address allocation as a runtime sees it: the time of one CNI IPAM ADD, `weft-ipam` on
//! the file store and on a real etcd, next to the reference `host-local` plugin, in one run.
//!
//! `cargo bench -p weft-ipam --bench allocation` prints a table (p50, p99, allocations per
//! second, p50 against host-local's). Each call is a real process exec of the plugin with
//! `CNI_*` variables and the configuration on stdin, 1 client and then 8 at once, and finally
//! 50 allocations started at the same moment on one node on etcd (zero failures expected).
//! Addresses only from 198.18.0.0/15; etcd is started on a free 127.0.0.1 port and stopped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_api::StoreExt;
use weft_api::resources::{IPPool, IPPoolSpec};
use weft_api::testing::EtcdServer;

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

struct Sample {
    latencies: Vec<Duration>,
    failures: usize,
    wall: Duration,
}

fn call(plugin: &str, config: &str, container: &str) -> (Duration, bool) {
    let started = Instant::now();
    let mut child = Command::new(plugin)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", "/var/run/netns/bench")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the plugin starts");
    child.stdin.take().unwrap().write_all(config.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    if !output.status.success() {
        eprintln!("{plugin} {container}: {}", String::from_utf8_lossy(&output.stdout));
    }
    (elapsed, output.status.success())
}

/// `clients` threads, each making `calls` ADDs, all started together.
fn measure(plugin: &str, config: &str, clients: usize, calls: usize, tag: &str) -> Sample {
    let barrier = Arc::new(Barrier::new(clients));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (plugin, config, barrier, tag) = (
                plugin.to_owned(),
                config.to_owned(),
                Arc::clone(&barrier),
                tag.to_owned(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                (0..calls)
                    .map(|i| call(&plugin, &config, &format!("{tag}-{client}-{i}")))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<(Duration, bool)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let wall = started.elapsed();
    let failures = results.iter().filter(|(_, ok)| !ok).count();
    let mut latencies: Vec<Duration> = results.into_iter().map(|(d, _)| d).collect();
    latencies.sort();
    Sample {
        latencies,
        failures,
        wall,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn weft_config(store: &str, dir: &std::path::Path) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "ptp",
        "ipam": {
            "type": "weft-ipam",
            "store": store,
            "nodename": "bench-node",
            "lock_file": dir.join("ipam.lock"),
            "gateway": "none",
        },
    })
    .to_string()
}

async fn add_pool(store: &str) {
    let store = weft_api::store::open(store).await.unwrap();
    let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": "198.18.0.0/16"})).unwrap();
    spec.block_size = Some(26);
    store.create_as(&IPPool::new("bench", spec)).await.unwrap();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let weft = env!("CARGO_BIN_EXE_weft-ipam");
    if !std::path::Path::new(HOST_LOCAL).exists() || EtcdServer::binary().is_none() {
        eprintln!(
            "needs {HOST_LOCAL} (containernetworking-plugins) and etcd (etcd-server): bash scripts/install-deps.sh"
        );
        std::process::exit(1);
    }
    let mut rows: Vec<(String, usize, Sample)> = Vec::new();
    for clients in [1usize, 8] {
        let calls = 240 / clients;
        let dir = tempfile::tempdir().unwrap();
        let host_local = json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "type": "ptp",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.0.0/16"}]], "dataDir": dir.path().join("host-local")},
        })
        .to_string();
        rows.push((
            "host-local".into(),
            clients,
            measure(HOST_LOCAL, &host_local, clients, calls, "hl"),
        ));

        let file = format!("file:{}", dir.path().join("store").display());
        add_pool(&file).await;
        rows.push((
            "weft-ipam, file store".into(),
            clients,
            measure(weft, &weft_config(&file, dir.path()), clients, calls, "wf"),
        ));

        let etcd = EtcdServer::start().unwrap();
        add_pool(&etcd.setting()).await;
        rows.push((
            "weft-ipam, etcd".into(),
            clients,
            measure(weft, &weft_config(&etcd.setting(), dir.path()), clients, calls, "we"),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start().unwrap();
    add_pool(&etcd.setting()).await;
    let burst = measure(weft, &weft_config(&etcd.setting(), dir.path()), 50, 1, "burst");

    let baseline = |clients: usize| {
        rows.iter()
            .find(|(name, c, _)| name == "host-local" && *c == clients)
            .map(|(_, _, s)| percentile(&s.latencies, 0.5))
            .unwrap()
    };
    println!();
    println!("CNI IPAM ADD, one process exec per call (release build, this machine)");
    println!();
    println!("| plugin | clients | calls | failures | p50 ms | p99 ms | allocations/s | p50 vs host-local |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, clients, sample) in &rows {
        let p50 = percentile(&sample.latencies, 0.5);
        println!(
            "| {name} | {clients} | {} | {} | {:.1} | {:.1} | {:.0} | {:.2}× |",
            sample.latencies.len(),
            sample.failures,
            ms(p50),
            ms(percentile(&sample.latencies, 0.99)),
            sample.latencies.len() as f64 / sample.wall.as_secs_f64(),
            ms(p50) / ms(baseline(*clients)),
        );
    }
    println!(
        "| weft-ipam, etcd, 50 at once on one node | 50 | 50 | {} | {:.1} | {:.1} | {:.0} | |",
        burst.failures,
        ms(percentile(&burst.latencies, 0.5)),
        ms(percentile(&burst.latencies, 0.99)),
        burst.latencies.len() as f64 / burst.wall.as_secs_f64(),
    );
    println!();
    println!(
        "targets: p50 on the file store ≤ 1.5× host-local's; 50 at once on etcd with 0 failures and p99 < 1000 ms"
    );
}

//! Many `weft-ipam` processes at once, some killed with SIGKILL mid-flight, on the file store
//! and on a real etcd: no address is ever handed to two live holders, and after the GC nothing
//! leaks and every block is consistent.
//!
//! 8 workers (two per node, four nodes) each run 500 ADD/DEL cycles of the real plugin binary,
//! as a runtime would; about one call in 25 is killed at a random moment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_api::StoreExt;
use weft_api::resources::{IPAMBlock, IPAMHandle, IPPool, IPPoolSpec};
use weft_api::testing::{EtcdServer, require};
use weft_ipam::Allocator;
use weft_ipam::block::Block;
use weft_ipam::gc::{GcOptions, collect};

const WORKERS: usize = 8;
const CYCLES: usize = 500;

/// What one plugin call ended as.
enum Outcome {
    Done(Value),
    Failed(Value),
    Killed,
}

fn call(config: &str, command: &str, container: &str, kill_after: Option<Duration>) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft-ipam"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", "/var/run/netns/unused")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/unused")
        .env("CNI_ARGS", format!("K8S_POD_NAMESPACE=stress;K8S_POD_NAME={container}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(config.as_bytes()).unwrap();
    if let Some(delay) = kill_after {
        std::thread::sleep(delay);
        // Our own child, not yet waited for: its pid is still ours.
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            let _ = child.wait();
            return Outcome::Killed;
        }
    }
    let output = child.wait_with_output().unwrap();
    let value: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    if output.status.success() {
        Outcome::Done(value)
    } else {
        Outcome::Failed(value)
    }
}

fn worker(index: usize, setting: String, dir: PathBuf, holders: Arc<Mutex<HashMap<IpAddr, String>>>) -> Vec<String> {
    let node = format!("node-{}", index / 2);
    let config = json!({
        "cniVersion": "1.0.0",
        "name": "stress",
        "type": "ptp",
        "ipam": {
            "type": "weft-ipam",
            "store": setting,
            "nodename": node,
            "lock_file": dir.join(format!("{node}.lock")),
            "gateway": "none",
        },
    })
    .to_string();
    let mut errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    for cycle in 0..CYCLES {
        assert!(
            Instant::now() < deadline,
            "worker {index} is too slow: {cycle} cycles in 15 minutes"
        );
        let container = format!("w{index}-c{cycle}");
        let kill = |roll: u32| (roll == 0).then(|| Duration::from_millis(fastrand::u64(0..20)));
        match call(&config, "ADD", &container, kill(fastrand::u32(0..25))) {
            Outcome::Done(result) => {
                let address: IpAddr = result["ips"][0]["address"]
                    .as_str()
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("no address in {result}"));
                if let Some(other) = holders.lock().unwrap().insert(address, container.clone()) {
                    errors.push(format!("{address} handed to {container} while {other} holds it"));
                }
                // About to release: from here on the address may be reused.
                holders.lock().unwrap().remove(&address);
            }
            Outcome::Failed(error) => errors.push(format!("ADD {container} failed: {error}")),
            Outcome::Killed => {}
        }
        if let Outcome::Failed(error) = call(&config, "DEL", &container, kill(fastrand::u32(0..25))) {
            errors.push(format!("DEL {container} failed: {error}"));
        }
    }
    errors
}

async fn hammer(setting: String) {
    let dir = tempfile::tempdir().unwrap();
    let store = weft_api::store::open(&setting).await.unwrap();
    let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": "198.18.0.0/20"})).unwrap();
    spec.block_size = Some(28);
    store.create_as(&IPPool::new("stress", spec)).await.unwrap();

    let holders = Arc::new(Mutex::new(HashMap::new()));
    let threads: Vec<_> = (0..WORKERS)
        .map(|index| {
            let (setting, dir, holders) = (setting.clone(), dir.path().to_path_buf(), Arc::clone(&holders));
            std::thread::spawn(move || worker(index, setting, dir, holders))
        })
        .collect();
    let errors: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let duplicates: Vec<&String> = errors.iter().filter(|e| e.contains("while")).collect();
    assert!(duplicates.is_empty(), "addresses handed out twice: {duplicates:?}");
    // A call may fail only when a killed one left the store busy; never with a wrong answer.
    let failures = errors.len();
    assert!(
        failures <= WORKERS * CYCLES / 50,
        "too many failed calls ({failures}): {errors:?}"
    );

    // The killed calls leaked; the GC finds and releases every one of them.
    let allocator = Allocator::new(store.clone());
    let options = GcOptions {
        grace_seconds: 0,
        dry_run: false,
    };
    let report = collect(&allocator, options, u64::MAX / 2).await.unwrap();
    eprintln!(
        "{failures} failed calls; GC: {} leaks, {} released, {} handles removed, {} blocks released",
        report.leaks.len(),
        report.released.len(),
        report.handles_removed.len(),
        report.blocks_released.len()
    );
    let (blocks, _) = store.list_as::<IPAMBlock>(None).await.unwrap();
    let mut held = 0;
    for stored in blocks {
        let block = Block::from_spec(stored.spec).expect("every block is consistent");
        held += block.held().len();
    }
    assert_eq!(held, 0, "after the GC no address is held");
    let (handles, _) = store.list_as::<IPAMHandle>(None).await.unwrap();
    assert!(
        handles.is_empty(),
        "after the GC no handle is left: {:?}",
        handles.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_with_kills_on_the_file_store_leave_no_duplicate_and_no_leak() {
    let dir = tempfile::tempdir().unwrap();
    hammer(format!("file:{}", dir.path().join("store").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_with_kills_on_etcd_leave_no_duplicate_and_no_leak() {
    if !require(EtcdServer::binary().is_some(), "etcd", "apt-get install etcd-server") {
        return;
    }
    let server = EtcdServer::start().unwrap();
    hammer(server.setting()).await;
}

//! `weft-cni` second in a conflist behind the reference `loopback` plugin, run as a runtime runs
//! a list: ADD loopback, then ADD weft-cni with loopback's result as `prevResult`; DEL in reverse
//! order. The pod starts with `lo` down, so a working `lo` afterwards is the list's doing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use weft_api::StoreExt;
use weft_api::resources::{IPPool, IPPoolSpec};
use weft_topology_tests::{Netns, require_netns};

const LOOPBACK: &str = "/usr/lib/cni/loopback";
const NODE_V4: &str = "198.19.0.1";
const POOL: &str = "198.18.8.0/24";

fn weft_cni() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-cni"))
}

/// One plugin of the list called in `node` as a runtime calls it; (success, stdout as JSON).
fn call(node: &Netns, plugin: &Path, command: &str, pod: &Path, config: &Value) -> (bool, Value) {
    let output = node
        .command(&plugin.display().to_string())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "ctr-lo")
        .env("CNI_NETNS", pod.display().to_string())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=ctr-lo")
        .stdin(config.to_string())
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let result = if output.stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&output.stdout).unwrap_or_else(|_| panic!("not JSON: {}", output.stdout))
    };
    (output.success(), result)
}

fn lo_is_up(pod: &Netns) -> bool {
    let line = pod.ip(&["-o", "link", "show", "lo"]).unwrap().stdout;
    let flags = line
        .split('<')
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .unwrap_or("");
    flags.split(',').any(|flag| flag == "UP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_loopback_plugin_first_in_the_list_brings_up_the_pods_lo() {
    let Some(_support) = require_netns() else { return };
    if !weft_api::testing::require(
        Path::new(LOOPBACK).exists(),
        "the reference loopback plugin",
        "apt-get install containernetworking-plugins",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().join("store").display());
    let opened = weft_api::store::open(&store).await.unwrap();
    let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": POOL})).unwrap();
    spec.block_size = Some(26);
    opened.create_as(&IPPool::new("pool-lo", spec)).await.unwrap();

    let node = Netns::new("node").unwrap();
    node.ip(&["address", "add", &format!("{NODE_V4}/32"), "dev", "lo"])
        .unwrap();
    let pod = Netns::new("pod").unwrap();
    // The kit brings lo up; a runtime's fresh namespace has it down.
    pod.link_down("lo").unwrap();
    assert!(!lo_is_up(&pod), "lo starts down");

    let loopback = json!({"cniVersion": "1.0.0", "name": "weftnet", "type": "loopback"});
    let mut weft = json!({
        "cniVersion": "1.0.0",
        "name": "weftnet",
        "type": "weft-cni",
        "store": store,
        "nodename": "node-1",
        "lock_file": dir.path().join("cni.lock"),
        "log_file": dir.path().join("cni.log"),
        "log_level": "debug",
        "ipam": {"type": "weft-ipam", "pools": [POOL]},
    });

    // The list's ADD: loopback, then weft-cni with the result so far as prevResult.
    let (ok, lo_result) = call(&node, Path::new(LOOPBACK), "ADD", pod.path(), &loopback);
    assert!(ok, "loopback ADD: {lo_result}");
    weft["prevResult"] = lo_result;
    let (ok, result) = call(&node, &weft_cni(), "ADD", pod.path(), &weft);
    assert!(ok, "weft-cni ADD behind loopback: {result}");
    let host = result["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert!(host.starts_with("wft"), "{result}");

    // lo is up and carries traffic inside the pod.
    assert!(lo_is_up(&pod), "{}", pod.ip(&["link", "show", "lo"]).unwrap().stdout);
    let listener = pod.within(|| TcpListener::bind(("127.0.0.1", 0))).unwrap().unwrap();
    let target: SocketAddr = listener.local_addr().unwrap();
    let mut stream = pod
        .within(move || TcpStream::connect_timeout(&target, Duration::from_secs(10)))
        .unwrap()
        .unwrap();
    stream.write_all(b"hello").unwrap();
    let (mut accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.1");
    accepted.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 5];
    accepted.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"hello");
    // And weft's interface still takes the pod to the node.
    pod.ping(NODE_V4, Duration::from_secs(10)).unwrap();

    // The list's DEL, in reverse order.
    let (ok, error) = call(&node, &weft_cni(), "DEL", pod.path(), &weft);
    assert!(ok, "weft-cni DEL: {error}");
    let (ok, error) = call(&node, Path::new(LOOPBACK), "DEL", pod.path(), &loopback);
    assert!(ok, "loopback DEL: {error}");
    assert!(
        !node.link_exists(&host).unwrap(),
        "the veth is gone: {:?}",
        node.links()
    );
    assert!(!pod.link_exists("eth0").unwrap());
}

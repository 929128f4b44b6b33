//! `weft-ipam` as a runtime and other plugins call it: the real reference `ptp` and `bridge`
//! plugins (Debian's containernetworking-plugins) with `"ipam": {"type": "weft-ipam"}` put pods
//! in network namespaces on weft addresses; they reach each other; DEL gives the addresses back.
//! And bad input gets a CNI error object with the spec's code and a message naming the problem.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};
use weft_api::StoreExt;
use weft_api::resources::{IPPool, IPPoolSpec};
use weft_ipam::Allocator;
use weft_topology_tests::{Netns, require_netns};

const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

fn weft_ipam() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-ipam"))
}

fn cni_path() -> String {
    format!("{}:{REFERENCE_PLUGINS}", weft_ipam().parent().unwrap().display())
}

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    async fn with_pool(cidr: &str, block_size: u8) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let store = weft_api::store::open(&format!("file:{}", dir.path().join("store").display()))
            .await
            .unwrap();
        let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": cidr})).unwrap();
        spec.block_size = Some(block_size);
        store.create_as(&IPPool::new("pool", spec)).await.unwrap();
        Store { dir }
    }

    fn setting(&self) -> String {
        format!("file:{}", self.dir.path().join("store").display())
    }

    fn ipam(&self, extra: Value) -> Value {
        let mut ipam = json!({
            "type": "weft-ipam",
            "store": self.setting(),
            "nodename": "node-1",
            "lock_file": self.dir.path().join("ipam.lock"),
            "log_file": self.dir.path().join("ipam.log"),
            "routes": [{"dst": "0.0.0.0/0"}],
        });
        for (key, value) in extra.as_object().unwrap() {
            ipam[key] = value.clone();
        }
        ipam
    }

    async fn held(&self, handle: &str) -> usize {
        let store = weft_api::store::open(&self.setting()).await.unwrap();
        Allocator::new(store).addresses_of(handle).await.unwrap().len()
    }
}

/// One CNI call of `plugin` run in `host`, as a runtime makes it.
fn call(host: &Netns, plugin: &str, command: &str, container: &str, pod: &Path, config: &Value) -> (bool, Value) {
    let output = host
        .command(&format!("{REFERENCE_PLUGINS}/{plugin}"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", pod.display().to_string())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path())
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME={container}"),
        )
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

fn address_of(result: &Value) -> IpNet {
    result["ips"][0]["address"].as_str().unwrap().parse().unwrap()
}

async fn two_pods_reach_each_other_under(example: &str) {
    let Some(_support) = require_netns() else { return };
    let store = Store::with_pool("198.18.0.0/24", 26).await;
    let host = Netns::new("node").unwrap();
    let pod_a = Netns::new("pod-a").unwrap();
    let pod_b = Netns::new("pod-b").unwrap();
    // The shipped example, as it is, but for the store and log paths.
    let example: Value = serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    let mut config = example["plugins"][0].clone();
    config["cniVersion"] = example["cniVersion"].clone();
    config["name"] = json!("weftnet");
    for key in ["store", "lock_file", "log_file", "nodename"] {
        config["ipam"][key] = store.ipam(json!({}))[key].clone();
    }
    let plugin = config["type"].as_str().unwrap().to_owned();

    let (ok, a) = call(&host, &plugin, "ADD", "ctr-a", pod_a.path(), &config);
    assert!(ok, "ADD a failed: {a}");
    let (ok, b) = call(&host, &plugin, "ADD", "ctr-b", pod_b.path(), &config);
    assert!(ok, "ADD b failed: {b}");
    let (address_a, address_b) = (address_of(&a), address_of(&b));
    let pool: IpNet = "198.18.0.0/24".parse().unwrap();
    assert!(
        pool.contains(&address_a.addr()) && pool.contains(&address_b.addr()),
        "{a} {b}"
    );
    assert_ne!(address_a.addr(), address_b.addr());
    assert_eq!(address_a.prefix_len(), 26, "the pod is on its block's prefix");
    let gateway: std::net::IpAddr = a["ips"][0]["gateway"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        gateway,
        weft_ipam::allocator::block_gateway(&address_a.trunc()),
        "the block's second address"
    );

    pod_a
        .ping(&address_b.addr().to_string(), Duration::from_secs(10))
        .unwrap();
    pod_b
        .ping(&address_a.addr().to_string(), Duration::from_secs(10))
        .unwrap();

    for (container, pod) in [("ctr-a", &pod_a), ("ctr-b", &pod_b)] {
        let (ok, result) = call(&host, &plugin, "DEL", container, pod.path(), &config);
        assert!(ok, "DEL {container} failed: {result}");
        assert_eq!(
            store.held(&format!("weftnet.{container}.eth0")).await,
            0,
            "DEL gave the address back"
        );
        let (ok, result) = call(&host, &plugin, "DEL", container, pod.path(), &config);
        assert!(ok, "a second DEL of {container} must succeed: {result}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_ptp_get_weft_addresses_and_reach_each_other() {
    two_pods_reach_each_other_under(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ptp.conflist")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_a_bridge_get_weft_addresses_and_reach_each_other() {
    two_pods_reach_each_other_under(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bridge.conflist")).await;
}

/// Runs weft-ipam directly, as a plugin delegating IPAM would.
fn ipam_call(command: &str, container: &str, stdin: &str) -> (bool, Value) {
    let output = Command::new(weft_ipam())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", "/var/run/netns/not-used-by-ipam")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(stdin.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.success(), value)
}

fn netconf(ipam: Value) -> String {
    json!({"cniVersion": "1.0.0", "name": "weftnet", "type": "ptp", "ipam": ipam}).to_string()
}

#[tokio::test]
async fn bad_input_gets_the_specs_error_codes_and_a_message_naming_the_problem() {
    let store = Store::with_pool("198.18.0.0/30", 30).await;
    let cases: Vec<(String, u64, &str)> = vec![
        ("{\"cniVersion\": \"1.0.0\", \"name\": ".into(), 6, ""),
        (
            netconf(store.ipam(json!({"pools": ["198.19.9.0/24"]}))),
            7,
            "pool 198.19.9.0/24 does not exist",
        ),
        (netconf(store.ipam(json!({"pools": "all"}))), 7, "ipam.pools"),
        (
            netconf(store.ipam(json!({"store": "etcd:http://127.0.0.1:9"}))),
            11,
            "127.0.0.1:9",
        ),
        (
            json!({"cniVersion": "9.9.9", "name": "weftnet", "type": "ptp", "ipam": store.ipam(json!({}))}).to_string(),
            1,
            "",
        ),
    ];
    for (stdin, code, needle) in cases {
        let (ok, error) = ipam_call("ADD", "ctr-x", &stdin);
        assert!(!ok, "{stdin} must fail");
        assert_eq!(error["code"].as_u64(), Some(code), "{stdin}: {error}");
        let text = format!("{} {}", error["msg"], error["details"]);
        assert!(text.contains(needle), "{stdin}: {error}");
    }
}

#[tokio::test]
async fn an_exhausted_pool_is_code_100_and_nothing_is_half_done() {
    // A /30 block in gateway mode keeps network, gateway and broadcast: one address for pods.
    let store = Store::with_pool("198.18.0.0/30", 30).await;
    let config = netconf(store.ipam(json!({})));
    let (ok, first) = ipam_call("ADD", "ctr-1", &config);
    assert!(ok, "{first}");
    assert_eq!(first["ips"][0]["address"], "198.18.0.2/30");
    let (ok, again) = ipam_call("ADD", "ctr-1", &config);
    assert!(ok && again == first, "a repeated ADD returns the same result: {again}");
    let (ok, error) = ipam_call("ADD", "ctr-2", &config);
    assert!(!ok);
    assert_eq!(error["code"], 100, "{error}");
    assert!(
        error["details"].as_str().unwrap().contains("pools exhausted"),
        "{error}"
    );
    assert_eq!(store.held("weftnet.ctr-2.eth0").await, 0);
    let (ok, _) = ipam_call("DEL", "ctr-1", &config);
    assert!(ok);
    let (ok, second) = ipam_call("ADD", "ctr-2", &config);
    assert!(ok, "the released address is handed out again: {second}");
}

#[tokio::test]
async fn check_status_and_gc_verbs() {
    let store = Store::with_pool("198.18.0.0/24", 26).await;
    let config: Value = serde_json::from_str(&netconf(store.ipam(json!({})))).unwrap();
    for container in ["ctr-1", "ctr-2", "ctr-3"] {
        let (ok, result) = ipam_call("ADD", container, &config.to_string());
        assert!(ok, "{result}");
    }
    // CHECK: the handle holds the previous result's address; a container never added fails.
    let (_, previous) = ipam_call("ADD", "ctr-1", &config.to_string());
    let mut with_previous = config.clone();
    with_previous["prevResult"] = previous;
    let (ok, result) = ipam_call("CHECK", "ctr-1", &with_previous.to_string());
    assert!(ok, "CHECK of a live attachment passes: {result}");
    let (ok, error) = ipam_call("CHECK", "ctr-9", &with_previous.to_string());
    assert!(
        !ok && error["details"].as_str().unwrap().contains("holds no address"),
        "{error}"
    );

    // STATUS (spec 1.1.0): ready while a pool selects the node; not (code 50) when none does.
    let mut config = config;
    config["cniVersion"] = json!("1.1.0");
    let (ok, result) = ipam_call("STATUS", "", &config.to_string());
    assert!(ok, "{result}");
    let mut v6_only = config.clone();
    v6_only["ipam"]["assign_ipv4"] = json!(false);
    v6_only["ipam"]["assign_ipv6"] = json!(true);
    let (ok, error) = ipam_call("STATUS", "", &v6_only.to_string());
    assert!(!ok);
    assert_eq!(error["code"], 50, "{error}");

    // GC: attachments missing from the runtime's valid list are released.
    let mut gc = config.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-2", "ifname": "eth0"}]);
    let (ok, result) = ipam_call("GC", "", &gc.to_string());
    assert!(ok, "{result}");
    assert_eq!(store.held("weftnet.ctr-1.eth0").await, 0);
    assert_eq!(
        store.held("weftnet.ctr-2.eth0").await,
        1,
        "the valid attachment keeps its address"
    );
    assert_eq!(store.held("weftnet.ctr-3.eth0").await, 0);
}

#[tokio::test]
async fn a_corrupt_block_is_an_error_naming_it_and_nothing_is_written() {
    let store = Store::with_pool("198.18.0.0/24", 26).await;
    let config = netconf(store.ipam(json!({})));
    let (ok, first) = ipam_call("ADD", "ctr-1", &config);
    assert!(ok, "{first}");
    let blocks = store.dir.path().join("store/objects/weft.io/ipamblocks");
    let block = std::fs::read_dir(&blocks).unwrap().next().unwrap().unwrap().path();
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&block).unwrap()).unwrap();
    stored["object"]["spec"]["unallocated"] = json!([0, 0]);
    let damaged = serde_json::to_vec(&stored).unwrap();
    std::fs::write(&block, &damaged).unwrap();
    let (ok, error) = ipam_call("ADD", "ctr-2", &config);
    assert!(!ok);
    assert_eq!(error["code"], 5, "{error}");
    let details = error["details"].as_str().unwrap();
    assert!(
        details.contains("198.18.0.") && details.contains("is inconsistent"),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&block).unwrap(),
        damaged,
        "the damaged block is left for a person to look at"
    );
}

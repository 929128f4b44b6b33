//! `weft-cni` as a runtime calls it: exec'd in the node's network namespace with `CNI_*`
//! variables and the configuration on stdin. Pods in namespaces of their own reach each other
//! and the node by host routes alone (no bridge), ADD is repeatable, CHECK finds damage, DEL is
//! idempotent, and bad input gets the spec's error codes with a message naming the problem.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use weft_api::StoreExt;
use weft_api::resources::{IPPool, IPPoolSpec, WorkloadEndpoint};
use weft_ipam::Allocator;
use weft_topology_tests::{Netns, Route, require_netns, wait_until};

const NODE_V4: &str = "198.19.0.1";
const NODE_V6: &str = "2001:db8:ff::1";

fn weft_cni() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-cni"))
}

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    async fn with_pools(pools: &[(&str, u8)]) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let store = Store { dir };
        let opened = weft_api::store::open(&store.setting()).await.unwrap();
        for (i, (cidr, block_size)) in pools.iter().enumerate() {
            let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": cidr})).unwrap();
            spec.block_size = Some(*block_size);
            opened
                .create_as(&IPPool::new(&format!("pool-{i}"), spec))
                .await
                .unwrap();
        }
        store
    }

    fn setting(&self) -> String {
        format!("file:{}", self.dir.path().join("store").display())
    }

    fn config(&self, version: &str, pools: &[&str]) -> Value {
        json!({
            "cniVersion": version,
            "name": "weftnet",
            "type": "weft-cni",
            "store": self.setting(),
            "nodename": "node-1",
            "lock_file": self.dir.path().join("cni.lock"),
            "log_file": self.dir.path().join("cni.log"),
            "log_level": "debug",
            "ipam": {"type": "weft-ipam", "pools": pools},
        })
    }

    async fn held(&self, container: &str) -> Vec<IpAddr> {
        let store = weft_api::store::open(&self.setting()).await.unwrap();
        Allocator::new(store)
            .addresses_of(&format!("weftnet.{container}.eth0"))
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.address)
            .collect()
    }

    async fn endpoints(&self) -> Vec<WorkloadEndpoint> {
        let store = weft_api::store::open(&self.setting()).await.unwrap();
        store.list_as::<WorkloadEndpoint>(None).await.unwrap().0
    }
}

/// One CNI call run in `node`, as a runtime makes it; (success, stdout as JSON).
fn call(node: &Netns, command: &str, container: &str, pod: &Path, config: &Value) -> (bool, Value) {
    let output = node
        .command(&weft_cni().display().to_string())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", pod.display().to_string())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", weft_cni().parent().unwrap().display().to_string())
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME={container}"),
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

fn addresses(result: &Value) -> Vec<IpAddr> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| {
            ip["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

fn links(netns: &Netns) -> String {
    netns.ip(&["-o", "link", "show"]).unwrap().stdout
}

/// A TCP connection from `from` to a listener in `to`; the address the listener saw.
fn peer_seen_by(to: &Netns, listen: IpAddr, from: &Netns) -> IpAddr {
    let listener = to
        .within(move || TcpListener::bind(SocketAddr::new(listen, 0)))
        .unwrap()
        .unwrap();
    let target = listener.local_addr().unwrap();
    let mut stream = from
        .within(move || TcpStream::connect_timeout(&target, Duration::from_secs(10)))
        .unwrap()
        .unwrap();
    stream.write_all(b"hello").unwrap();
    // The connection is established, so accept returns at once.
    let (mut accepted, peer) = listener.accept().unwrap();
    let mut greeting = [0u8; 5];
    accepted.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    accepted.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"hello");
    peer.ip()
}

async fn two_pods(version: &str, pools: &[(&str, u8)]) {
    let Some(_support) = require_netns() else { return };
    let store = Store::with_pools(pools).await;
    let cidrs: Vec<&str> = pools.iter().map(|(cidr, _)| *cidr).collect();
    let config = store.config(version, &cidrs);
    let node = Netns::new("node").unwrap();
    node.ip(&["address", "add", &format!("{NODE_V4}/32"), "dev", "lo"])
        .unwrap();
    let dual = cidrs.iter().any(|c| c.contains(':'));
    if dual {
        node.ip(&["address", "add", &format!("{NODE_V6}/128"), "dev", "lo"])
            .unwrap();
    }
    let pod_a = Netns::new("pod-a").unwrap();
    let pod_b = Netns::new("pod-b").unwrap();

    let (ok, a) = call(&node, "ADD", "ctr-a", pod_a.path(), &config);
    assert!(ok, "ADD a failed: {a}");
    let (ok, b) = call(&node, "ADD", "ctr-b", pod_b.path(), &config);
    assert!(ok, "ADD b failed: {b}");
    assert_eq!(a["cniVersion"], version);
    let (addresses_a, addresses_b) = (addresses(&a), addresses(&b));
    assert_eq!(addresses_a.len(), if dual { 2 } else { 1 }, "{a}");
    for ip in a["ips"].as_array().unwrap() {
        let address = ip["address"].as_str().unwrap();
        assert!(
            address.ends_with("/32") || address.ends_with("/128"),
            "host addresses: {a}"
        );
    }
    assert!(a["interfaces"][0]["name"].as_str().unwrap().starts_with("wft"), "{a}");
    assert_eq!(a["interfaces"][1]["name"], "eth0");
    assert_eq!(a["interfaces"][1]["sandbox"], pod_a.path().display().to_string());
    assert_eq!(a["ips"][0]["gateway"], "169.254.1.1");
    if dual {
        // The host veth's fixed link-local, which the host veth really holds.
        assert_eq!(a["ips"][1]["gateway"], "fe80::ecee:eeff:feee:eeee", "{a}");
        let host = a["interfaces"][0]["name"].as_str().unwrap();
        let held = node.ip(&["-6", "address", "show", "dev", host]).unwrap().stdout;
        assert!(held.contains("fe80::ecee:eeff:feee:eeee/64"), "{held}");
    }
    let node_links = links(&node);
    assert!(
        !node_links.contains("bridge") && node_links.contains("wft"),
        "{node_links}"
    );

    // Routes alone: pod to pod and pod to node, both ways, every family.
    for (from, to) in [(&pod_a, &addresses_b), (&pod_b, &addresses_a)] {
        for address in to.iter() {
            from.ping(&address.to_string(), Duration::from_secs(10)).unwrap();
        }
        from.ping(NODE_V4, Duration::from_secs(10)).unwrap();
        if dual {
            from.ping(NODE_V6, Duration::from_secs(10)).unwrap();
        }
    }
    node.ping(&addresses_a[0].to_string(), Duration::from_secs(10)).unwrap();
    // The receiver sees the sender's pod address: no NAT, no proxy in between.
    for (i, listen) in addresses_b.iter().enumerate() {
        assert_eq!(peer_seen_by(&pod_b, *listen, &pod_a), addresses_a[i]);
    }

    // The endpoint record.
    let endpoints = store.endpoints().await;
    assert_eq!(endpoints.len(), 2);
    let endpoint = endpoints.iter().find(|e| e.spec.pod == "ctr-a").unwrap();
    assert_eq!(endpoint.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(endpoint.spec.node, "node-1");
    assert_eq!(endpoint.spec.container_id, "ctr-a");
    assert_eq!(endpoint.spec.endpoint, "eth0");
    assert_eq!(
        endpoint.spec.interface_name,
        a["interfaces"][0]["name"].as_str().unwrap()
    );
    assert_eq!(endpoint.spec.mac, a["interfaces"][1]["mac"].as_str().unwrap());
    assert_eq!(endpoint.spec.ip_networks.len(), addresses_a.len());

    // ADD again for the same attachment: the same result, the same veth, the pod still works.
    let host_a = a["interfaces"][0]["name"].as_str().unwrap().to_owned();
    let link_a = node.ip(&["-o", "link", "show", &host_a]).unwrap().stdout;
    let (ok, again) = call(&node, "ADD", "ctr-a", pod_a.path(), &config);
    assert_eq!(
        node.ip(&["-o", "link", "show", &host_a]).unwrap().stdout,
        link_a,
        "an intact attachment is left alone"
    );
    assert!(
        ok && again == a,
        "a repeated ADD returns the same result: {again} vs {a}"
    );
    pod_a
        .ping(&addresses_b[0].to_string(), Duration::from_secs(10))
        .unwrap();

    // CHECK passes, then reports a deleted host route.
    let mut check = config.clone();
    check["prevResult"] = a.clone();
    let (ok, result) = call(&node, "CHECK", "ctr-a", pod_a.path(), &check);
    assert!(ok, "CHECK of an intact attachment passes: {result}");
    node.ip(&["route", "del", &format!("{}/32", addresses_a[0])]).unwrap();
    let (ok, error) = call(&node, "CHECK", "ctr-a", pod_a.path(), &check);
    assert!(!ok);
    assert_eq!(error["code"], 110, "{error}");
    let details = error["details"].as_str().unwrap();
    assert!(
        details.contains(&format!("host route to {}/32", addresses_a[0])),
        "{error}"
    );
    // ADD repairs it.
    let (ok, again) = call(&node, "ADD", "ctr-a", pod_a.path(), &config);
    assert!(ok && again == a, "{again}");
    let (ok, result) = call(&node, "CHECK", "ctr-a", pod_a.path(), &check);
    assert!(ok, "CHECK after the repairing ADD: {result}");
    pod_b.ip(&["route", "del", "default"]).unwrap();
    let mut check_b = config.clone();
    check_b["prevResult"] = b.clone();
    let (ok, error) = call(&node, "CHECK", "ctr-b", pod_b.path(), &check_b);
    assert!(
        !ok && error["details"]
            .as_str()
            .unwrap()
            .contains("default route via 169.254.1.1"),
        "{error}"
    );

    // DEL, twice; then nothing of the pods is left on the node or in the store.
    for (container, pod) in [("ctr-a", &pod_a), ("ctr-b", &pod_b)] {
        for round in 0..2 {
            let (ok, result) = call(&node, "DEL", container, pod.path(), &config);
            assert!(ok, "DEL {container} (round {round}) failed: {result}");
            assert_eq!(result, Value::Null, "DEL prints nothing");
        }
        assert!(store.held(container).await.is_empty(), "DEL gave the address back");
    }
    assert!(!links(&node).contains("wft"), "{}", links(&node));
    assert!(!links(&pod_a).contains("eth0"));
    assert!(store.endpoints().await.is_empty());
    // DEL of a pod whose namespace is gone.
    let gone = pod_a.path().to_owned();
    pod_a.remove().unwrap();
    let (ok, result) = call(&node, "DEL", "ctr-a", &gone, &config);
    assert!(ok, "DEL with the netns gone succeeds: {result}");
    let log = std::fs::read_to_string(store.dir.path().join("cni.log")).unwrap();
    assert!(log.contains("attached") && log.contains("detached"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_reach_each_other_and_the_node_by_routes_alone() {
    two_pods("1.1.0", &[("198.18.0.0/24", 26)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_pods_reach_each_other_and_the_node_over_ipv4_and_ipv6() {
    two_pods("1.0.0", &[("198.18.1.0/24", 26), ("2001:db8:1::/120", 122)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_come_in_the_requested_old_version() {
    let Some(_support) = require_netns() else { return };
    let store = Store::with_pools(&[("198.18.2.0/24", 26)]).await;
    let node = Netns::new("node").unwrap();
    let pod = Netns::new("pod").unwrap();
    for version in ["0.3.1", "0.4.0"] {
        let config = store.config(version, &["198.18.2.0/24"]);
        let (ok, result) = call(&node, "ADD", "ctr-old", pod.path(), &config);
        assert!(ok, "{result}");
        assert_eq!(result["cniVersion"], version);
        assert_eq!(
            result["ips"][0]["version"], "4",
            "legacy results name the family: {result}"
        );
        let (ok, result) = call(&node, "DEL", "ctr-old", pod.path(), &config);
        assert!(ok, "{result}");
    }
}

/// (code, text of msg and details) of a failed call.
fn failure(outcome: (bool, Value)) -> (u64, String) {
    let (ok, error) = outcome;
    assert!(!ok, "must fail: {error}");
    (
        error["code"].as_u64().unwrap_or_else(|| panic!("no code: {error}")),
        format!("{} {}", error["msg"], error["details"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_specs_error_codes_and_a_message_naming_the_problem() {
    let Some(_support) = require_netns() else { return };
    let store = Store::with_pools(&[("198.18.3.0/30", 30)]).await;
    let node = Netns::new("node").unwrap();
    let pod = Netns::new("pod").unwrap();
    let config = store.config("1.1.0", &["198.18.3.0/30"]);
    let raw = |stdin: &str, netns: Option<&str>| {
        let mut command = node
            .command(&weft_cni().display().to_string())
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "ctr-x")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/nonexistent")
            .stdin(stdin.to_owned())
            .timeout(Duration::from_secs(30));
        if let Some(netns) = netns {
            command = command.env("CNI_NETNS", netns);
        }
        let output = command.output().unwrap();
        (
            output.success(),
            serde_json::from_str(&output.stdout).unwrap_or(Value::Null),
        )
    };
    let pod_path = pod.path().display().to_string();
    let (code, text) = failure(raw("{\"cniVersion\": \"1.1.0\", \"name\": ", Some(&pod_path)));
    assert_eq!(code, 6, "invalid JSON: {text}");
    let mut future = config.clone();
    future["cniVersion"] = json!("9.9.9");
    let (code, text) = failure(raw(&future.to_string(), Some(&pod_path)));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("9.9.9"), "{text}");
    let (code, text) = failure(raw(&config.to_string(), None));
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("CNI_NETNS"), "{text}");
    let (code, text) = failure(raw(&config.to_string(), Some("/run/netns/weft-no-such-netns")));
    assert_eq!(code, 8, "{text}");
    assert!(text.contains("/run/netns/weft-no-such-netns"), "{text}");
    let mut typo = config.clone();
    typo["mtu"] = json!("jumbo");
    let (code, text) = failure(raw(&typo.to_string(), Some(&pod_path)));
    assert_eq!(code, 7, "{text}");
    assert!(text.contains("mtu: must be a number"), "{text}");
    let mut unreachable = config.clone();
    unreachable["store"] = json!("etcd:http://127.0.0.1:9");
    let (code, text) = failure(raw(&unreachable.to_string(), Some(&pod_path)));
    assert_eq!(code, 11, "{text}");
    assert!(text.contains("127.0.0.1:9"), "{text}");
    assert!(
        !links(&node).contains("wft"),
        "nothing made for bad input: {}",
        links(&node)
    );

    // Exhausted: a /30 pool holds four pods; the fifth gets code 100 and nothing half made.
    let pods: Vec<Netns> = (0..4).map(|i| Netns::new(&format!("p{i}")).unwrap()).collect();
    for (i, pod) in pods.iter().enumerate() {
        let (ok, result) = call(&node, "ADD", &format!("ctr-{i}"), pod.path(), &config);
        assert!(ok, "ADD {i}: {result}");
    }
    let (code, text) = failure(call(&node, "ADD", "ctr-x", pod.path(), &config));
    assert_eq!(code, 100, "{text}");
    assert!(text.contains("pools exhausted"), "{text}");
    assert!(store.held("ctr-x").await.is_empty());
    assert_eq!(links(&node).matches("wft").count(), 4, "{}", links(&node));
    for (i, pod) in pods.iter().enumerate() {
        let (ok, result) = call(&node, "DEL", &format!("ctr-{i}"), pod.path(), &config);
        assert!(ok, "DEL {i}: {result}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_gc() {
    let Some(_support) = require_netns() else { return };
    let store = Store::with_pools(&[("198.18.4.0/24", 26)]).await;
    let node = Netns::new("node").unwrap();
    let pods: Vec<Netns> = (0..2).map(|i| Netns::new(&format!("g{i}")).unwrap()).collect();
    let config = store.config("1.1.0", &["198.18.4.0/24"]);
    let (ok, result) = call(&node, "STATUS", "", Path::new(""), &config);
    assert!(ok, "{result}");
    let mut elsewhere = config.clone();
    elsewhere["ipam"]["pools"] = json!(["2001:db8:9::/120"]);
    let (code, text) = failure(call(&node, "STATUS", "", Path::new(""), &elsewhere));
    assert_eq!(code, 50, "{text}");
    for (i, pod) in pods.iter().enumerate() {
        let (ok, result) = call(&node, "ADD", &format!("ctr-{i}"), pod.path(), &config);
        assert!(ok, "{result}");
    }
    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-1", "ifname": "eth0"}]);
    let (ok, result) = call(&node, "GC", "", Path::new(""), &gc);
    assert!(ok, "{result}");
    assert!(store.held("ctr-0").await.is_empty(), "GC released the stale attachment");
    assert_eq!(store.held("ctr-1").await.len(), 1, "the valid one keeps its address");
    assert_eq!(links(&node).matches("wft").count(), 1, "{}", links(&node));
    let endpoints = store.endpoints().await;
    assert_eq!(endpoints.len(), 1, "GC removed the stale endpoint record");
    assert_eq!(endpoints[0].spec.container_id, "ctr-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_that_fails_halfway_leaves_no_address_no_veth_and_no_endpoint() {
    let Some(_support) = require_netns() else { return };
    let store = Store::with_pools(&[("198.18.5.0/24", 26)]).await;
    let node = Netns::new("node").unwrap();
    let pod = Netns::new("pod").unwrap();
    // The pod already has an eth0: moving the veth peer in under that name fails.
    pod.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "other0"])
        .unwrap();
    let config = store.config("1.1.0", &["198.18.5.0/24"]);
    let (code, text) = failure(call(&node, "ADD", "ctr-h", pod.path(), &config));
    assert_eq!(code, 111, "{text}");
    assert!(text.contains("eth0"), "{text}");
    assert!(store.held("ctr-h").await.is_empty(), "the address was released");
    assert!(!links(&node).contains("wf"), "no stray veth: {}", links(&node));
    assert!(store.endpoints().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_mtu_is_on_both_sides_and_del_needs_no_netns() {
    let Some(_support) = require_netns() else { return };
    let store = Store::with_pools(&[("198.18.6.0/24", 26)]).await;
    let node = Netns::new("node").unwrap();
    let pod = Netns::new("pod").unwrap();
    let mut config = store.config("1.1.0", &["198.18.6.0/24"]);
    config["mtu"] = json!(1400);
    let (ok, result) = call(&node, "ADD", "ctr-m", pod.path(), &config);
    assert!(ok, "{result}");
    let host = result["interfaces"][0]["name"].as_str().unwrap();
    assert!(links(&node).contains(&format!("{host}@")), "{}", links(&node));
    assert!(
        node.ip(&["link", "show", host]).unwrap().stdout.contains("mtu 1400"),
        "host side"
    );
    assert!(
        pod.ip(&["link", "show", "eth0"]).unwrap().stdout.contains("mtu 1400"),
        "pod side"
    );
    let output = node
        .command(&weft_cni().display().to_string())
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", "ctr-m")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/nonexistent")
        .stdin(config.to_string())
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert!(output.success(), "DEL without CNI_NETNS: {}", output.stdout);
    assert!(output.stdout.trim().is_empty(), "nothing but a result on stdout");
    assert!(store.held("ctr-m").await.is_empty());
    assert!(!links(&node).contains("wft"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_mtu_the_pod_gets_the_mtu_of_the_uplink_holding_the_default_route() {
    let Some(_support) = require_netns() else { return };
    let store = Store::with_pools(&[("198.18.8.0/24", 26)]).await;
    let node = Netns::new("node").unwrap();
    let upstream = Netns::new("upstream").unwrap();
    // Two uplinks: the default route's (1400) decides, not the other one (1300) nor the
    // kernel's veth default (1500).
    let uplink = node.veth("uplink0", &upstream, "down0").unwrap();
    uplink.set_mtu(1400).unwrap();
    node.veth("side0", &upstream, "side1").unwrap().set_mtu(1300).unwrap();
    node.add_address("uplink0", "198.19.0.1/30").unwrap();
    upstream.add_address("down0", "198.19.0.2/30").unwrap();
    node.add_route(&Route::default_v4().via("198.19.0.2")).unwrap();
    upstream
        .add_route(&Route::to("198.18.8.0/24").via("198.19.0.1"))
        .unwrap();
    let pod = Netns::new("pod").unwrap();
    let config = store.config("1.1.0", &["198.18.8.0/24"]);
    let (ok, result) = call(&node, "ADD", "ctr-u", pod.path(), &config);
    assert!(ok, "{result}");
    let host = result["interfaces"][0]["name"].as_str().unwrap();
    assert_eq!(node.mtu(host).unwrap(), 1400, "host side");
    assert_eq!(pod.mtu("eth0").unwrap(), 1400, "pod side");
    assert_eq!(result["interfaces"][1]["mtu"], 1400, "the result says so: {result}");
    // A full-size packet from the pod crosses without fragmentation.
    // (Retried: a first packet may be lost while the node resolves its next hop.)
    wait_until(
        "a 1400-byte packet from the pod, not to be fragmented, answered by the upstream router",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            pod.command("ping")
                .args(["-c", "1", "-W", "2", "-M", "do", "-s", "1372", "198.19.0.2"])
                .output()
                .map(|output| output.success())
        },
    )
    .unwrap();
    let (ok, result) = call(&node, "DEL", "ctr-u", pod.path(), &config);
    assert!(ok, "{result}");
}

/// A plugin of the reference set, called after weft-cni in a conflist as a runtime would:
/// the list's name and version, the capability arguments, and weft-cni's result as prevResult.
fn chained(node: &Netns, plugin: &str, command: &str, pod: &Path, config: &Value) -> (bool, Value) {
    let output = node
        .command(&format!("/usr/lib/cni/{plugin}"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "ctr-p")
        .env("CNI_NETNS", pod.display().to_string())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(config.to_string())
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    (
        output.success(),
        serde_json::from_str(&output.stdout).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_portmap_forwards_a_node_port_to_the_pod() {
    let Some(_support) = require_netns() else { return };
    if !Path::new("/usr/lib/cni/portmap").exists() {
        eprintln!("skipping: the reference portmap plugin is not installed (containernetworking-plugins)");
        return;
    }
    let store = Store::with_pools(&[("198.18.7.0/24", 26)]).await;
    let node = Netns::new("node").unwrap();
    node.ip(&["address", "add", &format!("{NODE_V4}/32"), "dev", "lo"])
        .unwrap();
    let pod = Netns::new("pod").unwrap();
    let config = store.config("1.0.0", &["198.18.7.0/24"]);
    let (ok, result) = call(&node, "ADD", "ctr-p", pod.path(), &config);
    assert!(ok, "{result}");
    let portmap = json!({
        "cniVersion": "1.0.0",
        "name": "weftnet",
        "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]},
        "prevResult": result,
    });
    let (ok, chained_result) = chained(&node, "portmap", "ADD", pod.path(), &portmap);
    assert!(ok, "portmap ADD: {chained_result}");
    assert_eq!(
        chained_result["ips"], result["ips"],
        "portmap passes weft-cni's result on"
    );

    let listener = pod.within(|| TcpListener::bind(("0.0.0.0", 8080))).unwrap().unwrap();
    let node_port: SocketAddr = format!("{NODE_V4}:18080").parse().unwrap();
    let mut stream = node
        .within(move || TcpStream::connect_timeout(&node_port, Duration::from_secs(10)))
        .unwrap()
        .unwrap();
    stream.write_all(b"hello").unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    accepted.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 5];
    accepted.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"hello");

    // DEL in reverse order, as a runtime does.
    let (ok, error) = chained(&node, "portmap", "DEL", pod.path(), &portmap);
    assert!(ok, "portmap DEL: {error}");
    let (ok, error) = call(&node, "DEL", "ctr-p", pod.path(), &config);
    assert!(ok, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_tuning_and_bandwidth_take_weft_cnis_result_and_shape_the_pod() {
    let Some(_support) = require_netns() else { return };
    let store = Store::with_pools(&[("198.18.8.0/24", 26)]).await;
    let node = Netns::new("node").unwrap();
    let pod = Netns::new("pod").unwrap();
    let config = store.config("1.0.0", &["198.18.8.0/24"]);
    let (ok, result) = call(&node, "ADD", "ctr-p", pod.path(), &config);
    assert!(ok, "{result}");

    // tuning: a sysctl and the MTU inside the pod, from weft-cni's result.
    let tuning = json!({
        "cniVersion": "1.0.0", "name": "weftnet", "type": "tuning",
        "sysctl": {"net.ipv4.conf.eth0.accept_redirects": "0"},
        "mtu": 1400,
        "prevResult": result,
    });
    let (ok, tuned) = chained(&node, "tuning", "ADD", pod.path(), &tuning);
    assert!(ok, "tuning ADD: {tuned}");
    assert_eq!(tuned["ips"], result["ips"], "tuning passes weft-cni's result on");
    let redirects = pod
        .run(&["cat", "/proc/sys/net/ipv4/conf/eth0/accept_redirects"])
        .unwrap()
        .stdout;
    assert_eq!(redirects.trim(), "0", "tuning set the pod's sysctl");
    assert!(
        links(&pod).contains("mtu 1400"),
        "tuning set the pod's MTU: {}",
        links(&pod)
    );

    // bandwidth: a token bucket on the host side of weft-cni's veth (traffic towards the pod).
    let bandwidth = json!({
        "cniVersion": "1.0.0", "name": "weftnet", "type": "bandwidth",
        "ingressRate": 8_000_000, "ingressBurst": 100_000,
        "prevResult": tuned,
    });
    let (ok, shaped) = chained(&node, "bandwidth", "ADD", pod.path(), &bandwidth);
    assert!(ok, "bandwidth ADD: {shaped}");
    let host_veth = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("sandbox").is_none())
        .and_then(|i| i["name"].as_str())
        .expect("weft-cni's result names the host veth")
        .to_owned();
    let qdisc = node.run(&["tc", "qdisc", "show", "dev", &host_veth]).unwrap().stdout;
    assert!(qdisc.contains("tbf"), "bandwidth shaped {host_veth}: {qdisc}");

    // DEL in reverse order, as a runtime does.
    for (plugin, plugin_config) in [("bandwidth", &bandwidth), ("tuning", &tuning)] {
        let (ok, error) = chained(&node, plugin, "DEL", pod.path(), plugin_config);
        assert!(ok, "{plugin} DEL: {error}");
    }
    let (ok, error) = call(&node, "DEL", "ctr-p", pod.path(), &config);
    assert!(ok, "{error}");
    assert!(!links(&node).contains(&host_veth), "the veth is gone after DEL");
}

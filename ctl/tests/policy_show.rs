//! `weftctl policy show`: which policies isolate an endpoint, the policies weft-felix leaves
//! out as invalid, and (on the node, where `inet weft` is readable) rule hit counters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use weft_felix::inputs::Cache;
use weft_felix::nft::{Nft, NftBinary};
use weft_topology_tests::{Netns, Route, require_netns};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: a, labels: {pod: a}}
spec: {containers: [{name: server, image: busybox, ports: [{name: http, containerPort: 80}]}]}
---
apiVersion: weft.io/v1
kind: WorkloadEndpoint
metadata: {namespace: x, name: n1-a-eth0}
spec: {node: n1, pod: a, interfaceName: wftxa, ipNetworks: [198.18.1.1/32]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: only-from-y}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}], ports: [{port: http}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: backwards-range}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 90, endPort: 80}]}]
"#;

fn weftctl(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn applied() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().join("store").display());
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let output = weftctl(&store, &["apply", "-f", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    (dir, store)
}

#[test]
fn policy_show_names_the_isolating_policies_and_the_invalid_ones() {
    let (_dir, store) = applied();
    let output = weftctl(&store, &["policy", "show", "x/a", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let endpoint = &report["endpoints"][0];
    assert_eq!(endpoint["interface"], "wftxa");
    assert_eq!(endpoint["node"], "n1");
    assert_eq!(endpoint["ingress"]["isolated"], true);
    assert_eq!(endpoint["ingress"]["policies"], serde_json::json!(["x/only-from-y"]));
    assert_eq!(endpoint["egress"]["isolated"], false);
    let invalid = &report["invalid_policies"][0];
    assert_eq!(invalid["policy"], "x/backwards-range");
    assert!(
        invalid["reason"]
            .as_str()
            .unwrap()
            .contains("endPort 80 is below port 90"),
        "{invalid}"
    );

    let human = String::from_utf8(weftctl(&store, &["policy", "show"]).stdout).unwrap();
    assert!(human.contains("x/a  node n1  interface wftxa"), "{human}");
    assert!(human.contains("isolated by x/only-from-y"), "{human}");
    assert!(human.contains("egress   open"), "{human}");
    assert!(
        human.contains("x/backwards-range: spec.ingress[0].ports[0].endPort"),
        "{human}"
    );
}

#[test]
fn policy_show_of_an_unknown_endpoint_fails_saying_what_to_give() {
    let (_dir, store) = applied();
    let output = weftctl(&store, &["policy", "show", "x/nope"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no endpoint \"x/nope\""));
}

/// On the node, the counters of the table weft-felix programs: a dropped connection attempt
/// shows up on the endpoint's final drop rule.
#[tokio::test]
async fn policy_show_on_the_node_counts_hits_per_rule() {
    let Some(_support) = require_netns() else { return };
    let (_dir, store) = applied();
    let node = Netns::new("node").unwrap();
    let pod = Netns::new("pod").unwrap();
    let client = Netns::new("client").unwrap();
    node.enable_forwarding().unwrap();
    node.veth("wftxa", &pod, "eth0").unwrap();
    node.veth("up0", &client, "eth0").unwrap();
    pod.add_address("eth0", "198.18.1.1/32").unwrap();
    pod.add_route(&Route::to("198.19.0.0/24").dev("eth0")).unwrap();
    node.add_route(&Route::to("198.18.1.1/32").dev("wftxa")).unwrap();
    node.set_sysctl("net/ipv4/conf/wftxa/proxy_arp", "1").unwrap();
    node.add_address("up0", "198.19.0.1/24").unwrap();
    client.add_address("eth0", "198.19.0.2/24").unwrap();
    client.add_route(&Route::to("198.18.0.0/16").via("198.19.0.1")).unwrap();

    // Program the node's table the way weft-felix does, with its library.
    let opened = weft_api::store::open(&store).await.unwrap();
    let cache = Cache::load(opened.as_ref()).await.unwrap();
    let (inputs, _) = cache.inputs("n1");
    let ruleset = weft_felix::calc::calculate(&inputs).ruleset;
    node.within(move || NftBinary.apply(&weft_felix::render::full(&ruleset, None)))
        .unwrap()
        .unwrap();

    let target = SocketAddr::from(([198, 18, 1, 1], 80));
    let connected = client
        .within(move || TcpStream::connect_timeout(&target, Duration::from_millis(300)).is_ok())
        .unwrap();
    assert!(!connected, "x/a takes nothing from outside y");

    let output = node
        .command(env!("CARGO_BIN_EXE_weftctl"))
        .args(["--store", &store, "policy", "show", "wftxa", "--json"])
        .run()
        .unwrap();
    let report: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(report["counters"], true);
    let rules = report["endpoints"][0]["ingress"]["rules"].as_array().unwrap().clone();
    let drop = rules
        .iter()
        .find(|r| r["rule"] == "ingress not allowed by any policy")
        .unwrap_or_else(|| panic!("{rules:?}"));
    assert!(drop["packets"].as_u64().unwrap() >= 1, "{rules:?}");
    assert!(
        rules
            .iter()
            .any(|r| r["rule"] == "x/only-from-y ingress[0]" && r["packets"] == 0),
        "{rules:?}"
    );
}

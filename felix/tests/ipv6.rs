//! IPv6 through weft-felix's table on real nftables: pods with /128 addresses behind their host
//! veth (default route via the veth's link-local address, as weft-cni wires them), selected by
//! pod/namespace peers and ipBlock like IPv4, and an egress-isolated pod still resolving its
//! gateway (neighbour discovery passes the input chain).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{Cluster, NODE, Pod};
use serde_json::json;
use weft_topology_tests::{Route, require_netns, wait_until};

fn v6(pod: &Pod) -> Ipv6Addr {
    let n = common::NAMESPACES.iter().position(|n| *n == pod.namespace).unwrap() as u16;
    let p = common::PODS.iter().position(|p| *p == pod.name).unwrap() as u16;
    Ipv6Addr::new(0x2001, 0xdb8, 1 + n, 0, 0, 0, 0, 1 + p)
}

/// x/a, y/a and z/a get an IPv6 address, a host route and a v6 listener on port 80.
async fn dual_stack(cluster: &Cluster) -> Vec<Pod> {
    let mut pods = Vec::new();
    for (pod, netns) in cluster.pods.iter().filter(|(p, _)| p.name == "a") {
        let address = v6(pod);
        netns.add_address("eth0", &format!("{address}/128")).unwrap();
        cluster
            .node
            .ip(&["-6", "addr", "add", "fe80::1/64", "dev", &pod.interface(), "nodad"])
            .unwrap();
        netns
            .add_route(&Route::to("2001:db8::/32").via("fe80::1").dev("eth0"))
            .unwrap();
        cluster
            .node
            .add_route(&Route::to(&format!("{address}/128")).dev(&pod.interface()))
            .unwrap();
        let listener = netns
            .within(move || TcpListener::bind(SocketAddr::from((address, 80))).unwrap())
            .unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                drop(stream);
            }
        });
        cluster
            .put(json!({"apiVersion": "weft.io/v1", "kind": "WorkloadEndpoint",
                "metadata": {"namespace": pod.namespace, "name": format!("{NODE}-{}-eth0", pod.name)},
                "spec": {"node": NODE, "orchestrator": "k8s", "pod": pod.name, "endpoint": "eth0",
                         "interfaceName": pod.interface(),
                         "ipNetworks": [format!("{}/32", pod.address()), format!("{address}/128")]}}))
            .await;
        pods.push(*pod);
    }
    pods
}

fn reach_v6(cluster: &Cluster, from: &Pod, to: &Pod) -> bool {
    let target = SocketAddr::from((v6(to), 80));
    let netns = &cluster.pods.iter().find(|(p, _)| p == from).unwrap().1;
    netns
        .within(move || TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok())
        .unwrap()
}

fn wait_v6(cluster: &Cluster, from: &Pod, to: &Pod, want: bool, what: &str) {
    wait_until(what, Duration::from_secs(10), Duration::from_millis(50), || {
        Ok::<_, std::io::Error>(reach_v6(cluster, from, to) == want)
    })
    .unwrap_or_else(|e| {
        let table = cluster
            .node
            .run(&["nft", "list", "table", "inet", "weft"])
            .map(|o| o.stdout)
            .unwrap_or_default();
        panic!("{e}\n{table}\nfelix log:\n{}", cluster.felix_log())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_pods_are_selected_and_blocked_like_ipv4_ones() {
    let Some(_support) = require_netns() else { return };
    let mut cluster = Cluster::new().await;
    cluster.start_felix();
    let pods = dual_stack(&cluster).await;
    let (xa, ya, za) = (pods[0], pods[1], pods[2]);
    wait_v6(&cluster, &xa, &ya, true, "x/a reaches y/a over IPv6 without policies");

    // y/a only from namespace x: a pod/namespace peer's IPv6 set.
    cluster
        .put(common::policy(
            "y",
            "from-x",
            json!({"podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}]}),
        ))
        .await;
    wait_v6(&cluster, &za, &ya, false, "z/a denied to y/a over IPv6");
    assert!(reach_v6(&cluster, &xa, &ya), "x/a still allowed to y/a over IPv6");

    // An IPv6 ipBlock with an exception: z's /48 allowed, z/a's own /128 excepted.
    cluster
        .put(common::policy(
            "y",
            "from-x",
            json!({"podSelector": {},
            "ingress": [{"from": [{"ipBlock": {"cidr": "2001:db8:3::/48", "except": [format!("{}/128", v6(&za))]}}]}]}),
        ))
        .await;
    wait_v6(&cluster, &xa, &ya, false, "x/a outside the block");
    assert!(!reach_v6(&cluster, &za, &ya), "z/a is the block's exception");
    cluster
        .put(common::policy(
            "y",
            "from-x",
            json!({"podSelector": {},
            "ingress": [{"from": [{"ipBlock": {"cidr": "2001:db8:3::/48"}}]}]}),
        ))
        .await;
    wait_v6(&cluster, &za, &ya, true, "z/a inside the block without the exception");
    cluster.clear_policies().await;

    // x/a isolated for egress (only to y): its neighbour discovery with the node still works.
    cluster
        .put(common::policy(
            "x",
            "to-y",
            json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        ))
        .await;
    wait_v6(&cluster, &xa, &za, false, "x/a may not send to z");
    // Forget the neighbours on both sides of x/a's veth: they must be resolved again under
    // the egress policy.
    cluster
        .node
        .run(&["ip", "-6", "neigh", "flush", "dev", &xa.interface()])
        .unwrap();
    cluster.pods[0]
        .1
        .run(&["ip", "-6", "neigh", "flush", "dev", "eth0"])
        .unwrap();
    wait_v6(
        &cluster,
        &xa,
        &ya,
        true,
        "x/a egress-isolated still reaches y/a over IPv6",
    );
}

//! weft-felix as a daemon on real nftables and routes: it restores what another process changed
//! in its table, repairs endpoint routes and proxy ARP, drops traffic to a weft interface it has
//! not programmed, masquerades pod traffic leaving the pools, keeps established connections and
//! the table across a restart, and leaves the table in place on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{Cluster, NODE, Pod, Probe, policy, reach};
use serde_json::json;
use weft_topology_tests::{Netns, Route, Signal, require_netns, wait_until};

fn pod(id: &str) -> Pod {
    Pod::all().into_iter().find(|p| p.id() == id).unwrap()
}

fn can_reach(cluster: &Cluster, from: &str, to: &str) -> bool {
    let target = pod(to).address();
    cluster
        .pods
        .iter()
        .find(|(p, _)| p.id() == from)
        .unwrap()
        .1
        .within(move || reach(Probe::Tcp(80), target))
        .unwrap()
}

fn wait_reach(cluster: &Cluster, from: &str, to: &str, want: bool, what: &str) {
    wait_until(what, Duration::from_secs(10), Duration::from_millis(50), || {
        Ok::<_, std::io::Error>(can_reach(cluster, from, to) == want)
    })
    .unwrap_or_else(|e| panic!("{e}\nfelix log:\n{}", cluster.felix_log()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn felix_keeps_its_table_routes_and_nat_in_place() {
    let Some(_support) = require_netns() else { return };
    let mut cluster = Cluster::new().await;
    cluster.start_felix();
    cluster
        .put(policy(
            "x",
            "deny",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}}),
        ))
        .await;
    wait_reach(&cluster, "y/a", "x/a", false, "x/a isolated");

    // Someone flushes weft's table: felix restores it at its next resync.
    cluster.node.run(&["nft", "flush", "table", "inet", "weft"]).unwrap();
    assert!(can_reach(&cluster, "y/a", "x/a"), "the flush opened x/a");
    wait_reach(&cluster, "y/a", "x/a", false, "felix restores a flushed table");
    // A map element deleted by hand is restored too.
    cluster
        .node
        .run(&[
            "nft",
            "delete",
            "element",
            "inet",
            "weft",
            "to-endpoint",
            "{ \"wftxa\" }",
        ])
        .unwrap();
    wait_until(
        "felix restores a deleted map element",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            cluster
                .node
                .run(&["nft", "list", "map", "inet", "weft", "to-endpoint"])
                .map(|o| o.stdout.contains("\"wftxa\""))
        },
    )
    .unwrap();

    // Route and proxy ARP drift is repaired.
    cluster
        .node
        .run(&["ip", "route", "del", "198.18.2.2/32", "dev", "wftyb"])
        .unwrap();
    cluster.node.set_sysctl("net/ipv4/conf/wftyb/proxy_arp", "0").unwrap();
    wait_until(
        "felix repairs y/b's host route",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            cluster
                .node
                .run(&["ip", "route", "show", "198.18.2.2/32"])
                .map(|o| o.stdout.contains("wftyb"))
        },
    )
    .unwrap();
    wait_until(
        "felix repairs y/b's proxy ARP",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || cluster.node.sysctl("net/ipv4/conf/wftyb/proxy_arp").map(|v| v == "1"),
    )
    .unwrap();
    wait_reach(&cluster, "z/a", "y/b", true, "y/b reachable after the repair");
    let metrics = cluster.metrics();
    for line in [
        "weft_felix_route_repairs_total 2",
        "weft_felix_endpoints 9",
        "weft_felix_invalid_policies 0",
        "weft_felix_apply_failures_total 0",
        "weft_felix_apply_seconds_count{mode=\"full\"}",
        "weft_felix_apply_seconds_count{mode=\"incremental\"}",
    ] {
        assert!(metrics.contains(line), "metrics lack {line:?}:\n{metrics}");
    }

    // A weft interface felix has not programmed (no WorkloadEndpoint yet) gets nothing.
    let newcomer = Netns::new("pod-new").unwrap();
    cluster.node.veth("wftnew", &newcomer, "eth0").unwrap();
    newcomer.add_address("eth0", "198.18.9.9/32").unwrap();
    newcomer.add_route(&Route::to("198.18.0.0/15").dev("eth0")).unwrap();
    cluster
        .node
        .add_route(&Route::to("198.18.9.9/32").dev("wftnew"))
        .unwrap();
    cluster.node.set_sysctl("net/ipv4/conf/wftnew/proxy_arp", "1").unwrap();
    cluster
        .node
        .set_sysctl("net/ipv4/neigh/wftnew/proxy_delay", "0")
        .unwrap();
    let listener = newcomer
        .within(|| TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], 80))).unwrap())
        .unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream)
        }
    });
    let to_newcomer = |cluster: &Cluster| {
        cluster.pods[3]
            .1
            .within(|| reach(Probe::Tcp(80), "198.18.9.9".parse().unwrap()))
            .unwrap()
    };
    assert!(
        !to_newcomer(&cluster),
        "an unprogrammed wft interface must not receive traffic"
    );
    cluster
        .put(json!({"apiVersion": "weft.io/v1", "kind": "WorkloadEndpoint",
            "metadata": {"namespace": "z", "name": format!("{NODE}-new-eth0")},
            "spec": {"node": NODE, "pod": "new", "interfaceName": "wftnew", "ipNetworks": ["198.18.9.9/32"]}}))
        .await;
    wait_until(
        "the programmed newcomer is reachable",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || Ok::<_, std::io::Error>(to_newcomer(&cluster)),
    )
    .unwrap();
    // Pod churn went through felix's own netlink element batches: none was refused (a refusal
    // would fall back to a full replace and hide here).
    let log = cluster.felix_log();
    assert!(log.contains("Incremental"), "no incremental batch:\n{log}");
    assert!(!log.contains("incremental update refused"), "{log}");

    // NAT outgoing: pod traffic to an address outside every pool leaves with the node's address;
    // traffic between pods keeps the pod's.
    let outside = Netns::new("outside").unwrap();
    cluster.node.veth("uplink", &outside, "eth0").unwrap();
    cluster.node.add_address("uplink", "198.19.0.1/24").unwrap();
    outside.add_address("eth0", "198.19.0.2/24").unwrap();
    let seen = |cluster: &Cluster| {
        let listener = outside
            .within(|| TcpListener::bind(SocketAddr::from(([198, 19, 0, 2], 0))).unwrap())
            .unwrap();
        let target = listener.local_addr().unwrap();
        cluster.pods[0]
            .1
            .within(move || TcpStream::connect_timeout(&target, Duration::from_secs(5)).unwrap())
            .unwrap();
        listener.accept().unwrap().1.ip().to_string()
    };
    cluster.pods[0]
        .1
        .add_route(&Route::to("198.19.0.0/24").dev("eth0"))
        .unwrap();
    assert_eq!(
        seen(&cluster),
        "198.19.0.1",
        "x/a masqueraded behind the node's uplink address"
    );
    cluster
        .put(
            json!({"apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": "pods"},
                    "spec": {"cidr": "198.18.0.0/16", "natOutgoing": false}}),
        )
        .await;
    // The outside needs a route back once addresses are not translated.
    outside
        .add_route(&Route::to("198.18.0.0/16").via("198.19.0.1"))
        .unwrap();
    wait_until(
        "natOutgoing off: the pod's own address",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || Ok::<_, std::io::Error>(seen(&cluster) == "198.18.1.1"),
    )
    .unwrap();

    // A connection established before a restart survives it; the table stays while felix is
    // away (SIGTERM leaves it) and after it comes back.
    cluster
        .put(policy(
            "y",
            "from-z",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
        ))
        .await;
    wait_reach(&cluster, "x/b", "y/a", false, "y isolated");
    let server = cluster.pods[3]
        .1
        .within(|| TcpListener::bind(SocketAddr::from(([198, 18, 2, 1], 9000))).unwrap())
        .unwrap();
    let mut client = cluster.pods[6]
        .1
        .within(|| TcpStream::connect_timeout(&"198.18.2.1:9000".parse().unwrap(), Duration::from_secs(5)).unwrap())
        .unwrap();
    let (mut accepted, _) = server.accept().unwrap();
    let felix = cluster.felix.take().unwrap();
    felix.signal(Signal::SIGTERM).unwrap();
    let status = felix.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "felix exits cleanly on SIGTERM: {status:?}\n{}",
        felix.stderr().unwrap()
    );
    assert!(
        !can_reach(&cluster, "x/b", "y/a"),
        "the table stays while felix is stopped"
    );
    cluster.start_felix();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    accepted.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.write_all(b"still here").unwrap();
    let mut buffer = [0u8; 10];
    accepted.read_exact(&mut buffer).unwrap();
    assert_eq!(&buffer, b"still here");
    assert!(!can_reach(&cluster, "x/b", "y/a"), "policy in force after the restart");
    assert!(
        !cluster.felix_log().contains("restoring"),
        "a restart finds the table as wanted:\n{}",
        cluster.felix_log()
    );
}

//! Per-packet cost (issue 5's benchmark, second part): TCP throughput and 64-byte UDP packets
//! per second (iperf3) from a client through a router namespace to a pod behind a `wft`
//! veth, with no rules, with weft's table for 2,500 endpoints × 10 policies (~10k rules; the
//! pod isolated for ingress and allowed from the client's network), and with a linear
//! iptables-legacy ruleset of 10k rules (a jump per endpoint, the pod's last).
//!
//! `cargo bench -p weft-felix --bench datapath` (root) prints a table. Namespaces of the kit,
//! addresses from 198.18.0.0/15 only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use weft_felix::calc::{Endpoint, Inputs, calculate};
use weft_felix::nft::{Nft, NftBinary};
use weft_felix::render;
use weft_topology_tests::{Netns, Route, require_netns};

const ENDPOINTS: usize = 2500;
const SECONDS: &str = "3";
const SERVER: &str = "198.18.100.10";
const SERVER_IF: &str = "wft0000000009c4";

fn inputs() -> Inputs {
    let mut endpoints: Vec<Endpoint> = (0..ENDPOINTS)
        .map(|i| Endpoint {
            namespace: format!("ns{}", i % 10),
            pod: format!("pod{i}"),
            node: "n1".into(),
            interface: format!("wft{i:011x}"),
            addresses: vec![std::net::IpAddr::from([198, 18, (i / 250) as u8, (i % 250 + 1) as u8])],
            labels: [("app".to_string(), format!("app{}", i % 7))].into(),
            ports: vec![],
        })
        .collect();
    endpoints.push(Endpoint {
        namespace: "ns0".into(),
        pod: "server".into(),
        node: "n1".into(),
        interface: SERVER_IF.into(),
        addresses: vec![SERVER.parse().unwrap()],
        labels: [("app".to_string(), "server".to_string())].into(),
        ports: vec![],
    });
    let mut policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy> = (0..10)
        .map(|p| {
            serde_json::from_value(json!({
                "metadata": {"namespace": format!("ns{p}"), "name": format!("policy{p}")},
                "spec": {"podSelector": {},
                         "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": format!("app{}", p % 7)}}}],
                                      "ports": [{"port": 80}, {"port": 443}]}]}
            }))
            .unwrap()
        })
        .collect();
    policies.push(
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns0", "name": "clients"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                     "ingress": [{"from": [{"ipBlock": {"cidr": "198.19.0.0/16"}}]}]}
        }))
        .unwrap(),
    );
    Inputs {
        node: "n1".into(),
        endpoints,
        namespaces: Default::default(),
        policies,
        pools: vec![],
    }
}

fn linear() -> String {
    let mut text = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..ENDPOINTS {
        text.push_str(&format!(":to-{i} - [0:0]\n"));
    }
    text.push_str(":to-server - [0:0]\n");
    for i in 0..ENDPOINTS {
        text.push_str(&format!("-A FORWARD -o wft{i:011x} -j to-{i}\n"));
        text.push_str(&format!(
            "-A to-{i} -s 198.18.{}.0/24 -p tcp -m tcp --dport 80 -j ACCEPT\n",
            i % 10
        ));
        text.push_str(&format!(
            "-A to-{i} -s 198.18.{}.0/24 -p tcp -m tcp --dport 443 -j ACCEPT\n",
            i % 10
        ));
        text.push_str(&format!("-A to-{i} -j DROP\n"));
    }
    text.push_str(&format!("-A FORWARD -o {SERVER_IF} -j to-server\n"));
    text.push_str("-A to-server -s 198.19.0.0/16 -j ACCEPT\n-A to-server -j DROP\nCOMMIT\n");
    text
}

struct Lab {
    client: Netns,
    router: Netns,
    _server: Netns,
    _iperf: weft_topology_tests::Process,
}

fn lab() -> Lab {
    let client = Netns::new("dp-client").unwrap();
    let router = Netns::new("dp-router").unwrap();
    let server = Netns::new("dp-server").unwrap();
    router.enable_forwarding().unwrap();
    router.veth("c0", &client, "eth0").unwrap();
    router.veth(SERVER_IF, &server, "eth0").unwrap();
    router.add_address("c0", "198.19.1.1/24").unwrap();
    client.add_address("eth0", "198.19.1.2/24").unwrap();
    client.add_route(&Route::to("198.18.0.0/16").via("198.19.1.1")).unwrap();
    server.add_address("eth0", &format!("{SERVER}/32")).unwrap();
    server.add_route(&Route::to("198.19.0.0/16").dev("eth0")).unwrap();
    router
        .add_route(&Route::to(&format!("{SERVER}/32")).dev(SERVER_IF))
        .unwrap();
    router
        .set_sysctl(&format!("net/ipv4/conf/{SERVER_IF}/proxy_arp"), "1")
        .unwrap();
    let iperf = server.command("iperf3").args(["-s", "-B", SERVER]).spawn().unwrap();
    client.ping(SERVER, Duration::from_secs(10)).unwrap();
    Lab {
        client,
        router,
        _server: server,
        _iperf: iperf,
    }
}

fn iperf(lab: &Lab, args: &[&str]) -> Value {
    let mut all = vec!["-c", SERVER, "-t", SECONDS, "-J"];
    all.extend_from_slice(args);
    // The server may still be finishing the previous test: retry a few times.
    for _ in 0..5 {
        let output = lab
            .client
            .command("iperf3")
            .args(&all)
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        if output.success() {
            return serde_json::from_str(&output.stdout).unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("iperf3 {all:?} kept failing");
}

fn measure(lab: &Lab) -> (f64, f64) {
    let tcp = iperf(lab, &[]);
    let gbits = tcp["end"]["sum_received"]["bits_per_second"].as_f64().unwrap() / 1e9;
    let udp = iperf(lab, &["-u", "-l", "64", "-b", "0"]);
    let sum = &udp["end"]["sum"];
    let received = sum["packets"].as_f64().unwrap() - sum["lost_packets"].as_f64().unwrap_or(0.0);
    let pps = received / sum["seconds"].as_f64().unwrap();
    (gbits, pps)
}

fn main() {
    let Some(_support) = require_netns() else { return };
    println!("{:<34} {:>12} {:>14}", "router ruleset", "TCP Gbit/s", "UDP 64 B pps");
    let lab = lab();
    let (gbits, pps) = measure(&lab);
    println!("{:<34} {:>12.2} {:>14.0}", "no rules", gbits, pps);

    // What any stateful filter pays: connection tracking, switched on by one `ct state` rule.
    lab.router
        .command("nft")
        .args(["-f", "-"])
        .stdin(
            "table inet weft_bench_ct {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n  \
             ct state established,related accept\n }\n}\n"
                .to_owned(),
        )
        .run()
        .unwrap();
    let (gbits, pps) = measure(&lab);
    println!(
        "{:<34} {:>12.2} {:>14.0}",
        "conntrack only (1 ct state rule)", gbits, pps
    );
    lab.router
        .run(&["nft", "delete", "table", "inet", "weft_bench_ct"])
        .unwrap();

    let ruleset = calculate(&inputs()).ruleset;
    let rules: usize = ruleset.chains.values().map(|c| c.rules.len()).sum();
    let batch = render::full(&ruleset, None);
    lab.router.within(|| NftBinary.apply(&batch).unwrap()).unwrap();
    let (gbits, pps) = measure(&lab);
    println!(
        "{:<34} {:>12.2} {:>14.0}",
        format!("weft ({rules} rules, sets, vmap)"),
        gbits,
        pps
    );
    lab.router.run(&["nft", "delete", "table", "inet", "weft"]).unwrap();

    lab.router
        .command("iptables-legacy-restore")
        .stdin(linear())
        .run()
        .unwrap();
    let (gbits, pps) = measure(&lab);
    println!(
        "{:<34} {:>12.2} {:>14.0}",
        format!("iptables-legacy linear ({} rules)", ENDPOINTS * 4 + 3),
        gbits,
        pps
    );
}

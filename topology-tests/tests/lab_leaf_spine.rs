//! The leaf-spine lab of `containerlab/leaf-spine/` brought up by `weft-lab` exactly as a user
//! would (`weft-lab up FILE`), with FRR and BIRD as spines and leaves and weft-bgpd on four
//! nodes, then checked the way a network engineer would: every node learns every other node's
//! block, the leaves see one /26 per node (not pod /32s), nodes blackhole their own block, pods
//! reach pods across leaves without NAT, a leaf losing a spine uplink keeps traffic flowing over
//! the other spine, and `down` leaves nothing behind.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use weft_topology_tests::{binary, skip_unless_netns};

const LEAF_SPINE: &str = "containerlab/leaf-spine/leaf-spine.clab.yml";
const DUAL_STACK: &str = "containerlab/dual-stack/dual-stack.clab.yml";
const ROUTE_REFLECTORS: &str = "containerlab/route-reflectors/route-reflectors.clab.yml";
const CLUSTER_MODE: &str = "containerlab/cluster-mode/cluster-mode.clab.yml";

/// The lab, torn down when dropped (also when an assertion fails).
struct RunningLab {
    weft_lab: PathBuf,
    name: String,
    file: PathBuf,
}

impl RunningLab {
    fn up(name: &str, topology: &str) -> Self {
        for program in ["weft-bgpd", "weft-cni", "weftctl"] {
            binary(program).unwrap_or_else(|error| panic!("{program}: {error}"));
        }
        let lab = Self {
            weft_lab: binary("weft-lab").expect("weft-lab"),
            name: name.to_owned(),
            file: Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(topology),
        };
        let out = lab.weft_lab(&["up"]);
        assert!(
            out.status.success(),
            "weft-lab up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn weft_lab(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.weft_lab);
        command.arg("--name").arg(&self.name);
        match args.split_first() {
            Some((verb, rest)) => command.arg(verb).arg(&self.file).args(rest),
            None => &mut command,
        };
        command.output().expect("run weft-lab")
    }

    fn netns(&self, node: &str) -> String {
        format!("clab-{}-{node}", self.name)
    }

    /// `ip netns exec clab-<lab>-<node> argv…`
    fn on(&self, node: &str, argv: &[&str]) -> Output {
        Command::new("timeout")
            .args(["30", "ip", "netns", "exec", &self.netns(node)])
            .args(argv)
            .output()
            .expect("run in namespace")
    }

    fn stdout(&self, node: &str, argv: &[&str]) -> String {
        let out = self.on(node, argv);
        assert!(
            out.status.success(),
            "{node}: {argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `weftctl ARGS` on `node` (its sockets), the JSON it prints.
    fn weftctl_json(&self, node: &str, args: &[&str]) -> serde_json::Value {
        let mut argv = vec!["exec", node, "weftctl"];
        argv.extend_from_slice(args);
        let out = self.weft_lab(&argv);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn ping(&self, from: &str, to: &str) -> bool {
        self.on(from, &["ping", "-c", "1", "-W", "1", to]).status.success()
    }
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        let out = self.weft_lab(&["down"]);
        if !out.status.success() {
            eprintln!("weft-lab down failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn wait_until(what: &str, deadline: Duration, check: impl FnMut() -> bool) {
    wait_or_show(what, deadline, check, String::new);
}

/// [`wait_until`], showing `state()` (what a user would look at) when it times out.
fn wait_or_show(what: &str, deadline: Duration, mut check: impl FnMut() -> bool, state: impl FnOnce() -> String) {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not true after {deadline:?}\n{}", state());
}

/// FRR's view of a node's sessions and of one prefix.
fn frr_view(lab: &RunningLab, node: &str, family: &str, prefix: &str) -> String {
    let vtysh = |command: &str| {
        let out = lab.weft_lab(&["exec", node, "vtysh", "-c", command]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    format!(
        "{}\n{}",
        vtysh(&format!("show bgp {family} unicast summary")),
        vtysh(&format!("show bgp {family} unicast {prefix}"))
    )
}

fn routes(lab: &RunningLab, node: &str, args: &[&str]) -> String {
    routes_of(lab, "-4", node, args)
}

fn routes_of(lab: &RunningLab, family: &str, node: &str, args: &[&str]) -> String {
    let mut argv = vec!["ip", family, "route", "show"];
    argv.extend_from_slice(args);
    lab.stdout(node, &argv)
}

#[test]
fn leaf_spine_fabric_carries_pod_traffic_end_to_end() {
    skip_unless_netns!();
    let lab = RunningLab::up(&format!("t{}ls", std::process::id()), LEAF_SPINE);
    let blocks = ["198.18.1.0/26", "198.18.2.0/26", "198.18.3.0/26", "198.18.4.0/26"];

    // Every node learns the three other nodes' blocks through its leaf (weft's proto 87).
    for (index, node) in ["node1", "node2", "node3", "node4"].iter().enumerate() {
        wait_until(
            &format!("{node} learns the other blocks"),
            Duration::from_secs(60),
            || {
                let learned = routes(&lab, node, &["proto", "87"]);
                blocks
                    .iter()
                    .enumerate()
                    .all(|(other, block)| other == index || learned.contains(block))
            },
        );
        let blackholes = routes(&lab, node, &["type", "blackhole"]);
        assert!(
            blackholes.contains(blocks[index]),
            "{node} blackholes its own block: {blackholes}"
        );
    }

    // The leaves carry one /26 per node, never a pod's /32, and reach the other leaf's nodes
    // over both spines.
    for leaf in ["leaf1", "leaf2"] {
        let table = routes(&lab, leaf, &["root", "198.18.0.0/16"]);
        for block in blocks {
            assert!(table.contains(block), "{leaf} has {block}: {table}");
        }
        assert!(!table.contains("/32"), "{leaf} holds pod routes: {table}");
    }
    wait_or_show(
        "leaf1 reaches node3's block over both spines",
        Duration::from_secs(30),
        || routes(&lab, "leaf1", &["198.18.3.0/26"]).matches("nexthop via").count() == 2,
        || frr_view(&lab, "leaf1", "ipv4", "198.18.3.0/26"),
    );

    // Pod to pod across leaves, and the receiver sees the sender's pod address (no NAT).
    let (sender, receiver) = ("node1-pod1", "node3-pod2");
    let to = pod_address(&lab, receiver, 0);
    wait_until(&format!("{sender} pings {receiver}"), Duration::from_secs(30), || {
        lab.ping(sender, &to)
    });
    assert_source_seen(&lab, sender, receiver, 0);

    // A NetworkPolicy enforced across nodes by weft-felix: only node1's first pod may reach
    // node3's second pod; node2's pod is refused there but still reaches node3's first pod.
    let policy_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy_file.path(),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: only-node1-pod1, namespace: default }\n\
         spec:\n  podSelector: { matchLabels: { pod: node3-pod2 } }\n  policyTypes: [Ingress]\n\
         \x20 ingress:\n    - from: [ { podSelector: { matchLabels: { pod: node1-pod1 } } } ]\n",
    )
    .unwrap();
    let policy_path = policy_file.path().display().to_string();
    let out = lab.weft_lab(&["exec", "node3", "weftctl", "apply", "-f", &policy_path]);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    let node3_pod1 = pod_address(&lab, "node3-pod1", 0);
    wait_until(
        "node2-pod1 is refused by node3-pod2's policy",
        Duration::from_secs(20),
        || !lab.ping("node2-pod1", &to),
    );
    assert!(lab.ping(sender, &to), "node1-pod1 is allowed to node3-pod2");
    assert!(lab.ping("node2-pod1", &node3_pod1), "node3-pod1 is not selected: open");
    let out = lab.weft_lab(&["exec", "node3", "weftctl", "delete", "-f", &policy_path]);
    assert!(out.status.success(), "delete: {}", String::from_utf8_lossy(&out.stderr));
    wait_until("node2-pod1 reaches node3-pod2 again", Duration::from_secs(20), || {
        lab.ping("node2-pod1", &to)
    });

    // leaf1 loses its uplink to spine1: traffic keeps flowing over spine2.
    lab.stdout("leaf1", &["ip", "link", "set", "eth1", "down"]);
    wait_until(
        "leaf1 routes node3's block over spine2 only",
        Duration::from_secs(15),
        || {
            let table = routes(&lab, "leaf1", &["198.18.3.0/26"]);
            table.contains("via 198.19.2.0") && !table.contains("198.19.1.0")
        },
    );
    wait_until(
        &format!("{sender} still pings {receiver}"),
        Duration::from_secs(15),
        || lab.ping(sender, &to),
    );

    // weft-bgpd on node3 crashes and is restarted while node1's pod pings node3's pod: with
    // graceful restart (node3 keeps its routes in the kernel, the BIRD leaf keeps node3's block
    // as stale) not one packet is lost.
    let pinger = Command::new("timeout")
        .args([
            "30",
            "ip",
            "netns",
            "exec",
            &lab.netns(sender),
            "ping",
            "-q",
            "-i",
            "0.02",
            "-c",
            "500",
            "-W",
            "1",
            &to,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let out = lab.weft_lab(&["restart", "node3", "--kill"]);
    assert!(
        out.status.success(),
        "restart node3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinged = String::from_utf8_lossy(&pinger.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        pinged.contains("500 packets transmitted, 500 received"),
        "no packet lost while weft-bgpd on node3 crashed and restarted: {pinged}"
    );

    // The restarted weft-bgpd and a restarted BIRD leaf come back: the sessions re-establish
    // and pods on both sides reach each other again.
    for (node, how) in [("node3", "--kill"), ("leaf2", "--term")] {
        let mut args = vec!["restart", node];
        if how == "--kill" {
            args.push("--kill");
        }
        let out = lab.weft_lab(&args);
        assert!(
            out.status.success(),
            "restart {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until(
            &format!("node3 relearns the blocks after {node} restarted"),
            Duration::from_secs(60),
            || routes(&lab, "node3", &["proto", "87"]).matches("/26 via").count() == 3,
        );
        wait_until(
            &format!("{sender} pings {receiver} after {node} restarted"),
            Duration::from_secs(30),
            || lab.ping(sender, &to),
        );
    }

    let name = lab.name.clone();
    drop(lab);
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("clab-{name}-")))
        .collect();
    assert!(left.is_empty(), "namespaces left after down: {left:?}");
    assert!(
        !Path::new("/run/weft-lab").join(&name).exists(),
        "state left after down"
    );
}

/// Address number `index` (0: IPv4, 1: IPv6 in a dual-stack lab) of `pod`, from the lab's state.
fn pod_address(lab: &RunningLab, pod: &str, index: usize) -> String {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("/run/weft-lab/{}/state.json", lab.name)).unwrap()).unwrap();
    let pods = state["pods"].as_array().unwrap();
    let found = pods
        .iter()
        .find(|p| p["name"] == pod)
        .unwrap_or_else(|| panic!("pod {pod} in {state}"));
    found["addresses"][index]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// UDP from `sender` to `receiver` (address number `index`): the receiver sees the sender's own
/// pod address, so nothing on the way translated it.
fn assert_source_seen(lab: &RunningLab, sender: &str, receiver: &str, index: usize) {
    let (from, to) = (pod_address(lab, sender, index), pod_address(lab, receiver, index));
    let (family, any) = if index == 0 {
        ("AF_INET", "0.0.0.0")
    } else {
        ("AF_INET6", "::")
    };
    let listener = Command::new("timeout")
        .args([
            "20",
            "ip",
            "netns",
            "exec",
            &lab.netns(receiver),
            "/usr/bin/python3",
            "-c",
        ])
        .arg(format!(
            "import socket;s=socket.socket(socket.{family},socket.SOCK_DGRAM);s.bind(('{any}',9000));\
             s.settimeout(15);d,a=s.recvfrom(64);print(a[0],flush=True)"
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let send = format!(
        "import socket,time\ns=socket.socket(socket.{family},socket.SOCK_DGRAM)\n\
         for _ in range(20):\n  s.sendto(b'hi',('{to}',9000)); time.sleep(0.25)"
    );
    let sent = lab.on(sender, &["timeout", "10", "/usr/bin/python3", "-c", &send]);
    assert!(
        sent.status.success(),
        "sending: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let seen = listener.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout).trim(),
        from,
        "{receiver} sees {sender}'s pod address"
    );
}

#[test]
fn dual_stack_fabric_carries_ipv4_and_ipv6_pod_traffic() {
    skip_unless_netns!();
    let lab = RunningLab::up(&format!("t{}ds", std::process::id()), DUAL_STACK);
    let blocks = [
        "2001:db8:100:1::/122",
        "2001:db8:100:2::/122",
        "2001:db8:100:3::/122",
        "2001:db8:100:4::/122",
    ];
    for (index, node) in ["node1", "node2", "node3", "node4"].iter().enumerate() {
        wait_until(
            &format!("{node} learns the other IPv6 blocks"),
            Duration::from_secs(60),
            || {
                let learned = routes_of(&lab, "-6", node, &["proto", "87"]);
                blocks
                    .iter()
                    .enumerate()
                    .all(|(other, block)| other == index || learned.contains(&format!("{block} via")))
            },
        );
        wait_until(
            &format!("{node} learns the other IPv4 blocks"),
            Duration::from_secs(30),
            || routes(&lab, node, &["proto", "87"]).matches("/26 via").count() == 3,
        );
    }
    wait_or_show(
        "leaf1 reaches node3's IPv6 block over both spines",
        Duration::from_secs(30),
        || {
            routes_of(&lab, "-6", "leaf1", &["2001:db8:100:3::/122"])
                .matches("nexthop via")
                .count()
                == 2
        },
        || frr_view(&lab, "leaf1", "ipv6", "2001:db8:100:3::/122"),
    );
    for (sender, receiver) in [("node1-pod1", "node4-pod2"), ("node3-pod2", "node2-pod1")] {
        for index in [0, 1] {
            let to = pod_address(&lab, receiver, index);
            wait_until(
                &format!("{sender} pings {receiver} at {to}"),
                Duration::from_secs(30),
                || lab.ping(sender, &to),
            );
        }
        assert_source_seen(&lab, sender, receiver, 1);
    }
}

#[test]
fn two_weft_route_reflectors_give_every_node_every_block() {
    skip_unless_netns!();
    let lab = RunningLab::up(&format!("t{}rr", std::process::id()), ROUTE_REFLECTORS);
    for node in ["node1", "node2", "node3", "node4"] {
        wait_until(
            &format!("{node} learns the other blocks through the reflectors"),
            Duration::from_secs(60),
            || routes(&lab, node, &["proto", "87"]).matches("/26 via").count() == 3,
        );
    }
    // node1 peers with the two reflectors only, and hears every other block from both.
    let weftctl_json = |args: &[&str]| lab.weftctl_json("node1", args);
    wait_until(
        "node1 hears three blocks from each reflector",
        Duration::from_secs(30),
        || {
            let peers = weftctl_json(&["bgp", "peers", "--json"]);
            let peers = peers.as_array().unwrap();
            peers.len() == 2
                && peers
                    .iter()
                    .all(|p| p["state"] == "Established" && p["prefixes_received"] == 3)
        },
    );
    // A reflected route keeps its next hop and carries ORIGINATOR_ID and CLUSTER_LIST.
    let routes_json = weftctl_json(&["bgp", "routes", "--json"]);
    let node3_block = routes_json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "198.18.3.0/26" && r["best"] == true)
        .unwrap_or_else(|| panic!("node3's block in {routes_json}"));
    assert_eq!(node3_block["next_hop"], "198.19.40.13");
    assert_eq!(node3_block["originator_id"], "198.19.40.13");
    assert_eq!(node3_block["cluster_list"], serde_json::json!(["198.19.40.100"]));
    // Pods reach pods across nodes, directly over the segment.
    let to = pod_address(&lab, "node4-pod2", 0);
    wait_until("node1-pod1 pings node4-pod2", Duration::from_secs(30), || {
        lab.ping("node1-pod1", &to)
    });
    // One reflector crashing changes nothing for the nodes: the other still reflects.
    let out = lab.weft_lab(&["restart", "rr1", "--kill"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        lab.ping("node1-pod1", &to),
        "node1-pod1 still reaches node4-pod2 while rr1 restarts"
    );
    wait_until("rr1 is back and reflecting", Duration::from_secs(30), || {
        let peers = weftctl_json(&["bgp", "peers", "--json"]);
        peers
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "Established" && p["prefixes_received"] == 3)
    });
}

/// The /26 block holding an IPv4 address.
fn block_of(address: &str) -> String {
    let address: std::net::Ipv4Addr = address.parse().unwrap();
    let block = u32::from(address) & !0x3f;
    format!("{}/26", std::net::Ipv4Addr::from(block))
}

/// The blocks a node learned through BGP (`/26 via`, weft's route protocol).
fn learned_blocks(lab: &RunningLab, node: &str) -> usize {
    routes(lab, node, &["proto", "87"]).matches("/26 via").count()
}

#[test]
fn cluster_mode_nodes_learn_every_block_through_two_reflectors_and_a_joining_node_is_learned() {
    skip_unless_netns!();
    let lab = RunningLab::up(&format!("t{}cm", std::process::id()), CLUSTER_MODE);
    let nodes = ["node1", "node2", "node3", "node4", "node5", "node6"];
    // Every node's first pod claimed a block; weft-bgpd announced it from the store's
    // confirmed affinity, and the reflectors passed it to every other node.
    for node in nodes {
        wait_or_show(
            &format!("{node} learns the five other nodes' blocks"),
            Duration::from_secs(90),
            || learned_blocks(&lab, node) == 5,
            || routes(&lab, node, &[]),
        );
    }
    let weftctl_json = |node: &str, args: &[&str]| lab.weftctl_json(node, args);
    // A client peers with the two reflectors only (no mesh); a reflector with every node.
    let peers_of = |node: &str| -> Vec<String> {
        let peers = weftctl_json(node, &["bgp", "peers", "--json"]);
        let mut addresses: Vec<String> = peers
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] == "Established")
            .map(|p| p["address"].as_str().unwrap().to_owned())
            .collect();
        addresses.sort();
        addresses
    };
    assert_eq!(peers_of("node5"), ["198.19.50.11", "198.19.50.12"]);
    wait_until(
        "node1 has a session with each of the five other nodes",
        Duration::from_secs(30),
        || peers_of("node1").len() == 5,
    );
    // Pods reach pods across nodes.
    let to = pod_address(&lab, "node6-pod1", 0);
    wait_until("node3-pod1 pings node6-pod1", Duration::from_secs(30), || {
        lab.ping("node3-pod1", &to)
    });
    // Rack r1's ToR: only the nodes labelled rack=r1 (node3, node4) peer with it, over eBGP,
    // and it routes node3's block to node3.
    let tor_sessions = || -> serde_json::Value {
        let out = lab.weft_lab(&["exec", "tor1", "vtysh", "-c", "show bgp ipv4 unicast summary json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let established = |summary: &serde_json::Value, peer: &str| summary["peers"][peer]["state"] == "Established";
    wait_or_show(
        "tor1 has sessions with node3 and node4",
        Duration::from_secs(60),
        || {
            let summary = tor_sessions();
            established(&summary, "198.19.50.13") && established(&summary, "198.19.50.14")
        },
        || tor_sessions().to_string(),
    );
    assert!(
        !established(&tor_sessions(), "198.19.50.15"),
        "node5 is not in rack r1 and must not peer with its ToR"
    );
    let block = block_of(&pod_address(&lab, "node3-pod1", 0));
    wait_or_show(
        "tor1 routes node3's block through node3",
        Duration::from_secs(60),
        || {
            let route = routes(&lab, "tor1", &[&block]);
            route.contains("proto bgp") && route.contains("198.19.50.13")
        },
        || routes(&lab, "tor1", &[]),
    );

    // node7 joins: its weft-bgpd waited for a WeftNode; once one is stored it peers with the
    // reflectors, and its first pod's block reaches every node.
    assert_eq!(learned_blocks(&lab, "node7"), 0, "node7 has not joined yet");
    let store = format!("file:/run/weft-lab/{}/store", lab.name);
    let joining = Path::new(env!("CARGO_MANIFEST_DIR")).join("../containerlab/cluster-mode/node7.yaml");
    let out = Command::new(binary("weftctl").unwrap())
        .args(["--store", &store, "apply", "-f"])
        .arg(&joining)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("node7 learns the six blocks", Duration::from_secs(60), || {
        learned_blocks(&lab, "node7") == 6
    });
    let out = lab.weft_lab(&["pod", "node7"]);
    assert!(
        out.status.success(),
        "weft-lab pod: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "node7-pod1");
    for node in nodes {
        wait_or_show(
            &format!("{node} learns node7's new block"),
            Duration::from_secs(60),
            || learned_blocks(&lab, node) == 6,
            || routes(&lab, node, &[]),
        );
    }
    let to = pod_address(&lab, "node7-pod1", 0);
    wait_until("node3-pod1 pings the new node's pod", Duration::from_secs(30), || {
        lab.ping("node3-pod1", &to)
    });
}

#[test]
fn every_topology_in_containerlab_is_valid() {
    let weft_lab = binary("weft-lab").expect("weft-lab");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../containerlab");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(files) = std::fs::read_dir(&dir) else { continue };
        for file in files {
            let file = file.unwrap().path();
            if file.to_string_lossy().ends_with(".clab.yml") {
                let out = Command::new(&weft_lab).arg("validate").arg(&file).output().unwrap();
                assert!(
                    out.status.success(),
                    "{}: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no topology found under {}", root.display());
}

#[test]
fn a_broken_topology_is_refused_naming_the_node_and_nothing_is_made() {
    let weft_lab = binary("weft-lab").expect("weft-lab");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.clab.yml");
    let name = format!("t{}bad", std::process::id());
    std::fs::write(
        &file,
        format!(
            "name: {name}\ntopology:\n  nodes:\n    leaf1: {{ kind: linux, image: quay.io/frrouting/frr:8.4.4 }}\n"
        ),
    )
    .unwrap();
    let out = Command::new(&weft_lab).arg("up").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("node leaf1: an FRR node needs a bind to /etc/frr/frr.conf"),
        "{error}"
    );
    assert!(!Path::new("/run/netns").join(format!("clab-{name}-leaf1")).exists());

    // A lab that fails half-way (BIRD refuses its config after the other node and the link were
    // made) is torn down, and the error names the node.
    skip_unless_netns!();
    std::fs::write(
        dir.path().join("bird.conf"),
        "router id 198.19.255.1;\nprotocol bgp { this is not BIRD }\n",
    )
    .unwrap();
    std::fs::write(
        &file,
        format!(
            "name: {name}\ntopology:\n  nodes:\n    h1: {{ kind: linux, image: alpine:3 }}\n    \
             r1: {{ kind: linux, image: bird:2, binds: [bird.conf:/etc/bird/bird.conf] }}\n  links:\n    \
             - endpoints: [\"h1:eth1\", \"r1:eth1\"]\n      ipv4: [\"198.19.0.0/31\", \"198.19.0.1/31\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new(&weft_lab).arg("up").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("node r1: starting BIRD"), "{error}");
    for node in ["h1", "r1"] {
        assert!(
            !Path::new("/run/netns").join(format!("clab-{name}-{node}")).exists(),
            "{node} left behind after a failed up"
        );
    }
    assert!(!Path::new("/run/weft-lab").join(&name).exists());
}

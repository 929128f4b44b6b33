//! Unit tests of the calculation: each NetworkPolicy rule of networking.k8s.io/v1, checked by
//! walking the computed ruleset for packets between the pods of the upstream e2e model
//! (namespaces x, y, z; pods a, b, c; all on node n1 unless said otherwise).

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use serde_json::{Value, json};

use super::*;
use crate::ruleset::Packet;

const NODE: &str = "n1";

fn address(namespace: &str, pod: &str) -> IpAddr {
    let n = ["x", "y", "z"].iter().position(|n| *n == namespace).unwrap() as u8;
    let p = ["a", "b", "c", "d"].iter().position(|p| *p == pod).unwrap() as u8;
    IpAddr::from([198, 18, 1 + n, 1 + p])
}

fn endpoint(namespace: &str, pod: &str) -> Endpoint {
    Endpoint {
        namespace: namespace.into(),
        pod: pod.into(),
        node: NODE.into(),
        interface: format!("wft{namespace}{pod}"),
        addresses: vec![address(namespace, pod)],
        labels: [("pod".to_string(), pod.to_string())].into(),
        ports: vec![
            NamedPort {
                name: "serve-80-tcp".into(),
                protocol: Protocol::Tcp,
                port: 80,
            },
            NamedPort {
                name: "serve-81-tcp".into(),
                protocol: Protocol::Tcp,
                port: 81,
            },
            NamedPort {
                name: "serve-80-udp".into(),
                protocol: Protocol::Udp,
                port: 80,
            },
            NamedPort {
                name: "serve-81-udp".into(),
                protocol: Protocol::Udp,
                port: 81,
            },
        ],
    }
}

fn model() -> Inputs {
    let mut inputs = Inputs {
        node: NODE.into(),
        ..Inputs::default()
    };
    for namespace in ["x", "y", "z"] {
        inputs
            .namespaces
            .insert(namespace.into(), [("ns".to_string(), namespace.to_string())].into());
        for pod in ["a", "b", "c"] {
            inputs.endpoints.push(endpoint(namespace, pod));
        }
    }
    inputs
}

fn policy(namespace: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": namespace, "name": name}, "spec": spec
    }))
    .unwrap()
}

fn with(policies: Vec<NetworkPolicy>) -> Calculation {
    let mut inputs = model();
    inputs.policies = policies;
    calculate(&inputs)
}

/// A new connection from pod `from` ("x/a") to pod `to` on `protocol`/`port`.
fn allowed(calc: &Calculation, from: &str, to: &str, protocol: Protocol, port: u16) -> bool {
    let (fns, fpod) = from.split_once('/').unwrap();
    let (tns, tpod) = to.split_once('/').unwrap();
    calc.ruleset.evaluate(&Packet {
        in_interface: Some(format!("wft{fns}{fpod}")),
        out_interface: Some(format!("wft{tns}{tpod}")),
        source: address(fns, fpod),
        destination: address(tns, tpod),
        protocol,
        port,
        established: false,
    })
}

fn tcp80(calc: &Calculation, from: &str, to: &str) -> bool {
    allowed(calc, from, to, Protocol::Tcp, 80)
}

const PODS: [&str; 9] = ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"];

/// The 9x9 matrix on TCP 80 as rows of `.` (allowed) and `X` (denied), one row per sender.
fn matrix(calc: &Calculation, protocol: Protocol, port: u16) -> Vec<String> {
    PODS.iter()
        .map(|from| {
            let row: String = PODS
                .iter()
                .map(|to| {
                    if allowed(calc, from, to, protocol, port) {
                        '.'
                    } else {
                        'X'
                    }
                })
                .collect();
            format!("{from} {row}")
        })
        .collect()
}

fn expect(calc: &Calculation, protocol: Protocol, port: u16, rows: [&str; 9]) {
    let expected: Vec<String> = PODS.iter().zip(rows).map(|(pod, row)| format!("{pod} {row}")).collect();
    let actual = matrix(calc, protocol, port);
    assert_eq!(
        actual,
        expected,
        "\nexpected:\n{}\nactual:\n{}",
        expected.join("\n"),
        actual.join("\n")
    );
}

const ALL: [&str; 9] = [
    ".........",
    ".........",
    ".........",
    ".........",
    ".........",
    ".........",
    ".........",
    ".........",
    ".........",
];

#[test]
fn without_policies_every_pod_reaches_every_pod() {
    let calc = with(vec![]);
    expect(&calc, Protocol::Tcp, 80, ALL);
    expect(&calc, Protocol::Udp, 81, ALL);
    assert!(
        calc.endpoints
            .iter()
            .all(|e| e.ingress_chain.is_none() && e.egress_chain.is_none())
    );
}

#[test]
fn default_deny_ingress_isolates_the_selected_namespace_for_ingress_only() {
    let calc = with(vec![policy("x", "deny", json!({"podSelector": {}}))]);
    let rows = [
        "XXX......",
        "XXX......",
        "XXX......",
        "XXX......",
        "XXX......",
        "XXX......",
        "XXX......",
        "XXX......",
        "XXX......",
    ];
    expect(&calc, Protocol::Tcp, 80, rows);
    expect(&calc, Protocol::Udp, 81, rows);
}

#[test]
fn default_deny_egress_isolates_senders_only() {
    let calc = with(vec![policy(
        "x",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    )]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "XXXXXXXXX",
            "XXXXXXXXX",
            "XXXXXXXXX",
            ".........",
            ".........",
            ".........",
            ".........",
            ".........",
            ".........",
        ],
    );
}

#[test]
fn pod_selector_peer_allows_matching_pods_of_the_policys_namespace_only() {
    let calc = with(vec![policy(
        "x",
        "allow-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "X........",
            ".........",
            "X........",
            "X........",
            "X........",
            "X........",
            "X........",
            "X........",
            "X........",
        ],
    );
    // Every port and protocol is open to x/b.
    assert!(allowed(&calc, "x/b", "x/a", Protocol::Udp, 81));
}

#[test]
fn namespace_selector_peer_allows_every_pod_of_matching_namespaces() {
    let calc = with(vec![policy(
        "x",
        "allow-y",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    )]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "X........",
            "X........",
            "X........",
            ".........",
            ".........",
            ".........",
            "X........",
            "X........",
            "X........",
        ],
    );
}

#[test]
fn pod_and_namespace_selector_in_one_peer_must_both_match() {
    let calc = with(vec![policy(
        "x",
        "and",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "c"}}}
        ]}]}),
    )]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "X........",
            "X........",
            "X........",
            "X........",
            "X........",
            ".........",
            "X........",
            "X........",
            "X........",
        ],
    );
}

#[test]
fn separate_peers_are_ored() {
    let calc = with(vec![policy(
        "x",
        "or",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "c"}}}
        ]}]}),
    )]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "X........",
            "X........",
            ".........",
            ".........",
            ".........",
            ".........",
            "X........",
            "X........",
            "X........",
        ],
    );
}

#[test]
fn policies_selecting_one_pod_are_ored() {
    let calc = with(vec![
        policy(
            "x",
            "from-b",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        ),
        policy(
            "x",
            "from-z",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
        ),
    ]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "XXX......",
            ".........",
            "XXX......",
            "XXX......",
            "XXX......",
            "XXX......",
            ".XX......",
            ".XX......",
            ".XX......",
        ],
    );
}

#[test]
fn match_expressions_select_peers() {
    let calc = with(vec![policy(
        "x",
        "expr",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{
            "namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]},
            "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]}
        }]}]}),
    )]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "X........",
            ".........",
            ".........",
            "X........",
            "X........",
            "X........",
            "X........",
            ".........",
            ".........",
        ],
    );
}

#[test]
fn ip_block_allows_the_cidr_without_its_exceptions() {
    // y's pods are 198.18.2.1-3; except y/b's /32.
    let calc = with(vec![policy(
        "x",
        "block",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.2.0/24", "except": ["198.18.2.2/32"]}}]}]}),
    )]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "X........",
            "X........",
            "X........",
            ".........",
            "X........",
            ".........",
            "X........",
            "X........",
            "X........",
        ],
    );
}

#[test]
fn egress_ip_block_limits_destinations() {
    let calc = with(vec![policy(
        "x",
        "to-z",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "198.18.3.0/24"}}]}]}),
    )]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "XXXXXX...",
            "XXXXXX...",
            "XXXXXX...",
            ".........",
            ".........",
            ".........",
            ".........",
            ".........",
            ".........",
        ],
    );
}

#[test]
fn ports_by_number_and_protocol_limit_what_is_allowed() {
    let calc = with(vec![policy(
        "x",
        "port",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 81, "protocol": "UDP"}]}]}),
    )]);
    assert!(allowed(&calc, "y/b", "x/a", Protocol::Udp, 81));
    assert!(!allowed(&calc, "y/b", "x/a", Protocol::Udp, 80));
    assert!(!allowed(&calc, "y/b", "x/a", Protocol::Tcp, 81));
    assert!(!allowed(&calc, "y/b", "x/a", Protocol::Sctp, 81));
}

#[test]
fn end_port_allows_a_range() {
    let calc = with(vec![policy(
        "x",
        "range",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 81, "endPort": 90}]}]}),
    )]);
    assert!(!allowed(&calc, "y/b", "x/a", Protocol::Tcp, 80));
    assert!(allowed(&calc, "y/b", "x/a", Protocol::Tcp, 81));
    assert!(allowed(&calc, "y/b", "x/a", Protocol::Tcp, 90));
    assert!(!allowed(&calc, "y/b", "x/a", Protocol::Tcp, 91));
}

#[test]
fn a_protocol_without_port_allows_all_its_ports() {
    let calc = with(vec![policy(
        "x",
        "sctp",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"protocol": "SCTP"}]}]}),
    )]);
    assert!(allowed(&calc, "y/b", "x/a", Protocol::Sctp, 9999));
    assert!(!allowed(&calc, "y/b", "x/a", Protocol::Tcp, 9999));
}

#[test]
fn named_ports_resolve_against_each_destination_pod() {
    let mut inputs = model();
    // x/b serves "web" on 81, x/a on 80: one rule, different numbers per pod.
    for e in &mut inputs.endpoints {
        let port = match (e.namespace.as_str(), e.pod.as_str()) {
            ("x", "a") => 80,
            ("x", "b") => 81,
            _ => continue,
        };
        e.ports.push(NamedPort {
            name: "web".into(),
            protocol: Protocol::Tcp,
            port,
        });
    }
    inputs.policies = vec![policy(
        "x",
        "web",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "web"}]}]}),
    )];
    let calc = calculate(&inputs);
    assert!(allowed(&calc, "y/a", "x/a", Protocol::Tcp, 80));
    assert!(!allowed(&calc, "y/a", "x/a", Protocol::Tcp, 81));
    assert!(allowed(&calc, "y/a", "x/b", Protocol::Tcp, 81));
    assert!(!allowed(&calc, "y/a", "x/b", Protocol::Tcp, 80));
    // x/c has no port named web: nothing reaches it.
    assert!(!allowed(&calc, "y/a", "x/c", Protocol::Tcp, 80));
    assert!(!allowed(&calc, "y/a", "x/c", Protocol::Tcp, 81));
}

#[test]
fn named_port_protocol_must_match_the_container_port() {
    let calc = with(vec![policy(
        "x",
        "udp-name",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]}),
    )]);
    assert!(allowed(&calc, "y/a", "x/a", Protocol::Udp, 81));
    assert!(!allowed(&calc, "y/a", "x/a", Protocol::Tcp, 81));
    // Named TCP protocol on a UDP name: never matches.
    let calc = with(vec![policy(
        "x",
        "mismatch",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-udp"}]}]}),
    )]);
    assert!(!allowed(&calc, "y/a", "x/a", Protocol::Udp, 81));
    assert!(!allowed(&calc, "y/a", "x/a", Protocol::Tcp, 81));
}

#[test]
fn egress_named_ports_resolve_against_the_destination() {
    let calc = with(vec![policy(
        "x",
        "egress-named",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
    )]);
    assert!(allowed(&calc, "x/a", "y/a", Protocol::Tcp, 81));
    assert!(!allowed(&calc, "x/a", "y/a", Protocol::Tcp, 80));
}

#[test]
fn egress_and_ingress_both_apply_between_pods_of_one_node() {
    let calc = with(vec![
        policy(
            "x",
            "egress-to-y",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        ),
        policy(
            "y",
            "ingress-from-xa",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
        ),
    ]);
    expect(
        &calc,
        Protocol::Tcp,
        80,
        [
            "XXX...XXX",
            "XXXXXXXXX",
            "XXXXXXXXX",
            ".........",
            "...XXX...",
            "...XXX...",
            ".........",
            "...XXX...",
            "...XXX...",
        ],
    );
}

#[test]
fn an_empty_ingress_rule_allows_everything_in() {
    let calc = with(vec![policy(
        "x",
        "allow-all",
        json!({"podSelector": {}, "ingress": [{}]}),
    )]);
    expect(&calc, Protocol::Tcp, 80, ALL);
    assert!(calc.endpoints.iter().any(|e| e.ingress_chain.is_some()));
}

#[test]
fn policy_types_egress_only_leaves_ingress_open() {
    let calc = with(vec![policy(
        "x",
        "egress-only",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}], "ingress": []}),
    )]);
    expect(&calc, Protocol::Tcp, 80, ALL);
    assert!(calc.endpoints.iter().all(|e| e.ingress_policies.is_empty()));
}

#[test]
fn replies_of_allowed_connections_pass_an_isolated_pod() {
    let calc = with(vec![policy(
        "x",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    )]);
    assert!(!tcp80(&calc, "y/a", "x/a"));
    let reply = Packet {
        in_interface: Some("wftya".into()),
        out_interface: Some("wftxa".into()),
        source: address("y", "a"),
        destination: address("x", "a"),
        protocol: Protocol::Tcp,
        port: 40000,
        established: true,
    };
    assert!(calc.ruleset.evaluate(&reply));
}

#[test]
fn the_node_reaches_its_isolated_pods() {
    let calc = with(vec![policy("x", "deny", json!({"podSelector": {}}))]);
    let from_node = Packet {
        in_interface: None,
        out_interface: Some("wftxa".into()),
        source: "198.19.0.1".parse().unwrap(),
        destination: address("x", "a"),
        protocol: Protocol::Tcp,
        port: 80,
        established: false,
    };
    assert!(calc.ruleset.evaluate(&from_node));
}

#[test]
fn failsafe_host_ports_stay_open_for_egress_isolated_pods() {
    let calc = with(vec![policy(
        "x",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    )]);
    let to_host = |protocol, port| Packet {
        in_interface: Some("wftxa".into()),
        out_interface: None,
        source: address("x", "a"),
        destination: "198.19.0.1".parse().unwrap(),
        protocol,
        port,
        established: false,
    };
    for port in [22, 53, 179, 2379, 2380, 6443] {
        assert!(calc.ruleset.evaluate(&to_host(Protocol::Tcp, port)), "tcp {port}");
    }
    assert!(calc.ruleset.evaluate(&to_host(Protocol::Udp, 53)));
    assert!(!calc.ruleset.evaluate(&to_host(Protocol::Tcp, 8080)));
    assert!(!calc.ruleset.evaluate(&to_host(Protocol::Udp, 123)));
}

#[test]
fn traffic_to_an_unprogrammed_weft_interface_is_dropped() {
    let calc = with(vec![]);
    let to = |interface: &str| Packet {
        in_interface: Some("eth0".into()),
        out_interface: Some(interface.into()),
        source: "198.19.0.9".parse().unwrap(),
        destination: "198.18.9.9".parse().unwrap(),
        protocol: Protocol::Tcp,
        port: 80,
        established: false,
    };
    assert!(!calc.ruleset.evaluate(&to("wft0123456789a")));
    assert!(calc.ruleset.evaluate(&to("wftxa")));
    assert!(calc.ruleset.evaluate(&to("eth1")));
}

#[test]
fn an_invalid_policy_is_reported_and_every_other_stays_in_force() {
    let calc = with(vec![
        policy(
            "x",
            "bad-cidr",
            json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.0.0/40"}}]}]}),
        ),
        policy(
            "x",
            "bad-range",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
        ),
        policy(
            "x",
            "bad-protocol",
            json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
        ),
        policy("y", "deny", json!({"podSelector": {}})),
    ]);
    let bad: Vec<&str> = calc.problems.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(bad, ["x/bad-cidr", "x/bad-range", "x/bad-protocol"]);
    // x stays open (its only policies are invalid); y is isolated.
    assert!(tcp80(&calc, "z/a", "x/a"));
    assert!(!tcp80(&calc, "z/a", "y/a"));
}

#[test]
fn one_set_per_distinct_peer_shared_by_every_rule() {
    let peer = json!([{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]);
    let calc = with(vec![
        policy("x", "one", json!({"podSelector": {}, "ingress": [{"from": peer}]})),
        policy(
            "x",
            "two",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": peer, "ports": [{"port": 80}]}]}),
        ),
    ]);
    let pod_sets: Vec<&String> = calc.ruleset.sets.keys().filter(|n| n.starts_with("pods-")).collect();
    assert_eq!(pod_sets.len(), 2, "one per family: {pod_sets:?}");
    let v4 = pod_sets.iter().find(|n| n.contains("v4")).unwrap();
    assert_eq!(calc.ruleset.sets[*v4].elements.len(), 3);
}

#[test]
fn pod_churn_changes_set_elements_not_rules() {
    let policies = vec![policy(
        "x",
        "from-y",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    )];
    let mut inputs = model();
    inputs.policies = policies;
    let before = calculate(&inputs);
    // A new pod in y on another node.
    let mut remote = endpoint("y", "d");
    remote.node = "n2".into();
    inputs.endpoints.push(remote);
    let after = calculate(&inputs);
    assert_eq!(before.ruleset.chains, after.ruleset.chains);
    assert_eq!(before.ruleset.maps, after.ruleset.maps);
    assert_ne!(before.ruleset.sets, after.ruleset.sets);
    assert!(after.ruleset.evaluate(&Packet {
        in_interface: Some("eth0".into()),
        out_interface: Some("wftxa".into()),
        source: address("y", "d"),
        destination: address("x", "a"),
        protocol: Protocol::Tcp,
        port: 80,
        established: false,
    }));
}

#[test]
fn label_changes_move_pods_in_and_out_of_selections() {
    let mut inputs = model();
    inputs.policies = vec![policy(
        "x",
        "from-b",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )];
    assert!(!tcp80(&calculate(&inputs), "y/a", "x/a"));
    inputs
        .endpoints
        .iter_mut()
        .find(|e| e.id() == "y/a")
        .unwrap()
        .labels
        .insert("pod".into(), "b".into());
    assert!(tcp80(&calculate(&inputs), "y/a", "x/a"));
    // A namespace label change: only namespaces labelled team=blue.
    inputs.policies = vec![policy(
        "x",
        "blue",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}),
    )];
    assert!(!tcp80(&calculate(&inputs), "z/a", "x/a"));
    inputs
        .namespaces
        .get_mut("z")
        .unwrap()
        .insert("team".into(), "blue".into());
    assert!(tcp80(&calculate(&inputs), "z/a", "x/a"));
}

#[test]
fn pods_on_other_nodes_get_no_chains_here() {
    let mut inputs = model();
    for e in &mut inputs.endpoints {
        if e.namespace != "x" {
            e.node = "n2".into();
        }
    }
    inputs.policies = vec![policy("y", "deny", json!({"podSelector": {}}))];
    let calc = calculate(&inputs);
    assert_eq!(calc.endpoints.len(), 3);
    assert_eq!(calc.ruleset.maps[TO_ENDPOINT].len(), 3);
    assert!(calc.ruleset.chains.keys().all(|c| !c.contains("wfty")));
}

#[test]
fn ipv6_addresses_are_selected_and_blocked_like_ipv4() {
    let mut inputs = model();
    let v6 = |n: u16| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, n]);
    for (i, e) in inputs.endpoints.iter_mut().enumerate() {
        e.addresses.push(v6(i as u16 + 1));
    }
    inputs.policies = vec![policy(
        "x",
        "from-y",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"ipBlock": {"cidr": "2001:db8::/120", "except": ["2001:db8::8/125"]}}]}]}),
    )];
    let calc = calculate(&inputs);
    let packet = |from: usize| Packet {
        in_interface: Some("eth0".into()),
        out_interface: Some("wftxa".into()),
        source: v6(from as u16 + 1),
        destination: v6(1),
        protocol: Protocol::Tcp,
        port: 80,
        established: false,
    };
    // 0..=2: x (source v6 ::1-::3, in the block, not excepted), 3..=5 y, 6 z/a (::7), 7 z/b (::8: excepted).
    assert!(calc.ruleset.evaluate(&packet(3)));
    assert!(calc.ruleset.evaluate(&packet(6)));
    assert!(!calc.ruleset.evaluate(&packet(7)));
}

#[test]
fn nat_outgoing_sets_hold_natting_pools_and_all_pools() {
    let mut inputs = model();
    inputs.pools = vec![
        Pool {
            cidr: "198.18.0.0/16".parse().unwrap(),
            nat_outgoing: true,
        },
        Pool {
            cidr: "198.19.128.0/24".parse().unwrap(),
            nat_outgoing: false,
        },
        Pool {
            cidr: "2001:db8:100::/56".parse().unwrap(),
            nat_outgoing: false,
        },
    ];
    let calc = calculate(&inputs);
    let sets = &calc.ruleset.sets;
    assert!(sets["nat-v4"].contains_address("198.18.4.4".parse().unwrap()));
    assert!(!sets["nat-v4"].contains_address("198.19.128.1".parse().unwrap()));
    assert!(sets["pools-v4"].contains_address("198.19.128.1".parse().unwrap()));
    assert!(sets["nat-v6"].elements.is_empty());
    assert_eq!(sets["pools-v6"].elements.len(), 1);
}

#[test]
fn a_port_list_is_one_named_set_shared_by_every_rule() {
    let calc = with(vec![policy(
        "x",
        "web",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}, {"port": 443}, {"port": 81}]}]}),
    )]);
    let port_sets: Vec<_> = calc
        .ruleset
        .sets
        .iter()
        .filter(|(n, _)| n.starts_with("ports-"))
        .collect();
    assert_eq!(port_sets.len(), 1, "three endpoints share one set");
    assert_eq!(
        port_sets[0].1.elements,
        [
            crate::ruleset::Element::Ports(80, 81),
            crate::ruleset::Element::Ports(443, 443)
        ]
        .into()
    );
    assert!(allowed(&calc, "y/a", "x/a", Protocol::Tcp, 443));
    assert!(allowed(&calc, "y/a", "x/b", Protocol::Tcp, 81));
    assert!(!allowed(&calc, "y/a", "x/a", Protocol::Tcp, 82));
    assert!(!allowed(&calc, "y/a", "x/a", Protocol::Udp, 80));
}

#[test]
fn a_policys_rules_are_one_chain_shared_by_every_pod_it_selects() {
    let calc = with(vec![policy(
        "x",
        "from-y",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 80}]}]}),
    )]);
    let policy_chains: Vec<&String> = calc
        .ruleset
        .chains
        .keys()
        .filter(|c| c.starts_with("policy-"))
        .collect();
    assert_eq!(policy_chains, [&policy_chain("x/from-y", Direction::Ingress)]);
    let shared = isolation_chain(&["x/from-y".to_string()], Direction::Ingress);
    assert_eq!(
        calc.ruleset.chains[&shared].rules.len(),
        2,
        "a jump to the policy and the final drop"
    );
    for pod in ["a", "b", "c"] {
        assert_eq!(
            calc.ruleset.maps[TO_ENDPOINT][&format!("wftx{pod}")],
            Verdict::Jump(shared.clone()),
            "every pod the same policies isolate shares one chain"
        );
    }
}

#[test]
fn a_local_pod_added_changes_map_and_set_elements_only() {
    let policies = vec![policy(
        "x",
        "from-y",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": "serve-80-tcp"}]}],
               "egress": [{"to": [{"podSelector": {}}]}]}),
    )];
    let mut inputs = model();
    inputs.policies = policies;
    let before = calculate(&inputs).ruleset;
    inputs.endpoints.push(endpoint("x", "d"));
    let after = calculate(&inputs).ruleset;
    assert_eq!(before.chains, after.chains, "no chain or rule per endpoint");
    assert_ne!(before.maps, after.maps);
    assert_ne!(before.sets, after.sets);
}

#[test]
fn a_port_name_nft_could_not_parse_names_its_set_by_hash() {
    let mut inputs = model();
    for endpoint in &mut inputs.endpoints {
        endpoint.ports.push(NamedPort {
            name: "my \"port\"".into(),
            protocol: Protocol::Tcp,
            port: 80,
        });
    }
    inputs.policies = vec![policy(
        "x",
        "odd-name",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "my \"port\""}]}]}),
    )];
    let calc = calculate(&inputs);
    assert!(calc.problems.is_empty(), "{:?}", calc.problems);
    let names: Vec<&String> = calc.ruleset.sets.keys().filter(|n| n.starts_with("port-")).collect();
    assert!(!names.is_empty());
    assert!(
        names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')),
        "{names:?}"
    );
    assert!(allowed(&calc, "y/a", "x/a", Protocol::Tcp, 80));
    assert!(!allowed(&calc, "y/a", "x/a", Protocol::Tcp, 81));
}

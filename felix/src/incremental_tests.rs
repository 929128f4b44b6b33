//! The incremental calculation against the calculation from scratch: random sequences of
//! endpoint events (pods added, relabelled, moved between nodes and namespaces, renumbered,
//! removed; interfaces and addresses shared on purpose) applied one batch at a time, each
//! batch's steps compared with [`crate::render::diff`] between the whole calculations before
//! and after, and the ruleset and endpoint reports with the whole calculation's.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::calc::{Inputs, NamedPort, calculate};
use crate::policy::Protocol;
use crate::render;

const NODE: &str = "n1";
const NAMESPACES: [&str; 3] = ["x", "y", "z"];

fn policy(namespace: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": namespace, "name": name}, "spec": spec
    }))
    .unwrap()
}

/// Policies with every kind of peer and port, both directions, shared selectors, and one
/// invalid policy.
fn policies() -> Vec<NetworkPolicy> {
    vec![
        policy("x", "deny-in", json!({"podSelector": {}, "policyTypes": ["Ingress"]})),
        policy(
            "x",
            "from-y",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                                "ports": [{"port": "serve-80-tcp"}]}]}),
        ),
        policy(
            "y",
            "to-b",
            json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]},
                   "policyTypes": ["Egress"],
                   "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}],
                               "ports": [{"port": 80}]}]}),
        ),
        policy(
            "z",
            "db",
            json!({"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress", "Egress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}},
                                         {"ipBlock": {"cidr": "198.18.0.0/24", "except": ["198.18.0.128/25"]}}]}],
                   "egress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]}),
        ),
        policy(
            "x",
            "own",
            json!({"podSelector": {"matchLabels": {"pod": "b"}},
                   "ingress": [{"from": [{"podSelector": {}}],
                                "ports": [{"port": 80}, {"port": 81}, {"port": "serve-80-udp", "protocol": "UDP"}]}]}),
        ),
        policy("y", "deny-out", json!({"podSelector": {}, "policyTypes": ["Egress"]})),
        policy(
            "z",
            "from-role",
            json!({"podSelector": {"matchExpressions": [{"key": "role", "operator": "DoesNotExist"}]},
                   "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["z"]}]},
                                          "podSelector": {"matchExpressions": [{"key": "role", "operator": "Exists"}]}}],
                                "ports": [{"port": "serve-80-tcp"}, {"port": "serve-81-tcp"}]}]}),
        ),
        policy(
            "x",
            "invalid",
            json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]}),
        ),
    ]
}

fn namespaces() -> BTreeMap<String, Labels> {
    NAMESPACES
        .iter()
        .map(|n| (n.to_string(), [("ns".to_string(), n.to_string())].into()))
        .collect()
}

const ADDRESSES: [&str; 6] = [
    "198.18.0.1",
    "198.18.0.2",
    "198.18.0.200",
    "198.18.1.1",
    "2001:db8::1",
    "2001:db8::2",
];
const PORTS: [(&str, Protocol, u16); 4] = [
    ("serve-80-tcp", Protocol::Tcp, 80),
    ("serve-81-tcp", Protocol::Tcp, 81),
    ("serve-80-udp", Protocol::Udp, 80),
    ("serve-81-udp", Protocol::Udp, 81),
];

/// One endpoint from small pools: interfaces and addresses collide between keys on purpose.
fn endpoint() -> impl Strategy<Value = Endpoint> {
    (0..3usize, 0..3usize, 0..4usize, 0u8..64, 0..3usize, 0..3usize, 0u8..16).prop_map(
        |(namespace, node, interface, addresses, pod, role, ports)| Endpoint {
            namespace: NAMESPACES[namespace].into(),
            pod: ["a", "b", "c"][pod].into(),
            // Two of three on this node.
            node: ["n1", "n1", "n2"][node].into(),
            interface: format!("wft{interface}"),
            addresses: ADDRESSES
                .iter()
                .enumerate()
                .filter(|(i, _)| addresses & (1 << i) != 0)
                .map(|(_, a)| a.parse::<IpAddr>().unwrap())
                .collect(),
            labels: {
                let mut labels: Labels = [("pod".to_string(), ["a", "b", "c"][pod].to_string())].into();
                match role {
                    0 => {}
                    1 => {
                        labels.insert("role".into(), "db".into());
                    }
                    _ => {
                        labels.insert("role".into(), "web".into());
                    }
                }
                labels
            },
            ports: PORTS
                .iter()
                .enumerate()
                .filter(|(i, _)| ports & (1 << i) != 0)
                .map(|(_, (name, protocol, port))| NamedPort {
                    name: (*name).into(),
                    protocol: *protocol,
                    port: *port,
                })
                .collect(),
        },
    )
}

/// An event: endpoint key `k<n>` becomes this endpoint, or goes.
fn event() -> impl Strategy<Value = (usize, Option<Endpoint>)> {
    (0..8usize, prop::option::weighted(0.75, endpoint()))
}

fn from_scratch(endpoints: &BTreeMap<String, Endpoint>, policies: &[NetworkPolicy]) -> crate::calc::Calculation {
    calculate(&Inputs {
        node: NODE.into(),
        endpoints: endpoints.values().cloned().collect(),
        namespaces: namespaces(),
        policies: policies.to_vec(),
        pools: vec![Pool {
            cidr: "198.18.0.0/16".parse().unwrap(),
            nat_outgoing: true,
        }],
    })
}

fn check(
    initial: Vec<(usize, Option<Endpoint>)>,
    chosen: Vec<bool>,
    batches: Vec<Vec<(usize, Option<Endpoint>)>>,
) -> Result<(), TestCaseError> {
    let policies: Vec<NetworkPolicy> = policies()
        .into_iter()
        .zip(chosen)
        .filter(|(_, keep)| *keep)
        .map(|(p, _)| p)
        .collect();
    let pools = [Pool {
        cidr: "198.18.0.0/16".parse().unwrap(),
        nat_outgoing: true,
    }];
    let mut model: BTreeMap<String, Endpoint> = BTreeMap::new();
    for (key, endpoint) in initial {
        match endpoint {
            Some(endpoint) => model.insert(format!("k{key}"), endpoint),
            None => model.remove(&format!("k{key}")),
        };
    }
    let mut state = State::new(NODE, model.clone(), namespaces(), &policies, &pools);
    let mut before = from_scratch(&model, &policies);
    prop_assert_eq!(state.ruleset(), &before.ruleset);
    prop_assert_eq!(state.problems(), before.problems.as_slice());
    for batch in batches {
        for (key, endpoint) in batch {
            let key = format!("k{key}");
            match &endpoint {
                Some(endpoint) => model.insert(key.clone(), endpoint.clone()),
                None => model.remove(&key),
            };
            state.update_endpoint(&key, endpoint);
        }
        let after = from_scratch(&model, &policies);
        let steps = state.take_steps();
        let expected = render::diff(&before.ruleset, &after.ruleset).unwrap();
        prop_assert_eq!(&steps, &expected);
        prop_assert_eq!(state.ruleset(), &after.ruleset);
        prop_assert_eq!(state.reports(), after.endpoints.clone());
        prop_assert_eq!(state.endpoints(), &model);
        before = after;
    }
    prop_assert!(state.take_steps().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn endpoint_events_applied_incrementally_give_the_difference_of_the_calculation_from_scratch(
        initial in prop::collection::vec(event(), 0..10),
        chosen in prop::collection::vec(any::<bool>(), 8),
        batches in prop::collection::vec(prop::collection::vec(event(), 1..4), 1..12),
    ) {
        check(initial, chosen, batches)?;
    }
}

#[test]
fn a_pod_whose_policy_combination_is_new_gets_its_chain_and_the_last_one_out_removes_it() {
    let policies = policies();
    let mut state = State::new(NODE, BTreeMap::new(), namespaces(), &policies, &[]);
    let db = Endpoint {
        namespace: "z".into(),
        pod: "a".into(),
        node: NODE.into(),
        interface: "wft0".into(),
        addresses: vec!["198.18.0.1".parse().unwrap()],
        labels: [("role".to_string(), "db".to_string())].into(),
        ports: vec![],
    };
    state.update_endpoint("z/a", Some(db.clone()));
    let steps = state.take_steps();
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, Step::AddChain(name, _) if name.starts_with("isolated-in-")))
    );
    let mut second = db.clone();
    second.interface = "wft1".into();
    second.addresses = vec!["198.18.0.2".parse().unwrap()];
    state.update_endpoint("z/b", Some(second));
    let steps = state.take_steps();
    assert!(
        steps.iter().all(|s| matches!(s, Step::Elements(_))),
        "a second pod of a known combination is elements only: {steps:?}"
    );
    state.update_endpoint("z/a", None);
    assert!(state.take_steps().iter().all(|s| matches!(s, Step::Elements(_))));
    state.update_endpoint("z/b", None);
    let steps = state.take_steps();
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, Step::DeleteChain(name) if name.starts_with("isolated-in-")))
    );
    assert_eq!(
        state.ruleset(),
        &State::new(NODE, BTreeMap::new(), namespaces(), &policies, &[]).into_ruleset()
    );
}

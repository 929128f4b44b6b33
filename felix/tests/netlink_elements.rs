//! felix's own nf_tables netlink batches against the real kernel (root): element changes of
//! plain sets, named-port sets and the interface verdict maps, checked with `nft list`, and a
//! refused batch that changes nothing and says why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use weft_felix::calc::{Endpoint, Inputs, NamedPort, calculate};
use weft_felix::nft::{Nft, NftBinary, NftError};
use weft_felix::policy::Protocol;
use weft_felix::render::{self, Batch, ElementChange, Verb};
use weft_felix::ruleset::{Element, Verdict};
use weft_topology_tests::{Netns, require_netns};

fn endpoint(i: u8, namespace: &str) -> Endpoint {
    Endpoint {
        namespace: namespace.into(),
        pod: format!("p{i}"),
        node: "n1".into(),
        interface: format!("wftn{i}"),
        addresses: vec![
            format!("198.18.0.{i}").parse().unwrap(),
            format!("2001:db8::{i}").parse().unwrap(),
        ],
        labels: [("pod".to_string(), format!("p{i}"))].into(),
        ports: vec![NamedPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
    }
}

fn inputs(pods: &[(u8, &str)]) -> Inputs {
    let policy = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "x", "name": "web"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": "http"}]}],
                 "egress": [{"to": [{"podSelector": {}}]}]}
    }))
    .unwrap();
    Inputs {
        node: "n1".into(),
        endpoints: pods.iter().map(|(i, n)| endpoint(*i, n)).collect(),
        policies: vec![policy],
        ..Inputs::default()
    }
}

fn nft(netns: &Netns, what: &[&str]) -> String {
    let mut argv = vec!["nft", "list"];
    argv.extend_from_slice(what);
    netns.run(&argv).unwrap().stdout
}

#[test]
fn pods_added_and_removed_are_netlink_element_batches_the_kernel_lists() {
    let Some(_support) = require_netns() else { return };
    let netns = Netns::new("felix-nl").unwrap();
    let before = calculate(&inputs(&[(1, "x"), (2, "y")])).ruleset;
    netns
        .within(|| NftBinary.apply(&render::full(&before, None)))
        .unwrap()
        .unwrap();
    let after = calculate(&inputs(&[(1, "x"), (2, "y"), (3, "x"), (4, "y")])).ruleset;
    let forward = Batch::of(render::diff(&before, &after).unwrap());
    assert!(matches!(forward, Batch::Elements(_)), "{forward:?}");
    netns.within(|| NftBinary.apply(&forward)).unwrap().unwrap();

    let table = nft(&netns, &["table", "inet", "weft"]);
    assert!(table.contains("198.18.0.3"), "{table}");
    assert!(table.contains("2001:db8::3"), "{table}");
    assert!(table.contains("198.18.0.3 . tcp . 8080"), "{table}");
    assert!(table.contains("2001:db8::4 . tcp . 8080"), "{table}");
    let to = nft(&netns, &["map", "inet", "weft", "to-endpoint"]);
    assert!(to.contains("\"wftn3\" : jump isolated-in-"), "{to}");
    assert!(to.contains("\"wftn4\" : accept"), "{to}");
    let listing = netns.within(|| NftBinary.list()).unwrap().unwrap().unwrap();
    assert!(
        render::matches_kernel(&after, &listing),
        "the kernel holds what felix wants"
    );

    // More elements than one netlink attribute holds: several messages of one batch.
    let pods_set = after
        .sets
        .iter()
        .find(|(name, set)| name.starts_with("pods-v4-") && !set.elements.is_empty())
        .map(|(name, _)| name.clone())
        .unwrap();
    let hosts = |verb| {
        Batch::Elements(vec![ElementChange::Set {
            verb,
            set: pods_set.clone(),
            elements: (0..8000u32)
                .map(|i| {
                    let address = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 19, 0, 0)) + i);
                    Element::Range(weft_felix::ranges::AddressRange::single(address.into()))
                })
                .collect(),
        }])
    };
    netns.within(|| NftBinary.apply(&hosts(Verb::Add))).unwrap().unwrap();
    let set = nft(&netns, &["set", "inet", "weft", &pods_set]);
    assert!(set.contains("198.19.31.63"), "8000 elements added");
    netns.within(|| NftBinary.apply(&hosts(Verb::Delete))).unwrap().unwrap();

    let backward = Batch::of(render::diff(&after, &before).unwrap());
    netns.within(|| NftBinary.apply(&backward)).unwrap().unwrap();
    let listing = netns.within(|| NftBinary.list()).unwrap().unwrap().unwrap();
    assert!(render::matches_kernel(&before, &listing), "removed again");
    drop(netns);
}

#[test]
fn a_refused_element_batch_changes_nothing_and_says_why() {
    let Some(_support) = require_netns() else { return };
    let netns = Netns::new("felix-nl").unwrap();
    let ruleset = calculate(&inputs(&[(1, "x")])).ruleset;
    netns
        .within(|| NftBinary.apply(&render::full(&ruleset, None)))
        .unwrap()
        .unwrap();
    let pods_set = ruleset
        .sets
        .iter()
        .find(|(name, set)| name.starts_with("pods-v4-") && !set.elements.is_empty())
        .map(|(name, _)| name.clone())
        .unwrap();
    let batch = Batch::Elements(vec![
        ElementChange::Set {
            verb: Verb::Add,
            set: pods_set.clone(),
            elements: vec![Element::Range(weft_felix::ranges::AddressRange::single(
                "198.18.0.9".parse().unwrap(),
            ))],
        },
        ElementChange::Map {
            verb: Verb::Delete,
            map: "to-endpoint".into(),
            entries: vec![("wftnope".into(), Verdict::Accept)],
        },
    ]);
    let error = netns.within(|| NftBinary.apply(&batch)).unwrap().unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, NftError::Netlink(_)), "{error:?}");
    assert!(
        text.contains("delete element inet weft to-endpoint") && text.contains("no such"),
        "{text}"
    );
    let set = nft(&netns, &["set", "inet", "weft", &pods_set]);
    assert!(!set.contains("198.18.0.9"), "the whole batch was refused: {set}");
    drop(netns);
}

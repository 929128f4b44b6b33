//! Validation of resource contents beyond the schema, as `weftctl apply` reports it.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use weft_api::resources::{IPPoolSpec, peer_address, validate_value};

fn problems(kind: &str, value: serde_json::Value) -> Vec<String> {
    match validate_value(kind, &value) {
        Ok(()) => Vec::new(),
        Err(problems) => problems
            .0
            .into_iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect(),
    }
}

#[test]
fn a_pool_takes_the_default_block_size_of_its_family() {
    let v4: IPPoolSpec = serde_json::from_value(json!({"cidr": "198.18.0.0/16"})).unwrap();
    let v6: IPPoolSpec = serde_json::from_value(json!({"cidr": "2001:db8:100::/56"})).unwrap();
    assert_eq!(
        (v4.effective_block_size(), v6.effective_block_size()),
        (Some(26), Some(122))
    );
    assert_eq!(v4.allowed_uses, [weft_api::resources::AllowedUse::Workload]);
}

#[test]
fn a_pool_whose_blocks_do_not_fit_is_rejected() {
    let found = problems(
        "IPPool",
        json!({"metadata": {"name": "p"}, "spec": {"cidr": "198.18.0.0/24", "blockSize": 20}}),
    );
    assert_eq!(found, ["spec.blockSize: /20 blocks do not fit in the /24 pool"]);
    let found = problems(
        "IPPool",
        json!({"metadata": {"name": "p"}, "spec": {"cidr": "198.18.0.0/24", "blockSize": 33}}),
    );
    assert_eq!(found, ["spec.blockSize: 33 is longer than an IPv4 address"]);
    let found = problems(
        "IPPool",
        json!({"metadata": {"name": "p"}, "spec": {"cidr": "198.18.0.0/16"}}),
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_peer_needs_an_address_or_a_selector_and_a_real_asn() {
    let found = problems("BGPPeer", json!({"metadata": {"name": "p"}, "spec": {}}));
    assert_eq!(found, ["spec: needs peerIP or peerSelector"]);
    let found = problems(
        "BGPPeer",
        json!({"metadata": {"name": "p"}, "spec": {"peerIP": "198.19.0.300", "asNumber": 23456}}),
    );
    assert_eq!(
        found,
        [
            "spec.peerIP: \"198.19.0.300\" is not an IP address",
            "spec.asNumber: AS 23456 is AS_TRANS (RFC 6793), not a real AS"
        ]
    );
    let found = problems(
        "BGPPeer",
        json!({"metadata": {"name": "p"}, "spec": {"peerIP": "[2001:db8::1]:1179", "asNumber": 4200000000u32}}),
    );
    assert!(
        found.is_empty(),
        "a 4-octet ASN and an IPv6 peer with a port are fine: {found:?}"
    );
}

#[test]
fn peer_addresses_are_read_with_or_without_a_port() {
    assert_eq!(peer_address("198.19.0.1"), "198.19.0.1");
    assert_eq!(peer_address("198.19.0.1:1179"), "198.19.0.1");
    assert_eq!(peer_address("[2001:db8::1]:1179"), "2001:db8::1");
    assert_eq!(peer_address("2001:db8::1"), "2001:db8::1");
}

#[test]
fn communities_and_cluster_ids_are_checked() {
    let found = problems(
        "BGPConfiguration",
        json!({"metadata": {"name": "default"}, "spec": {"communities": [
            {"name": "ok", "value": "65000:100"},
            {"name": "large", "value": "4200000000:1:2"},
            {"name": "bad", "value": "70000:1"},
        ]}}),
    );
    assert_eq!(
        found,
        ["spec.communities[2].value: \"70000:1\" is neither AA:NN nor AA:NN:MM"]
    );
    let found = problems(
        "WeftNode",
        json!({"metadata": {"name": "n"}, "spec": {"bgp": {"ipv4Address": "2001:db8::1/64", "routeReflectorClusterID": "2001:db8::1"}}}),
    );
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn a_block_whose_allocations_point_nowhere_is_rejected() {
    let found = problems(
        "IPAMBlock",
        json!({"metadata": {"name": "b"}, "spec": {"cidr": "198.18.0.0/30", "allocations": [0, null, null, null], "attributes": []}}),
    );
    assert_eq!(found, ["spec.allocations[0]: points at attribute 0, but there are 0"]);
}

#[test]
fn a_kind_that_does_not_decode_is_reported() {
    let found = problems("IPPool", json!({"metadata": {"name": "p"}, "spec": {"cidr": 5}}));
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("object: "), "{found:?}");
}

//! The derivation of a node's configuration from datastore objects ([`super::derive`]).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::json;
use weft_bgp_proto::AddressType;
use weft_bgp_proto::export::Policy;

use super::derive::{Derived, Local, Problem, Snapshot, derive};
use crate::config::{Config, PeerConfig};

fn local() -> Local {
    Local {
        control_socket: PathBuf::from("/run/weft/bgpd.sock"),
        metrics_listen: None,
    }
}

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// A WeftNode `name` with `198.19.0.N/24` and `2001:db8:ff::N/64` and extra `bgp` keys.
fn node(name: &str, n: u8, bgp: serde_json::Value, labels: serde_json::Value) -> weft_api::resources::WeftNode {
    let mut spec = json!({"ipv4Address": format!("198.19.0.{n}/24"), "ipv6Address": format!("2001:db8:ff::{n}/64")});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), bgp.as_object()) {
        spec.extend(extra.clone());
    }
    object(json!({
        "apiVersion": "weft.io/v1", "kind": "WeftNode",
        "metadata": {"name": name, "labels": labels},
        "spec": {"bgp": spec}
    }))
}

fn three_nodes() -> Snapshot {
    Snapshot {
        nodes: vec![
            node("a", 1, json!({}), json!({})),
            node("b", 2, json!({}), json!({"rack": "r1"})),
            node("c", 3, json!({}), json!({"rack": "r2"})),
        ],
        ..Snapshot::default()
    }
}

fn bgp_peer(name: &str, spec: serde_json::Value) -> weft_api::resources::BGPPeer {
    object(json!({"apiVersion": "weft.io/v1", "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}))
}

fn configuration(name: &str, spec: serde_json::Value) -> weft_api::resources::BGPConfiguration {
    object(json!({"apiVersion": "weft.io/v1", "kind": "BGPConfiguration", "metadata": {"name": name}, "spec": spec}))
}

fn affinity(name: &str, node: &str, cidr: &str, state: &str) -> weft_api::resources::BlockAffinity {
    object(json!({
        "apiVersion": "weft.io/v1", "kind": "BlockAffinity", "metadata": {"name": name},
        "spec": {"node": node, "cidr": cidr, "state": state}
    }))
}

fn derived(snapshot: &Snapshot, node: &str) -> Derived {
    derive(snapshot, node, &local(), &BTreeMap::new()).unwrap()
}

fn config(snapshot: &Snapshot, node: &str) -> Config {
    let derived = derived(snapshot, node);
    assert!(derived.problems.is_empty(), "{:?}", derived.problems);
    derived.config
}

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn peer<'a>(config: &'a Config, text: &str) -> &'a PeerConfig {
    config
        .peers
        .iter()
        .find(|peer| peer.address == address(text))
        .unwrap_or_else(|| panic!("no peer {text} in {:?}", config.peers))
}

fn prefix(text: &str) -> IpNet {
    text.parse().unwrap()
}

#[test]
fn every_node_meshes_with_every_other_on_both_families_and_the_lower_address_waits() {
    let snapshot = three_nodes();
    let b = config(&snapshot, "b");
    assert_eq!(b.asn, 64512, "Calico's default AS");
    assert_eq!(b.router_id.to_string(), "198.19.0.2");
    assert_eq!(b.listen_port, 179);
    assert_eq!(b.peers.len(), 4, "{:?}", b.peers);
    let to_a = peer(&b, "198.19.0.1");
    let to_c = peer(&b, "198.19.0.3");
    assert!(!to_a.passive, "a has the lower address: it waits, b connects");
    assert!(to_c.passive, "b has the lower address: it waits for c");
    assert_eq!(to_a.families, vec![AddressType::Ipv4Unicast]);
    assert_eq!(peer(&b, "2001:db8:ff::3").families, vec![AddressType::Ipv6Unicast]);
    assert_eq!(to_a.source_address, Some(address("198.19.0.2")));
    assert_eq!(to_a.import, Policy::Accept);
    assert_eq!(to_a.export, Policy::Accept);
    assert!(!to_a.route_reflector_client);
    let a = config(&snapshot, "a");
    assert!(peer(&a, "198.19.0.2").passive, "the two ends agree");
}

#[test]
fn as_numbers_come_from_the_node_then_the_default_configuration() {
    let mut snapshot = three_nodes();
    snapshot.configurations = vec![configuration("default", json!({"asNumber": 65010, "listenPort": 1179}))];
    snapshot.nodes[2] = node("c", 3, json!({"asNumber": 65003}), json!({}));
    let a = config(&snapshot, "a");
    assert_eq!(a.asn, 65010);
    assert_eq!(a.listen_port, 1179);
    assert_eq!(peer(&a, "198.19.0.2").asn, 65010);
    assert_eq!(peer(&a, "198.19.0.3").asn, 65003);
    assert_eq!(config(&snapshot, "c").asn, 65003);
}

#[test]
fn a_disabled_mesh_leaves_only_bgp_peers_and_a_node_override_wins() {
    let mut snapshot = three_nodes();
    snapshot.configurations = vec![
        configuration("default", json!({"nodeToNodeMeshEnabled": false})),
        configuration("node.c", json!({"nodeToNodeMeshEnabled": true})),
    ];
    assert!(config(&snapshot, "a").peers.is_empty());
    assert_eq!(config(&snapshot, "c").peers.len(), 4);
}

#[test]
fn a_tor_peer_applies_to_the_nodes_its_selector_or_node_names() {
    let mut snapshot = three_nodes();
    snapshot.peers = vec![
        bgp_peer(
            "tor-r1",
            json!({"peerIP": "198.19.0.254", "asNumber": 65100, "nodeSelector": "rack == 'r1'"}),
        ),
        bgp_peer(
            "tor-c",
            json!({"peerIP": "198.19.0.253", "asNumber": 65100, "node": "c"}),
        ),
        bgp_peer("everyone", json!({"peerIP": "198.19.0.252", "asNumber": 65100})),
    ];
    snapshot.pools = vec![object(json!({
        "apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": "pods"},
        "spec": {"cidr": "198.18.0.0/16"}
    }))];
    let a = config(&snapshot, "a");
    let b = config(&snapshot, "b");
    let c = config(&snapshot, "c");
    let has = |config: &Config, text: &str| config.peers.iter().any(|peer| peer.address == address(text));
    assert!(!has(&a, "198.19.0.254") && has(&b, "198.19.0.254") && !has(&c, "198.19.0.254"));
    assert!(!has(&a, "198.19.0.253") && !has(&b, "198.19.0.253") && has(&c, "198.19.0.253"));
    assert!(has(&a, "198.19.0.252") && has(&b, "198.19.0.252") && has(&c, "198.19.0.252"));
    let tor = peer(&b, "198.19.0.254");
    assert_eq!(tor.asn, 65100);
    assert!(!tor.passive);
    assert_eq!(tor.import, Policy::Accept, "the cluster's configuration is the policy");
    let Policy::Named(export) = &tor.export else {
        panic!("eBGP exports the pools only: {:?}", tor.export)
    };
    let route = weft_bgp_proto::route::PathAttributes {
        origin: weft_bgp_proto::route::Origin::Igp,
        as_path: Default::default(),
        next_hop: address("198.19.0.2"),
        med: None,
        local_pref: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
        originator_id: None,
        cluster_list: vec![],
        aggregator: None,
        atomic_aggregate: false,
    };
    assert!(export.apply(&prefix("198.18.1.0/26"), &route, 64512).is_some());
    assert!(export.apply(&prefix("198.51.100.0/24"), &route, 64512).is_none());
}

#[test]
fn route_reflectors_take_the_other_nodes_as_clients_and_clients_peer_only_with_them() {
    let mut snapshot = three_nodes();
    snapshot.configurations = vec![configuration("default", json!({"nodeToNodeMeshEnabled": false}))];
    snapshot.nodes[0] = node(
        "a",
        1,
        json!({"routeReflectorClusterID": "198.19.0.100"}),
        json!({"route-reflector": "true"}),
    );
    snapshot.nodes.push(node(
        "d",
        4,
        json!({"routeReflectorClusterID": "198.19.0.100"}),
        json!({"route-reflector": "true"}),
    ));
    snapshot.peers = vec![bgp_peer(
        "to-reflectors",
        json!({"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"}),
    )];
    let a = config(&snapshot, "a");
    assert_eq!(a.cluster_id.to_string(), "198.19.0.100");
    assert_eq!(a.peers.len(), 6, "b, c and d on both families: {:?}", a.peers);
    assert!(peer(&a, "198.19.0.2").route_reflector_client);
    assert!(peer(&a, "2001:db8:ff::3").route_reflector_client);
    assert!(
        !peer(&a, "198.19.0.4").route_reflector_client,
        "a reflector of the same cluster is no client"
    );
    let b = config(&snapshot, "b");
    assert_eq!(b.peers.len(), 4, "a and d only: {:?}", b.peers);
    assert!(b.peers.iter().all(|peer| !peer.route_reflector_client));
    assert_eq!(b.cluster_id, b.router_id);
}

#[test]
fn a_bad_bgp_peer_is_named_and_the_rest_stands() {
    let mut snapshot = three_nodes();
    snapshot.peers = vec![
        bgp_peer("bad", json!({"peerIP": "198.19.0.999", "asNumber": 65100})),
        bgp_peer("good", json!({"peerIP": "198.19.0.254", "asNumber": 65100})),
        bgp_peer(
            "secret",
            json!({"peerIP": "198.19.0.253", "asNumber": 65100, "password": {"secretKeyRef": {"name": "bgp", "key": "tor"}}}),
        ),
        bgp_peer(
            "filtered",
            json!({"peerIP": "198.19.0.252", "asNumber": 65100, "filters": ["nowhere"]}),
        ),
    ];
    let derived = derived(&snapshot, "a");
    let keys: BTreeSet<(String, String)> = derived
        .problems
        .iter()
        .map(|Problem { object, key, .. }| (object.clone(), key.clone()))
        .collect();
    assert!(
        keys.contains(&("BGPPeer/bad".to_owned(), "spec.peerIP".to_owned())),
        "{keys:?}"
    );
    assert!(
        keys.contains(&("BGPPeer/secret".to_owned(), "spec.password.secretKeyRef".to_owned())),
        "{keys:?}"
    );
    assert!(
        keys.contains(&("BGPPeer/filtered".to_owned(), "spec.filters[0]".to_owned())),
        "{keys:?}"
    );
    assert_eq!(derived.problems.len(), 3, "{:?}", derived.problems);
    assert_eq!(derived.config.peers.len(), 5, "the mesh and the good peer");
    assert!(
        derived
            .config
            .peers
            .iter()
            .any(|peer| peer.address == address("198.19.0.254"))
    );
}

#[test]
fn a_password_file_is_the_md5_key_without_its_line_end() {
    let mut snapshot = three_nodes();
    snapshot.peers = vec![bgp_peer(
        "tor",
        json!({"peerIP": "198.19.0.254", "asNumber": 65100, "password": {"file": "/etc/weft/tor"}}),
    )];
    snapshot
        .password_files
        .insert("/etc/weft/tor".to_owned(), Ok(b"s3cret\n".to_vec()));
    let a = config(&snapshot, "a");
    assert_eq!(
        peer(&a, "198.19.0.254").password,
        Some(crate::config::Password(b"s3cret".to_vec()))
    );
    snapshot
        .password_files
        .insert("/etc/weft/tor".to_owned(), Err("No such file or directory".to_owned()));
    let derived = derived(&snapshot, "a");
    assert_eq!(derived.problems[0].key, "spec.password.file");
}

#[test]
fn a_secret_key_ref_is_the_md5_key_and_a_missing_secret_or_key_leaves_the_peer_out() {
    let mut snapshot = three_nodes();
    snapshot.peers = vec![bgp_peer(
        "tor",
        json!({"peerIP": "198.19.0.254", "asNumber": 65100,
               "password": {"secretKeyRef": {"name": "bgp-passwords", "key": "tor"}}}),
    )];
    let left_out = |snapshot: &Snapshot, what: &str| {
        let derived = derived(snapshot, "a");
        assert!(
            !derived
                .config
                .peers
                .iter()
                .any(|p| p.address == address("198.19.0.254")),
            "the peer is left out"
        );
        assert_eq!(derived.problems.len(), 1, "{:?}", derived.problems);
        let problem = &derived.problems[0];
        assert_eq!(
            (problem.object.as_str(), problem.key.as_str()),
            ("BGPPeer/tor", "spec.password.secretKeyRef")
        );
        assert!(problem.message.contains(what), "{problem}");
    };
    left_out(&snapshot, "Secret weft-system/bgp-passwords does not exist");

    let secret = |values: &[(&str, &[u8])]| {
        values
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.to_vec()))
            .collect::<BTreeMap<String, Vec<u8>>>()
    };
    snapshot
        .secrets
        .insert("bgp-passwords".to_owned(), secret(&[("other", b"x")]));
    left_out(&snapshot, "has no key \"tor\"");
    snapshot
        .secrets
        .insert("bgp-passwords".to_owned(), secret(&[("tor", b"")]));
    left_out(&snapshot, "1 to 80 octets, this is 0");

    snapshot
        .secrets
        .insert("bgp-passwords".to_owned(), secret(&[("tor", b"s3cret\n")]));
    let first = config(&snapshot, "a");
    assert_eq!(
        peer(&first, "198.19.0.254").password,
        Some(crate::config::Password(b"s3cret\n".to_vec())),
        "a Secret's value is the key as is"
    );

    // A changed Secret re-peers that peer, and only it.
    snapshot
        .secrets
        .insert("bgp-passwords".to_owned(), secret(&[("tor", b"n3w")]));
    let second = config(&snapshot, "a");
    let plan = crate::reload::plan_live(&first, &second).unwrap();
    let changed: Vec<IpAddr> = plan.changed.iter().map(|p| p.address).collect();
    assert_eq!(changed, vec![address("198.19.0.254")]);
    assert_eq!(plan.changed[0].password, Some(crate::config::Password(b"n3w".to_vec())));
    assert!(plan.added.is_empty() && plan.removed.is_empty());
}

#[test]
fn secrets_are_read_from_weft_system_only_with_string_data_over_data_and_never_quoted() {
    use weft_api::{Key, Kind, Object, Revision};

    let kind = Kind::of::<k8s_openapi::api::core::v1::Secret>();
    let secret = |namespace: &str, name: &str, body: serde_json::Value| {
        let mut value = json!({"apiVersion": "v1", "kind": "Secret",
                               "metadata": {"name": name, "namespace": namespace}});
        value.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        Object::new(Key::new(&kind, Some(namespace), name), Revision(1), value)
    };
    let mut objects = super::watch::Objects::default();
    objects.apply(super::watch::Report::Listed {
        index: super::SECRETS,
        objects: vec![
            secret(
                "weft-system",
                "bgp",
                json!({"data": {"tor": "czNjcmV0", "kept": "a2VwdA=="}, "stringData": {"tor": "plain"}}),
            ),
            secret("weft-system", "broken", json!({"data": {"tor": "no-base64!"}})),
            secret("default", "elsewhere", json!({"data": {"tor": "czNjcmV0"}})),
        ],
    });
    let mut problems = Vec::new();
    let secrets = super::secrets(&objects, &mut problems);
    let names: Vec<&str> = secrets.keys().map(String::as_str).collect();
    assert_eq!(names, ["bgp"], "the broken one and the other namespace's are left out");
    assert_eq!(secrets["bgp"]["tor"], b"plain", "stringData over data");
    assert_eq!(secrets["bgp"]["kept"], b"kept");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].object, "Secret/weft-system/broken");
    assert!(!problems[0].message.contains("no-base64"), "{}", problems[0]);
}

#[test]
fn the_node_without_its_weft_node_or_ipv4_address_is_an_error_naming_it() {
    let snapshot = three_nodes();
    let error = derive(&snapshot, "z", &local(), &BTreeMap::new()).unwrap_err();
    assert_eq!(error.object, "WeftNode/z");
    let mut snapshot = three_nodes();
    snapshot.nodes[0] = object(json!({
        "apiVersion": "weft.io/v1", "kind": "WeftNode", "metadata": {"name": "a"},
        "spec": {"bgp": {"ipv6Address": "2001:db8:ff::1/64"}}
    }));
    let error = derive(&snapshot, "a", &local(), &BTreeMap::new()).unwrap_err();
    assert_eq!(
        (error.object.as_str(), error.key.as_str()),
        ("WeftNode/a", "spec.bgp.ipv4Address")
    );
    // Another node's bad address only leaves that node out.
    let mut snapshot = three_nodes();
    snapshot.nodes[2] = node("c", 3, json!({"ipv4Address": "nonsense"}), json!({}));
    let derived = derived(&snapshot, "a");
    assert_eq!(derived.problems[0].object, "WeftNode/c");
    assert_eq!(derived.config.peers.len(), 2, "b on both families");
}

#[test]
fn a_node_originates_its_confirmed_blocks_and_borrowed_addresses_only() {
    let mut snapshot = three_nodes();
    snapshot.affinities = vec![
        affinity("a-1", "a", "198.18.1.0/26", "confirmed"),
        affinity("a-2", "a", "198.18.1.64/26", "pending"),
        affinity("a-6", "a", "2001:db8:1::/122", "confirmed"),
        affinity("b-1", "b", "198.18.2.0/26", "confirmed"),
    ];
    snapshot.endpoints = vec![
        object(json!({
            "apiVersion": "weft.io/v1", "kind": "WorkloadEndpoint",
            "metadata": {"name": "borrower", "namespace": "default"},
            "spec": {"node": "a", "interfaceName": "wft1", "ipNetworks": ["198.18.2.7/32", "198.18.1.5/32"]}
        })),
        object(json!({
            "apiVersion": "weft.io/v1", "kind": "WorkloadEndpoint",
            "metadata": {"name": "elsewhere", "namespace": "default"},
            "spec": {"node": "b", "interfaceName": "wft2", "ipNetworks": ["198.18.1.9/32"]}
        })),
    ];
    let a = config(&snapshot, "a");
    let originated: Vec<(String, bool)> = a
        .originate
        .iter()
        .map(|o| (o.prefix.to_string(), o.blackhole))
        .collect();
    assert_eq!(
        originated,
        vec![
            ("198.18.1.0/26".to_owned(), true),
            ("198.18.2.7/32".to_owned(), false),
            ("2001:db8:1::/122".to_owned(), true),
        ]
    );
    let b = config(&snapshot, "b");
    let originated: Vec<String> = b.originate.iter().map(|o| o.prefix.to_string()).collect();
    assert_eq!(
        originated,
        vec!["198.18.1.9/32", "198.18.2.0/26"],
        "its block and the address it borrows from a's, not a's block"
    );
    assert!(a.kernel_install && a.kernel_blackhole);
}

#[test]
fn blocks_of_a_pool_without_bgp_export_are_not_originated() {
    let mut snapshot = three_nodes();
    snapshot.affinities = vec![affinity("a-1", "a", "198.18.1.0/26", "confirmed")];
    snapshot.pools = vec![object(json!({
        "apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": "quiet"},
        "spec": {"cidr": "198.18.0.0/16", "disableBGPExport": true}
    }))];
    assert!(config(&snapshot, "a").originate.is_empty());
}

#[test]
fn communities_come_from_prefix_advertisements_and_the_services() {
    let mut snapshot = three_nodes();
    snapshot.affinities = vec![affinity("a-1", "a", "198.18.1.0/26", "confirmed")];
    snapshot.configurations = vec![configuration(
        "default",
        json!({
            "communities": [{"name": "pods", "value": "65000:100"}],
            "prefixAdvertisements": [{"cidr": "198.18.0.0/16", "communities": ["pods", "65000:1:2"]}]
        }),
    )];
    let services: BTreeMap<IpNet, BTreeSet<String>> =
        [(prefix("198.18.200.1/32"), BTreeSet::from(["65000:7".to_owned()]))].into();
    let derived = derive(&snapshot, "a", &local(), &services).unwrap();
    assert!(derived.problems.is_empty(), "{:?}", derived.problems);
    let block = &derived.config.originate[0];
    assert_eq!(block.communities, vec![65000 << 16 | 100]);
    assert_eq!(block.large_communities, vec![[65000, 1, 2]]);
    let service = &derived.config.originate[1];
    assert_eq!(service.prefix, prefix("198.18.200.1/32"));
    assert!(!service.blackhole);
    assert!(service.communities.contains(&(65000 << 16 | 7)));
}

#[test]
fn the_derivation_plans_only_what_changed() {
    let mut snapshot = three_nodes();
    let before = config(&snapshot, "a");
    snapshot.nodes[2] = node("c", 3, json!({"asNumber": 65003}), json!({}));
    snapshot.peers = vec![bgp_peer("tor", json!({"peerIP": "198.19.0.254", "asNumber": 65100}))];
    let after = config(&snapshot, "a");
    let plan = crate::reload::plan_live(&before, &after).unwrap();
    let changed: Vec<String> = plan.changed.iter().map(|p| p.address.to_string()).collect();
    assert_eq!(changed, vec!["198.19.0.3", "2001:db8:ff::3"]);
    assert_eq!(plan.added.len(), 1);
    assert!(plan.removed.is_empty() && plan.identity.is_none());
    // The node's own AS changes its identity: every session again.
    snapshot.nodes[0] = node("a", 1, json!({"asNumber": 65001}), json!({}));
    let own = config(&snapshot, "a");
    let plan = crate::reload::plan_live(&after, &own).unwrap();
    assert_eq!(plan.identity.map(|identity| identity.asn), Some(65001));
    assert_eq!(plan.changed.len(), 5);
}

#[test]
fn per_peer_settings_carry_over_and_bad_ones_are_named() {
    let mut snapshot = three_nodes();
    snapshot.peers = vec![
        bgp_peer(
            "tor",
            json!({"peerIP": "198.19.0.254", "asNumber": 65100, "maxRestartTimeSeconds": 30,
                   "ttlSecurity": 1, "sourceAddress": "None", "maxPrefixes": 100}),
        ),
        bgp_peer(
            "next-hop",
            json!({"peerIP": "198.19.0.253", "asNumber": 65100, "keepOriginalNextHop": true}),
        ),
        bgp_peer(
            "far",
            json!({"peerIP": "198.19.0.252", "asNumber": 65100, "ttlSecurity": 5}),
        ),
        bgp_peer("port", json!({"peerIP": "198.19.0.251:1179", "asNumber": 65100})),
        bgp_peer("bracketed", json!({"peerIP": "[2001:db8:ff::fe]", "asNumber": 65100})),
        bgp_peer(
            "bracketed-179",
            json!({"peerIP": "[2001:db8:ff::fd]:179", "asNumber": 65100}),
        ),
    ];
    let derived = derived(&snapshot, "a");
    let tor = peer(&derived.config, "198.19.0.254");
    assert_eq!(tor.restart_time, Some(30));
    assert!(tor.ttl_security);
    assert_eq!(tor.source_address, None);
    assert_eq!(tor.max_prefix.map(|limit| limit.limit), Some(100));
    assert!(!tor.next_hop_keep);
    assert!(peer(&derived.config, "198.19.0.253").next_hop_keep);
    let keys: Vec<(&str, &str)> = derived
        .problems
        .iter()
        .map(|problem| (problem.object.as_str(), problem.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![("BGPPeer/far", "spec.ttlSecurity"), ("BGPPeer/port", "spec.peerIP"),]
    );
    assert!(
        derived
            .config
            .peers
            .iter()
            .any(|p| p.address == address("2001:db8:ff::fe"))
    );
    assert!(
        derived
            .config
            .peers
            .iter()
            .any(|p| p.address == address("2001:db8:ff::fd"))
    );
}

#[test]
fn keep_original_next_hop_applies_to_ebgp_sessions_only() {
    let mut snapshot = three_nodes();
    snapshot.configurations = vec![configuration("default", json!({"nodeToNodeMeshEnabled": false}))];
    snapshot.nodes[2] = node("c", 3, json!({"asNumber": 65003}), json!({"rack": "r2"}));
    snapshot.peers = vec![
        bgp_peer(
            "keep",
            json!({"node": "a", "peerSelector": "has(rack)", "keepOriginalNextHop": true}),
        ),
        bgp_peer(
            "tor",
            json!({"node": "a", "peerIP": "198.19.0.254", "asNumber": 65100, "keepOriginalNextHop": true}),
        ),
    ];
    let a = config(&snapshot, "a");
    assert!(!peer(&a, "198.19.0.2").next_hop_keep, "b is iBGP: no effect");
    assert!(peer(&a, "198.19.0.3").next_hop_keep, "c is in another AS");
    assert!(peer(&a, "2001:db8:ff::3").next_hop_keep);
    assert!(peer(&a, "198.19.0.254").next_hop_keep);
    // Switching it off re-peers only the eBGP sessions it touched.
    snapshot.peers[0] = bgp_peer("keep", json!({"node": "a", "peerSelector": "has(rack)"}));
    let after = config(&snapshot, "a");
    let plan = crate::reload::plan_live(&a, &after).unwrap();
    let changed: BTreeSet<IpAddr> = plan.changed.iter().map(|p| p.address).collect();
    assert_eq!(changed, [address("198.19.0.3"), address("2001:db8:ff::3")].into());
}

#[test]
fn bind_mode_node_ip_listens_on_the_nodes_bgp_addresses_only() {
    let mut snapshot = three_nodes();
    assert!(
        config(&snapshot, "a").listen_addresses.is_empty(),
        "every address by default"
    );
    snapshot.configurations = vec![
        configuration("default", json!({"bindMode": "NodeIP"})),
        configuration("node.c", json!({"bindMode": "None"})),
    ];
    assert_eq!(
        config(&snapshot, "a").listen_addresses,
        vec![address("198.19.0.1"), address("2001:db8:ff::1")],
        "without the prefix length"
    );
    assert!(
        config(&snapshot, "c").listen_addresses.is_empty(),
        "node.c overrides it"
    );
    // A change takes a restart: the running listeners stay as they are.
    let mut changed = config(&snapshot, "a");
    let running = config(&three_nodes(), "a");
    assert_eq!(
        crate::reload::keep_restart_keys(&running, &mut changed),
        vec!["listen_addresses"]
    );
}

#[test]
fn a_bgp_peer_to_a_node_replaces_its_mesh_session() {
    let mut snapshot = three_nodes();
    snapshot.peers = vec![bgp_peer(
        "b-filtered",
        json!({"peerIP": "198.19.0.2", "asNumber": 64512, "node": "a", "ttlSecurity": 1}),
    )];
    let derived = derived(&snapshot, "a");
    assert!(derived.problems.is_empty(), "{:?}", derived.problems);
    assert_eq!(derived.config.peers.len(), 4);
    assert!(peer(&derived.config, "198.19.0.2").ttl_security);
}

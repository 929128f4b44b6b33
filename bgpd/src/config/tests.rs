//! Tests of [`super`].

use super::*;

const FULL: &str = r#"
asn: 4200000001
router_id: 198.19.0.2
listen_port: 1179
control_socket: /tmp/weft-test.sock
originate: [198.18.1.0/26, "2001:db8:1::/64"]
kernel: { install: false }
peers:
  - address: 198.19.0.1
    asn: 65000
    families: [ipv4-unicast]
    import: accept
    export: accept
  - address: "2001:db8::1"
    asn: 4200000001
"#;

fn error_of(text: &str) -> String {
    Config::parse(text).expect_err("invalid").to_string()
}

#[test]
fn the_design_keys_parse() {
    let config = Config::parse(FULL).expect("valid");
    assert_eq!(config.asn, 4_200_000_001);
    assert_eq!(config.listen_port, 1179);
    assert_eq!(config.originate.len(), 2);
    assert_eq!(config.peers[0].families, vec![AddressType::Ipv4Unicast]);
    assert_eq!(config.peers[0].import, Policy::Accept);
    // iBGP without policies accepts and sends; both families by default.
    assert_eq!(config.peers[1].import, Policy::Accept);
    assert_eq!(config.peers[1].families.len(), 2);
    assert!(!config.kernel_install);
    let install = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\nkernel: {install: true}\n").expect("valid");
    assert!(install.kernel_install);
}

#[test]
fn ebgp_without_policies_rejects_both_ways() {
    let config = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 65000}]\n")
        .expect("valid");
    assert_eq!(config.peers[0].import, Policy::Reject);
    assert_eq!(config.peers[0].export, Policy::Reject);
    assert_eq!(config.listen_port, DEFAULT_LISTEN_PORT);
    assert_eq!(config.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
}

#[test]
fn an_unknown_key_is_named() {
    let error = error_of("asn: 65001\nrouter_id: 198.19.0.2\nneighbours: []\n");
    assert!(error.contains("neighbours"), "{error}");
}

#[test]
fn a_missing_key_is_named() {
    let error = error_of("router_id: 198.19.0.2\n");
    assert!(error.contains("asn"), "{error}");
}

#[test]
fn a_value_of_the_wrong_type_is_named() {
    let error = error_of("asn: lots\nrouter_id: 198.19.0.2\n");
    assert!(error.starts_with("asn: "), "{error}");
    let error = error_of("asn: 65001\nrouter_id: 198.19.0.2\npeers:\n  - address: 198.19.0.1\n    asn: x\n");
    assert!(error.starts_with("asn: ") && error.contains("line 5"), "{error}");
}

#[test]
fn a_bad_router_id_is_named() {
    assert!(error_of("asn: 65001\nrouter_id: 2001:db8::1\n").starts_with("router_id:"));
}

#[test]
fn a_bad_peer_address_is_named_with_its_index() {
    let error =
        error_of("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 1}, {address: tor, asn: 1}]\n");
    assert!(error.starts_with("peers[1].address:"), "{error}");
}

#[test]
fn a_prefix_with_host_bits_is_refused() {
    let error = error_of("asn: 65001\nrouter_id: 198.19.0.2\noriginate: [198.18.1.1/26]\n");
    assert!(
        error.starts_with("originate[0]:") && error.contains("198.18.1.0/26"),
        "{error}"
    );
}

#[test]
fn what_is_not_implemented_yet_is_refused_not_ignored() {
    let long = "k".repeat(81);
    let md5 = error_of(&format!(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{{address: 198.19.0.1, asn: 1, password: {long}}}]\n"
    ));
    assert!(md5.starts_with("peers[0].password:") && md5.contains("80"), "{md5}");
    let config =
        Config::parse("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 1, password: s3}]\n")
            .expect("valid");
    assert_eq!(config.peers[0].password, Some(Password(b"s3".to_vec())));
    assert!(!format!("{config:?}").contains("s3"), "the key is never printed");
    let policy =
        error_of("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 1, import: tor-in}]\n");
    assert!(
        policy.starts_with("peers[0].import:") && policy.contains("tor-in"),
        "{policy}"
    );
}

#[test]
fn max_paths_defaults_to_eight_and_zero_is_refused() {
    let config = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\nkernel: {install: true}\n").expect("valid");
    assert_eq!(config.kernel_max_paths, DEFAULT_MAX_PATHS);
    let config = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\nkernel: {max_paths: 2}\n").expect("valid");
    assert_eq!(config.kernel_max_paths, 2);
    let error = error_of("asn: 65001\nrouter_id: 198.19.0.2\nkernel: {max_paths: 0}\n");
    assert!(error.starts_with("kernel.max_paths:"), "{error}");
}

#[test]
fn graceful_restart_is_on_by_default_and_its_restart_time_is_checked() {
    let config = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\n").expect("valid");
    assert_eq!(config.graceful_restart, Some(DEFAULT_RESTART_TIME));
    let off = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\ngraceful_restart: {enabled: false}\n").expect("valid");
    assert_eq!(off.graceful_restart, None);
    let error = error_of("asn: 65001\nrouter_id: 198.19.0.2\ngraceful_restart: {restart_time: 5000}\n");
    assert!(error.starts_with("graceful_restart.restart_time:"), "{error}");
}

#[test]
fn select_defer_time_defaults_to_frrs_and_is_checked() {
    let config = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\n").expect("valid");
    assert_eq!(config.select_defer_time, DEFAULT_SELECT_DEFER_TIME);
    let config =
        Config::parse("asn: 65001\nrouter_id: 198.19.0.2\ngraceful_restart: {select_defer_time: 5}\n").expect("valid");
    assert_eq!(config.select_defer_time, 5);
    for bad in ["0", "3601"] {
        let error = error_of(&format!(
            "asn: 65001\nrouter_id: 198.19.0.2\ngraceful_restart: {{select_defer_time: {bad}}}\n"
        ));
        assert!(error.starts_with("graceful_restart.select_defer_time:"), "{error}");
    }
}

#[test]
fn max_prefix_is_checked_and_named() {
    let config = Config::parse(
            "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 1, max_prefix: {limit: 10, restart_time: 3}}]\n",
        )
        .expect("valid");
    assert_eq!(
        config.peers[0].max_prefix,
        Some(MaxPrefix {
            limit: 10,
            restart_time: Some(Duration::from_secs(3))
        })
    );
    let zero =
        error_of("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 1, max_prefix: {limit: 0}}]\n");
    assert!(zero.starts_with("peers[0].max_prefix.limit:"), "{zero}");
    let unknown = error_of(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 1, max_prefix: {limit: 5, warn: true}}]\n",
    );
    assert!(unknown.contains("warn"), "{unknown}");
}

const POLICIES: &str = r#"
asn: 65001
router_id: 198.19.0.2
prefix_lists:
  tor-routes: ["198.18.100.0/22 le 24"]
policies:
  from-tor:
    - match: { community: "65000:666" }
      action: reject
    - match: { prefix_list: tor-routes, as_path: { neighbor: 4200000002 } }
      set: { local_pref: 200 }
      action: accept
  to-tor:
    - set: { prepend: 2, community: ["65001:1"], large_community: ["65001:1:1"] }
      action: accept
peers:
  - { address: 198.19.0.1, asn: 4200000002, import: from-tor, export: to-tor }
"#;

#[test]
fn named_policies_parse_and_peers_refer_to_them() {
    let config = Config::parse(POLICIES).expect("valid");
    let Policy::Named(import) = &config.peers[0].import else {
        panic!("a named import policy: {:?}", config.peers[0].import)
    };
    assert_eq!(import.name, "from-tor");
    assert_eq!(import.statements.len(), 2);
    assert_eq!(import.statements[0].conditions.community, Some(65000 << 16 | 666));
    let Policy::Named(export) = &config.peers[0].export else {
        panic!("a named export policy")
    };
    assert_eq!(export.statements[0].actions.prepend, 2);
}

#[test]
fn policy_errors_name_their_key() {
    let cases = [
        (
            "\"198.18.100.0/22 le 24\"",
            "\"198.18.100.0/22 le 40\"",
            "prefix_lists.tor-routes[0]:",
        ),
        (
            "community: \"65000:666\"",
            "community: \"4200000002:1\"",
            "policies.from-tor[0].match.community:",
        ),
        (
            "prefix_list: tor-routes",
            "prefix_list: nowhere",
            "policies.from-tor[1].match.prefix_list:",
        ),
        (
            "      action: reject",
            "      action: drop",
            "policies.from-tor[0].action:",
        ),
        ("import: from-tor", "import: from-spine", "peers[0].import:"),
    ];
    for (good, bad, key) in cases {
        assert!(POLICIES.contains(good), "{good}");
        let error = error_of(&POLICIES.replacen(good, bad, 1));
        assert!(error.starts_with(key), "{key}: {error}");
    }
    let unknown = error_of(&POLICIES.replace("local_pref: 200", "weight: 200"));
    assert!(unknown.contains("weight"), "{unknown}");
}

#[test]
fn an_unknown_family_and_a_duplicate_peer_are_refused() {
    let family =
        error_of("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 1, families: [l2vpn-evpn]}]\n");
    assert!(family.starts_with("peers[0].families[0]:"), "{family}");
    let twice = error_of(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 1}, {address: 198.19.0.1, asn: 2}]\n",
    );
    assert!(twice.starts_with("peers[1].address:"), "{twice}");
}

#[test]
fn metrics_listen_is_off_by_default_and_checked() {
    let config = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\n").expect("valid");
    assert_eq!(config.metrics_listen, None);
    let config = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\nmetrics_listen: \"[::]:9179\"\n").expect("valid");
    assert_eq!(config.metrics_listen, Some("[::]:9179".parse().expect("address")));
    let error = error_of("asn: 65001\nrouter_id: 198.19.0.2\nmetrics_listen: 9179\n");
    assert!(error.starts_with("metrics_listen:"), "{error}");
}

#[test]
fn ttl_keys_are_checked_and_named() {
    let peer = |extra: &str| {
        format!("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{{address: 198.19.0.1, asn: 65000{extra}}}]\n")
    };
    let config = Config::parse(&peer(", multihop: 3, source_address: 198.19.9.2")).expect("valid");
    assert_eq!(config.peers[0].multihop, Some(3));
    assert_eq!(
        config.peers[0].source_address,
        Some("198.19.9.2".parse().expect("address"))
    );
    assert!(Config::parse(&peer(", ttl_security: true")).expect("valid").peers[0].ttl_security);
    let both = error_of(&peer(", ttl_security: true, multihop: 2"));
    assert!(both.starts_with("peers[0].multihop:"), "{both}");
    let range = error_of(&peer(", multihop: 256"));
    assert!(range.starts_with("peers[0].multihop:"), "{range}");
    let family = error_of(&peer(", source_address: \"2001:db8::2\""));
    assert!(family.starts_with("peers[0].source_address:"), "{family}");
    let ibgp = error_of("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 65001, multihop: 2}]\n");
    assert!(ibgp.starts_with("peers[0].multihop:"), "{ibgp}");
}

#[test]
fn route_reflection_keys_are_checked() {
    let config = Config::parse(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 65001, route_reflector_client: true}]\n",
    )
    .expect("valid");
    assert!(config.peers[0].route_reflector_client);
    assert_eq!(config.cluster_id, config.router_id, "the router id by default");
    let ebgp = error_of(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 65000, route_reflector_client: true}]\n",
    );
    assert!(ebgp.starts_with("peers[0].route_reflector_client:"), "{ebgp}");
    let bad = error_of("asn: 65001\nrouter_id: 198.19.0.2\ncluster_id: x\n");
    assert!(bad.starts_with("cluster_id:"), "{bad}");
}

#[test]
fn listen_addresses_default_to_every_address_and_are_checked() {
    let every = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\n").expect("valid");
    assert!(every.listen_addresses.is_empty());
    let some = Config::parse(
        "asn: 65001\nrouter_id: 198.19.0.2\nlisten_addresses: [198.19.0.2, \"2001:db8::2\", 198.19.0.2]\n",
    )
    .expect("valid");
    assert_eq!(
        some.listen_addresses,
        vec![
            "198.19.0.2".parse::<IpAddr>().expect("address"),
            "2001:db8::2".parse().expect("address")
        ]
    );
    let bad = error_of("asn: 65001\nrouter_id: 198.19.0.2\nlisten_addresses: [198.19.0.2, x]\n");
    assert!(bad.starts_with("listen_addresses[1]:"), "{bad}");
    let any = error_of("asn: 65001\nrouter_id: 198.19.0.2\nlisten_addresses: [0.0.0.0]\n");
    assert!(any.starts_with("listen_addresses[0]:"), "{any}");
}

#[test]
fn advertisement_interval_is_zero_by_default_and_at_most_ten_minutes() {
    let config = Config::parse(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 65000, advertisement_interval: 5}, \
             {address: 198.19.0.3, asn: 65000}]\n",
    )
    .expect("valid");
    assert_eq!(config.peers[0].advertisement_interval, Duration::from_secs(5));
    assert_eq!(config.peers[1].advertisement_interval, Duration::ZERO);
    let error = error_of(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 65000, advertisement_interval: 601}]\n",
    );
    assert!(error.starts_with("peers[0].advertisement_interval:"), "{error}");
}

#[test]
fn extended_next_hop_is_for_ipv6_peers_carrying_ipv4_unicast() {
    let config = Config::parse(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: \"2001:db8:ff::1\", asn: 65000, \
             extended_next_hop: true, extended_messages: true}, {address: 198.19.0.1, asn: 65000}]\n",
    )
    .expect("valid");
    assert!(config.peers[0].extended_next_hop && config.peers[0].extended_messages);
    assert!(!config.peers[1].extended_next_hop && !config.peers[1].extended_messages);
    for peer in [
        "{address: 198.19.0.1, asn: 65000, extended_next_hop: true}",
        "{address: \"2001:db8:ff::1\", asn: 65000, families: [ipv6-unicast], extended_next_hop: true}",
    ] {
        let error = error_of(&format!("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{peer}]\n"));
        assert!(error.starts_with("peers[0].extended_next_hop:"), "{error}");
    }
}

#[test]
fn next_hop_keep_is_off_by_default_and_for_ebgp_peers_only() {
    let config = Config::parse(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 65000, next_hop_keep: true}, \
             {address: 198.19.0.3, asn: 65000}]\n",
    )
    .expect("valid");
    assert!(config.peers[0].next_hop_keep);
    assert!(!config.peers[1].next_hop_keep);
    let ibgp = error_of(
        "asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 65001, next_hop_keep: true}]\n",
    );
    assert!(ibgp.starts_with("peers[0].next_hop_keep:"), "{ibgp}");
}

#[test]
fn as_zero_and_as_trans_are_refused() {
    assert!(error_of("asn: 0\nrouter_id: 198.19.0.2\n").starts_with("asn:"));
    let error = error_of("asn: 65001\nrouter_id: 198.19.0.2\npeers: [{address: 198.19.0.1, asn: 23456}]\n");
    assert!(error.starts_with("peers[0].asn:"), "{error}");
}

//! The other way: our encoder's bytes, which BIRD, FRR and GoBGP accepted (the routes selected
//! in their RIBs, our Cease reported: `*-accepted-routes.txt`). Our encoder must keep writing
//! exactly those bytes.

use super::*;

fn our_ebgp_config() -> LocalConfig {
    let mut config = LocalConfig::new(4_200_000_002, Ipv4Addr::new(198, 18, 0, 2));
    config.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: false,
        forwarding_preserved: Vec::new(),
        notification: true,
    });
    config.add_path = [AddressType::Ipv4Unicast, AddressType::Ipv6Unicast]
        .into_iter()
        .map(|family| AddPathConfig {
            family,
            send: false,
            receive: true,
        })
        .collect();
    config
}

fn our_attributes(internal: bool, next_hop: &str) -> weft_bgp_proto::PathAttributes {
    weft_bgp_proto::PathAttributes {
        origin: RouteOrigin::Igp,
        as_path: if internal {
            RouteAsPath::default()
        } else {
            RouteAsPath(vec![RouteAsPathSegment::Sequence(vec![4_200_000_002])])
        },
        next_hop: next_hop.parse().expect("address"),
        med: Some(20),
        local_pref: internal.then_some(200),
        communities: vec![(65000 << 16) | 100],
        large_communities: vec![[4_200_000_002, 7, 8]],
        originator_id: None,
        cluster_list: Vec::new(),
        aggregator: None,
        atomic_aggregate: false,
    }
}

fn assert_we_encode(vector_name: &str, message: &Message) {
    let vector = vector(vector_name);
    assert_eq!(
        encode(message, &vector.context).expect("encodes"),
        vector.bytes,
        "{vector_name}: our encoder no longer writes the bytes the peers accepted"
    );
}

#[test]
fn our_encoder_writes_the_opens_the_peers_accepted() {
    assert_we_encode(&name(WEFT, "open-ebgp"), &Message::Open(our_ebgp_config().open()));
    let mut ibgp = our_ebgp_config();
    ibgp.asn = 4_200_000_001;
    ibgp.add_path = Vec::new();
    ibgp.extended_next_hop = vec![AddressType::Ipv4Unicast];
    assert_we_encode(&name(WEFT, "open-ibgp"), &Message::Open(ibgp.open()));
}

#[test]
fn our_encoder_writes_the_keepalive_and_the_cease_the_peers_accepted() {
    assert_we_encode(&name(WEFT, "keepalive"), &Message::Keepalive);
    // BIRD showed "Administrative shutdown", "Message: weft golden"; FRR "Notification received
    // (Cease/Administrative Shutdown)"; GoBGP logged Communicated-Reason "weft golden".
    let cease = Notification::cease_with_communication(CeaseSubcode::AdministrativeShutdown, "weft golden");
    assert_we_encode(
        &name(WEFT, "notification-cease-administrative-shutdown"),
        &Message::Notification(cease),
    );
}

#[test]
fn our_encoder_writes_the_updates_the_peers_accepted() {
    let ipv4 = advertisements(
        &[prefix("198.19.100.0/24"), prefix("198.19.101.0/24")],
        &our_attributes(false, "198.18.0.2"),
        UpdateEncoding::FOUR_OCTET_AS,
    );
    assert_eq!(ipv4.len(), 1);
    assert_we_encode(&name(WEFT, "update-ebgp-ipv4-nlri"), &Message::Update(ipv4[0].clone()));
    let ipv6 = advertisements(
        &[prefix("2001:db8:200::/48")],
        &our_attributes(false, "2001:db8::2"),
        UpdateEncoding::FOUR_OCTET_AS,
    );
    assert_we_encode(
        &name(WEFT, "update-ebgp-ipv6-mp-reach"),
        &Message::Update(ipv6[0].clone()),
    );
    let ibgp_ipv6 = advertisements(
        &[prefix("2001:db8:210::/48")],
        &our_attributes(true, "2001:db8::2"),
        UpdateEncoding::FOUR_OCTET_AS,
    );
    assert_we_encode(
        &name(WEFT, "update-ibgp-ipv6-mp-reach"),
        &Message::Update(ibgp_ipv6[0].clone()),
    );
    for (family, what) in [
        (AddressType::Ipv4Unicast, "update-end-of-rib-ipv4"),
        (AddressType::Ipv6Unicast, "update-end-of-rib-ipv6"),
    ] {
        let marker = end_of_rib(family).expect("a weft family");
        assert_we_encode(&name(WEFT, what), &Message::Update(marker));
    }
    assert_we_encode(
        &name(WEFT, "route-refresh-ipv4"),
        &Message::RouteRefresh(BgpRouteRefreshMessage::new(
            AddressType::Ipv4Unicast,
            RouteRefreshSubcode::NormalRequest,
        )),
    );
}

#[test]
fn our_ipv4_route_with_an_ipv6_next_hop_is_the_one_the_peers_accepted() {
    // `update::advertisements` has no RFC 8950 form yet: the capture built it from the IPv6
    // UPDATE's attributes with an IPv4 MP_REACH_NLRI. What the peers accepted reads back as this.
    let (withdrawn, advertised) = routes(&name(WEFT, "update-ibgp-ipv4-mp-reach-ipv6-next-hop"));
    assert!(withdrawn.is_empty());
    assert_eq!(
        advertised,
        vec![(prefix("198.19.110.0/24"), our_attributes(true, "2001:db8::2"))]
    );
    let (next_hop, mp_next_hop, link_local) =
        super::updates::wire_next_hops(&update(&name(WEFT, "update-ibgp-ipv4-mp-reach-ipv6-next-hop")));
    assert_eq!(
        (next_hop, mp_next_hop, link_local),
        (None, Some(support::ip("2001:db8::2")), None)
    );
}

#[test]
fn our_open_with_a_hold_time_of_one_second_is_refused_as_the_peers_refused_it() {
    let vector = vector(&name(WEFT, "open-ebgp-hold-time-1"));
    let error = decode_message(&vector.bytes, &vector.context).expect_err("hold time 1");
    assert_eq!((error.notification().code, error.notification().subcode), (2, 6));
    let mut config = our_ebgp_config();
    config.hold_time = 1;
    assert_we_encode(&name(WEFT, "open-ebgp-hold-time-1"), &Message::Open(config.open()));
}

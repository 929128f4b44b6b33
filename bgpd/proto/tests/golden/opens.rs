//! Captured OPENs and KEEPALIVEs: the capabilities each peer offers, what our OPEN negotiates
//! with them.

use super::*;

fn mp(family: AddressType) -> BgpCapability {
    BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(family))
}

fn four_octet_as(asn: u32) -> BgpCapability {
    BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn))
}

fn graceful_restart(restart: bool, notification: bool) -> BgpCapability {
    BgpCapability::GracefulRestartCapability(GracefulRestartCapability::new(
        restart,
        notification,
        120,
        vec![
            GracefulRestartAddressFamily::new(false, AddressType::Ipv4Unicast),
            GracefulRestartAddressFamily::new(false, AddressType::Ipv6Unicast),
        ],
    ))
}

fn add_path(send: bool, receive: bool) -> BgpCapability {
    BgpCapability::AddPath(AddPathCapability::new(vec![
        AddPathAddressFamily::new(AddressType::Ipv4Unicast, send, receive),
        AddPathAddressFamily::new(AddressType::Ipv6Unicast, send, receive),
    ]))
}

fn extended_next_hop_for_ipv4() -> BgpCapability {
    BgpCapability::ExtendedNextHopEncoding(ExtendedNextHopEncodingCapability::new(vec![
        ExtendedNextHopEncoding::new(AddressType::Ipv4Unicast, AddressFamily::IPv6),
    ]))
}

fn long_lived_graceful_restart(forwarding: bool, stale_time: u32) -> BgpCapability {
    BgpCapability::LongLivedGracefulRestart(LongLivedGracefulRestartCapability::new(vec![
        LongLivedGracefulRestartAddressFamily::new(forwarding, AddressType::Ipv4Unicast, stale_time),
        LongLivedGracefulRestartAddressFamily::new(forwarding, AddressType::Ipv6Unicast, stale_time),
    ]))
}

fn fqdn(hostname: &str) -> BgpCapability {
    BgpCapability::Fqdn(FqdnCapability::new(hostname.into(), "".into()))
}

#[test]
fn each_peer_opens_with_the_capabilities_it_was_configured_to_offer() {
    let ipv4 = AddressType::Ipv4Unicast;
    let ipv6 = AddressType::Ipv6Unicast;
    let peer_as = 4_200_000_001;
    let cases: [(String, u16, Vec<BgpCapability>); 6] = [
        (
            name(BIRD, "open-ebgp"),
            90,
            vec![
                mp(ipv4),
                mp(ipv6),
                BgpCapability::RouteRefresh,
                BgpCapability::ExtendedMessage,
                graceful_restart(false, false),
                four_octet_as(peer_as),
                add_path(true, true),
                BgpCapability::EnhancedRouteRefresh,
                long_lived_graceful_restart(false, 3600),
            ],
        ),
        (
            name(BIRD, "open-ibgp"),
            90,
            vec![
                mp(ipv4),
                mp(ipv6),
                BgpCapability::RouteRefresh,
                extended_next_hop_for_ipv4(),
                BgpCapability::ExtendedMessage,
                graceful_restart(false, false),
                four_octet_as(peer_as),
                BgpCapability::EnhancedRouteRefresh,
                long_lived_graceful_restart(false, 3600),
            ],
        ),
        (
            // FRR: one capability per Optional Parameter, Cisco's pre-standard route refresh
            // too, its hostname, the Restart State and Notification (RFC 8538) flags set.
            name(FRR, "open-ebgp"),
            180,
            vec![
                mp(ipv4),
                mp(ipv6),
                BgpCapability::CiscoRouteRefresh,
                BgpCapability::RouteRefresh,
                BgpCapability::EnhancedRouteRefresh,
                four_octet_as(peer_as),
                BgpCapability::ExtendedMessage,
                add_path(true, true),
                fqdn("weft-golden"),
                graceful_restart(true, true),
                long_lived_graceful_restart(true, 0),
            ],
        ),
        (
            name(FRR, "open-ibgp"),
            180,
            vec![
                mp(ipv4),
                extended_next_hop_for_ipv4(),
                mp(ipv6),
                BgpCapability::CiscoRouteRefresh,
                BgpCapability::RouteRefresh,
                BgpCapability::EnhancedRouteRefresh,
                four_octet_as(peer_as),
                BgpCapability::ExtendedMessage,
                add_path(false, true),
                fqdn("weft-golden"),
                graceful_restart(true, true),
                long_lived_graceful_restart(true, 0),
            ],
        ),
        (
            // GoBGP: no enhanced route refresh; its host name as FQDN; the extended next hop
            // offered on the IPv4 session as well.
            name(GOBGP, "open-ebgp"),
            90,
            vec![
                BgpCapability::RouteRefresh,
                fqdn("weft-golden"),
                mp(ipv4),
                mp(ipv6),
                four_octet_as(peer_as),
                graceful_restart(false, false),
                extended_next_hop_for_ipv4(),
                add_path(true, true),
            ],
        ),
        (
            name(GOBGP, "open-ibgp"),
            90,
            vec![
                BgpCapability::RouteRefresh,
                fqdn("weft-golden"),
                mp(ipv4),
                mp(ipv6),
                four_octet_as(peer_as),
                graceful_restart(false, false),
                extended_next_hop_for_ipv4(),
            ],
        ),
    ];
    for (vector_name, hold_time, expected) in cases {
        let open = open(&vector_name);
        // My Autonomous System is AS_TRANS: the real AS is in the 4-octet AS capability.
        assert_eq!(
            open_header(&open),
            (23456, hold_time, Ipv4Addr::new(198, 18, 0, 1)),
            "{vector_name}"
        );
        assert_eq!(capabilities(&open), expected, "{vector_name}");
    }
}

fn weft_open(session: &str) -> BgpOpenMessage {
    open(&name(WEFT, &format!("open-{session}")))
}

#[test]
fn our_opens_negotiate_with_each_peer_what_both_offered() {
    for peer in PEERS {
        let ebgp = negotiate(&weft_open("ebgp"), &open(&name(peer, "open-ebgp"))).expect("eBGP OPENs agree");
        assert_eq!(ebgp.peer_asn, 4_200_000_001, "{peer}");
        assert!(ebgp.four_octet_as, "{peer}");
        assert_eq!(ebgp.hold_time, 90, "{peer}: the smaller hold time");
        assert_eq!(
            ebgp.families,
            vec![AddressType::Ipv4Unicast, AddressType::Ipv6Unicast],
            "{peer}"
        );
        assert!(ebgp.route_refresh, "{peer}");
        assert_eq!(ebgp.enhanced_route_refresh, peer != GOBGP, "{peer}");
        let receive: Vec<_> = ebgp
            .add_path
            .iter()
            .filter(|a| a.receive && !a.send)
            .map(|a| a.family)
            .collect();
        assert_eq!(
            receive,
            vec![AddressType::Ipv4Unicast, AddressType::Ipv6Unicast],
            "{peer}: add-path receive"
        );
        assert!(ebgp.extended_next_hop.is_empty(), "{peer}: we did not offer it on eBGP");
        let restart = ebgp.graceful_restart.expect("graceful restart");
        assert_eq!(
            (restart.restart_time, restart.notification),
            (120, peer == FRR),
            "{peer}"
        );

        let ibgp = negotiate(&weft_open("ibgp"), &open(&name(peer, "open-ibgp"))).expect("iBGP OPENs agree");
        assert_eq!(ibgp.extended_next_hop, vec![AddressType::Ipv4Unicast], "{peer}");
        assert!(ibgp.add_path.is_empty(), "{peer}");
    }
}

#[test]
fn keepalives_of_every_peer_are_bare_headers() {
    for peer in PEERS {
        let name = name(peer, "keepalive");
        assert_eq!(vector(&name).bytes, with_header(4, &[]), "{name}");
        assert_eq!(decode(&name), Message::Keepalive);
    }
}

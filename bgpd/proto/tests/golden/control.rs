//! Captured ROUTE-REFRESH and NOTIFICATION messages.

use super::*;

#[test]
fn route_refresh_requests_and_enhanced_route_refresh_markers_decode() {
    use RouteRefreshSubcode::{BeginningOfRouteRefresh, EndOfRouteRefresh, NormalRequest};
    // GoBGP has no command that sends ROUTE-REFRESH and no enhanced route refresh.
    let cases = [
        (
            name(BIRD, "route-refresh-ipv4"),
            AddressType::Ipv4Unicast,
            NormalRequest,
        ),
        (
            name(BIRD, "route-refresh-ipv6"),
            AddressType::Ipv6Unicast,
            NormalRequest,
        ),
        (
            name(BIRD, "route-refresh-borr-ipv4"),
            AddressType::Ipv4Unicast,
            BeginningOfRouteRefresh,
        ),
        (
            name(BIRD, "route-refresh-eorr-ipv4"),
            AddressType::Ipv4Unicast,
            EndOfRouteRefresh,
        ),
        (name(FRR, "route-refresh-ipv4"), AddressType::Ipv4Unicast, NormalRequest),
        (name(FRR, "route-refresh-ipv6"), AddressType::Ipv6Unicast, NormalRequest),
        (
            name(FRR, "route-refresh-borr-ipv4"),
            AddressType::Ipv4Unicast,
            BeginningOfRouteRefresh,
        ),
        (
            name(FRR, "route-refresh-eorr-ipv4"),
            AddressType::Ipv4Unicast,
            EndOfRouteRefresh,
        ),
        (
            name(WEFT, "route-refresh-ipv4"),
            AddressType::Ipv4Unicast,
            NormalRequest,
        ),
    ];
    for (vector_name, family, subtype) in cases {
        assert_eq!(
            decode(&vector_name),
            Message::RouteRefresh(BgpRouteRefreshMessage::new(family, subtype)),
            "{vector_name}"
        );
        let afi = if family == AddressType::Ipv4Unicast { 1 } else { 2 };
        let subtype_octet = match subtype {
            NormalRequest => 0,
            BeginningOfRouteRefresh => 1,
            _ => 2,
        };
        assert_eq!(
            vector(&vector_name).bytes,
            with_header(5, &[0, afi, subtype_octet, 1]),
            "{vector_name}"
        );
    }
}

#[test]
fn notifications_of_every_peer_decode_to_their_code_subcode_and_data() {
    let shutdown = b"\x0bweft golden".to_vec();
    let mut hard_reset = vec![6, 2];
    hard_reset.extend_from_slice(&shutdown);
    let cases = [
        // Administrative shutdown with an RFC 9003 communication; FRR, having negotiated the
        // RFC 8538 Notification flag, wraps it in a Hard Reset; GoBGP sends no communication.
        (
            name(BIRD, "notification-cease-administrative-shutdown"),
            6,
            2,
            shutdown.clone(),
        ),
        (name(FRR, "notification-cease-hard-reset"), 6, 9, hard_reset),
        (name(GOBGP, "notification-cease-administrative-shutdown"), 6, 2, vec![]),
        // Our UPDATE whose Total Path Attribute Length runs past its end.
        (name(BIRD, "notification-update-malformed-attribute-list"), 3, 1, vec![]),
        (name(FRR, "notification-update-malformed-attribute-list"), 3, 1, vec![]),
        (
            name(GOBGP, "notification-update-malformed-attribute-list"),
            3,
            1,
            vec![],
        ),
        // Our OPEN with a hold time of 1 s: BIRD and FRR echo the hold time, GoBGP does not.
        (name(BIRD, "notification-open-unacceptable-hold-time"), 2, 6, vec![0, 1]),
        (name(FRR, "notification-open-unacceptable-hold-time"), 2, 6, vec![0, 1]),
        (name(GOBGP, "notification-open-unacceptable-hold-time"), 2, 6, vec![]),
    ];
    for (vector_name, code, subcode, data) in cases {
        let received = notification(&vector_name);
        assert_eq!(received, Notification::new(code, subcode, data), "{vector_name}");
    }
    let bird = notification(&name(BIRD, "notification-cease-administrative-shutdown"));
    assert_eq!(bird.shutdown_communication(), Some("weft golden"));
    assert!(notification(&name(FRR, "notification-cease-hard-reset")).is_hard_reset());
}

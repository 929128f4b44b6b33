//! Captured UPDATEs: prefixes, next hops, path identifiers, attributes, withdrawals, End-of-RIB.

use super::*;

fn ebgp(next_hop: &str) -> weft_bgp_proto::PathAttributes {
    peer_attributes(false, next_hop)
}

fn ibgp(next_hop: &str) -> weft_bgp_proto::PathAttributes {
    peer_attributes(true, next_hop)
}

/// GoBGP's `global rib add` originates with ORIGIN incomplete.
fn incomplete(mut attributes: weft_bgp_proto::PathAttributes) -> weft_bgp_proto::PathAttributes {
    attributes.origin = RouteOrigin::Incomplete;
    attributes
}

#[test]
fn announcements_carry_the_prefixes_next_hops_and_attributes_each_peer_was_given() {
    let v4 = ["198.19.1.0/24", "198.19.2.0/24"];
    let v6 = ["2001:db8:101::/48", "2001:db8:102::/48"];
    let cases: Vec<(String, Vec<(&str, weft_bgp_proto::PathAttributes)>)> = vec![
        // eBGP over IPv4: IPv4 in the NLRI field, IPv6 in MP_REACH_NLRI with the address BIRD
        // was told to use (`next hop address`) and FRR found on the interface.
        (
            name(BIRD, "update-ebgp-ipv4-nlri-add-path"),
            v4.iter().map(|p| (*p, ebgp("198.18.0.1"))).collect(),
        ),
        (
            name(BIRD, "update-ebgp-ipv6-mp-reach-link-local-add-path"),
            v6.iter().map(|p| (*p, ebgp("2001:db8::1"))).collect(),
        ),
        (
            name(FRR, "update-ebgp-ipv4-nlri-add-path"),
            v4.iter().map(|p| (*p, ebgp("198.18.0.1"))).collect(),
        ),
        (
            name(FRR, "update-ebgp-ipv6-mp-reach-link-local-add-path"),
            v6.iter().map(|p| (*p, ebgp("2001:db8::1"))).collect(),
        ),
        // GoBGP lists the prefixes in no fixed order (they are sorted below), and sends one
        // IPv6 prefix per UPDATE with its IPv4 session address as an IPv4-mapped IPv6 next hop.
        (
            name(GOBGP, "update-ebgp-ipv4-nlri-add-path"),
            v4.iter().map(|p| (*p, incomplete(ebgp("198.18.0.1")))).collect(),
        ),
        (
            format!("{GOBGP}-update-ebgp-ipv6-mp-reach-add-path {GOBGP}-update-ebgp-ipv6-mp-reach-add-path-2"),
            v6.iter().map(|p| (*p, incomplete(ebgp("::ffff:198.18.0.1")))).collect(),
        ),
        // After our ROUTE-REFRESH (and after the withdrawal): what is left.
        (
            name(BIRD, "update-ebgp-ipv4-nlri-add-path-after-our-route-refresh"),
            vec![("198.19.1.0/24", ebgp("198.18.0.1"))],
        ),
        (
            name(FRR, "update-ebgp-ipv4-nlri-add-path-after-our-route-refresh"),
            vec![("198.19.1.0/24", ebgp("198.18.0.1"))],
        ),
        (
            name(GOBGP, "update-ebgp-ipv4-nlri-add-path-after-our-route-refresh"),
            vec![("198.19.1.0/24", incomplete(ebgp("198.18.0.1")))],
        ),
        // iBGP over IPv6: LOCAL_PREF 100, an empty AS_PATH, and IPv4 routes with an IPv6 next
        // hop in MP_REACH_NLRI (RFC 8950), from all three.
        (
            name(BIRD, "update-ibgp-ipv4-mp-reach-ipv6-next-hop"),
            vec![("198.19.1.0/24", ibgp("2001:db8::1"))],
        ),
        (
            name(BIRD, "update-ibgp-ipv6-mp-reach-link-local"),
            vec![("2001:db8:101::/48", ibgp("2001:db8::1"))],
        ),
        (
            name(FRR, "update-ibgp-ipv4-mp-reach-ipv6-next-hop"),
            vec![("198.19.1.0/24", ibgp("2001:db8::1"))],
        ),
        (
            name(FRR, "update-ibgp-ipv6-mp-reach-link-local"),
            vec![("2001:db8:101::/48", ibgp("2001:db8::1"))],
        ),
        (
            name(GOBGP, "update-ibgp-ipv4-mp-reach-ipv6-next-hop"),
            vec![("198.19.1.0/24", incomplete(ibgp("2001:db8::1")))],
        ),
        (
            name(GOBGP, "update-ibgp-ipv6-mp-reach"),
            vec![("2001:db8:101::/48", incomplete(ibgp("2001:db8::1")))],
        ),
    ];
    for (vector_names, expected) in cases {
        // The order of prefixes within an UPDATE, and of UPDATEs with the same attributes,
        // carries no meaning.
        let mut advertised = Vec::new();
        for vector_name in vector_names.split(' ') {
            let (withdrawn, routes) = routes(vector_name);
            assert!(withdrawn.is_empty(), "{vector_name}");
            advertised.extend(routes);
        }
        advertised.sort_by_key(|(prefix, _)| *prefix);
        let expected: Vec<_> = expected.into_iter().map(|(p, a)| (prefix(p), a)).collect();
        assert_eq!(advertised, expected, "{vector_names}");
    }
}

/// The next hops as they are on the wire: (IPv4 NEXT_HOP, MP_REACH_NLRI next hop, link-local).
pub fn wire_next_hops(update: &BgpUpdateMessage) -> (Option<Ipv4Addr>, Option<IpAddr>, Option<Ipv6Addr>) {
    let mut next_hops = (None, None, None);
    for attribute in update.path_attributes() {
        match attribute.value() {
            PathAttributeValue::NextHop(next_hop) => next_hops.0 = Some(next_hop.next_hop()),
            PathAttributeValue::MpReach(MpReach::Ipv4Unicast {
                next_hop,
                next_hop_local,
                ..
            }) => next_hops = (next_hops.0, Some(*next_hop), *next_hop_local),
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                ..
            }) => next_hops = (next_hops.0, Some(IpAddr::V6(*next_hop_global)), *next_hop_local),
            _ => {}
        }
    }
    next_hops
}

fn is_link_local(address: Ipv6Addr) -> bool {
    address.segments()[0] & 0xffc0 == 0xfe80
}

#[test]
fn ipv6_next_hops_carry_a_link_local_address_where_the_peer_sends_one() {
    // BIRD and FRR add their link-local address on a shared link (a 32-octet next hop,
    // RFC 2545 §3), also for IPv4 routes with an IPv6 next hop (RFC 8950 §3); GoBGP never does.
    let cases = [
        (
            name(BIRD, "update-ebgp-ipv6-mp-reach-link-local-add-path"),
            "2001:db8::1",
            true,
        ),
        (name(BIRD, "update-ibgp-ipv6-mp-reach-link-local"), "2001:db8::1", true),
        (
            name(BIRD, "update-ibgp-ipv4-mp-reach-ipv6-next-hop"),
            "2001:db8::1",
            true,
        ),
        (
            name(FRR, "update-ebgp-ipv6-mp-reach-link-local-add-path"),
            "2001:db8::1",
            true,
        ),
        (name(FRR, "update-ibgp-ipv6-mp-reach-link-local"), "2001:db8::1", true),
        (
            name(FRR, "update-ibgp-ipv4-mp-reach-ipv6-next-hop"),
            "2001:db8::1",
            true,
        ),
        (
            name(GOBGP, "update-ebgp-ipv6-mp-reach-add-path"),
            "::ffff:198.18.0.1",
            false,
        ),
        (name(GOBGP, "update-ibgp-ipv6-mp-reach"), "2001:db8::1", false),
        (
            name(GOBGP, "update-ibgp-ipv4-mp-reach-ipv6-next-hop"),
            "2001:db8::1",
            false,
        ),
    ];
    for (vector_name, global, with_link_local) in cases {
        let (next_hop, mp_next_hop, link_local) = wire_next_hops(&update(&vector_name));
        assert_eq!(
            next_hop, None,
            "{vector_name}: no NEXT_HOP attribute beside MP_REACH_NLRI"
        );
        assert_eq!(mp_next_hop, Some(global.parse().expect("address")), "{vector_name}");
        assert_eq!(link_local.is_some(), with_link_local, "{vector_name}");
        assert!(link_local.is_none_or(is_link_local), "{vector_name}: {link_local:?}");
    }
}

/// Path identifiers of every prefix in an UPDATE: NLRI, Withdrawn Routes, MP_REACH, MP_UNREACH.
fn path_ids(update: &BgpUpdateMessage) -> Vec<Option<u32>> {
    let mut ids: Vec<_> = update
        .nlri()
        .iter()
        .chain(update.withdraw_routes())
        .map(Ipv4UnicastAddress::path_id)
        .collect();
    for attribute in update.path_attributes() {
        match attribute.value() {
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. })
            | PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => {
                ids.extend(nlri.iter().map(Ipv6UnicastAddress::path_id));
            }
            PathAttributeValue::MpReach(MpReach::Ipv4Unicast { nlri, .. })
            | PathAttributeValue::MpUnreach(MpUnreach::Ipv4Unicast { nlri }) => {
                ids.extend(nlri.iter().map(Ipv4UnicastAddress::path_id));
            }
            _ => {}
        }
    }
    ids
}

#[test]
fn every_prefix_on_an_add_path_session_has_a_path_identifier_and_none_elsewhere() {
    let mut checked = 0;
    for vector_name in support::all_names() {
        let is_update = vector_name.contains("-update-ebgp-") || vector_name.contains("-update-ibgp-");
        if vector_name.starts_with(WEFT) || !is_update {
            continue;
        }
        let ids = path_ids(&update(&vector_name));
        if vector_name.contains("-add-path") {
            assert!(ids.iter().all(Option::is_some), "{vector_name}: {ids:?}");
        } else {
            assert!(ids.iter().all(Option::is_none), "{vector_name}: {ids:?}");
        }
        checked += ids.len();
    }
    assert!(checked >= 30, "only {checked} prefixes seen");
}

#[test]
fn withdrawals_name_the_prefix_the_peer_stopped_originating() {
    for peer in PEERS {
        let ipv4 = name(peer, "update-ebgp-ipv4-withdrawn-add-path");
        assert_eq!(routes(&ipv4), (vec![prefix("198.19.2.0/24")], vec![]), "{ipv4}");
        let update4 = update(&ipv4);
        assert!(update4.path_attributes().is_empty(), "{ipv4}: a bare withdrawal");
        let ipv6 = name(peer, "update-ebgp-ipv6-mp-unreach-add-path");
        assert_eq!(routes(&ipv6), (vec![prefix("2001:db8:102::/48")], vec![]), "{ipv6}");
        let update6 = update(&ipv6);
        assert!(
            matches!(update6.path_attributes(), [only] if matches!(only.value(), PathAttributeValue::MpUnreach(_))),
            "{ipv6}: only MP_UNREACH_NLRI"
        );
    }
}

#[test]
fn end_of_rib_markers_of_both_families_from_every_peer_are_recognised() {
    for peer in PEERS {
        for session in ["ebgp", "ibgp"] {
            let ipv4 = name(peer, &format!("update-{session}-end-of-rib-ipv4"));
            assert_eq!(vector(&ipv4).bytes, with_header(2, &[0, 0, 0, 0]), "{ipv4}");
            assert_eq!(
                end_of_rib_family(&update(&ipv4)),
                Some(AddressType::Ipv4Unicast),
                "{ipv4}"
            );
            let ipv6 = name(peer, &format!("update-{session}-end-of-rib-ipv6"));
            // An empty MP_UNREACH_NLRI for AFI 2 / SAFI 1; all three send the same octets.
            assert_eq!(
                vector(&ipv6).bytes,
                with_header(2, &[0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1]),
                "{ipv6}"
            );
            assert_eq!(
                end_of_rib_family(&update(&ipv6)),
                Some(AddressType::Ipv6Unicast),
                "{ipv6}"
            );
        }
    }
}

#[test]
fn frr_sends_our_own_routes_back_with_its_as_prepended() {
    // FRR does no sender-side loop check: our routes come back with AS_PATH 4200000001
    // 4200000002, without our MED (not passed on to another AS). The import side must refuse
    // them for the AS loop.
    let mut attributes = ebgp("198.18.0.1");
    attributes.as_path = RouteAsPath(vec![RouteAsPathSegment::Sequence(vec![4_200_000_001, 4_200_000_002])]);
    attributes.med = None;
    attributes.communities = vec![(65000 << 16) | 100];
    attributes.large_communities = vec![[4_200_000_002, 7, 8]];
    let (_, ipv4) = routes(&name(FRR, "update-ebgp-ipv4-nlri-and-our-routes-back-add-path"));
    assert_eq!(
        ipv4,
        vec![
            (prefix("198.19.100.0/24"), attributes.clone()),
            (prefix("198.19.101.0/24"), attributes.clone())
        ]
    );
    attributes.next_hop = "2001:db8::1".parse().expect("address");
    let (_, ipv6) = routes(&name(
        FRR,
        "update-ebgp-ipv6-mp-reach-link-local-and-our-routes-back-add-path",
    ));
    assert_eq!(ipv6, vec![(prefix("2001:db8:200::/48"), attributes)]);
}

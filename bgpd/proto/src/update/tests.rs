//! Tests of [`super`].

use super::*;
use crate::codec::{CodecContext, Message, decode_message, encode};

const FOUR_OCTET: UpdateEncoding = UpdateEncoding::FOUR_OCTET_AS;

fn context() -> CodecContext {
    CodecContext {
        four_octet_as: true,
        ..CodecContext::default()
    }
}

fn round_trip(update: BgpUpdateMessage) -> ReceivedRoutes {
    let bytes = encode(&Message::Update(update), &context()).expect("encodes");
    let received = decode_message(&bytes, &context()).expect("decodes").expect("kept");
    assert!(received.update_errors.is_empty(), "{:?}", received.update_errors);
    let Message::Update(update) = received.message else {
        panic!("not an UPDATE");
    };
    read_update(&update)
}

fn attributes(next_hop: &str) -> PathAttributes {
    PathAttributes {
        origin: Origin::Igp,
        as_path: AsPath::default().prepend(4_200_000_001),
        next_hop: next_hop.parse().expect("address"),
        med: Some(7),
        local_pref: None,
        // 65000:100 and 4200000002:1:2 (RFC 1997, RFC 8092).
        communities: vec![65000 << 16 | 100],
        large_communities: vec![[4_200_000_002, 1, 2]],
        originator_id: None,
        cluster_list: Vec::new(),
        aggregator: None,
        atomic_aggregate: false,
    }
}

#[test]
fn originator_id_and_cluster_list_read_back_as_sent() {
    let sent = PathAttributes {
        local_pref: Some(100),
        originator_id: Some("198.19.0.1".parse().expect("address")),
        cluster_list: vec![
            "198.19.0.2".parse().expect("address"),
            "198.19.9.9".parse().expect("address"),
        ],
        ..attributes("198.19.0.1")
    };
    let prefixes: Vec<Prefix> = vec!["198.18.100.0/24".parse().expect("prefix")];
    let update = advertisements(&prefixes, &sent, FOUR_OCTET)
        .into_iter()
        .next()
        .expect("one UPDATE");
    // iBGP attributes: decoded as from an internal peer.
    let context = CodecContext {
        internal_peer: true,
        ..context()
    };
    let bytes = encode(&Message::Update(update), &context).expect("encodes");
    let received = decode_message(&bytes, &context).expect("decodes").expect("kept");
    assert!(received.update_errors.is_empty(), "{:?}", received.update_errors);
    let Message::Update(update) = received.message else {
        panic!("not an UPDATE");
    };
    assert_eq!(*read_update(&update).advertised[0].1, sent);
}

#[test]
fn a_two_octet_peer_gets_as_trans_and_the_true_path_in_as4_path() {
    let sent = PathAttributes {
        as_path: AsPath::default().prepend(4_200_000_002).prepend(65001),
        ..attributes("198.19.0.1")
    };
    let prefixes: Vec<Prefix> = vec!["198.18.100.0/24".parse().expect("prefix")];
    let update = advertisements(&prefixes, &sent, UpdateEncoding::default())
        .into_iter()
        .next()
        .expect("one UPDATE");
    let two_octet = CodecContext::default();
    let bytes = encode(&Message::Update(update), &two_octet).expect("encodes");
    let received = decode_message(&bytes, &two_octet).expect("decodes").expect("kept");
    let Message::Update(update) = received.message else {
        panic!("not an UPDATE");
    };
    let wire_path = update.path_attributes().iter().find_map(|a| match a.value() {
        PathAttributeValue::AsPath(WireAsPath::As2PathSegments(segments)) => Some(segments[0].as_numbers().to_vec()),
        _ => None,
    });
    assert_eq!(wire_path, Some(vec![65001, AS_TRANS]), "AS_TRANS on the wire");
    assert_eq!(
        read_update(&update).advertised[0].1.as_path.asns(),
        vec![65001, 4_200_000_002]
    );
}

/// RFC 6793 §4.2.2-4.2.3, golden bytes: to a 2-octet speaker an aggregator in AS 4200000002
/// goes as AGGREGATOR with AS_TRANS and AS4_AGGREGATOR with the true AS; read back, they
/// merge. An AGGREGATOR of another AS than AS_TRANS (a 2-octet speaker aggregated later)
/// makes both AS4_AGGREGATOR and AS4_PATH ignored.
#[test]
fn a_two_octet_peer_gets_as_trans_in_aggregator_and_the_true_as_in_as4_aggregator() {
    let aggregator = Aggregator {
        asn: 4_200_000_002,
        address: "198.19.0.9".parse().expect("address"),
    };
    let sent = PathAttributes {
        as_path: AsPath::default().prepend(4_200_000_002).prepend(65001),
        aggregator: Some(aggregator),
        atomic_aggregate: true,
        ..attributes("198.19.0.1")
    };
    let prefixes: Vec<Prefix> = vec!["198.18.100.0/24".parse().expect("prefix")];
    let update = advertisements(&prefixes, &sent, UpdateEncoding::default())
        .into_iter()
        .next()
        .expect("one UPDATE");
    let two_octet = CodecContext::default();
    let mut bytes = encode(&Message::Update(update), &two_octet).expect("encodes");
    let as_trans_aggregator = [0xc0, 7, 6, 0x5b, 0xa0, 198, 19, 0, 9];
    let as4_aggregator = [0xc0, 18, 8, 0xfa, 0x56, 0xea, 0x02, 198, 19, 0, 9];
    let at = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
    assert!(
        at(&bytes, &as_trans_aggregator).is_some(),
        "AGGREGATOR with AS_TRANS: {bytes:02x?}"
    );
    assert!(at(&bytes, &as4_aggregator).is_some(), "AS4_AGGREGATOR: {bytes:02x?}");
    assert!(at(&bytes, &[0x40, 6, 0]).is_some(), "ATOMIC_AGGREGATE: {bytes:02x?}");
    let read = |bytes: &[u8]| {
        let received = decode_message(bytes, &two_octet).expect("decodes").expect("kept");
        assert!(received.update_errors.is_empty(), "{:?}", received.update_errors);
        let Message::Update(update) = received.message else {
            panic!("not an UPDATE");
        };
        let routes = read_update(&update);
        let attributes = routes.advertised[0].1.clone();
        (attributes.aggregator, attributes.as_path.asns())
    };
    assert_eq!(read(&bytes), (Some(aggregator), vec![65001, 4_200_000_002]));

    // A 2-octet speaker's own aggregate over it: AGGREGATOR 65010.
    let position = at(&bytes, &as_trans_aggregator).expect("found");
    bytes[position + 3..position + 5].copy_from_slice(&65010u16.to_be_bytes());
    let (merged, path) = read(&bytes);
    assert_eq!(merged.map(|a| a.asn), Some(65010), "AS4_AGGREGATOR ignored");
    assert_eq!(path, vec![65001, u32::from(AS_TRANS)], "AS4_PATH ignored");

    // To a 4-octet speaker: AGGREGATOR with four octets, nothing else.
    let update = advertisements(&prefixes, &sent, FOUR_OCTET)
        .into_iter()
        .next()
        .expect("one UPDATE");
    let bytes = encode(&Message::Update(update), &context()).expect("encodes");
    assert!(
        at(&bytes, &[0xc0, 7, 8, 0xfa, 0x56, 0xea, 0x02, 198, 19, 0, 9]).is_some(),
        "{bytes:02x?}"
    );
    assert!(at(&bytes, &[0xc0, 18]).is_none(), "no AS4_AGGREGATOR");
    assert_eq!(
        round_trip(update_of(&bytes)).advertised[0].1.aggregator,
        Some(aggregator)
    );
    // A 2-octet aggregator AS to a 2-octet speaker: no AS4_AGGREGATOR either.
    let small = PathAttributes {
        aggregator: Some(Aggregator {
            asn: 65010,
            ..aggregator
        }),
        ..attributes("198.19.0.1")
    };
    let update = advertisements(&prefixes, &small, UpdateEncoding::default())
        .into_iter()
        .next()
        .expect("one UPDATE");
    let bytes = encode(&Message::Update(update), &two_octet).expect("encodes");
    assert!(
        at(&bytes, &[0xc0, 7, 6, 0xfd, 0xf2, 198, 19, 0, 9]).is_some(),
        "{bytes:02x?}"
    );
    assert!(at(&bytes, &[0xc0, 18]).is_none(), "no AS4_AGGREGATOR");
}

fn update_of(bytes: &[u8]) -> BgpUpdateMessage {
    let received = decode_message(bytes, &context()).expect("decodes").expect("kept");
    let Message::Update(update) = received.message else {
        panic!("not an UPDATE");
    };
    update
}

#[test]
fn as4_path_fills_in_as_trans_and_is_ignored_when_longer() {
    let seq = |asns: &[u32]| AsPath(vec![AsPathSegment::Sequence(asns.to_vec())]);
    let as_trans = u32::from(AS_TRANS);
    assert_eq!(
        merge_as4_path(
            &seq(&[65001, as_trans, as_trans]),
            &seq(&[4_200_000_002, 4_200_000_003])
        )
        .0,
        seq(&[65001, 4_200_000_002, 4_200_000_003]).0
    );
    // A prepended 2-octet AS the old speaker added in front stays in front.
    assert_eq!(
        merge_as4_path(&seq(&[65002, 65001, as_trans]), &seq(&[4_200_000_002])).asns(),
        vec![65002, 65001, 4_200_000_002]
    );
    let longer = seq(&[1, 2, 3]);
    assert_eq!(merge_as4_path(&seq(&[as_trans]), &longer), seq(&[as_trans]));
}

#[test]
fn ipv4_advertisement_reads_back_as_sent() {
    let prefixes: Vec<Prefix> = vec![
        "198.18.1.0/26".parse().expect("prefix"),
        "198.18.2.0/24".parse().expect("p"),
    ];
    let updates = advertisements(&prefixes, &attributes("198.19.0.2"), FOUR_OCTET);
    assert_eq!(updates.len(), 1);
    let routes = round_trip(updates[0].clone());
    assert!(routes.withdrawn.is_empty());
    let got: Vec<_> = routes.advertised.iter().map(|(p, a)| (*p, (**a).clone())).collect();
    assert_eq!(
        got,
        prefixes
            .iter()
            .map(|p| (*p, attributes("198.19.0.2")))
            .collect::<Vec<_>>()
    );
}

#[test]
fn ipv6_advertisement_and_withdrawal_read_back_as_sent() {
    let prefixes: Vec<Prefix> = vec!["2001:db8:1::/64".parse().expect("prefix")];
    let updates = advertisements(&prefixes, &attributes("2001:db8::2"), FOUR_OCTET);
    let routes = round_trip(updates[0].clone());
    assert_eq!(routes.advertised.len(), 1);
    assert_eq!(
        routes.advertised[0].1.next_hop,
        "2001:db8::2".parse::<IpAddr>().expect("address")
    );
    let mixed: Vec<Prefix> = vec![prefixes[0], "198.18.1.0/26".parse().expect("prefix")];
    let mut withdrawn: Vec<Prefix> = withdrawals(&mixed, FOUR_OCTET)
        .into_iter()
        .flat_map(|u| round_trip(u).withdrawn)
        .collect();
    withdrawn.sort();
    let mut expected = mixed.clone();
    expected.sort();
    assert_eq!(withdrawn, expected);
}

fn many_v4_prefixes() -> Vec<Prefix> {
    (0..=255u8)
        .flat_map(|a| (0..8u8).map(move |b| format!("198.18.{a}.{}/29", b * 8)))
        .map(|text| text.parse().expect("prefix"))
        .collect()
}

/// Encodes every UPDATE under `context`, and returns the prefixes they advertise and the
/// length of each.
fn encoded(updates: Vec<BgpUpdateMessage>, context: &CodecContext) -> (Vec<Prefix>, Vec<usize>) {
    let mut prefixes = Vec::new();
    let mut lengths = Vec::new();
    for update in updates {
        let bytes = encode(&Message::Update(update), context).expect("fits the limit");
        lengths.push(bytes.len());
        let received = decode_message(&bytes, context).expect("decodes").expect("kept");
        let Message::Update(update) = received.message else {
            panic!("not an UPDATE");
        };
        let routes = read_update(&update);
        prefixes.extend(routes.advertised.into_iter().map(|(p, _)| p));
        prefixes.extend(routes.withdrawn);
    }
    (prefixes, lengths)
}

#[test]
fn many_prefixes_fill_messages_of_at_most_4096_octets() {
    let prefixes = many_v4_prefixes();
    let updates = advertisements(&prefixes, &attributes("198.19.0.2"), FOUR_OCTET);
    let (sent, lengths) = encoded(updates, &context());
    assert_eq!(sent, prefixes);
    // 2048 prefixes of 5 octets: 10240 octets of NLRI, three messages, all but the last
    // within a prefix of the limit.
    assert_eq!(lengths.len(), 3, "{lengths:?}");
    assert!(lengths[..2].iter().all(|&l| l > 4096 - 5 && l <= 4096), "{lengths:?}");
    let (withdrawn, lengths) = encoded(withdrawals(&prefixes, FOUR_OCTET), &context());
    assert_eq!(withdrawn, prefixes);
    assert_eq!(lengths.len(), 3, "{lengths:?}");
}

#[test]
fn many_ipv6_prefixes_fill_messages_with_an_extended_length_mp_reach() {
    let prefixes: Vec<Prefix> = (0..600u32)
        .map(|i| {
            format!("2001:db8:{:x}:{:x}::/64", i / 256, i % 256)
                .parse()
                .expect("prefix")
        })
        .collect();
    let updates = advertisements(&prefixes, &attributes("2001:db8::2"), FOUR_OCTET);
    let (sent, lengths) = encoded(updates, &context());
    assert_eq!(sent, prefixes);
    // 600 prefixes of 9 octets: 5400 octets, two messages.
    assert_eq!(lengths.len(), 2, "{lengths:?}");
    let (withdrawn, _) = encoded(withdrawals(&prefixes, FOUR_OCTET), &context());
    assert_eq!(withdrawn, prefixes);
}

#[test]
fn with_extended_messages_one_update_carries_what_needs_three_without() {
    let prefixes = many_v4_prefixes();
    let extended = UpdateEncoding {
        extended_messages: true,
        ..FOUR_OCTET
    };
    let context = CodecContext {
        extended_messages: true,
        ..context()
    };
    let (sent, lengths) = encoded(advertisements(&prefixes, &attributes("198.19.0.2"), extended), &context);
    assert_eq!(sent, prefixes);
    assert_eq!(lengths.len(), 1, "{lengths:?}");
    assert!(lengths[0] > 10_240, "{lengths:?}");
    let (withdrawn, lengths) = encoded(withdrawals(&prefixes, extended), &context);
    assert_eq!((withdrawn, lengths.len()), (prefixes, 1));
}

#[test]
fn an_update_over_4096_octets_is_taken_only_when_extended_messages_were_negotiated() {
    let extended = CodecContext {
        extended_messages: true,
        ..context()
    };
    let encoding = UpdateEncoding {
        extended_messages: true,
        ..FOUR_OCTET
    };
    let update = advertisements(&many_v4_prefixes(), &attributes("198.19.0.2"), encoding)
        .into_iter()
        .next()
        .expect("one UPDATE");
    let message = Message::Update(update);
    assert!(encode(&message, &context()).is_err(), "not sent without the capability");
    let bytes = encode(&message, &extended).expect("encodes");
    let length = u16::try_from(bytes.len()).expect("at most 65535");
    assert!(length > 4096);
    // RFC 8654 §4 / RFC 4271 §6.1: Message Header Error, Bad Message Length, the length as data.
    let error = decode_message(&bytes, &context()).expect_err("too long");
    assert_eq!(
        error.notification(),
        crate::Notification::message_header(
            crate::notification::header::BAD_MESSAGE_LENGTH,
            length.to_be_bytes().to_vec()
        )
    );
    assert_eq!((error.notification().code, error.notification().subcode), (1, 2));
    let received = decode_message(&bytes, &extended).expect("decodes").expect("kept");
    let Message::Update(update) = received.message else {
        panic!("not an UPDATE");
    };
    assert_eq!(read_update(&update).advertised.len(), 2048);
}

#[test]
fn ipv4_routes_with_an_ipv6_next_hop_go_in_mp_reach_afi_1() {
    let prefixes: Vec<Prefix> = vec![
        "198.18.1.0/26".parse().expect("prefix"),
        "2001:db8:1::/64".parse().expect("prefix"),
    ];
    let updates = advertisements(&prefixes, &attributes("2001:db8:ff::2"), FOUR_OCTET);
    assert_eq!(updates.len(), 2, "one UPDATE per family");
    let ipv4 = updates
        .iter()
        .find_map(|u| {
            u.path_attributes().iter().find_map(|a| match a.value() {
                PathAttributeValue::MpReach(MpReach::Ipv4Unicast { next_hop, nlri, .. }) => {
                    Some((*next_hop, nlri.len()))
                }
                _ => None,
            })
        })
        .expect("an MP_REACH_NLRI for IPv4 unicast");
    assert_eq!(ipv4, ("2001:db8:ff::2".parse().expect("address"), 1));
    let mut got: Vec<(Prefix, IpAddr)> = updates
        .into_iter()
        .flat_map(|u| round_trip(u).advertised)
        .map(|(p, a)| (p, a.next_hop))
        .collect();
    got.sort();
    let next_hop: IpAddr = "2001:db8:ff::2".parse().expect("address");
    assert_eq!(got, vec![(prefixes[0], next_hop), (prefixes[1], next_hop)]);
}

/// RFC 8950 §3 as FRR sends it: MP_REACH_NLRI AFI 1 SAFI 1, a 32-octet next hop (global and
/// link-local), one IPv4 prefix. And an IPv4-mapped next hop.
#[test]
fn ipv4_routes_with_an_ipv6_next_hop_are_read_and_a_mapped_one_is_ipv4() {
    let read = |next_hop: &[u8]| {
        let mut bytes = vec![0xff; 16];
        let mut attributes = vec![0x40, 1, 1, 0]; // ORIGIN IGP
        attributes.extend([0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8]); // AS_PATH 65000
        let mut reach = vec![0, 1, 1, u8::try_from(next_hop.len()).expect("short")];
        reach.extend_from_slice(next_hop);
        reach.extend([0, 24, 198, 18, 100]); // reserved, 198.18.100.0/24
        attributes.extend([0x80, 14, u8::try_from(reach.len()).expect("short")]);
        attributes.extend(reach);
        let length = 19 + 2 + 2 + attributes.len();
        bytes.extend(u16::try_from(length).expect("short").to_be_bytes());
        bytes.push(2);
        bytes.extend([0, 0]);
        bytes.extend(u16::try_from(attributes.len()).expect("short").to_be_bytes());
        bytes.extend(attributes);
        let received = decode_message(&bytes, &context()).expect("decodes").expect("kept");
        assert!(received.update_errors.is_empty(), "{:?}", received.update_errors);
        let Message::Update(update) = received.message else {
            panic!("not an UPDATE");
        };
        let routes = read_update(&update);
        assert_eq!(routes.advertised.len(), 1, "{routes:?}");
        assert_eq!(
            routes.advertised[0].0,
            "198.18.100.0/24".parse::<Prefix>().expect("prefix")
        );
        routes.advertised[0].1.next_hop
    };
    let global: std::net::Ipv6Addr = "2001:db8:ff::1".parse().expect("address");
    let link_local: std::net::Ipv6Addr = "fe80::1".parse().expect("address");
    let both: Vec<u8> = global.octets().into_iter().chain(link_local.octets()).collect();
    assert_eq!(read(&both), IpAddr::V6(global));
    assert_eq!(read(&global.octets()), IpAddr::V6(global));
    let mapped: std::net::Ipv6Addr = "::ffff:198.19.0.1".parse().expect("address");
    assert_eq!(read(&mapped.octets()), "198.19.0.1".parse::<IpAddr>().expect("address"));
}

#[test]
fn end_of_rib_reads_as_an_empty_update() {
    for family in [AddressType::Ipv4Unicast, AddressType::Ipv6Unicast] {
        let marker = end_of_rib(family).expect("carried family");
        assert_eq!(end_of_rib_family(&marker), Some(family));
    }
    for family in [AddressType::Ipv4Unicast, AddressType::Ipv6Unicast] {
        let marker = end_of_rib(family).expect("carried family");
        assert!(round_trip(marker).is_empty());
    }
}

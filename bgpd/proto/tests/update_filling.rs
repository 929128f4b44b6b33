//! Property: however many prefixes of whatever lengths, with however many communities, the
//! UPDATEs built for them each fit the negotiated limit (4096 octets, or 65535 with RFC 8654
//! extended messages), and decoded they give back exactly the prefixes and attributes sent —
//! for IPv4 with an IPv4 next hop, IPv6, and IPv4 with an IPv6 next hop (RFC 8950).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use weft_bgp_proto::codec::{CodecContext, Message, decode_message, encode};
use weft_bgp_proto::route::{Aggregator, AsPath, Origin};
use weft_bgp_proto::update::{UpdateEncoding, advertisements, read_update, withdrawals};
use weft_bgp_proto::{PathAttributes, Prefix};

/// Prefixes of the test plan only (198.18.0.0/15, 2001:db8::/32), of every length inside them.
fn prefixes() -> impl Strategy<Value = BTreeSet<Prefix>> {
    let v4 = (0u32..1 << 17, 15u8..=32).prop_map(|(host, length)| {
        let address = u32::from(Ipv4Addr::new(198, 18, 0, 0)) | host;
        IpNet::V4(Ipv4Net::new(Ipv4Addr::from(address), length).expect("length").trunc())
    });
    let v6 = (any::<u128>(), 32u8..=128).prop_map(|(host, length)| {
        let address = u128::from("2001:db8::".parse::<Ipv6Addr>().expect("address")) | (host >> 32);
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(address), length).expect("length").trunc())
    });
    prop::collection::btree_set(prop_oneof![v4, v6], 1..3000)
}

fn attributes() -> impl Strategy<Value = PathAttributes> {
    (
        prop::collection::vec(any::<u32>(), 0..300),
        prop::collection::vec(1u32..4_200_000_000, 1..20),
        any::<bool>(),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(communities, asns, ipv6_next_hop, aggregator)| PathAttributes {
            origin: Origin::Igp,
            as_path: asns
                .iter()
                .rev()
                .fold(AsPath::default(), |path, &asn| path.prepend(asn)),
            next_hop: if ipv6_next_hop {
                IpAddr::V6("2001:db8:ff::2".parse().expect("address"))
            } else {
                IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2))
            },
            med: None,
            local_pref: None,
            communities,
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            aggregator: aggregator.map(|asn| Aggregator {
                asn,
                address: Ipv4Addr::new(198, 19, 0, 9),
            }),
            atomic_aggregate: aggregator.is_some(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn updates_fit_the_limit_and_carry_exactly_what_was_sent(
        prefixes in prefixes(),
        attributes in attributes(),
        extended_messages in any::<bool>(),
        four_octet_as in any::<bool>(),
    ) {
        let encoding = UpdateEncoding { four_octet_as, extended_messages };
        let context = CodecContext { four_octet_as, extended_messages, ..CodecContext::default() };
        let prefixes: Vec<Prefix> = prefixes.into_iter().collect();
        // An IPv4 next hop carries only the IPv4 prefixes; an IPv6 one both families.
        let expected: BTreeSet<Prefix> = prefixes
            .iter()
            .filter(|p| attributes.next_hop.is_ipv6() || p.addr().is_ipv4())
            .copied()
            .collect();
        let mut advertised = BTreeSet::new();
        for update in advertisements(&prefixes, &attributes, encoding) {
            let bytes = encode(&Message::Update(update), &context).expect("fits the limit");
            prop_assert!(bytes.len() <= encoding.max_length());
            let received = decode_message(&bytes, &context).expect("decodes").expect("kept");
            prop_assert!(received.update_errors.is_empty(), "{:?}", received.update_errors);
            let Message::Update(update) = received.message else { panic!("not an UPDATE") };
            for (prefix, read) in read_update(&update).advertised {
                prop_assert_eq!(&*read, &attributes);
                prop_assert!(advertised.insert(prefix), "{} twice", prefix);
            }
        }
        prop_assert_eq!(advertised, expected);
        let mut withdrawn = BTreeSet::new();
        for update in withdrawals(&prefixes, encoding) {
            let bytes = encode(&Message::Update(update), &context).expect("fits the limit");
            let received = decode_message(&bytes, &context).expect("decodes").expect("kept");
            let Message::Update(update) = received.message else { panic!("not an UPDATE") };
            withdrawn.extend(read_update(&update).withdrawn);
        }
        prop_assert_eq!(withdrawn, prefixes.into_iter().collect::<BTreeSet<_>>());
    }
}

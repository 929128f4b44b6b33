//! UPDATE messages ⇄ routes (RFC 4271 §4.3, §5; RFC 4760 §3-4; RFC 4724 §2 End-of-RIB).
//!
//! Owns reading the routes out of a received, already checked UPDATE ([`read_update`]: IPv4
//! NLRI with NEXT_HOP, MP_REACH_NLRI and MP_UNREACH_NLRI for IPv4 and IPv6 unicast) and building
//! the UPDATEs that advertise or withdraw prefixes ([`advertisements`], [`withdrawals`],
//! [`end_of_rib`]). IPv4 unicast is advertised in the classic NLRI field with NEXT_HOP, IPv6
//! unicast in MP_REACH_NLRI with the global next hop only. Messages are cut so each stays well
//! under the 4096-octet limit.
//!
//! Must never: decide which routes to accept or send (the RIB and policy do), or panic on any
//! UPDATE the codec passed. The codec has already applied RFC 7606: a malformed UPDATE arrives
//! rewritten as a withdrawal.
//!
//! Not yet: merging a 2-octet AS_PATH with AS4_PATH (RFC 6793 §4.2.3) for peers without the
//! 4-octet AS capability; such a peer's AS_PATH is read as is.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use netgauze_bgp_pkt::community::{Community, LargeCommunity};
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::{
    As2PathSegment, As4Path, As4PathSegment, AsPath as WireAsPath, AsPathSegmentType, ClusterId, ClusterList,
    Communities, LargeCommunities, LocalPreference, MpReach, MpUnreach, MultiExitDiscriminator, NextHop,
    Origin as WireOrigin, Originator, PathAttribute, PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_iana::address_family::AddressType;

use crate::capabilities::AS_TRANS;
use crate::route::{AsPath, AsPathSegment, Origin, PathAttributes, Prefix};

/// IPv4 prefixes per UPDATE: at most 5 octets each, so 500 stay under 2600 octets of NLRI.
const IPV4_PREFIXES_PER_UPDATE: usize = 500;
/// IPv6 prefixes per UPDATE: at most 17 octets each, so 150 stay under 2600 octets of NLRI.
const IPV6_PREFIXES_PER_UPDATE: usize = 150;

/// The routes one UPDATE carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedRoutes {
    /// Prefixes withdrawn (Withdrawn Routes, MP_UNREACH_NLRI, and NLRI without usable attributes).
    pub withdrawn: Vec<Prefix>,
    /// Prefixes advertised and their attributes, shared per address family.
    pub advertised: Vec<(Prefix, Arc<PathAttributes>)>,
}

impl ReceivedRoutes {
    /// An UPDATE with nothing in it: the End-of-RIB marker of RFC 4724 §2 (IPv4 form) or an
    /// empty MP_UNREACH_NLRI (other families).
    pub fn is_empty(&self) -> bool {
        self.withdrawn.is_empty() && self.advertised.is_empty()
    }
}

/// Reads the IPv4 and IPv6 unicast routes of an UPDATE. Other families are ignored.
pub fn read_update(update: &BgpUpdateMessage) -> ReceivedRoutes {
    let mut origin = None;
    let mut as_path = None;
    let mut next_hop_v4 = None;
    let mut med = None;
    let mut local_pref = None;
    let mut communities = Vec::new();
    let mut large_communities = Vec::new();
    let mut originator_id = None;
    let mut cluster_list = Vec::new();
    let mut two_octet_as_path = false;
    let mut as4_path = None;
    let mut mp_v4: Option<(IpAddr, Vec<Prefix>)> = None;
    let mut mp_v6: Option<(IpAddr, Vec<Prefix>)> = None;
    let mut routes = ReceivedRoutes {
        withdrawn: update
            .withdraw_routes()
            .iter()
            .map(|a| IpNet::V4(a.network().address()))
            .collect(),
        advertised: Vec::new(),
    };
    for attribute in update.path_attributes() {
        match attribute.value() {
            PathAttributeValue::Origin(value) => {
                origin = Some(match value {
                    WireOrigin::IGP => Origin::Igp,
                    WireOrigin::EGP => Origin::Egp,
                    WireOrigin::Incomplete => Origin::Incomplete,
                })
            }
            PathAttributeValue::AsPath(path) => {
                two_octet_as_path = matches!(path, WireAsPath::As2PathSegments(_));
                as_path = Some(read_as_path(path));
            }
            PathAttributeValue::As4Path(path) => {
                as4_path = Some(AsPath(
                    path.segments()
                        .iter()
                        .map(|s| match s.segment_type() {
                            AsPathSegmentType::AsSet => AsPathSegment::Set(s.as_numbers().to_vec()),
                            AsPathSegmentType::AsSequence => AsPathSegment::Sequence(s.as_numbers().to_vec()),
                        })
                        .collect(),
                ));
            }
            PathAttributeValue::NextHop(next_hop) => next_hop_v4 = Some(IpAddr::V4(next_hop.next_hop())),
            PathAttributeValue::MultiExitDiscriminator(value) => med = Some(value.metric()),
            PathAttributeValue::LocalPreference(value) => local_pref = Some(value.metric()),
            PathAttributeValue::Communities(value) => {
                communities = value.communities().iter().map(|c| c.value()).collect();
            }
            PathAttributeValue::LargeCommunities(value) => {
                large_communities = value
                    .communities()
                    .iter()
                    .map(|c| [c.global_admin(), c.local_data1(), c.local_data2()])
                    .collect();
            }
            PathAttributeValue::Originator(value) => originator_id = Some(value.id()),
            PathAttributeValue::ClusterList(value) => {
                cluster_list = value.cluster_list().iter().map(|id| id.id()).collect();
            }
            PathAttributeValue::MpReach(MpReach::Ipv4Unicast { next_hop, nlri, .. }) => {
                let prefixes = nlri.iter().map(|a| IpNet::V4(a.network().address())).collect();
                mp_v4 = Some((*next_hop, prefixes));
            }
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                next_hop_global, nlri, ..
            }) => {
                let prefixes = nlri.iter().map(|a| IpNet::V6(a.network().address())).collect();
                mp_v6 = Some((IpAddr::V6(*next_hop_global), prefixes));
            }
            PathAttributeValue::MpUnreach(MpUnreach::Ipv4Unicast { nlri }) => routes
                .withdrawn
                .extend(nlri.iter().map(|a| IpNet::V4(a.network().address()))),
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => routes
                .withdrawn
                .extend(nlri.iter().map(|a| IpNet::V6(a.network().address()))),
            _ => {}
        }
    }
    // RFC 6793 §4.2.3: from a 2-octet speaker, AS4_PATH carries the true AS numbers that
    // AS_PATH shows as AS_TRANS; from a 4-octet speaker it is ignored (§4.1).
    if two_octet_as_path && let (Some(path), Some(as4_path)) = (as_path.as_mut(), as4_path.as_ref()) {
        *path = merge_as4_path(path, as4_path);
    }
    let nlri: Vec<Prefix> = update.nlri().iter().map(|a| IpNet::V4(a.network().address())).collect();
    let groups = [
        (next_hop_v4, nlri),
        mp_v4.map_or((None, Vec::new()), |(h, p)| (Some(h), p)),
    ]
    .into_iter()
    .chain(mp_v6.map(|(h, p)| (Some(h), p)));
    for (next_hop, prefixes) in groups {
        if prefixes.is_empty() {
            continue;
        }
        match (origin, &as_path, next_hop) {
            (Some(origin), Some(as_path), Some(next_hop)) => {
                let attributes = Arc::new(PathAttributes {
                    origin,
                    as_path: as_path.clone(),
                    next_hop,
                    med,
                    local_pref,
                    communities: communities.clone(),
                    large_communities: large_communities.clone(),
                    originator_id,
                    cluster_list: cluster_list.clone(),
                });
                routes
                    .advertised
                    .extend(prefixes.into_iter().map(|prefix| (prefix, attributes.clone())));
            }
            // RFC 7606 §3 (d): a missing mandatory attribute means treat-as-withdraw.
            _ => routes.withdrawn.extend(prefixes),
        }
    }
    routes
}

fn read_as_path(path: &WireAsPath) -> AsPath {
    fn segment(kind: AsPathSegmentType, asns: Vec<u32>) -> AsPathSegment {
        match kind {
            AsPathSegmentType::AsSet => AsPathSegment::Set(asns),
            AsPathSegmentType::AsSequence => AsPathSegment::Sequence(asns),
        }
    }
    match path {
        WireAsPath::As4PathSegments(segments) => AsPath(
            segments
                .iter()
                .map(|s| segment(s.segment_type(), s.as_numbers().to_vec()))
                .collect(),
        ),
        WireAsPath::As2PathSegments(segments) => AsPath(
            segments
                .iter()
                .map(|s| segment(s.segment_type(), s.as_numbers().iter().map(|&a| u32::from(a)).collect()))
                .collect(),
        ),
    }
}

/// RFC 6793 §4.2.3: the leading AS numbers of `as_path` that AS4_PATH does not cover, then
/// AS4_PATH; `as_path` alone when AS4_PATH is the longer (it is then not to be trusted).
pub fn merge_as4_path(as_path: &AsPath, as4_path: &AsPath) -> AsPath {
    let (total, covered) = (as_path.length(), as4_path.length());
    if total < covered {
        return as_path.clone();
    }
    let mut leading = total - covered;
    let mut segments = Vec::new();
    for segment in &as_path.0 {
        if leading == 0 {
            break;
        }
        match segment {
            AsPathSegment::Sequence(asns) => {
                let take = leading.min(asns.len());
                segments.push(AsPathSegment::Sequence(asns[..take].to_vec()));
                leading -= take;
            }
            AsPathSegment::Set(asns) => {
                segments.push(AsPathSegment::Set(asns.clone()));
                leading -= 1;
            }
        }
    }
    for segment in &as4_path.0 {
        match (segments.last_mut(), segment) {
            (Some(AsPathSegment::Sequence(last)), AsPathSegment::Sequence(asns)) if last.len() + asns.len() <= 255 => {
                last.extend_from_slice(asns);
            }
            _ => segments.push(segment.clone()),
        }
    }
    AsPath(segments)
}

fn write_as_path(path: &AsPath, four_octet_as: bool) -> WireAsPath {
    let parts = path.0.iter().map(|segment| match segment {
        AsPathSegment::Sequence(asns) => (AsPathSegmentType::AsSequence, asns),
        AsPathSegment::Set(asns) => (AsPathSegmentType::AsSet, asns),
    });
    if four_octet_as {
        WireAsPath::As4PathSegments(
            parts
                .map(|(kind, asns)| As4PathSegment::new(kind, asns.clone()))
                .collect(),
        )
    } else {
        // RFC 6793 §4.2.2: AS numbers above 65535 become AS_TRANS (AS4_PATH carries them).
        WireAsPath::As2PathSegments(
            parts
                .map(|(kind, asns)| {
                    let asns: Vec<u16> = asns.iter().map(|&a| u16::try_from(a).unwrap_or(AS_TRANS)).collect();
                    As2PathSegment::new(kind, asns)
                })
                .collect(),
        )
    }
}

fn attribute(optional: bool, transitive: bool, value: PathAttributeValue) -> Option<PathAttribute> {
    // Only flag combinations netgauze accepts for the value are passed; stay total anyway.
    PathAttribute::from(optional, transitive, false, false, value).ok()
}

fn common_attributes(attributes: &PathAttributes, four_octet_as: bool) -> Vec<PathAttribute> {
    let origin = match attributes.origin {
        Origin::Igp => WireOrigin::IGP,
        Origin::Egp => WireOrigin::EGP,
        Origin::Incomplete => WireOrigin::Incomplete,
    };
    let mut list = vec![
        attribute(false, true, PathAttributeValue::Origin(origin)),
        attribute(
            false,
            true,
            PathAttributeValue::AsPath(write_as_path(&attributes.as_path, four_octet_as)),
        ),
    ];
    // RFC 6793 §4.2.2: to a 2-octet speaker, the true path in AS4_PATH when AS_TRANS stands in
    // for some AS number.
    if !four_octet_as && attributes.as_path.asns().iter().any(|&asn| asn > u32::from(u16::MAX)) {
        let segments: Vec<As4PathSegment> = attributes
            .as_path
            .0
            .iter()
            .map(|segment| match segment {
                AsPathSegment::Sequence(asns) => As4PathSegment::new(AsPathSegmentType::AsSequence, asns.clone()),
                AsPathSegment::Set(asns) => As4PathSegment::new(AsPathSegmentType::AsSet, asns.clone()),
            })
            .collect();
        list.push(attribute(
            true,
            true,
            PathAttributeValue::As4Path(As4Path::new(segments)),
        ));
    }
    if let Some(med) = attributes.med {
        list.push(attribute(
            true,
            false,
            PathAttributeValue::MultiExitDiscriminator(MultiExitDiscriminator::new(med)),
        ));
    }
    if let Some(local_pref) = attributes.local_pref {
        list.push(attribute(
            false,
            true,
            PathAttributeValue::LocalPreference(LocalPreference::new(local_pref)),
        ));
    }
    if !attributes.communities.is_empty() {
        let communities: Vec<Community> = attributes.communities.iter().map(|&c| Community::new(c)).collect();
        list.push(attribute(
            true,
            true,
            PathAttributeValue::Communities(Communities::new(communities)),
        ));
    }
    if !attributes.large_communities.is_empty() {
        let communities: Vec<LargeCommunity> = attributes
            .large_communities
            .iter()
            .map(|&[global, one, two]| LargeCommunity::new(global, one, two))
            .collect();
        list.push(attribute(
            true,
            true,
            PathAttributeValue::LargeCommunities(LargeCommunities::new(communities)),
        ));
    }
    // RFC 4456 §8: optional, non-transitive.
    if let Some(originator_id) = attributes.originator_id {
        list.push(attribute(
            true,
            false,
            PathAttributeValue::Originator(Originator::new(originator_id)),
        ));
    }
    if !attributes.cluster_list.is_empty() {
        let ids: Vec<ClusterId> = attributes.cluster_list.iter().map(|&id| ClusterId::new(id)).collect();
        list.push(attribute(
            true,
            false,
            PathAttributeValue::ClusterList(ClusterList::new(ids)),
        ));
    }
    list.into_iter().flatten().collect()
}

fn ipv4_addresses(prefixes: &[Prefix]) -> Vec<Ipv4UnicastAddress> {
    prefixes
        .iter()
        .filter_map(|prefix| match prefix {
            IpNet::V4(net) => Ipv4Unicast::from_net(*net).ok().map(Ipv4UnicastAddress::new_no_path_id),
            IpNet::V6(_) => None,
        })
        .collect()
}

fn ipv6_addresses(prefixes: &[Prefix]) -> Vec<Ipv6UnicastAddress> {
    prefixes
        .iter()
        .filter_map(|prefix| match prefix {
            IpNet::V6(net) => Ipv6Unicast::from_net(*net)
                .ok()
                .map(|n| Ipv6UnicastAddress::new(None, n)),
            IpNet::V4(_) => None,
        })
        .collect()
}

/// UPDATEs advertising `prefixes` with `attributes`. The next hop of `attributes` must be of
/// the prefixes' family; prefixes of the other family are left out.
pub fn advertisements(prefixes: &[Prefix], attributes: &PathAttributes, four_octet_as: bool) -> Vec<BgpUpdateMessage> {
    let common = common_attributes(attributes, four_octet_as);
    match attributes.next_hop {
        IpAddr::V4(next_hop) => ipv4_addresses(prefixes)
            .chunks(IPV4_PREFIXES_PER_UPDATE)
            .map(|chunk| {
                let mut list = common.clone();
                list.extend(attribute(
                    false,
                    true,
                    PathAttributeValue::NextHop(NextHop::new(next_hop)),
                ));
                BgpUpdateMessage::new(vec![], list, chunk.to_vec())
            })
            .collect(),
        IpAddr::V6(next_hop) => ipv6_addresses(prefixes)
            .chunks(IPV6_PREFIXES_PER_UPDATE)
            .map(|chunk| {
                let mut list = common.clone();
                list.extend(attribute(
                    true,
                    false,
                    PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                        next_hop_global: next_hop,
                        next_hop_local: None,
                        nlri: chunk.to_vec().into(),
                    }),
                ));
                BgpUpdateMessage::new(vec![], list, vec![])
            })
            .collect(),
    }
}

/// UPDATEs withdrawing `prefixes`: IPv4 in Withdrawn Routes, IPv6 in MP_UNREACH_NLRI.
pub fn withdrawals(prefixes: &[Prefix]) -> Vec<BgpUpdateMessage> {
    let v4 = ipv4_addresses(prefixes);
    let v6 = ipv6_addresses(prefixes);
    let mut updates: Vec<BgpUpdateMessage> = v4
        .chunks(IPV4_PREFIXES_PER_UPDATE)
        .map(|chunk| BgpUpdateMessage::new(chunk.to_vec(), vec![], vec![]))
        .collect();
    updates.extend(v6.chunks(IPV6_PREFIXES_PER_UPDATE).map(|chunk| {
        let unreach = attribute(
            true,
            false,
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                nlri: chunk.to_vec().into(),
            }),
        );
        BgpUpdateMessage::new(vec![], unreach.into_iter().collect::<Vec<_>>(), vec![])
    }));
    updates
}

/// The End-of-RIB marker for a family (RFC 4724 §2), or `None` for a family weft does not carry.
pub fn end_of_rib(family: AddressType) -> Option<BgpUpdateMessage> {
    match family {
        AddressType::Ipv4Unicast => Some(BgpUpdateMessage::new(vec![], vec![], vec![])),
        AddressType::Ipv6Unicast => {
            let unreach = attribute(
                true,
                false,
                PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                    nlri: Vec::new().into(),
                }),
            )?;
            Some(BgpUpdateMessage::new(vec![], vec![unreach], vec![]))
        }
        _ => None,
    }
}

/// The family whose End-of-RIB marker `update` is (RFC 4724 §2): an UPDATE with nothing in it
/// for IPv4 unicast, one with only an empty MP_UNREACH_NLRI for other families.
pub fn end_of_rib_family(update: &BgpUpdateMessage) -> Option<AddressType> {
    if !update.withdraw_routes().is_empty() || !update.nlri().is_empty() {
        return None;
    }
    match update.path_attributes() {
        [] => Some(AddressType::Ipv4Unicast),
        [only] => match only.value() {
            PathAttributeValue::MpUnreach(MpUnreach::Ipv4Unicast { nlri }) if nlri.is_empty() => {
                Some(AddressType::Ipv4Unicast)
            }
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) if nlri.is_empty() => {
                Some(AddressType::Ipv6Unicast)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The family of a prefix.
pub fn family_of(prefix: &Prefix) -> AddressType {
    match prefix {
        IpNet::V4(_) => AddressType::Ipv4Unicast,
        IpNet::V6(_) => AddressType::Ipv6Unicast,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CodecContext, Message, decode_message, encode};

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
        let update = advertisements(&prefixes, &sent, true)
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
        let update = advertisements(&prefixes, &sent, false)
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
            PathAttributeValue::AsPath(WireAsPath::As2PathSegments(segments)) => {
                Some(segments[0].as_numbers().to_vec())
            }
            _ => None,
        });
        assert_eq!(wire_path, Some(vec![65001, AS_TRANS]), "AS_TRANS on the wire");
        assert_eq!(
            read_update(&update).advertised[0].1.as_path.asns(),
            vec![65001, 4_200_000_002]
        );
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
        let updates = advertisements(&prefixes, &attributes("198.19.0.2"), true);
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
        let updates = advertisements(&prefixes, &attributes("2001:db8::2"), true);
        let routes = round_trip(updates[0].clone());
        assert_eq!(routes.advertised.len(), 1);
        assert_eq!(
            routes.advertised[0].1.next_hop,
            "2001:db8::2".parse::<IpAddr>().expect("address")
        );
        let mixed: Vec<Prefix> = vec![prefixes[0], "198.18.1.0/26".parse().expect("prefix")];
        let mut withdrawn: Vec<Prefix> = withdrawals(&mixed)
            .into_iter()
            .flat_map(|u| round_trip(u).withdrawn)
            .collect();
        withdrawn.sort();
        let mut expected = mixed.clone();
        expected.sort();
        assert_eq!(withdrawn, expected);
    }

    #[test]
    fn many_prefixes_are_cut_into_messages_that_encode() {
        let prefixes: Vec<Prefix> = (0..=255u8)
            .flat_map(|a| (0..8u8).map(move |b| format!("198.18.{a}.{}/29", b * 8)))
            .map(|text| text.parse().expect("prefix"))
            .collect();
        let updates = advertisements(&prefixes, &attributes("198.19.0.2"), true);
        assert_eq!(updates.len(), prefixes.len().div_ceil(IPV4_PREFIXES_PER_UPDATE));
        for update in updates {
            encode(&Message::Update(update), &context()).expect("fits in 4096 octets");
        }
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
}

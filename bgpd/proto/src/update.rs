//! UPDATE messages ⇄ routes (RFC 4271 §4.3, §5; RFC 4760 §3-4; RFC 4724 §2 End-of-RIB).
//!
//! Owns reading the routes out of a received, already checked UPDATE ([`read_update`]: IPv4
//! NLRI with NEXT_HOP, MP_REACH_NLRI and MP_UNREACH_NLRI for IPv4 and IPv6 unicast) and building
//! the UPDATEs that advertise or withdraw prefixes ([`advertisements`], [`withdrawals`],
//! [`end_of_rib`]). IPv4 unicast is advertised in the classic NLRI field with NEXT_HOP, IPv6
//! unicast in MP_REACH_NLRI with the global next hop only, and IPv4 unicast with an IPv6 next
//! hop (RFC 8950 §3, extended next hop) in MP_REACH_NLRI AFI 1 with a 16-octet next hop. A
//! received IPv4-mapped IPv6 next hop (`::ffff:a.b.c.d`, which some speakers write for IPv4
//! routes) is read as the IPv4 address it maps. Messages are filled up to the session's limit
//! ([`UpdateEncoding`]: 4096 octets, or 65535 with RFC 8654 extended messages), counting the
//! octets of the attributes and of each prefix.
//!
//! Must never: decide which routes to accept or send (the RIB and policy do), or panic on any
//! UPDATE the codec passed. The codec has already applied RFC 7606: a malformed UPDATE arrives
//! rewritten as a withdrawal.
//!
//! RFC 6793 with a 2-octet speaker: AS_PATH and AGGREGATOR are written with AS_TRANS for AS
//! numbers above 65535, followed by AS4_PATH and AS4_AGGREGATOR with the true ones; on receipt
//! those are merged back (§4.2.3), unless AGGREGATOR holds another AS than AS_TRANS.
//!
//! ATOMIC_AGGREGATE is read and passed on (RFC 4271 §5.1.6).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use netgauze_bgp_pkt::community::{Community, LargeCommunity};
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::{
    Aggregator as WireAggregator, As2Aggregator, As2PathSegment, As4Aggregator, As4Path, As4PathSegment,
    AsPath as WireAsPath, AsPathSegmentType, AtomicAggregate, ClusterId, ClusterList, Communities, LargeCommunities,
    LocalPreference, MpReach, MpUnreach, MultiExitDiscriminator, NextHop, Origin as WireOrigin, Originator,
    PathAttribute, PathAttributeValue, UnknownAttribute,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::WritablePdu;

use crate::capabilities::AS_TRANS;
use crate::error_handling::attribute as attribute_type;
use crate::framing::MessageType;
use crate::route::{Aggregator, AsPath, AsPathSegment, Origin, PathAttributes, Prefix};

/// Octets of an UPDATE around its attributes and NLRI: the header (19), Withdrawn Routes
/// Length (2) and Total Path Attribute Length (2) (RFC 4271 §4.3).
const UPDATE_FIXED_OCTETS: usize = 23;
/// Octets of a NEXT_HOP attribute: flags, type, length, the address.
const NEXT_HOP_OCTETS: usize = 7;
/// Octets of an MP_REACH_NLRI attribute before its next hop and NLRI, counted with the extended
/// length: flags, type, length (2), AFI, SAFI, next hop length; and the reserved octet after
/// the next hop (RFC 4760 §3).
const MP_REACH_OCTETS: usize = 4 + 4 + 1;
/// Octets of an MP_UNREACH_NLRI attribute before its NLRI (extended length), RFC 4760 §4.
const MP_UNREACH_OCTETS: usize = 4 + 3;

/// How UPDATEs are written on one session: what both OPENs negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateEncoding {
    /// AS_PATH with 4-octet AS numbers (RFC 6793); otherwise AS_TRANS and AS4_PATH.
    pub four_octet_as: bool,
    /// Messages up to 65535 octets (RFC 8654) instead of 4096.
    pub extended_messages: bool,
}

impl UpdateEncoding {
    /// 4-octet AS numbers, messages up to 4096 octets: what most sessions negotiate.
    pub const FOUR_OCTET_AS: Self = Self {
        four_octet_as: true,
        extended_messages: false,
    };

    /// The largest UPDATE the peer takes, header included.
    pub const fn max_length(self) -> usize {
        let (_, max) = MessageType::Update.length_bounds(self.extended_messages);
        max as usize
    }
}

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
    let mut aggregator = None;
    let mut two_octet_aggregator = false;
    let mut as4_aggregator = None;
    let mut atomic_aggregate = false;
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
            PathAttributeValue::AtomicAggregate(_) => atomic_aggregate = true,
            PathAttributeValue::Aggregator(WireAggregator::As2Aggregator(value)) => {
                two_octet_aggregator = true;
                aggregator = Some(Aggregator {
                    asn: u32::from(*value.asn()),
                    address: value.origin(),
                });
            }
            PathAttributeValue::Aggregator(WireAggregator::As4Aggregator(value)) => {
                aggregator = Some(Aggregator {
                    asn: *value.asn(),
                    address: value.origin(),
                });
            }
            // netgauze has no type for AS4_AGGREGATOR; the codec checked its 8 octets.
            PathAttributeValue::UnknownAttribute(value) if value.code() == attribute_type::AS4_AGGREGATOR => {
                as4_aggregator = read_as4_aggregator(value.value());
            }
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
                mp_v4 = Some((ipv4_route_next_hop(*next_hop), prefixes));
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
    // RFC 6793 §4.2.3: from a 2-octet speaker, AS4_PATH and AS4_AGGREGATOR carry the true AS
    // numbers that AS_PATH and AGGREGATOR show as AS_TRANS; from a 4-octet speaker they are
    // ignored (§4.1). An AGGREGATOR with another AS than AS_TRANS means a 2-octet speaker
    // aggregated after the 4-octet attributes were written: both are ignored.
    let as4_trusted = match aggregator {
        Some(found) if two_octet_aggregator => found.asn == u32::from(AS_TRANS),
        _ => true,
    };
    if two_octet_aggregator
        && as4_trusted
        && let (Some(found), Some(true_aggregator)) = (aggregator.as_mut(), as4_aggregator)
    {
        *found = true_aggregator;
    }
    if two_octet_as_path
        && as4_trusted
        && let (Some(path), Some(as4_path)) = (as_path.as_mut(), as4_path.as_ref())
    {
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
                    aggregator,
                    atomic_aggregate,
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

/// The next hop of an IPv4 route from MP_REACH_NLRI: an IPv6 address (RFC 8950), or the IPv4
/// address an IPv4-mapped one (`::ffff:a.b.c.d`) stands for.
fn ipv4_route_next_hop(next_hop: IpAddr) -> IpAddr {
    match next_hop {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(next_hop, IpAddr::V4),
        IpAddr::V4(_) => next_hop,
    }
}

/// AS4_AGGREGATOR's value (RFC 6793 §3): a 4-octet AS and a BGP Identifier.
fn read_as4_aggregator(value: &[u8]) -> Option<Aggregator> {
    let [a, b, c, d, e, f, g, h] = *value else {
        return None;
    };
    Some(Aggregator {
        asn: u32::from_be_bytes([a, b, c, d]),
        address: std::net::Ipv4Addr::new(e, f, g, h),
    })
}

/// AGGREGATOR as the peer reads it: 4-octet, or 2-octet with AS_TRANS standing in for an AS
/// above 65535, followed then by AS4_AGGREGATOR with the true one (RFC 6793 §4.2.2).
fn write_aggregator(aggregator: Aggregator, four_octet_as: bool) -> Vec<Option<PathAttribute>> {
    let Aggregator { asn, address } = aggregator;
    if four_octet_as {
        let value = WireAggregator::As4Aggregator(As4Aggregator::new(asn, address));
        return vec![attribute(true, true, PathAttributeValue::Aggregator(value))];
    }
    let two_octet = u16::try_from(asn).ok();
    let value = WireAggregator::As2Aggregator(As2Aggregator::new(two_octet.unwrap_or(AS_TRANS), address));
    let mut list = vec![attribute(true, true, PathAttributeValue::Aggregator(value))];
    if two_octet.is_none() {
        let mut octets = asn.to_be_bytes().to_vec();
        octets.extend(address.octets());
        let as4 = UnknownAttribute::new(attribute_type::AS4_AGGREGATOR, octets);
        list.push(attribute(true, true, PathAttributeValue::UnknownAttribute(as4)));
    }
    list
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
    let short = PathAttribute::from(optional, transitive, false, false, value).ok()?;
    // RFC 4271 §4.3: a value longer than 255 octets needs the Extended Length flag (and
    // netgauze writes two length octets without setting it).
    if short.len() <= 3 + usize::from(u8::MAX) {
        return Some(short);
    }
    PathAttribute::from(optional, transitive, false, true, short.value().clone()).ok()
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
    if attributes.atomic_aggregate {
        list.push(attribute(
            false,
            true,
            PathAttributeValue::AtomicAggregate(AtomicAggregate),
        ));
    }
    if let Some(aggregator) = attributes.aggregator {
        list.extend(write_aggregator(aggregator, four_octet_as));
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

/// Octets of one prefix in NLRI (RFC 4271 §4.3): its length octet and its significant octets.
fn nlri_octets(prefix: &Prefix) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

/// Cuts `prefixes` into runs of at most `room` octets of NLRI each (at least one prefix per run,
/// so a run may be too long only when the attributes alone nearly fill a message).
fn cut(prefixes: &[Prefix], room: usize) -> Vec<&[Prefix]> {
    let mut runs = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, prefix) in prefixes.iter().enumerate() {
        let octets = nlri_octets(prefix);
        if i > start && used + octets > room {
            runs.push(&prefixes[start..i]);
            (start, used) = (i, 0);
        }
        used += octets;
    }
    if start < prefixes.len() {
        runs.push(&prefixes[start..]);
    }
    runs
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

fn of_family(prefixes: &[Prefix], v4: bool) -> Vec<Prefix> {
    prefixes.iter().filter(|p| p.addr().is_ipv4() == v4).copied().collect()
}

/// UPDATEs advertising `prefixes` with `attributes`, each as full as `encoding` allows.
///
/// With an IPv4 next hop only the IPv4 prefixes are sent (classic NLRI and NEXT_HOP). With an
/// IPv6 next hop the IPv6 prefixes go in MP_REACH_NLRI AFI 2 and the IPv4 ones in MP_REACH_NLRI
/// AFI 1 (RFC 8950 §3): the caller passes IPv4 prefixes with an IPv6 next hop only on a session
/// that negotiated the extended next hop capability for IPv4 unicast.
pub fn advertisements(
    prefixes: &[Prefix],
    attributes: &PathAttributes,
    encoding: UpdateEncoding,
) -> Vec<BgpUpdateMessage> {
    let common = common_attributes(attributes, encoding.four_octet_as);
    let common_octets: usize = common.iter().map(WritablePdu::len).sum();
    let room = encoding
        .max_length()
        .saturating_sub(UPDATE_FIXED_OCTETS + common_octets);
    let with = |reach: PathAttributeValue, optional: bool| {
        let mut list = common.clone();
        list.extend(attribute(optional, !optional, reach));
        list
    };
    match attributes.next_hop {
        IpAddr::V4(next_hop) => {
            let v4 = of_family(prefixes, true);
            cut(&v4, room.saturating_sub(NEXT_HOP_OCTETS))
                .into_iter()
                .map(|run| {
                    let list = with(PathAttributeValue::NextHop(NextHop::new(next_hop)), false);
                    BgpUpdateMessage::new(vec![], list, ipv4_addresses(run))
                })
                .collect()
        }
        IpAddr::V6(next_hop) => {
            let room = room.saturating_sub(MP_REACH_OCTETS + 16);
            let v6 = of_family(prefixes, false);
            let v4 = of_family(prefixes, true);
            let ipv6 = cut(&v6, room).into_iter().map(|run| {
                let reach = MpReach::Ipv6Unicast {
                    next_hop_global: next_hop,
                    next_hop_local: None,
                    nlri: ipv6_addresses(run).into(),
                };
                BgpUpdateMessage::new(vec![], with(PathAttributeValue::MpReach(reach), true), vec![])
            });
            let ipv4 = cut(&v4, room).into_iter().map(|run| {
                let reach = MpReach::Ipv4Unicast {
                    next_hop: IpAddr::V6(next_hop),
                    next_hop_local: None,
                    nlri: ipv4_addresses(run).into(),
                };
                BgpUpdateMessage::new(vec![], with(PathAttributeValue::MpReach(reach), true), vec![])
            });
            ipv6.chain(ipv4).collect()
        }
    }
}

/// UPDATEs withdrawing `prefixes`, each as full as `encoding` allows: IPv4 in Withdrawn
/// Routes, IPv6 in MP_UNREACH_NLRI.
pub fn withdrawals(prefixes: &[Prefix], encoding: UpdateEncoding) -> Vec<BgpUpdateMessage> {
    let room = encoding.max_length().saturating_sub(UPDATE_FIXED_OCTETS);
    let v4 = of_family(prefixes, true);
    let v6 = of_family(prefixes, false);
    let mut updates: Vec<BgpUpdateMessage> = cut(&v4, room)
        .into_iter()
        .map(|run| BgpUpdateMessage::new(ipv4_addresses(run), vec![], vec![]))
        .collect();
    updates.extend(cut(&v6, room.saturating_sub(MP_UNREACH_OCTETS)).into_iter().map(|run| {
        let unreach = attribute(
            true,
            false,
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                nlri: ipv6_addresses(run).into(),
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
}

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
mod tests;

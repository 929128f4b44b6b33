//! Routes as the RIBs hold them: a prefix, the attributes of one path to it, and where the path
//! came from (RFC 4271 §3.1, §5).
//!
//! Owns [`PathAttributes`] (the attributes weft decides on: ORIGIN, AS_PATH, NEXT_HOP,
//! MULTI_EXIT_DISC, LOCAL_PREF, COMMUNITIES, LARGE_COMMUNITY), [`PathSource`] (originated here, or learned from a peer) and
//! [`Path`]. Attributes are shared behind an [`Arc`]: one UPDATE's attributes are decoded once
//! and every prefix it carries points at them.
//!
//! Must never: read wire bytes (that is [`crate::update`]) or decide between paths (that is
//! [`crate::best_path`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

pub use ipnet::IpNet as Prefix;

/// ORIGIN (RFC 4271 §5.1.1), ordered as §9.1.2.2 (c) prefers them: IGP before EGP before
/// INCOMPLETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Interior to the originating AS.
    Igp,
    /// Learned by EGP.
    Egp,
    /// Learned some other way.
    Incomplete,
}

impl Origin {
    /// The lowercase name `weftctl bgp routes` prints.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Igp => "igp",
            Self::Egp => "egp",
            Self::Incomplete => "incomplete",
        }
    }
}

/// One AS_PATH segment (RFC 4271 §4.3, §5.1.2), always with 4-octet AS numbers (RFC 6793).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AsPathSegment {
    /// AS_SEQUENCE: ordered, each AS counts.
    Sequence(Vec<u32>),
    /// AS_SET: unordered, counts as one AS (§9.1.2.2 a).
    Set(Vec<u32>),
}

/// The AS_PATH.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath(pub Vec<AsPathSegment>);

impl AsPath {
    /// The length §9.1.2.2 (a) compares: every AS of a sequence, one for a set.
    pub fn length(&self) -> usize {
        self.0
            .iter()
            .map(|segment| match segment {
                AsPathSegment::Sequence(asns) => asns.len(),
                AsPathSegment::Set(asns) => usize::from(!asns.is_empty()),
            })
            .sum()
    }

    /// The neighbouring AS (§9.1.2.2 c): the first AS of a leading AS_SEQUENCE.
    pub fn neighbor_as(&self) -> Option<u32> {
        match self.0.first() {
            Some(AsPathSegment::Sequence(asns)) => asns.first().copied(),
            _ => None,
        }
    }

    /// Whether `asn` appears anywhere in the path (loop detection, §9.1.2).
    pub fn contains(&self, asn: u32) -> bool {
        self.0.iter().any(|segment| match segment {
            AsPathSegment::Sequence(asns) | AsPathSegment::Set(asns) => asns.contains(&asn),
        })
    }

    /// The path with `asn` prepended, as an eBGP speaker sends it (§5.1.2 b).
    pub fn prepend(&self, asn: u32) -> Self {
        let mut segments = self.0.clone();
        match segments.first_mut() {
            // A sequence holds at most 255 AS numbers on the wire.
            Some(AsPathSegment::Sequence(asns)) if asns.len() < 255 => asns.insert(0, asn),
            _ => segments.insert(0, AsPathSegment::Sequence(vec![asn])),
        }
        Self(segments)
    }

    /// Every AS number in order, sets flattened: what `weftctl bgp routes --json` prints.
    pub fn asns(&self) -> Vec<u32> {
        self.0
            .iter()
            .flat_map(|segment| match segment {
                AsPathSegment::Sequence(asns) | AsPathSegment::Set(asns) => asns.iter().copied(),
            })
            .collect()
    }
}

impl fmt::Display for AsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for segment in &self.0 {
            let (open, close, asns) = match segment {
                AsPathSegment::Sequence(asns) => ("", "", asns),
                AsPathSegment::Set(asns) => ("{", "}", asns),
            };
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            let list: Vec<String> = asns.iter().map(u32::to_string).collect();
            write!(f, "{open}{}{close}", list.join(" "))?;
        }
        Ok(())
    }
}

/// The path attributes weft reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    /// ORIGIN.
    pub origin: Origin,
    /// AS_PATH.
    pub as_path: AsPath,
    /// NEXT_HOP, or the MP_REACH_NLRI next hop (global address for IPv6).
    pub next_hop: IpAddr,
    /// MULTI_EXIT_DISC, if present.
    pub med: Option<u32>,
    /// LOCAL_PREF, if present (iBGP only; ignored from eBGP peers, §5.1.5).
    pub local_pref: Option<u32>,
    /// COMMUNITIES (RFC 1997), each `ASN << 16 | value`, in the order received.
    pub communities: Vec<u32>,
    /// LARGE_COMMUNITY (RFC 8092): global administrator, local data 1, local data 2.
    pub large_communities: Vec<[u32; 3]>,
    /// ORIGINATOR_ID (RFC 4456 §8): the router id of the route's originator in the AS, set by
    /// the first route reflector; iBGP only.
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456 §8): the clusters the route was reflected through, most recent
    /// first; iBGP only.
    pub cluster_list: Vec<Ipv4Addr>,
    /// AGGREGATOR (RFC 4271 §5.1.7), with the true AS of AS4_AGGREGATOR merged in from a
    /// 2-octet speaker (RFC 6793 §4.2.3).
    pub aggregator: Option<Aggregator>,
    /// ATOMIC_AGGREGATE (RFC 4271 §5.1.6): some aggregation lost path information; passed on.
    pub atomic_aggregate: bool,
}

/// AGGREGATOR: the AS and the BGP Identifier of the speaker that formed the aggregate route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    /// Its AS, four octets.
    pub asn: u32,
    /// Its BGP Identifier.
    pub address: Ipv4Addr,
}

/// Where a path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSource {
    /// Originated by this speaker (`originate` in the configuration).
    Local,
    /// Learned from a peer.
    Peer(PeerInfo),
}

impl PathSource {
    /// The peer's address, if learned.
    pub fn peer_address(&self) -> Option<IpAddr> {
        match self {
            Self::Local => None,
            Self::Peer(peer) => Some(peer.address),
        }
    }
}

/// The identity of the peer a path was learned from, as best-path selection needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerInfo {
    /// The peer's address (the session's remote address).
    pub address: IpAddr,
    /// The peer's BGP Identifier.
    pub router_id: Ipv4Addr,
    /// The peer's AS.
    pub asn: u32,
    /// Whether the peer is in our AS (iBGP).
    pub internal: bool,
    /// Whether the peer is our route reflection client (RFC 4456), iBGP only.
    pub reflector_client: bool,
}

/// One path to a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Where it came from.
    pub source: PathSource,
    /// Its attributes, shared with the other prefixes of the same UPDATE.
    pub attributes: Arc<PathAttributes>,
}

impl Path {
    /// The degree of preference of §9.1.1: LOCAL_PREF, 100 when absent. A LOCAL_PREF an eBGP
    /// peer sent is dropped at import (§5.1.5, [`crate::export::import`]), so one on an
    /// eBGP-learned path was set by our import policy.
    pub fn local_pref(&self) -> u32 {
        self.attributes.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
    }
}

/// The LOCAL_PREF of a path that carries none, and of every eBGP-learned path.
pub const DEFAULT_LOCAL_PREF: u32 = 100;

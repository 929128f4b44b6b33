//! The desired contents of weft's nftables table (`inet weft`) as data: named sets, the two
//! interface verdict maps, and chains of rules. [`crate::calc`] builds it, [`crate::render`]
//! turns it into batches for nftables, and [`Ruleset::evaluate`] walks it for one packet the
//! way the kernel walks the rendered table, so the policy semantics are unit-tested without a
//! kernel (the namespace tests check the kernel agrees).
//!
//! Layout (see felix/README.md):
//!
//! ```text
//! forward  (filter hook forward):  ct established,related accept
//!                                  iifname vmap @from-endpoint   (egress policy of the sender)
//!                                  oifname vmap @to-endpoint     (ingress policy of the receiver)
//!                                  oifname "wft*" drop           (a pod felix has not programmed)
//! input    (filter hook input):    ct established,related accept; failsafe ports accept;
//!                                  iifname vmap @from-endpoint
//! postrouting (nat hook):          saddr in a natOutgoing pool, daddr in no pool: masquerade
//! isolated-in-H / isolated-out-H:  one chain per distinct combination of policies isolating
//!                                  endpoints (a jump to each policy's chain, then a drop);
//!                                  the maps send every endpoint's interface to its own
//! policy-H-in / policy-H-out:      one chain per policy and direction
//! ```
//!
//! Nothing in it exists per endpoint but set and map elements: a pod added or removed is an
//! element change only.
//!
//! Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::policy::Protocol;
use crate::ranges::AddressRange;

pub const TABLE: &str = "weft";
pub const TO_ENDPOINT: &str = "to-endpoint";
pub const FROM_ENDPOINT: &str = "from-endpoint";
/// Host interfaces of weft's pods start with this (weft-cni's naming).
pub const INTERFACE_PREFIX: &str = "wft";

/// Inbound host ports no policy may block: SSH, BGP, the Kubernetes API, etcd, DNS.
pub const FAILSAFE_TCP: [(u16, u16); 5] = [(22, 22), (53, 53), (179, 179), (2379, 2380), (6443, 6443)];
pub const FAILSAFE_UDP: [(u16, u16); 1] = [(53, 53)];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: IpAddr) -> Family {
        if address.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
}

/// Which address or interface of a packet a match looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Source,
    Destination,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Match {
    /// `ct state established,related`.
    Established,
    /// `ip saddr @set` (or daddr; `!=` when `negate`).
    Address {
        side: Side,
        family: Family,
        set: String,
        negate: bool,
    },
    /// `meta l4proto tcp`.
    Protocol(Protocol),
    /// `meta l4proto tcp th dport { 80, 90-99 }` (one range: `th dport 80`; the calculation
    /// uses this for one range and for the fixed failsafe list only).
    Ports {
        protocol: Protocol,
        ranges: Vec<(u16, u16)>,
    },
    /// `meta l4proto tcp th dport @set`: a port list shared by every rule that names it (an
    /// anonymous set per rule costs the kernel a set object each).
    PortSet { protocol: Protocol, set: String },
    /// `ip daddr . meta l4proto . th dport @set`: a named port of the destination pod.
    NamedPort { family: Family, set: String },
    /// IPv6 neighbour and router discovery (ICMPv6 types 133-136): a pod must resolve its
    /// gateway whatever its egress policy says.
    NeighborDiscovery,
    /// `oifname "wft*"` (Source: iifname).
    InterfacePrefix { side: Side, prefix: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Verdict(Verdict),
    /// `iifname vmap @map` (Source) or `oifname vmap @map` (Destination).
    Dispatch {
        side: Side,
        map: String,
    },
    Masquerade,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
    /// What the rule is for (`x/allow-a ingress[0]`), kept in the kernel's rule comment.
    pub comment: String,
    /// Count packets and bytes (policy rules and the final drops).
    pub counter: bool,
}

impl Rule {
    pub fn new(matches: Vec<Match>, action: Action, comment: impl Into<String>) -> Rule {
        Rule {
            matches,
            action,
            comment: comment.into(),
            counter: false,
        }
    }

    pub fn counted(mut self) -> Rule {
        self.counter = true;
        self
    }
}

/// Where a base chain hooks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Forward,
    Input,
    Output,
    Postrouting,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Chain {
    pub hook: Option<Hook>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetKind {
    /// Addresses of one family; `interval` for ranges (ipBlock, pools).
    Addresses { family: Family, interval: bool },
    /// `address . protocol . port` of pods' named ports.
    NamedPorts { family: Family },
    /// Port ranges (`inet_service`, interval).
    Ports,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    Range(AddressRange),
    NamedPort(IpAddr, Protocol, u16),
    /// An inclusive port range (one port when both ends are equal).
    Ports(u16, u16),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Set {
    pub kind: SetKind,
    pub elements: BTreeSet<Element>,
}

impl Set {
    pub fn contains_address(&self, address: IpAddr) -> bool {
        self.elements
            .iter()
            .any(|e| matches!(e, Element::Range(r) if r.contains(address)))
    }
}

/// Everything weft wants in `inet weft`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, Set>,
    /// Interface name → verdict maps ([`TO_ENDPOINT`], [`FROM_ENDPOINT`]).
    pub maps: BTreeMap<String, BTreeMap<String, Verdict>>,
    pub chains: BTreeMap<String, Chain>,
}

/// One packet for [`Ruleset::evaluate`]. An interface of `None` is the node itself.
#[derive(Clone, Debug)]
pub struct Packet {
    pub in_interface: Option<String>,
    pub out_interface: Option<String>,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    /// Part of a connection conntrack has seen both ways (a reply).
    pub established: bool,
}

/// How a chain walk ended.
enum Outcome {
    Accept,
    Drop,
    /// The end of the chain or a `return`: continue in the caller.
    Continue,
}

impl Ruleset {
    /// Whether the kernel would let `packet` through this table.
    pub fn evaluate(&self, packet: &Packet) -> bool {
        let hook = match (&packet.in_interface, &packet.out_interface) {
            (None, _) => Hook::Output,
            (Some(_), None) => Hook::Input,
            (Some(_), Some(_)) => Hook::Forward,
        };
        for chain in self.chains.values().filter(|c| c.hook == Some(hook)) {
            if let Outcome::Drop = self.walk(chain, packet, 0) {
                return false;
            }
        }
        true
    }

    fn walk(&self, chain: &Chain, packet: &Packet, depth: usize) -> Outcome {
        if depth > 16 {
            return Outcome::Drop;
        }
        for rule in &chain.rules {
            if !rule.matches.iter().all(|m| self.matches(m, packet)) {
                continue;
            }
            let verdict = match &rule.action {
                Action::Verdict(verdict) => verdict.clone(),
                Action::Masquerade => return Outcome::Accept,
                Action::Dispatch { side, map } => {
                    let interface = match side {
                        Side::Source => &packet.in_interface,
                        Side::Destination => &packet.out_interface,
                    };
                    match interface.as_ref().and_then(|i| self.maps.get(map)?.get(i)) {
                        Some(verdict) => verdict.clone(),
                        None => continue,
                    }
                }
            };
            match verdict {
                Verdict::Accept => return Outcome::Accept,
                Verdict::Drop => return Outcome::Drop,
                Verdict::Return => return Outcome::Continue,
                Verdict::Jump(target) => match self.chains.get(&target) {
                    Some(target) => match self.walk(target, packet, depth + 1) {
                        Outcome::Continue => continue,
                        done => return done,
                    },
                    None => return Outcome::Drop,
                },
            }
        }
        Outcome::Continue
    }

    fn matches(&self, m: &Match, packet: &Packet) -> bool {
        match m {
            Match::Established => packet.established,
            Match::Address {
                side,
                family,
                set,
                negate,
            } => {
                let address = match side {
                    Side::Source => packet.source,
                    Side::Destination => packet.destination,
                };
                if Family::of(address) != *family {
                    return false;
                }
                let found = self.sets.get(set).is_some_and(|s| s.contains_address(address));
                found != *negate
            }
            Match::Protocol(protocol) => packet.protocol == *protocol,
            Match::Ports { protocol, ranges } => {
                packet.protocol == *protocol && ranges.iter().any(|(a, b)| *a <= packet.port && packet.port <= *b)
            }
            // The packet model carries TCP, UDP and SCTP only.
            Match::NeighborDiscovery => false,
            Match::PortSet { protocol, set } => {
                packet.protocol == *protocol
                    && self.sets.get(set).is_some_and(|s| {
                        s.elements
                            .iter()
                            .any(|e| matches!(e, Element::Ports(a, b) if *a <= packet.port && packet.port <= *b))
                    })
            }
            Match::NamedPort { family, set } => {
                Family::of(packet.destination) == *family
                    && self.sets.get(set).is_some_and(|s| {
                        s.elements
                            .contains(&Element::NamedPort(packet.destination, packet.protocol, packet.port))
                    })
            }
            Match::InterfacePrefix { side, prefix } => {
                let interface = match side {
                    Side::Source => &packet.in_interface,
                    Side::Destination => &packet.out_interface,
                };
                interface.as_ref().is_some_and(|i| i.starts_with(prefix.as_str()))
            }
        }
    }
}

/// FNV-1a, 64 bits: a stable short name for a selector or rule (`std`'s hasher may change
/// between Rust releases; names and rule comments must survive a felix upgrade).
pub fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

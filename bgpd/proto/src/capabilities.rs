//! Capability advertisement and negotiation (RFC 5492): our OPEN, and what both OPENs agree on.
//!
//! Owns [`LocalConfig`] (what we offer), the OPEN built from it, and [`negotiate`], which reads
//! our OPEN and the peer's and produces [`Negotiated`], the one struct the rest of the speaker
//! reads to know what the session may carry:
//! - hold time: the smaller of both, 0 or at least 3 seconds (RFC 4271 §4.2, §6.2);
//! - 4-octet AS numbers and the peer's real AS behind AS_TRANS (RFC 6793 §4);
//! - address families IPv4 and IPv6 unicast; no multiprotocol capability means IPv4 unicast only
//!   (RFC 4760 §8);
//! - route refresh (RFC 2918, and Cisco's pre-standard code 128) and enhanced route refresh
//!   (RFC 7313);
//! - graceful restart: restart time, Restart and Notification flags, per-family forwarding state
//!   (RFC 4724 §3, RFC 8538);
//! - add-path send and receive per family (RFC 7911 §4-5);
//! - extended next hop (RFC 8950 §4), extended messages (RFC 8654 §3).
//!
//! Must never: validate the peer's identity (AS, BGP identifier: that is the FSM's OPEN check),
//! enable anything only one side advertised, or read a clock.

use std::net::Ipv4Addr;

use netgauze_bgp_pkt::capabilities::{
    AddPathAddressFamily, AddPathCapability, BgpCapability, ExtendedNextHopEncoding, ExtendedNextHopEncodingCapability,
    FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability, MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_iana::address_family::{AddressFamily, AddressType};

use crate::codec::CodecContext;
use crate::notification::{Notification, open};
use crate::update::UpdateEncoding;

/// The 2-octet AS placeholder for 4-octet AS numbers (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;

/// Our graceful restart offer (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Restart Time in seconds (12 bits on the wire; larger values are capped at 4095).
    pub restart_time: u16,
    /// Restart State flag: we are coming back from a restart.
    pub restarting: bool,
    /// Families whose forwarding state we preserved across the restart.
    pub forwarding_preserved: Vec<AddressType>,
    /// We support the Notification flag of RFC 8538 (graceful restart on NOTIFICATION).
    pub notification: bool,
}

/// Our add-path offer for one family (RFC 7911 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddPathConfig {
    /// The family.
    pub family: AddressType,
    /// We are able to send several paths.
    pub send: bool,
    /// We are able to receive several paths.
    pub receive: bool,
}

/// Everything we offer in our OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Our AS number.
    pub asn: u32,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds: 0 or at least 3.
    pub hold_time: u16,
    /// Families to negotiate (IPv4 and IPv6 unicast are what weft carries).
    pub families: Vec<AddressType>,
    /// Offer route refresh (RFC 2918).
    pub route_refresh: bool,
    /// Offer enhanced route refresh (RFC 7313).
    pub enhanced_route_refresh: bool,
    /// Offer graceful restart (RFC 4724).
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// Offer add-path (RFC 7911).
    pub add_path: Vec<AddPathConfig>,
    /// Families whose NLRI we accept with an IPv6 next hop (RFC 8950); IPv4 unicast in practice.
    pub extended_next_hop: Vec<AddressType>,
    /// Offer extended messages (RFC 8654).
    pub extended_messages: bool,
}

impl LocalConfig {
    /// A plain offer: IPv4 and IPv6 unicast, 4-octet AS, route refresh, hold time 90.
    pub fn new(asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            asn,
            router_id,
            hold_time: 90,
            families: vec![AddressType::Ipv4Unicast, AddressType::Ipv6Unicast],
            route_refresh: true,
            enhanced_route_refresh: true,
            graceful_restart: None,
            add_path: Vec::new(),
            extended_next_hop: Vec::new(),
            extended_messages: false,
        }
    }

    /// Our OPEN: My Autonomous System is AS_TRANS when our AS needs four octets (RFC 6793 §4.1).
    pub fn open(&self) -> BgpOpenMessage {
        let my_as = u16::try_from(self.asn).unwrap_or(AS_TRANS);
        let mut capabilities: Vec<BgpCapability> = self
            .families
            .iter()
            .map(|family| BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(*family)))
            .collect();
        if self.route_refresh {
            capabilities.push(BgpCapability::RouteRefresh);
        }
        if self.enhanced_route_refresh {
            capabilities.push(BgpCapability::EnhancedRouteRefresh);
        }
        if let Some(restart) = &self.graceful_restart {
            let families = self
                .families
                .iter()
                .map(|family| GracefulRestartAddressFamily::new(restart.forwarding_preserved.contains(family), *family))
                .collect::<Vec<_>>();
            capabilities.push(BgpCapability::GracefulRestartCapability(
                GracefulRestartCapability::new(
                    restart.restarting,
                    restart.notification,
                    restart.restart_time.min(4095),
                    families,
                ),
            ));
        }
        capabilities.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(self.asn)));
        if !self.add_path.is_empty() {
            let families = self
                .add_path
                .iter()
                .map(|add_path| AddPathAddressFamily::new(add_path.family, add_path.send, add_path.receive))
                .collect::<Vec<_>>();
            capabilities.push(BgpCapability::AddPath(AddPathCapability::new(families)));
        }
        if !self.extended_next_hop.is_empty() {
            let encodings = self
                .extended_next_hop
                .iter()
                .map(|family| ExtendedNextHopEncoding::new(*family, AddressFamily::IPv6))
                .collect::<Vec<_>>();
            capabilities.push(BgpCapability::ExtendedNextHopEncoding(
                ExtendedNextHopEncodingCapability::new(encodings),
            ));
        }
        if self.extended_messages {
            capabilities.push(BgpCapability::ExtendedMessage);
        }
        BgpOpenMessage::new(
            my_as,
            self.hold_time,
            self.router_id,
            vec![BgpOpenMessageParameter::new_capabilities(capabilities)],
        )
    }
}

/// The peer's graceful restart capability, kept when both sides advertised one (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGracefulRestart {
    /// How long to keep the peer's routes after the session drops, in seconds.
    pub restart_time: u16,
    /// Restart State flag: the peer has just restarted; do not wait for its End-of-RIB markers
    /// before sending ours.
    pub restarting: bool,
    /// Notification flag (RFC 8538): a NOTIFICATION other than Hard Reset also keeps routes.
    pub notification: bool,
    /// Families the peer will restart gracefully, each with its Forwarding State flag.
    pub families: Vec<(AddressType, bool)>,
}

/// Add-path as negotiated for one family (RFC 7911 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddPathNegotiated {
    /// The family.
    pub family: AddressType,
    /// We may send several paths with path identifiers.
    pub send: bool,
    /// The peer sends path identifiers we must decode.
    pub receive: bool,
}

/// What the two OPENs agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's AS: the 4-octet capability's value when present, My Autonomous System otherwise.
    pub peer_asn: u32,
    /// The peer's BGP Identifier.
    pub peer_router_id: Ipv4Addr,
    /// Hold time in seconds: 0 (no keepalives, no hold timer) or at least 3.
    pub hold_time: u16,
    /// Keepalive interval in seconds: a third of the hold time (RFC 4271 §10).
    pub keepalive_time: u16,
    /// Both sides speak 4-octet AS numbers (RFC 6793).
    pub four_octet_as: bool,
    /// Families both sides enabled.
    pub families: Vec<AddressType>,
    /// Route refresh may be sent to the peer (RFC 2918).
    pub route_refresh: bool,
    /// Enhanced route refresh (BoRR/EoRR) is in use (RFC 7313).
    pub enhanced_route_refresh: bool,
    /// The peer's graceful restart, when both sides advertised the capability.
    pub graceful_restart: Option<PeerGracefulRestart>,
    /// Add-path per family, only for families where some direction is on.
    pub add_path: Vec<AddPathNegotiated>,
    /// Families whose NLRI may carry an IPv6 next hop (RFC 8950), both ways.
    pub extended_next_hop: Vec<AddressType>,
    /// Extended messages (RFC 8654) in both directions.
    pub extended_messages: bool,
}

impl Negotiated {
    /// The codec context for this session.
    pub fn codec_context(&self, internal_peer: bool) -> CodecContext {
        CodecContext {
            four_octet_as: self.four_octet_as,
            add_path_receive: self.add_path.iter().filter(|a| a.receive).map(|a| a.family).collect(),
            internal_peer,
            extended_messages: self.extended_messages,
        }
    }

    /// How UPDATEs are written to the peer.
    pub fn update_encoding(&self) -> UpdateEncoding {
        UpdateEncoding {
            four_octet_as: self.four_octet_as,
            extended_messages: self.extended_messages,
        }
    }

    /// Whether IPv4 unicast routes may carry an IPv6 next hop (RFC 8950), both ways.
    pub fn ipv4_over_ipv6(&self) -> bool {
        self.extended_next_hop.contains(&AddressType::Ipv4Unicast)
    }

    /// Whether the family was negotiated.
    pub fn has_family(&self, family: AddressType) -> bool {
        self.families.contains(&family)
    }
}

/// The peer's AS from its OPEN (RFC 6793 §4.1).
pub fn peer_asn(open: &BgpOpenMessage) -> u32 {
    open.my_asn4()
}

fn families_of(open: &BgpOpenMessage) -> Vec<AddressType> {
    let mut families: Vec<AddressType> = open
        .capabilities()
        .into_iter()
        .filter_map(|capability| match capability {
            BgpCapability::MultiProtocolExtensions(mp) => Some(mp.address_type()),
            _ => None,
        })
        .collect();
    if families.is_empty() {
        // RFC 4760 §8: a speaker without the capability speaks IPv4 unicast only.
        families.push(AddressType::Ipv4Unicast);
    }
    families.dedup();
    families
}

fn has(open: &BgpOpenMessage, wanted: impl Fn(&BgpCapability) -> bool) -> bool {
    open.capabilities().into_iter().any(wanted)
}

/// Reads both OPENs and decides what the session carries. The only failure is an Unacceptable
/// Hold Time (RFC 4271 §6.2): a proposed value of one or two seconds.
pub fn negotiate(ours: &BgpOpenMessage, theirs: &BgpOpenMessage) -> Result<Negotiated, Notification> {
    if matches!(theirs.hold_time(), 1 | 2) {
        return Err(Notification::open_message(open::UNACCEPTABLE_HOLD_TIME, Vec::new()));
    }
    let hold_time = ours.hold_time().min(theirs.hold_time());
    let our_families = families_of(ours);
    let families: Vec<AddressType> = families_of(theirs)
        .into_iter()
        .filter(|family| our_families.contains(family))
        .collect();
    let four_octet_as = [ours, theirs]
        .iter()
        .all(|open| has(open, |c| matches!(c, BgpCapability::FourOctetAs(_))));
    let route_refresh = has(ours, |c| matches!(c, BgpCapability::RouteRefresh))
        && has(theirs, |c| {
            matches!(c, BgpCapability::RouteRefresh | BgpCapability::CiscoRouteRefresh)
        });
    let enhanced_route_refresh = route_refresh
        && [ours, theirs]
            .iter()
            .all(|open| has(open, |c| matches!(c, BgpCapability::EnhancedRouteRefresh)));
    let extended_messages = [ours, theirs]
        .iter()
        .all(|open| has(open, |c| matches!(c, BgpCapability::ExtendedMessage)));

    Ok(Negotiated {
        peer_asn: peer_asn(theirs),
        peer_router_id: theirs.bgp_id(),
        hold_time,
        keepalive_time: hold_time / 3,
        four_octet_as,
        graceful_restart: negotiate_graceful_restart(ours, theirs),
        add_path: negotiate_add_path(ours, theirs, &families),
        extended_next_hop: negotiate_extended_next_hop(ours, theirs, &families),
        families,
        route_refresh,
        enhanced_route_refresh,
        extended_messages,
    })
}

fn graceful_restart_of(open: &BgpOpenMessage) -> Option<&GracefulRestartCapability> {
    open.capabilities().into_iter().find_map(|capability| match capability {
        BgpCapability::GracefulRestartCapability(restart) => Some(restart),
        _ => None,
    })
}

fn negotiate_graceful_restart(ours: &BgpOpenMessage, theirs: &BgpOpenMessage) -> Option<PeerGracefulRestart> {
    let our_restart = graceful_restart_of(ours)?;
    let restart = graceful_restart_of(theirs)?;
    Some(PeerGracefulRestart {
        restart_time: restart.time(),
        restarting: restart.restart(),
        notification: restart.graceful_notification() && our_restart.graceful_notification(),
        families: restart
            .address_families()
            .iter()
            .map(|f| (f.address_type(), f.forwarding_state()))
            .collect(),
    })
}

fn add_path_of(open: &BgpOpenMessage, family: AddressType) -> (bool, bool) {
    open.capabilities()
        .into_iter()
        .filter_map(|capability| match capability {
            BgpCapability::AddPath(add_path) => Some(add_path),
            _ => None,
        })
        .flat_map(|add_path| add_path.address_families())
        .filter(|entry| entry.address_type() == family)
        .fold((false, false), |(send, receive), entry| {
            (send || entry.send(), receive || entry.receive())
        })
}

fn negotiate_add_path(
    ours: &BgpOpenMessage,
    theirs: &BgpOpenMessage,
    families: &[AddressType],
) -> Vec<AddPathNegotiated> {
    families
        .iter()
        .filter_map(|&family| {
            let (we_send, we_receive) = add_path_of(ours, family);
            let (they_send, they_receive) = add_path_of(theirs, family);
            let negotiated = AddPathNegotiated {
                family,
                send: we_send && they_receive,
                receive: we_receive && they_send,
            };
            (negotiated.send || negotiated.receive).then_some(negotiated)
        })
        .collect()
}

fn extended_next_hop_of(open: &BgpOpenMessage) -> Vec<(AddressType, AddressFamily)> {
    open.capabilities()
        .into_iter()
        .filter_map(|capability| match capability {
            BgpCapability::ExtendedNextHopEncoding(encoding) => Some(encoding),
            _ => None,
        })
        .flat_map(|encoding| encoding.encodings())
        .map(|encoding| (encoding.address_type(), encoding.next_hop_afi()))
        .collect()
}

fn negotiate_extended_next_hop(
    ours: &BgpOpenMessage,
    theirs: &BgpOpenMessage,
    families: &[AddressType],
) -> Vec<AddressType> {
    let our_encodings = extended_next_hop_of(ours);
    extended_next_hop_of(theirs)
        .into_iter()
        .filter(|encoding| encoding.1 == AddressFamily::IPv6 && our_encodings.contains(encoding))
        .map(|(family, _)| family)
        .filter(|family| families.contains(family))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> LocalConfig {
        LocalConfig::new(65001, Ipv4Addr::new(198, 19, 0, 2))
    }

    fn peer_open(my_as: u16, hold_time: u16, capabilities: Vec<BgpCapability>) -> BgpOpenMessage {
        BgpOpenMessage::new(
            my_as,
            hold_time,
            Ipv4Addr::new(198, 19, 0, 1),
            vec![BgpOpenMessageParameter::new_capabilities(capabilities)],
        )
    }

    #[test]
    fn hold_time_is_the_smaller_of_both() {
        let negotiated = negotiate(&ours().open(), &peer_open(65000, 30, vec![])).expect("acceptable");
        assert_eq!((negotiated.hold_time, negotiated.keepalive_time), (30, 10));
    }

    #[test]
    fn hold_time_zero_on_either_side_disables_keepalives() {
        let negotiated = negotiate(&ours().open(), &peer_open(65000, 0, vec![])).expect("acceptable");
        assert_eq!((negotiated.hold_time, negotiated.keepalive_time), (0, 0));
    }

    #[test]
    fn open_with_hold_time_below_three_seconds_is_rejected() {
        for hold_time in [1, 2] {
            let notification = negotiate(&ours().open(), &peer_open(65000, hold_time, vec![])).expect_err("rejected");
            assert_eq!(
                notification,
                Notification::open_message(open::UNACCEPTABLE_HOLD_TIME, vec![])
            );
        }
    }

    #[test]
    fn missing_mp_capability_defaults_to_ipv4_unicast() {
        let negotiated = negotiate(&ours().open(), &peer_open(65000, 90, vec![])).expect("acceptable");
        assert_eq!(negotiated.families, vec![AddressType::Ipv4Unicast]);
        assert!(!negotiated.four_octet_as);
    }

    #[test]
    fn four_octet_as_behind_as_trans_is_the_peer_as() {
        let open = peer_open(
            AS_TRANS,
            90,
            vec![BgpCapability::FourOctetAs(FourOctetAsCapability::new(4_200_000_001))],
        );
        let negotiated = negotiate(&ours().open(), &open).expect("acceptable");
        assert_eq!(negotiated.peer_asn, 4_200_000_001);
        assert!(negotiated.four_octet_as);
    }

    #[test]
    fn our_four_octet_as_is_sent_as_as_trans() {
        let open = LocalConfig::new(4_200_000_002, Ipv4Addr::new(198, 19, 0, 2)).open();
        assert_eq!(open.my_as(), AS_TRANS);
        assert_eq!(open.my_asn4(), 4_200_000_002);
    }

    #[test]
    fn families_are_those_both_sides_enabled() {
        let open = peer_open(
            65000,
            90,
            vec![BgpCapability::MultiProtocolExtensions(
                MultiProtocolExtensionsCapability::new(AddressType::Ipv6Unicast),
            )],
        );
        assert_eq!(
            negotiate(&ours().open(), &open).expect("ok").families,
            vec![AddressType::Ipv6Unicast]
        );
    }

    #[test]
    fn enhanced_route_refresh_needs_both_sides_and_route_refresh() {
        let open = peer_open(
            65000,
            90,
            vec![BgpCapability::RouteRefresh, BgpCapability::EnhancedRouteRefresh],
        );
        let negotiated = negotiate(&ours().open(), &open).expect("ok");
        assert!(negotiated.route_refresh && negotiated.enhanced_route_refresh);
        let negotiated = negotiate(
            &ours().open(),
            &peer_open(65000, 90, vec![BgpCapability::CiscoRouteRefresh]),
        )
        .expect("ok");
        assert!(negotiated.route_refresh && !negotiated.enhanced_route_refresh);
    }

    #[test]
    fn add_path_send_needs_the_peer_to_receive() {
        let mut config = ours();
        config.add_path = vec![AddPathConfig {
            family: AddressType::Ipv4Unicast,
            send: true,
            receive: true,
        }];
        let open = peer_open(
            65000,
            90,
            vec![BgpCapability::AddPath(AddPathCapability::new(vec![
                AddPathAddressFamily::new(AddressType::Ipv4Unicast, false, true),
            ]))],
        );
        let negotiated = negotiate(&config.open(), &open).expect("ok");
        assert_eq!(
            negotiated.add_path,
            vec![AddPathNegotiated {
                family: AddressType::Ipv4Unicast,
                send: true,
                receive: false
            }]
        );
        assert!(negotiated.codec_context(false).add_path_receive.is_empty());
    }

    #[test]
    fn graceful_restart_keeps_the_peer_flags_and_forwarding_state() {
        let mut config = ours();
        config.graceful_restart = Some(GracefulRestartConfig {
            restart_time: 120,
            restarting: false,
            forwarding_preserved: vec![],
            notification: true,
        });
        let open = peer_open(
            65000,
            90,
            vec![BgpCapability::GracefulRestartCapability(
                GracefulRestartCapability::new(
                    true,
                    false,
                    300,
                    vec![GracefulRestartAddressFamily::new(true, AddressType::Ipv4Unicast)],
                ),
            )],
        );
        let restart = negotiate(&config.open(), &open)
            .expect("ok")
            .graceful_restart
            .expect("both advertised");
        assert_eq!(restart.restart_time, 300);
        assert!(restart.restarting && !restart.notification);
        assert_eq!(restart.families, vec![(AddressType::Ipv4Unicast, true)]);
        assert_eq!(negotiate(&ours().open(), &open).expect("ok").graceful_restart, None);
    }

    #[test]
    fn extended_next_hop_needs_both_sides() {
        let mut config = ours();
        config.extended_next_hop = vec![AddressType::Ipv4Unicast];
        let open = peer_open(
            65000,
            90,
            vec![BgpCapability::ExtendedNextHopEncoding(
                ExtendedNextHopEncodingCapability::new(vec![ExtendedNextHopEncoding::new(
                    AddressType::Ipv4Unicast,
                    AddressFamily::IPv6,
                )]),
            )],
        );
        assert_eq!(
            negotiate(&config.open(), &open).expect("ok").extended_next_hop,
            vec![AddressType::Ipv4Unicast]
        );
        assert!(
            negotiate(&ours().open(), &open)
                .expect("ok")
                .extended_next_hop
                .is_empty()
        );
    }
}

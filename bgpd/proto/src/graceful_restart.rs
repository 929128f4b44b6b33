//! Graceful restart (RFC 4724) decisions, as pure functions of what was negotiated and how a
//! session ended; the driver keeps the clock and the routes.
//!
//! Helper side (the peer restarts):
//! - [`families_kept`]: when an Established session ends, the routes of which families stay in
//!   the Loc-RIB (and the FIB) marked stale: those the peer listed in its capability, if we
//!   offered graceful restart too and the session ended without a NOTIFICATION (§4.2; with
//!   the RFC 8538 Notification flag, any NOTIFICATION but a Hard Reset also keeps them);
//! - [`families_flushed_on_reestablish`]: when the session comes back, the stale routes of
//!   families the peer no longer lists, or lists without the Forwarding State flag, go at once
//!   (§4.2); the others wait for the peer's End-of-RIB of that family, or the stale timer.
//!
//! Restarting side (we restart): [`crate::capabilities::GracefulRestartConfig`] carries the
//! Restart State and Forwarding State flags; the driver decides when its own FIB is in sync.
//!
//! Must never: read the clock, or decide routes (the RIBs do).

use netgauze_iana::address_family::AddressType;

use crate::capabilities::Negotiated;
use crate::notification::Notification;

/// How an Established session ended, as graceful restart sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The connection was lost without a NOTIFICATION (a crash, a restart, a cut link).
    ConnectionLost,
    /// A NOTIFICATION was sent or received; `hard_reset` when it was a Cease Hard Reset
    /// (RFC 8538 §3), which never keeps routes.
    Notification {
        /// A Cease with subcode Hard Reset.
        hard_reset: bool,
    },
}

/// Cease subcode 9, Hard Reset (RFC 8538 §3).
const HARD_RESET: u8 = 9;
/// NOTIFICATION error code Cease (RFC 4271 §4.5).
const CEASE: u8 = 6;

impl SessionEnd {
    /// How a session that ended with `notification` ended.
    pub fn notification(notification: &Notification) -> Self {
        Self::Notification {
            hard_reset: notification.code == CEASE && notification.subcode == HARD_RESET,
        }
    }
}

/// The families whose routes stay (stale) after the session with `negotiated` ended as `end`;
/// `helper`: we offered graceful restart ourselves.
pub fn families_kept(helper: bool, negotiated: &Negotiated, end: SessionEnd) -> Vec<AddressType> {
    let Some(restart) = negotiated.graceful_restart.as_ref().filter(|_| helper) else {
        return Vec::new();
    };
    let keep = match end {
        SessionEnd::ConnectionLost => true,
        SessionEnd::Notification { hard_reset } => restart.notification && !hard_reset,
    };
    if !keep {
        return Vec::new();
    }
    restart
        .families
        .iter()
        .map(|(family, _)| *family)
        .filter(|family| negotiated.families.contains(family))
        .collect()
}

/// Of the families with stale routes, those to flush now that the session is Established
/// again with `negotiated`: the peer did not keep its forwarding state for them (§4.2).
pub fn families_flushed_on_reestablish(stale: &[AddressType], negotiated: &Negotiated) -> Vec<AddressType> {
    stale
        .iter()
        .copied()
        .filter(|family| {
            let preserved = negotiated.graceful_restart.as_ref().is_some_and(|restart| {
                restart
                    .families
                    .iter()
                    .any(|(listed, forwarding)| listed == family && *forwarding)
            });
            !preserved || !negotiated.families.contains(family)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::capabilities::PeerGracefulRestart;

    fn negotiated(restart: Option<Vec<(AddressType, bool)>>, notification: bool) -> Negotiated {
        Negotiated {
            peer_asn: 65000,
            peer_router_id: Ipv4Addr::new(198, 19, 0, 1),
            hold_time: 9,
            keepalive_time: 3,
            four_octet_as: true,
            families: vec![AddressType::Ipv4Unicast, AddressType::Ipv6Unicast],
            route_refresh: true,
            enhanced_route_refresh: false,
            graceful_restart: restart.map(|families| PeerGracefulRestart {
                restart_time: 120,
                restarting: false,
                notification,
                families,
            }),
            add_path: Vec::new(),
            extended_next_hop: Vec::new(),
            extended_messages: false,
        }
    }

    #[test]
    fn a_lost_connection_keeps_the_families_the_peer_listed() {
        let n = negotiated(Some(vec![(AddressType::Ipv4Unicast, true)]), false);
        assert_eq!(
            families_kept(true, &n, SessionEnd::ConnectionLost),
            [AddressType::Ipv4Unicast]
        );
        assert!(
            families_kept(false, &n, SessionEnd::ConnectionLost).is_empty(),
            "not a helper"
        );
        assert!(families_kept(true, &negotiated(None, false), SessionEnd::ConnectionLost).is_empty());
    }

    #[test]
    fn a_notification_keeps_nothing_unless_both_support_rfc_8538_and_it_is_no_hard_reset() {
        let families = Some(vec![(AddressType::Ipv4Unicast, true)]);
        let soft = SessionEnd::Notification { hard_reset: false };
        let hard = SessionEnd::Notification { hard_reset: true };
        assert!(families_kept(true, &negotiated(families.clone(), false), soft).is_empty());
        assert_eq!(families_kept(true, &negotiated(families.clone(), true), soft).len(), 1);
        assert!(families_kept(true, &negotiated(families, true), hard).is_empty());
    }

    #[test]
    fn families_without_forwarding_state_are_flushed_when_the_session_returns() {
        let stale = [AddressType::Ipv4Unicast, AddressType::Ipv6Unicast];
        let n = negotiated(
            Some(vec![
                (AddressType::Ipv4Unicast, true),
                (AddressType::Ipv6Unicast, false),
            ]),
            false,
        );
        assert_eq!(families_flushed_on_reestablish(&stale, &n), [AddressType::Ipv6Unicast]);
        assert_eq!(
            families_flushed_on_reestablish(&stale, &negotiated(None, false)),
            stale,
            "no capability any more"
        );
    }
}

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
//! Restart State and Forwarding State flags, and [`SelectionDeferral`] says when route selection
//! deferral ends (§4.1): the restarting speaker sends no UPDATE and no End-of-RIB until it has
//! End-of-RIB from every peer that counts, for every family that peer negotiated, or until the
//! driver's Selection_Deferral_Timer runs out. Which peers count ([`deferral_wait`]):
//! - a peer Established without the graceful restart capability does not (it sends no
//!   End-of-RIB to wait for), nor one that set the Restart State flag (it restarts too, and
//!   waits for ours: §4.1 excludes it, or both would wait for each other);
//! - a peer Established with the capability and without the flag does, until its End-of-RIB for
//!   each negotiated unicast family arrived;
//! - a configured peer whose session has not come up since the restart does too, as BIRD does
//!   (its channels stay locked in graceful restart recovery until the peer's End-of-RIB or
//!   `graceful restart wait`), and not as FRR (whose deferral counts only the peers that
//!   reached Established, so the first peer's End-of-RIB can end it before the others
//!   connect): a node's peers are its ToRs, and sending a partial table to the first one back
//!   is the churn deferral exists to avoid. The timer bounds the wait for a peer that never
//!   comes; a peer whose session drops before its End-of-RIB is waited for again, and one whose
//!   End-of-RIBs all arrived is done for good.
//!
//! The FIB is another matter: reconciling it removes the forwarding state kept across the
//! restart that no peer re-announced, so it waits also for the End-of-RIB of the peers with the
//! Restart State flag ([`fib_wait`]; they send theirs once they have ours, and FRR sets the flag
//! for its first 120 s after any start). Both waits end at the same timer.
//!
//! Must never: read the clock, or decide routes (the RIBs do).

use std::collections::BTreeSet;
use std::net::IpAddr;

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

/// What route selection deferral still waits for from one configured peer (RFC 4724 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeferralWait {
    /// No session since the restart: the peer counts until it comes (see the module comment).
    Session,
    /// Established and counted: the End-of-RIB of these families is still missing.
    EndOfRib(Vec<AddressType>),
    /// Nothing: its End-of-RIBs arrived, or it does not count.
    Nothing,
}

/// What route selection deferral waits for from a peer whose session negotiated `negotiated`
/// (`None`: not Established) and has sent End-of-RIB for `end_of_rib` (§4.1).
pub fn deferral_wait(negotiated: Option<&Negotiated>, end_of_rib: &[AddressType]) -> DeferralWait {
    wait(negotiated, end_of_rib, false)
}

/// What reconciling the FIB waits for from that peer: as [`deferral_wait`], and a peer with the
/// Restart State flag counts too.
pub fn fib_wait(negotiated: Option<&Negotiated>, end_of_rib: &[AddressType]) -> DeferralWait {
    wait(negotiated, end_of_rib, true)
}

fn wait(negotiated: Option<&Negotiated>, end_of_rib: &[AddressType], restarting_counts: bool) -> DeferralWait {
    let Some(negotiated) = negotiated else {
        return DeferralWait::Session;
    };
    match &negotiated.graceful_restart {
        None => DeferralWait::Nothing,
        Some(restart) if restart.restarting && !restarting_counts => DeferralWait::Nothing,
        Some(_) => {
            let missing: Vec<AddressType> = negotiated
                .families
                .iter()
                .copied()
                .filter(|family| matches!(family, AddressType::Ipv4Unicast | AddressType::Ipv6Unicast))
                .filter(|family| !end_of_rib.contains(family))
                .collect();
            if missing.is_empty() {
                DeferralWait::Nothing
            } else {
                DeferralWait::EndOfRib(missing)
            }
        }
    }
}

/// Route selection deferral after our own restart (RFC 4724 §4.1): which configured peers are
/// done. The driver holds the Selection_Deferral_Timer and ends deferral, then reconciles the
/// FIB, as [`SelectionDeferral::observe`] says, or when the timer runs out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectionDeferral {
    /// Peers selection no longer waits for; a peer stays here once in, whatever its session
    /// does next.
    done: BTreeSet<IpAddr>,
    /// Peers the FIB no longer waits for; likewise.
    in_sync: BTreeSet<IpAddr>,
}

/// What [`SelectionDeferral::observe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferralProgress {
    /// No peer is awaited by route selection: deferral may end, and the peers get our routes.
    pub selection: bool,
    /// No peer is awaited by the FIB either: it may be reconciled.
    pub fib: bool,
}

impl SelectionDeferral {
    /// Takes in every configured peer as it is now (`(address, negotiated, end_of_rib)`, as in
    /// [`deferral_wait`]) and says what may end.
    pub fn observe<'a>(
        &mut self,
        peers: impl IntoIterator<Item = (IpAddr, Option<&'a Negotiated>, &'a [AddressType])>,
    ) -> DeferralProgress {
        let mut progress = DeferralProgress {
            selection: true,
            fib: true,
        };
        for (address, negotiated, end_of_rib) in peers {
            if !self.done.contains(&address) {
                if deferral_wait(negotiated, end_of_rib) == DeferralWait::Nothing {
                    self.done.insert(address);
                } else {
                    progress.selection = false;
                }
            }
            if !self.in_sync.contains(&address) {
                if fib_wait(negotiated, end_of_rib) == DeferralWait::Nothing {
                    self.in_sync.insert(address);
                } else {
                    progress.fib = false;
                }
            }
        }
        progress
    }

    /// What is still awaited from the peer at `address` as it is now.
    pub fn wait(&self, address: IpAddr, negotiated: Option<&Negotiated>, end_of_rib: &[AddressType]) -> DeferralWait {
        if self.done.contains(&address) {
            return DeferralWait::Nothing;
        }
        deferral_wait(negotiated, end_of_rib)
    }
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

    fn restarting(mut n: Negotiated) -> Negotiated {
        if let Some(restart) = n.graceful_restart.as_mut() {
            restart.restarting = true;
        }
        n
    }

    const V4: AddressType = AddressType::Ipv4Unicast;
    const V6: AddressType = AddressType::Ipv6Unicast;

    #[test]
    fn deferral_waits_for_each_negotiated_families_end_of_rib_from_a_peer_that_offers_graceful_restart() {
        let n = negotiated(Some(vec![(V4, true)]), false);
        assert_eq!(deferral_wait(Some(&n), &[]), DeferralWait::EndOfRib(vec![V4, V6]));
        assert_eq!(deferral_wait(Some(&n), &[V6]), DeferralWait::EndOfRib(vec![V4]));
        assert_eq!(deferral_wait(Some(&n), &[V6, V4]), DeferralWait::Nothing);
        let helper_only = negotiated(Some(Vec::new()), false);
        assert_eq!(
            deferral_wait(Some(&helper_only), &[]),
            DeferralWait::EndOfRib(vec![V4, V6]),
            "the capability without families still promises End-of-RIB"
        );
    }

    #[test]
    fn deferral_does_not_wait_for_a_peer_without_graceful_restart_or_with_the_restart_state_flag() {
        assert_eq!(
            deferral_wait(Some(&negotiated(None, false)), &[]),
            DeferralWait::Nothing
        );
        let n = restarting(negotiated(Some(vec![(V4, true)]), false));
        assert_eq!(deferral_wait(Some(&n), &[]), DeferralWait::Nothing);
        assert_eq!(
            fib_wait(Some(&n), &[]),
            DeferralWait::EndOfRib(vec![V4, V6]),
            "the FIB waits for its routes all the same"
        );
        assert_eq!(fib_wait(Some(&n), &[V4, V6]), DeferralWait::Nothing);
        assert_eq!(fib_wait(Some(&negotiated(None, false)), &[]), DeferralWait::Nothing);
    }

    #[test]
    fn deferral_waits_for_a_configured_peer_whose_session_is_not_up() {
        assert_eq!(deferral_wait(None, &[]), DeferralWait::Session);
    }

    #[test]
    fn deferral_ends_once_every_peer_is_done_and_a_done_peer_stays_done_when_its_session_drops() {
        let a = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(198, 19, 1, 1));
        let c = IpAddr::V4(Ipv4Addr::new(198, 19, 2, 1));
        let gr = negotiated(Some(vec![(V4, true), (V6, true)]), false);
        let plain = negotiated(None, false);
        let mut deferral = SelectionDeferral::default();
        // a is up without its End-of-RIBs, b is not up, c does not offer graceful restart.
        assert!(
            !deferral
                .observe([(a, Some(&gr), &[][..]), (b, None, &[][..]), (c, Some(&plain), &[][..])])
                .selection
        );
        assert_eq!(deferral.wait(c, Some(&plain), &[]), DeferralWait::Nothing);
        assert!(
            !deferral
                .observe([(a, Some(&gr), &[V4, V6][..]), (b, None, &[][..]), (c, None, &[][..])])
                .selection
        );
        // a's session drops after its End-of-RIBs: done all the same; so is c, seen without it.
        assert_eq!(deferral.wait(a, None, &[]), DeferralWait::Nothing);
        assert_eq!(deferral.wait(c, None, &[]), DeferralWait::Nothing);
        assert_eq!(deferral.wait(b, None, &[]), DeferralWait::Session);
        assert!(
            !deferral
                .observe([(a, None, &[][..]), (b, Some(&gr), &[V4][..]), (c, None, &[][..])])
                .selection
        );
        assert_eq!(deferral.wait(b, Some(&gr), &[V4]), DeferralWait::EndOfRib(vec![V6]));
        let both = DeferralProgress {
            selection: true,
            fib: true,
        };
        assert_eq!(
            deferral.observe([(a, None, &[][..]), (b, Some(&gr), &[V4, V6][..]), (c, None, &[][..])]),
            both
        );
    }

    #[test]
    fn with_only_restarting_peers_selection_ends_at_once_and_the_fib_waits_for_their_end_of_rib() {
        let a = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1));
        let both = DeferralProgress {
            selection: true,
            fib: true,
        };
        assert_eq!(SelectionDeferral::default().observe([]), both);
        let n = restarting(negotiated(Some(vec![(V4, true)]), false));
        let mut deferral = SelectionDeferral::default();
        assert_eq!(
            deferral.observe([(a, Some(&n), &[][..])]),
            DeferralProgress {
                selection: true,
                fib: false
            }
        );
        assert_eq!(deferral.observe([(a, Some(&n), &[V4, V6][..])]), both);
    }
}

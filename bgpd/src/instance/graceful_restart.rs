//! Graceful restart bookkeeping of the instance (RFC 4724 §4): a restarting peer's routes kept
//! stale and when they go, and, after our own restart, route selection deferral (§4.1).
//!
//! Owns [`Stale`], [`Deferral`] and the instance's deadlines; which families a session end
//! keeps, which a new session flushes, and which peers deferral waits for is the pure core's
//! ([`weft_bgp_proto::graceful_restart`]).
//!
//! Route selection deferral, after a restart that found weft's routes in the kernel:
//!
//! ```text
//!   start ──▶ Deferring ──(every peer that counts sent End-of-RIB for each of its families)──┐
//!               │                                                                           ▼
//!               │          Advertised: every Established peer got its whole export and End-of-RIB;
//!               │               │      later sessions get theirs at once
//!               │               └──(the restarting peers' End-of-RIB too)──────────────────┐
//!               └──(select_defer_time passed: the Selection_Deferral_Timer, either state)───┤
//!                                                                                           ▼
//!             over: the FIB task reconciles (routes nobody re-announced go); if still
//!             Deferring, every Established peer then gets its whole export and End-of-RIB
//! ```
//!
//! While deferring, sessions come up and their routes enter the Adj-RIB-In, the Loc-RIB and
//! the FIB as usual, but no UPDATE and no End-of-RIB goes to any peer. Peers with the Restart
//! State flag do not hold up the advertisement (§4.1: they wait for ours) but do hold up the
//! kernel reconcile until their End-of-RIB (else the routes kept through them would go before
//! they are re-announced). The deferral timer bounds both: one deadline, not two. Peers not up
//! yet are waited for (BIRD's choice, not FRR's; see the core's module comment). Without a
//! restart (no kept routes) or with graceful restart off there is no deferral.
//!
//! Must never: touch a socket or decide on a route other than a stale one.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;
use weft_bgp_proto::graceful_restart::SelectionDeferral;
use weft_bgp_proto::update::family_of;
use weft_bgp_proto::{AddressType, PathSource, Prefix};

use super::Instance;
use crate::kernel::FibRequest;

/// A restarting peer's routes kept in the Loc-RIB (RFC 4724 §4.2).
#[derive(Debug)]
pub(super) struct Stale {
    /// Whom they were learned from (the new session may bring another router id).
    pub(super) source: PathSource,
    pub(super) prefixes: BTreeSet<Prefix>,
    /// Families whose End-of-RIB is awaited.
    pub(super) families: Vec<AddressType>,
    /// When they go if no End-of-RIB came.
    pub(super) deadline: Instant,
}

/// Route selection deferral after our own restart (RFC 4724 §4.1).
#[derive(Debug)]
pub(super) struct Deferral {
    /// When the Selection_Deferral_Timer runs out: deferral ends even if a peer is still awaited.
    pub(super) until: Instant,
    /// Which peers are done.
    pub(super) peers: SelectionDeferral,
    /// Route selection is over and the peers have our routes; the kernel waits for the
    /// restarting peers' End-of-RIB.
    pub(super) advertised: bool,
}

impl Deferral {
    /// A deferral from now, for `select_defer_time` seconds at most.
    pub(super) fn new(select_defer_time: u16) -> Self {
        tracing::info!(
            select_defer_time,
            "graceful restart: route selection deferred until the peers' End-of-RIB"
        );
        Self {
            until: Instant::now() + Duration::from_secs(u64::from(select_defer_time)),
            peers: SelectionDeferral::default(),
            advertised: false,
        }
    }
}

/// How long stale routes wait for End-of-RIB once the session is back (FRR's stalepath-time).
pub(super) const STALE_PATH_TIME: Duration = Duration::from_secs(360);

impl Instance {
    /// Route selection is deferred: nothing is advertised yet (RFC 4724 §4.1).
    pub(super) fn selection_deferred(&self) -> bool {
        self.deferral.as_ref().is_some_and(|deferral| !deferral.advertised)
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|peer| peer.stale.as_ref().map(|stale| stale.deadline))
            .chain(self.deferral.as_ref().map(|deferral| deferral.until))
            .min()
    }

    pub(super) async fn timeouts(&mut self) {
        let now = Instant::now();
        let expired: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.stale.as_ref().is_some_and(|stale| stale.deadline <= now))
            .map(|(address, _)| *address)
            .collect();
        for address in expired {
            tracing::info!(peer = %address, "graceful restart: stale routes expired");
            self.flush_stale(address, None).await;
        }
        if let Some(deferral) = self.deferral.take_if(|deferral| deferral.until <= now) {
            tracing::info!(
                advertised = deferral.advertised,
                "graceful restart: selection deferral timer expired before every End-of-RIB; reconciling the kernel now"
            );
            self.reconcile().await;
            if !deferral.advertised {
                self.advertise_to_every_peer().await;
            }
        }
    }

    /// Removes a peer's stale routes of `families` (all of them with `None`).
    pub(super) async fn flush_stale(&mut self, address: IpAddr, families: Option<&[AddressType]>) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(stale) = peer.stale.as_mut() else { return };
        let flushed: Vec<Prefix> = stale
            .prefixes
            .iter()
            .filter(|prefix| families.is_none_or(|families| families.contains(&family_of(prefix))))
            .copied()
            .collect();
        let source = stale.source;
        for prefix in &flushed {
            stale.prefixes.remove(prefix);
        }
        if let Some(families) = families {
            stale.families.retain(|family| !families.contains(family));
        }
        if families.is_none() || stale.prefixes.is_empty() || stale.families.is_empty() {
            // Whatever is left has no End-of-RIB to wait for.
            let rest: Vec<Prefix> = stale.prefixes.iter().copied().collect();
            peer.stale = None;
            return self
                .remove_paths(address, source, flushed.into_iter().chain(rest).collect())
                .await;
        }
        self.remove_paths(address, source, flushed).await;
    }

    /// Removes `source`'s paths to `prefixes` from the Loc-RIB and passes the change on.
    pub(super) async fn remove_paths(&mut self, address: IpAddr, source: PathSource, prefixes: Vec<Prefix>) {
        if prefixes.is_empty() {
            return;
        }
        let changed: Vec<Prefix> = prefixes
            .iter()
            .filter(|prefix| self.loc_rib.remove(prefix, &source))
            .copied()
            .collect();
        tracing::info!(peer = %address, removed = prefixes.len(), "graceful restart: stale routes removed");
        self.program_fib(&prefixes).await;
        self.propagate(&changed).await;
    }

    /// While deferring: ends selection deferral once no peer is awaited any more (each that
    /// counts has sent End-of-RIB for every family it negotiated), and reconciles the kernel once
    /// the restarting peers' End-of-RIB is in too. Called whenever that may have changed: at
    /// start, when a session becomes Established, at an End-of-RIB, after a reload.
    pub(super) async fn end_deferral_when_in_sync(&mut self) {
        let Some(deferral) = self.deferral.as_mut() else {
            return;
        };
        let peers = self.peers.iter().map(|(address, peer)| {
            let session = peer.session.as_ref();
            (
                *address,
                session.map(|session| &*session.negotiated),
                session.map_or(&[][..], |session| &session.end_of_rib[..]),
            )
        });
        let progress = deferral.peers.observe(peers);
        let advertise = progress.selection && !deferral.advertised;
        if advertise {
            tracing::info!("graceful restart: End-of-RIB from every peer awaited; selection deferral ends");
            deferral.advertised = true;
        }
        if progress.fib {
            tracing::info!("graceful restart: End-of-RIB from every peer; reconciling the kernel");
            self.deferral = None;
            self.reconcile().await;
        }
        if advertise {
            self.advertise_to_every_peer().await;
        }
    }

    /// At the end of route selection deferral: every Established peer gets its whole export and
    /// End-of-RIB (RFC 4724 §4.1).
    async fn advertise_to_every_peer(&mut self) {
        let established: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.session.is_some())
            .map(|(address, _)| *address)
            .collect();
        for address in established {
            self.advertise_all(address).await;
        }
    }

    async fn reconcile(&mut self) {
        if let Some(fib) = &self.fib
            && fib.send(FibRequest::Reconcile).await.is_err()
        {
            tracing::warn!("the FIB task is gone; kernel routes no longer follow the RIB");
        }
    }
}

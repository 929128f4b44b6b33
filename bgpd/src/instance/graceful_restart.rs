//! Graceful restart bookkeeping of the instance (RFC 4724 §4): a restarting peer's routes kept
//! stale and when they go, and, after our own restart, when the kernel is reconciled.
//!
//! Owns [`Stale`] and the instance's deadlines; which families a session end keeps, and which a
//! new session flushes, is the pure core's ([`weft_bgp_proto::graceful_restart`]).
//!
//! Must never: touch a socket or decide on a route other than a stale one.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;
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

/// How long stale routes wait for End-of-RIB once the session is back (FRR's stalepath-time).
pub(super) const STALE_PATH_TIME: Duration = Duration::from_secs(360);

impl Instance {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|peer| peer.stale.as_ref().map(|stale| stale.deadline))
            .chain(self.reconcile_by)
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
        if self.reconcile_by.is_some_and(|by| by <= now) {
            tracing::info!("graceful restart: not every peer sent End-of-RIB in time; reconciling the kernel now");
            self.reconcile().await;
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

    /// After our restart: reconcile the kernel once every peer is back with all its End-of-RIBs.
    pub(super) async fn reconcile_when_in_sync(&mut self) {
        if self.reconcile_by.is_none() {
            return;
        }
        let in_sync = self.peers.values().all(|peer| {
            peer.session.as_ref().is_some_and(|session| {
                session
                    .negotiated
                    .families
                    .iter()
                    .filter(|family| matches!(family, AddressType::Ipv4Unicast | AddressType::Ipv6Unicast))
                    .all(|family| session.end_of_rib.contains(family))
            })
        });
        if in_sync {
            tracing::info!("graceful restart: End-of-RIB from every peer; reconciling the kernel");
            self.reconcile().await;
        }
    }

    pub(super) async fn reconcile(&mut self) {
        self.reconcile_by = None;
        if let Some(fib) = &self.fib
            && fib.send(FibRequest::Reconcile).await.is_err()
        {
            tracing::warn!("the FIB task is gone; kernel routes no longer follow the RIB");
        }
    }
}

//! The BGP instance: the one task that owns all routing state of the speaker.
//!
//! Owns the Loc-RIB (with the originated prefixes in it), each peer's Adj-RIB-In and
//! Adj-RIB-Out, and each peer's status. Session tasks ([`crate::session`]) report to it over one
//! bounded queue; it answers control requests ([`crate::control`]) from another. Route logic is
//! the pure core's ([`weft_bgp_proto::rib`], [`weft_bgp_proto::export`],
//! [`weft_bgp_proto::update`]); this module feeds it and sends what changed:
//! - Established: advertise the peer's whole export, then End-of-RIB per family (RFC 4724 §2);
//! - UPDATE: Adj-RIB-In, import policy and loop check, Loc-RIB; re-export changed best paths;
//! - Down: the peer's routes leave the Loc-RIB and the change goes to the other peers — or, when
//!   the peer can restart gracefully and the connection was lost without a NOTIFICATION (RFC
//!   4724 §4.2, [`weft_bgp_proto::graceful_restart`]), they stay, marked stale, until the
//!   peer's End-of-RIB for their family after it comes back, or its Restart Time runs out;
//! - after our own restart (kernel routes of the previous run kept), the FIB task is told to
//!   reconcile once every peer is Established and has sent End-of-RIB for each of its families,
//!   or the Restart Time has passed;
//! - ROUTE-REFRESH: the Adj-RIB-Out is sent again (RFC 2918);
//! - with `kernel.install`, the next hops of every changed prefix's best paths (ECMP, up to
//!   `kernel.max_paths`) go to the FIB task ([`crate::kernel`]).
//!
//! Must never: touch a socket (session tasks do), hold a lock, or block on a session task
//! (session tasks keep taking its commands while they wait for room in its queue).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_bgp_proto::export::{ExportSession, Policy, export_attributes, import};
use weft_bgp_proto::graceful_restart::{SessionEnd, families_flushed_on_reestablish, families_kept};
use weft_bgp_proto::notification::CeaseSubcode;
use weft_bgp_proto::rib::OutChange;
use weft_bgp_proto::route::{AsPath, Origin};
use weft_bgp_proto::update::{advertisements, end_of_rib, end_of_rib_family, family_of, read_update, withdrawals};
use weft_bgp_proto::wire::iana::RouteRefreshSubcode;
use weft_bgp_proto::wire::update::BgpUpdateMessage;
use weft_bgp_proto::{
    AddressType, AdjRibIn, AdjRibOut, LocRib, Negotiated, Path, PathAttributes, PathSource, PeerInfo, Prefix, State,
};

use crate::config::{Config, PeerConfig};
use crate::control::{
    ControlRequest, NeighborCapabilities, NeighborCounters, NeighborGracefulRestart, NeighborStatus, NeighborTimers,
    PeerStatus, RouteStatus,
};
use crate::kernel::{FibChange, FibRequest};
use crate::session::{PeerCommand, PeerEvent};

/// One configured peer as the instance sees it.
#[derive(Debug)]
struct Peer {
    config: PeerConfig,
    state: State,
    session: Option<Established>,
    adj_rib_in: AdjRibIn,
    adj_rib_out: AdjRibOut,
    commands: mpsc::Sender<PeerCommand>,
    /// Routes kept after the session ended (graceful restart helper).
    stale: Option<Stale>,
    counters: Counters,
    /// Why the session last went down.
    last_error: Option<String>,
}

/// What `weftctl bgp neighbor` counts.
#[derive(Debug, Default)]
struct Counters {
    updates_received: u64,
    updates_sent: u64,
    route_refreshes_received: u64,
    established_transitions: u64,
}

/// A restarting peer's routes kept in the Loc-RIB (RFC 4724 §4.2).
#[derive(Debug)]
struct Stale {
    /// Whom they were learned from (the new session may bring another router id).
    source: PathSource,
    prefixes: BTreeSet<Prefix>,
    /// Families whose End-of-RIB is awaited.
    families: Vec<AddressType>,
    /// When they go if no End-of-RIB came.
    deadline: Instant,
}

/// How long stale routes wait for End-of-RIB once the session is back (FRR's stalepath-time).
const STALE_PATH_TIME: Duration = Duration::from_secs(360);

/// What an Established session fixed.
#[derive(Debug)]
struct Established {
    since: Instant,
    negotiated: Box<Negotiated>,
    export: ExportSession,
    /// Our address on the session.
    local_address: IpAddr,
    /// Families whose End-of-RIB the peer has sent.
    end_of_rib: Vec<AddressType>,
}

impl Established {
    fn carries(&self, prefix: &Prefix) -> bool {
        self.negotiated.has_family(family_of(prefix))
    }
}

/// The instance task.
#[derive(Debug)]
pub struct Instance {
    asn: u32,
    loc_rib: LocRib,
    peers: BTreeMap<IpAddr, Peer>,
    /// The FIB task's queue, when `kernel.install` is on.
    fib: Option<mpsc::Sender<FibRequest>>,
    /// Most next hops of one kernel route (ECMP).
    max_paths: usize,
    /// We offer graceful restart, so we keep restarting peers' routes (helper).
    helper: bool,
    /// After our own restart: when the FIB gets reconciled at the latest; `None` once done.
    reconcile_by: Option<Instant>,
}

impl Instance {
    /// An instance with the originated prefixes in its Loc-RIB; `commands` has one sender per
    /// configured peer; `fib` receives best-path changes for the kernel.
    /// `restarting`: the kernel kept a previous run's routes, to reconcile once the RIB is back.
    pub fn new(
        config: &Config,
        commands: BTreeMap<IpAddr, mpsc::Sender<PeerCommand>>,
        fib: Option<mpsc::Sender<FibRequest>>,
        restarting: bool,
    ) -> Self {
        let mut loc_rib = LocRib::default();
        for prefix in &config.originate {
            let next_hop = match prefix {
                Prefix::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                Prefix::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            };
            let attributes = Arc::new(PathAttributes {
                origin: Origin::Igp,
                as_path: AsPath::default(),
                next_hop,
                med: None,
                local_pref: None,
                communities: Vec::new(),
                large_communities: Vec::new(),
            });
            loc_rib.insert(
                *prefix,
                Path {
                    source: PathSource::Local,
                    attributes,
                },
            );
        }
        let peers = config
            .peers
            .iter()
            .filter_map(|peer| {
                let commands = commands.get(&peer.address)?.clone();
                Some((
                    peer.address,
                    Peer {
                        config: peer.clone(),
                        state: State::Idle,
                        session: None,
                        adj_rib_in: AdjRibIn::default(),
                        adj_rib_out: AdjRibOut::default(),
                        commands,
                        stale: None,
                        counters: Counters::default(),
                        last_error: None,
                    },
                ))
            })
            .collect();
        Self {
            asn: config.asn,
            loc_rib,
            peers,
            reconcile_by: (restarting && fib.is_some())
                .then(|| Instant::now() + Duration::from_secs(u64::from(config.graceful_restart.unwrap_or(0)))),
            fib,
            max_paths: config.kernel_max_paths,
            helper: config.graceful_restart.is_some(),
        }
    }

    /// Runs until cancelled or until every session task is gone.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<PeerEvent>,
        mut control: mpsc::Receiver<ControlRequest>,
        cancel: CancellationToken,
    ) {
        self.reconcile_when_in_sync().await;
        loop {
            let deadline = self.next_deadline();
            let timer =
                tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
            tokio::select! {
                () = cancel.cancelled() => return,
                event = events.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => return,
                },
                Some(request) = control.recv() => self.answer(request),
                () = timer, if deadline.is_some() => self.timeouts().await,
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|peer| peer.stale.as_ref().map(|stale| stale.deadline))
            .chain(self.reconcile_by)
            .min()
    }

    async fn timeouts(&mut self) {
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
    async fn flush_stale(&mut self, address: IpAddr, families: Option<&[AddressType]>) {
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
    async fn remove_paths(&mut self, address: IpAddr, source: PathSource, prefixes: Vec<Prefix>) {
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
    async fn reconcile_when_in_sync(&mut self) {
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

    async fn reconcile(&mut self) {
        self.reconcile_by = None;
        if let Some(fib) = &self.fib
            && fib.send(FibRequest::Reconcile).await.is_err()
        {
            tracing::warn!("the FIB task is gone; kernel routes no longer follow the RIB");
        }
    }

    async fn handle(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::State { peer, state } => {
                if let Some(peer) = self.peers.get_mut(&peer) {
                    peer.state = state;
                }
            }
            PeerEvent::Established {
                peer,
                negotiated,
                local_address,
            } => self.established(peer, negotiated, local_address).await,
            PeerEvent::Update { peer, update } => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.counters.updates_received += 1;
                }
                self.update(peer, &update).await
            }
            PeerEvent::RouteRefresh { peer, refresh } => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.counters.route_refreshes_received += 1;
                }
                // RFC 7313 §4: BoRR and EoRR mark the peer's own re-advertisement, not a request.
                if refresh.operation_type() != RouteRefreshSubcode::NormalRequest {
                    return;
                }
                tracing::info!(%peer, family = ?refresh.address_type(), "route refresh requested");
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.adj_rib_out.clear();
                }
                self.export_all(peer).await;
            }
            PeerEvent::Down { peer, end, reason } => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.last_error = Some(reason);
                }
                self.down(peer, end).await
            }
        }
    }

    async fn established(&mut self, address: IpAddr, negotiated: Box<Negotiated>, local_address: IpAddr) {
        let local_asn = self.asn;
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let info = PeerInfo {
            address,
            router_id: negotiated.peer_router_id,
            asn: negotiated.peer_asn,
            internal: negotiated.peer_asn == local_asn,
        };
        let export = ExportSession {
            local_asn,
            peer: info,
            next_hop_v4: match local_address {
                IpAddr::V4(address) => Some(address),
                IpAddr::V6(_) => None,
            },
            next_hop_v6: match local_address {
                IpAddr::V6(address) => Some(address),
                IpAddr::V4(_) => None,
            },
            policy: peer.config.export.clone(),
        };
        for family in &negotiated.families {
            let has_next_hop = match family {
                AddressType::Ipv4Unicast => export.next_hop_v4.is_some(),
                AddressType::Ipv6Unicast => export.next_hop_v6.is_some(),
                _ => true,
            };
            if !has_next_hop {
                tracing::warn!(peer = %address, ?family, "no local address of this family on the session: its routes are not advertised");
            }
        }
        peer.state = State::Established;
        peer.adj_rib_out.clear();
        let flushed = peer
            .stale
            .as_mut()
            .map(|stale| {
                stale.deadline = Instant::now() + STALE_PATH_TIME;
                families_flushed_on_reestablish(&stale.families, &negotiated)
            })
            .unwrap_or_default();
        peer.session = Some(Established {
            since: Instant::now(),
            negotiated,
            export,
            local_address,
            end_of_rib: Vec::new(),
        });
        peer.counters.established_transitions += 1;
        if !flushed.is_empty() {
            self.flush_stale(address, Some(&flushed)).await;
        }
        self.export_all(address).await;
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(session) = &peer.session else { return };
        let markers: Vec<BgpUpdateMessage> = session
            .negotiated
            .families
            .iter()
            .filter_map(|f| end_of_rib(*f))
            .collect();
        send(peer, markers).await;
    }

    /// Sends the peer everything it should see that it has not been sent.
    async fn export_all(&mut self, address: IpAddr) {
        let prefixes: Vec<Prefix> = self.loc_rib.iter().map(|(prefix, _)| *prefix).collect();
        self.export_to(address, &prefixes).await;
    }

    async fn export_to(&mut self, address: IpAddr, prefixes: &[Prefix]) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(session) = &peer.session else { return };
        let mut withdrawn = Vec::new();
        let mut advertised: Vec<(Arc<PathAttributes>, Vec<Prefix>)> = Vec::new();
        for prefix in prefixes {
            let wanted = if session.carries(prefix) {
                self.loc_rib
                    .best(prefix)
                    .and_then(|best| export_attributes(prefix, best, &session.export))
            } else {
                None
            };
            match peer.adj_rib_out.update(*prefix, wanted) {
                None => {}
                Some(OutChange::Withdraw) => withdrawn.push(*prefix),
                Some(OutChange::Advertise(attributes)) => match advertised.iter_mut().find(|(a, _)| *a == attributes) {
                    Some((_, list)) => list.push(*prefix),
                    None => advertised.push((attributes, vec![*prefix])),
                },
            }
        }
        let four_octet_as = session.negotiated.four_octet_as;
        let mut updates = withdrawals(&withdrawn);
        for (attributes, prefixes) in &advertised {
            updates.extend(advertisements(prefixes, attributes, four_octet_as));
        }
        send(peer, updates).await;
    }

    async fn update(&mut self, address: IpAddr, update: &BgpUpdateMessage) {
        let local_asn = self.asn;
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(session) = peer.session.as_mut() else {
            return;
        };
        if let Some(family) = end_of_rib_family(update) {
            if !session.end_of_rib.contains(&family) {
                session.end_of_rib.push(family);
            }
            tracing::info!(peer = %address, ?family, "end-of-rib received");
            if peer
                .stale
                .as_ref()
                .is_some_and(|stale| stale.families.contains(&family))
            {
                self.flush_stale(address, Some(&[family])).await;
            }
            self.reconcile_when_in_sync().await;
            return;
        }
        let source = PathSource::Peer(session.export.peer);
        let routes = read_update(update);
        // A stale route the peer advertises or withdraws again is stale no more.
        let mut stale_withdrawn = Vec::new();
        if let Some(stale) = peer.stale.as_mut() {
            let stale_source = stale.source;
            for prefix in &routes.withdrawn {
                if stale.prefixes.remove(prefix) && self.loc_rib.remove(prefix, &stale_source) {
                    stale_withdrawn.push(*prefix);
                }
            }
            for (prefix, _) in &routes.advertised {
                if stale.prefixes.remove(prefix) && stale_source != source {
                    self.loc_rib.remove(prefix, &stale_source);
                }
            }
        }
        let Some(session) = &peer.session else { return };
        let mut changed = Vec::new();
        // Every prefix whose paths changed: a path that is not best may still be one of an
        // ECMP route's next hops.
        let mut touched = stale_withdrawn.clone();
        changed.extend(stale_withdrawn);
        for prefix in routes.withdrawn {
            if peer.adj_rib_in.remove(&prefix) {
                touched.push(prefix);
                if self.loc_rib.remove(&prefix, &source) {
                    changed.push(prefix);
                }
            }
        }
        for (prefix, attributes) in routes.advertised {
            if !session.carries(&prefix) {
                continue; // RFC 4760 §7: a family that was not negotiated is ignored
            }
            peer.adj_rib_in.insert(prefix, attributes.clone());
            touched.push(prefix);
            let external = !session.export.peer.internal;
            let best_changed = match import(&peer.config.import, local_asn, external, &prefix, &attributes) {
                Some(attributes) => self.loc_rib.insert(prefix, Path { source, attributes }),
                None => self.loc_rib.remove(&prefix, &source),
            };
            if best_changed {
                changed.push(prefix);
            }
        }
        self.program_fib(&touched).await;
        self.propagate(&changed).await;
        self.check_max_prefix(address).await;
    }

    /// Ends the session of a peer that advertises more than its max-prefix limit.
    async fn check_max_prefix(&self, address: IpAddr) {
        let Some(peer) = self.peers.get(&address) else { return };
        let Some(max_prefix) = peer.config.max_prefix else {
            return;
        };
        if peer.adj_rib_in.len() <= max_prefix.limit {
            return;
        }
        tracing::warn!(
            peer = %address,
            received = peer.adj_rib_in.len(),
            limit = max_prefix.limit,
            "max-prefix exceeded: ending the session"
        );
        let stop = PeerCommand::Stop {
            subcode: CeaseSubcode::MaximumNumberOfPrefixesReached,
            hold_down: max_prefix.restart_time,
        };
        if peer.commands.send(stop).await.is_err() {
            tracing::debug!(peer = %address, "session task gone");
        }
    }

    async fn down(&mut self, address: IpAddr, end: SessionEnd) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(session) = peer.session.take() else { return };
        let source = PathSource::Peer(session.export.peer);
        let kept = families_kept(self.helper, &session.negotiated, end);
        // Stale routes of an earlier restart from another router id are not carried over.
        let mut touched: Vec<Prefix> = match peer.stale.take() {
            Some(old) if old.source != source => {
                for prefix in &old.prefixes {
                    self.loc_rib.remove(prefix, &old.source);
                }
                old.prefixes.into_iter().collect()
            }
            Some(old) => old.prefixes.into_iter().collect(),
            None => Vec::new(),
        };
        let mut stale = BTreeSet::new();
        touched.retain(|prefix| {
            let keep = kept.contains(&family_of(prefix)) && self.loc_rib.contains(prefix, &source);
            if keep {
                stale.insert(*prefix);
            }
            !keep
        });
        let mut changed = Vec::new();
        for prefix in peer.adj_rib_in.clear() {
            if kept.contains(&family_of(&prefix)) && self.loc_rib.contains(&prefix, &source) {
                stale.insert(prefix);
                continue;
            }
            touched.push(prefix);
        }
        for prefix in &touched {
            if self.loc_rib.remove(prefix, &source) {
                changed.push(*prefix);
            }
        }
        if !stale.is_empty() {
            let restart_time = session
                .negotiated
                .graceful_restart
                .as_ref()
                .map_or(0, |restart| restart.restart_time);
            tracing::info!(peer = %address, kept = stale.len(), restart_time, "graceful restart: the peer's routes are kept, stale");
            peer.stale = Some(Stale {
                source,
                prefixes: stale,
                families: kept,
                deadline: Instant::now() + Duration::from_secs(u64::from(restart_time)),
            });
        }
        peer.adj_rib_out.clear();
        tracing::info!(peer = %address, withdrawn = touched.len(), "routes of the peer withdrawn");
        self.program_fib(&touched).await;
        self.propagate(&changed).await;
    }

    /// Tells the FIB task what the kernel should hold for each of `prefixes`: the next hops of
    /// the best learned paths (ECMP, up to `max_paths`); the FIB task skips what is unchanged.
    async fn program_fib(&self, prefixes: &[Prefix]) {
        let Some(fib) = &self.fib else { return };
        for prefix in prefixes {
            // Only learned paths go to the kernel; an originated prefix is ours to serve.
            let next_hops = self
                .loc_rib
                .multipath(prefix, self.max_paths)
                .into_iter()
                .filter(|path| path.source != PathSource::Local)
                .map(|path| path.attributes.next_hop)
                .collect();
            let change = FibChange {
                prefix: *prefix,
                next_hops,
            };
            if fib.send(FibRequest::Change(change)).await.is_err() {
                tracing::warn!("the FIB task is gone; kernel routes no longer follow the RIB");
                return;
            }
        }
    }

    /// Sends changed best paths to every Established peer.
    async fn propagate(&mut self, changed: &[Prefix]) {
        if changed.is_empty() {
            return;
        }
        let addresses: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.session.is_some())
            .map(|(address, _)| *address)
            .collect();
        for address in addresses {
            self.export_to(address, changed).await;
        }
    }

    fn answer(&self, request: ControlRequest) {
        match request {
            ControlRequest::Peers(reply) => {
                let _ = reply.send(self.peer_status());
            }
            ControlRequest::Routes(reply) => {
                let _ = reply.send(self.route_status());
            }
            ControlRequest::Neighbor(address, reply) => {
                let _ = reply.send(self.neighbor_status(address));
            }
        }
    }

    fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|peer| PeerStatus {
                address: peer.config.address.to_string(),
                asn: peer.config.asn,
                state: peer.state.name(),
                prefixes_received: peer.adj_rib_in.len(),
                prefixes_accepted: peer
                    .session
                    .as_ref()
                    .map_or(0, |s| count_from(&self.loc_rib, &PathSource::Peer(s.export.peer))),
                prefixes_sent: peer.adj_rib_out.len(),
                uptime_seconds: peer.session.as_ref().map_or(0, |s| s.since.elapsed().as_secs()),
                router_id: peer.session.as_ref().map(|s| s.negotiated.peer_router_id.to_string()),
                families: peer.session.as_ref().map_or_else(Vec::new, |s| {
                    s.negotiated.families.iter().filter_map(|f| family_name(*f)).collect()
                }),
            })
            .collect()
    }

    fn neighbor_status(&self, address: IpAddr) -> Option<NeighborStatus> {
        let peer = self.peers.get(&address)?;
        let session = peer.session.as_ref();
        let negotiated = session.map(|s| &s.negotiated);
        let policy_name = |policy: &Policy| match policy {
            Policy::Accept => "accept".to_owned(),
            Policy::Reject => "reject".to_owned(),
            Policy::Named(named) => named.name.clone(),
        };
        Some(NeighborStatus {
            address: address.to_string(),
            asn: peer.config.asn,
            kind: if peer.config.asn == self.asn { "iBGP" } else { "eBGP" },
            state: peer.state.name(),
            router_id: negotiated.map(|n| n.peer_router_id.to_string()),
            local_address: session.map(|s| s.local_address.to_string()),
            uptime_seconds: session.map_or(0, |s| s.since.elapsed().as_secs()),
            timers: NeighborTimers {
                hold_time_configured: peer.config.hold_time,
                hold_time: negotiated.map(|n| n.hold_time),
                keepalive_time: negotiated.map(|n| n.keepalive_time),
                connect_retry_time: peer.config.connect_retry_time.as_secs(),
            },
            capabilities: negotiated.map(|n| NeighborCapabilities {
                families: n.families.iter().filter_map(|f| family_name(*f)).collect(),
                four_octet_as: n.four_octet_as,
                route_refresh: n.route_refresh,
                enhanced_route_refresh: n.enhanced_route_refresh,
                extended_messages: n.extended_messages,
                graceful_restart: n.graceful_restart.as_ref().map(|restart| NeighborGracefulRestart {
                    restart_time: restart.restart_time,
                    restarting: restart.restarting,
                    families: restart
                        .families
                        .iter()
                        .filter_map(|(family, forwarding)| {
                            family_name(*family).map(|name| format!("{name}{}", if *forwarding { "+" } else { "" }))
                        })
                        .collect(),
                }),
            }),
            counters: NeighborCounters {
                prefixes_received: peer.adj_rib_in.len(),
                prefixes_accepted: session.map_or(0, |s| count_from(&self.loc_rib, &PathSource::Peer(s.export.peer))),
                prefixes_sent: peer.adj_rib_out.len(),
                prefixes_stale: peer.stale.as_ref().map_or(0, |stale| stale.prefixes.len()),
                updates_received: peer.counters.updates_received,
                updates_sent: peer.counters.updates_sent,
                route_refreshes_received: peer.counters.route_refreshes_received,
                established_transitions: peer.counters.established_transitions,
            },
            import: policy_name(&peer.config.import),
            export: policy_name(&peer.config.export),
            max_prefix: peer.config.max_prefix.map(|m| m.limit),
            md5: peer.config.password.is_some(),
            last_error: peer.last_error.clone(),
        })
    }

    fn route_status(&self) -> Vec<RouteStatus> {
        let mut routes = Vec::new();
        for (prefix, destination) in self.loc_rib.iter() {
            let best = destination.best().map(|p| p.source);
            for path in destination.paths() {
                let attributes = &path.attributes;
                routes.push(RouteStatus {
                    prefix: prefix.to_string(),
                    best: Some(path.source) == best,
                    from: path
                        .source
                        .peer_address()
                        .map_or_else(|| "local".to_owned(), |a| a.to_string()),
                    next_hop: path.source.peer_address().map(|_| attributes.next_hop.to_string()),
                    as_path: attributes.as_path.asns(),
                    origin: attributes.origin.name(),
                    med: attributes.med,
                    local_pref: attributes.local_pref,
                    communities: attributes
                        .communities
                        .iter()
                        .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                        .collect(),
                    large_communities: attributes
                        .large_communities
                        .iter()
                        .map(|[global, one, two]| format!("{global}:{one}:{two}"))
                        .collect(),
                    stale: self.peers.values().any(|peer| {
                        peer.stale
                            .as_ref()
                            .is_some_and(|stale| stale.source == path.source && stale.prefixes.contains(prefix))
                    }),
                });
            }
        }
        routes
    }
}

fn family_name(family: AddressType) -> Option<&'static str> {
    match family {
        AddressType::Ipv4Unicast => Some("ipv4-unicast"),
        AddressType::Ipv6Unicast => Some("ipv6-unicast"),
        _ => None,
    }
}

fn count_from(loc_rib: &LocRib, source: &PathSource) -> usize {
    loc_rib
        .iter()
        .filter(|(_, destination)| destination.paths().iter().any(|p| &p.source == source))
        .count()
}

async fn send(peer: &mut Peer, updates: Vec<BgpUpdateMessage>) {
    if updates.is_empty() {
        return;
    }
    peer.counters.updates_sent += updates.len() as u64;
    if peer.commands.send(PeerCommand::Send(updates)).await.is_err() {
        tracing::debug!(peer = %peer.config.address, "session task gone; updates dropped");
    }
}

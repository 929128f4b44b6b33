//! The BGP instance: the one task that owns all routing state of the speaker.
//!
//! Owns the Loc-RIB (with the originated prefixes in it), each peer's rejected prefixes and
//! Adj-RIB-Out, and each peer's status. Session tasks ([`crate::session`]) report to it over one
//! bounded queue; it answers control requests ([`crate::control`]) from another. Route logic is
//! the pure core's ([`weft_bgp_proto::rib`], [`weft_bgp_proto::export`],
//! [`weft_bgp_proto::update`]); this module feeds it and sends what changed:
//! - Established: advertise the peer's whole export, then End-of-RIB per family (RFC 4724 §2)
//!   — except while route selection is deferred after our own restart (below);
//! - UPDATE: import policy and loop check, then the Loc-RIB (what is rejected is remembered by
//!   prefix only: no Adj-RIB-In copy of accepted routes; attribute sets interned, one copy
//!   each across UPDATEs); re-export changed best paths;
//! - Down: the peer's routes leave the Loc-RIB and the change goes to the other peers — or, when
//!   the peer can restart gracefully and the connection was lost without a NOTIFICATION (RFC
//!   4724 §4.2, [`weft_bgp_proto::graceful_restart`]), they stay, marked stale, until the
//!   peer's End-of-RIB for their family after it comes back, or its Restart Time runs out;
//! - after our own restart (kernel routes of the previous run kept), route selection is deferred
//!   (RFC 4724 §4.1, [`graceful_restart`]): nothing is sent to any peer until every peer that
//!   counts has sent End-of-RIB for each of its families, or `select_defer_time` has passed;
//!   then every Established peer gets its whole export and End-of-RIB, and the FIB task is told
//!   to reconcile once the restarting peers' End-of-RIB is in too (or at that same deadline);
//! - ROUTE-REFRESH: the Adj-RIB-Out is sent again (RFC 2918);
//! - with a peer's `advertisement_interval`, a prefix advertised to it less than the interval
//!   ago waits and goes in its latest state when the interval is over; withdrawals do not wait
//!   (RFC 4271 §9.2.1.1, [`advertisement_interval`]);
//! - with `kernel.install`, the next hops of every changed prefix's best paths (ECMP, up to
//!   `kernel.max_paths`) go to the FIB task ([`crate::kernel`]).
//!
//! Graceful restart bookkeeping is in [`graceful_restart`], the answers to `weftctl` in [`status`].
//!
//! Must never: touch a socket (session tasks do), hold a lock, or block on a session task
//! (session tasks keep taking its commands while they wait for room in its queue).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_bgp_proto::advertisement_interval::AdvertisementInterval;
use weft_bgp_proto::export::{ExportSession, export_attributes, import};
use weft_bgp_proto::graceful_restart::{SessionEnd, families_flushed_on_reestablish, families_kept};
use weft_bgp_proto::intern::AttributeSets;
use weft_bgp_proto::notification::CeaseSubcode;
use weft_bgp_proto::rib::OutChange;
use weft_bgp_proto::route::{AsPath, Origin};
use weft_bgp_proto::route_reflection::has_looped;
use weft_bgp_proto::update::{advertisements, end_of_rib, end_of_rib_family, family_of, read_update, withdrawals};
use weft_bgp_proto::wire::iana::RouteRefreshSubcode;
use weft_bgp_proto::wire::update::BgpUpdateMessage;
use weft_bgp_proto::{
    AddressType, AdjRibOut, LocRib, Negotiated, Path, PathAttributes, PathSource, PeerInfo, Prefix, State,
};

mod advertisement_interval;
mod graceful_restart;
mod reload;
mod status;

use crate::config::{Config, Originated, PeerConfig};
use crate::control::ControlRequest;
use crate::kernel::{FibChange, FibRequest};
use crate::session::{PeerCommand, PeerEvent};
use graceful_restart::{Deferral, STALE_PATH_TIME, Stale};

/// Most prefixes in one batch of changes to the FIB task.
const FIB_BATCH: usize = 1024;

/// One configured peer as the instance sees it.
#[derive(Debug)]
struct Peer {
    config: PeerConfig,
    state: State,
    session: Option<Established>,
    /// What the peer advertised on this session and import policy or loop detection rejected.
    /// The accepted rest is in the Loc-RIB: weft keeps no Adj-RIB-In copy of it (BIRD keeps
    /// none either by default). A changed import policy takes a new session (see Reload).
    rejected: BTreeSet<Prefix>,
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
    fsm_transitions: u64,
}

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
    /// The MinRouteAdvertisementIntervalTimer (RFC 4271 §9.2.1.1).
    advertisement_interval: AdvertisementInterval,
}

impl Peer {
    /// How many prefixes the peer advertises on its session, before import policy: its paths
    /// in the Loc-RIB (less the stale ones its previous session left) and the rejected ones.
    fn received(&self, loc_rib: &LocRib) -> usize {
        let Some(session) = &self.session else { return 0 };
        let source = PathSource::Peer(session.export.peer);
        let stale = self
            .stale
            .as_ref()
            .filter(|stale| stale.source == source)
            .map_or(0, |stale| stale.prefixes.len());
        loc_rib.count(&source).saturating_sub(stale) + self.rejected.len()
    }

    fn new(config: PeerConfig, commands: mpsc::Sender<PeerCommand>) -> Self {
        Self {
            config,
            state: State::Idle,
            session: None,
            rejected: BTreeSet::new(),
            adj_rib_out: AdjRibOut::default(),
            commands,
            stale: None,
            counters: Counters::default(),
            last_error: None,
        }
    }
}

/// An originated prefix's path: ours, with no AS_PATH and no next hop yet (export sets ours),
/// and its communities.
fn local_path(originated: &Originated) -> Path {
    let next_hop = match originated.prefix {
        Prefix::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Prefix::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    Path {
        source: PathSource::Local,
        attributes: Arc::new(PathAttributes {
            origin: Origin::Igp,
            as_path: AsPath::default(),
            next_hop,
            med: None,
            local_pref: None,
            communities: originated.communities.clone(),
            large_communities: originated.large_communities.clone(),
            originator_id: None,
            cluster_list: Vec::new(),
            aggregator: None,
            atomic_aggregate: false,
        }),
    }
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
    router_id: std::net::Ipv4Addr,
    /// Our cluster id when we reflect routes (some peer is a route reflector client).
    cluster_id: Option<std::net::Ipv4Addr>,
    /// Our cluster id for loop detection, whether we reflect or not.
    own_cluster_id: std::net::Ipv4Addr,
    loc_rib: LocRib,
    /// One copy of each distinct attribute set the Loc-RIB's learned paths carry.
    attribute_sets: AttributeSets,
    peers: BTreeMap<IpAddr, Peer>,
    /// The FIB task's queue, when `kernel.install` is on.
    fib: Option<mpsc::Sender<FibRequest>>,
    /// Most next hops of one kernel route (ECMP).
    max_paths: usize,
    /// We offer graceful restart, so we keep restarting peers' routes (helper).
    helper: bool,
    /// After our own restart: route selection deferral, until which nothing is advertised, and
    /// then the kernel reconcile; `None` once over (or when there was no restart).
    deferral: Option<Deferral>,
    /// Control requests (`weftctl`, reloads), from [`Instance::run`] on: answered between events
    /// and also while an event waits for room in the FIB queue.
    control: Option<mpsc::Receiver<ControlRequest>>,
    /// A reload that came while an event waited for the FIB: applied once that event is done.
    reload_waiting: Option<(Box<crate::reload::InstanceReload>, oneshot::Sender<()>)>,
}

/// The next control request, or never if there is no queue.
async fn next_request(control: &mut Option<mpsc::Receiver<ControlRequest>>) -> Option<ControlRequest> {
    match control {
        Some(control) => control.recv().await,
        None => std::future::pending().await,
    }
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
        for originated in &config.originate {
            loc_rib.insert(originated.prefix, local_path(originated));
        }
        let peers = config
            .peers
            .iter()
            .filter_map(|peer| {
                let commands = commands.get(&peer.address)?.clone();
                Some((peer.address, Peer::new(peer.clone(), commands)))
            })
            .collect();
        Self {
            asn: config.asn,
            router_id: config.router_id,
            cluster_id: config
                .peers
                .iter()
                .any(|peer| peer.route_reflector_client)
                .then_some(config.cluster_id),
            own_cluster_id: config.cluster_id,
            loc_rib,
            attribute_sets: AttributeSets::default(),
            peers,
            deferral: (restarting && fib.is_some()).then(|| Deferral::new(config.select_defer_time)),
            fib,
            max_paths: config.kernel_max_paths,
            helper: config.graceful_restart.is_some(),
            control: None,
            reload_waiting: None,
        }
    }

    /// Runs until cancelled or until every session task is gone.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<PeerEvent>,
        control: mpsc::Receiver<ControlRequest>,
        cancel: CancellationToken,
    ) {
        self.control = Some(control);
        self.end_deferral_when_in_sync().await;
        loop {
            if let Some((reload, done)) = self.reload_waiting.take() {
                self.reload(*reload).await;
                let _ = done.send(());
            }
            let deadline = self.next_deadline().into_iter().chain(self.next_advertisement()).min();
            let timer =
                tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
            tokio::select! {
                () = cancel.cancelled() => return,
                event = events.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => return,
                },
                Some(request) = next_request(&mut self.control) => match request {
                    ControlRequest::Reload(reload, done) => {
                        self.reload(*reload).await;
                        let _ = done.send(());
                    }
                    request => self.answer(request),
                },
                () = timer, if deadline.is_some() => {
                    self.timeouts().await;
                    self.advertise_due().await;
                }
            }
        }
    }

    async fn handle(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::State { peer, state } => {
                if let Some(peer) = self.peers.get_mut(&peer)
                    && peer.state != state
                {
                    peer.state = state;
                    peer.counters.fsm_transitions += 1;
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
            reflector_client: peer.config.route_reflector_client,
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
            cluster_id: self.cluster_id,
            next_hop_keep: peer.config.next_hop_keep && !info.internal,
            extended_next_hop: negotiated.ipv4_over_ipv6(),
        };
        for family in &negotiated.families {
            let has_next_hop = match family {
                AddressType::Ipv4Unicast => export.next_hop_v4.is_some() || export.extended_next_hop,
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
        // RFC 4271 §10 jitter, seeded per session so that peers do not advertise in step.
        let seed = u64::from(u32::from(negotiated.peer_router_id)) << 32 | u64::from(u32::from(self.router_id));
        peer.session = Some(Established {
            since: Instant::now(),
            negotiated,
            export,
            local_address,
            end_of_rib: Vec::new(),
            advertisement_interval: AdvertisementInterval::new(peer.config.advertisement_interval, seed),
        });
        peer.counters.established_transitions += 1;
        if !flushed.is_empty() {
            self.flush_stale(address, Some(&flushed)).await;
        }
        // RFC 4724 §4.1: while route selection is deferred, its export and End-of-RIB wait.
        if !self.selection_deferred() {
            self.advertise_all(address).await;
        }
        self.end_deferral_when_in_sync().await;
    }

    /// Sends the peer its whole export, then End-of-RIB for each negotiated family (RFC 4724 §2).
    async fn advertise_all(&mut self, address: IpAddr) {
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
        if self.selection_deferred() {
            return; // RFC 4724 §4.1: nothing goes out before route selection deferral ends
        }
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(session) = peer.session.as_mut() else { return };
        let now = Instant::now().into_std();
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
            match &wanted {
                // A change to advertise within the interval waits (sent later as it is then).
                Some(attributes)
                    if session.advertisement_interval.is_active()
                        && peer.adj_rib_out.sent(prefix) != Some(attributes)
                        && !session.advertisement_interval.admit(*prefix, now) =>
                {
                    continue;
                }
                Some(_) => {}
                None => session.advertisement_interval.withdrawn(prefix),
            }
            match peer.adj_rib_out.update(*prefix, wanted) {
                None => {}
                Some(OutChange::Withdraw) => withdrawn.push(*prefix),
                Some(OutChange::Advertise(attributes)) => match advertised.iter_mut().find(|(a, _)| *a == attributes) {
                    Some((_, list)) => list.push(*prefix),
                    None => advertised.push((attributes, vec![*prefix])),
                },
            }
        }
        let encoding = session.negotiated.update_encoding();
        let mut updates = withdrawals(&withdrawn, encoding);
        for (attributes, prefixes) in &advertised {
            updates.extend(advertisements(prefixes, attributes, encoding));
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
            self.end_deferral_when_in_sync().await;
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
            let rejected = peer.rejected.remove(&prefix);
            if rejected || self.loc_rib.contains(&prefix, &source) {
                touched.push(prefix);
                if self.loc_rib.remove(&prefix, &source) {
                    changed.push(prefix);
                }
            }
        }
        // The last set imported and its interned copy: an UPDATE's prefixes share one set.
        let mut last: Option<(Arc<PathAttributes>, Arc<PathAttributes>)> = None;
        for (prefix, attributes) in routes.advertised {
            if !session.carries(&prefix) {
                continue; // RFC 4760 §7: a family that was not negotiated is ignored
            }
            touched.push(prefix);
            let external = !session.export.peer.internal;
            // RFC 4456 §8: a route reflected back to us has looped.
            let looped = !external && has_looped(&attributes, self.router_id, self.own_cluster_id);
            let imported = if looped {
                None
            } else {
                import(&peer.config.import, local_asn, external, &prefix, &attributes)
            };
            let best_changed = match imported {
                Some(imported) => {
                    if !peer.rejected.is_empty() {
                        peer.rejected.remove(&prefix);
                    }
                    let attributes = match &last {
                        Some((seen, interned)) if Arc::ptr_eq(seen, &imported) => interned.clone(),
                        _ => {
                            let interned = self.attribute_sets.intern(imported.clone());
                            last = Some((imported, interned.clone()));
                            interned
                        }
                    };
                    self.loc_rib.insert(prefix, Path { source, attributes })
                }
                None => {
                    peer.rejected.insert(prefix);
                    self.loc_rib.remove(&prefix, &source)
                }
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
        let received = peer.received(&self.loc_rib);
        if received <= max_prefix.limit {
            return;
        }
        tracing::warn!(
            peer = %address,
            received,
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
        // What the session advertised and import accepted: its paths in the Loc-RIB, less the
        // stale ones of the session before (not advertised again; handled with the stale).
        let advertised: Vec<Prefix> = self
            .loc_rib
            .iter()
            .filter(|(prefix, destination)| {
                destination.paths().iter().any(|path| path.source == source)
                    && !peer
                        .stale
                        .as_ref()
                        .is_some_and(|old| old.source == source && old.prefixes.contains(*prefix))
            })
            .map(|(prefix, _)| *prefix)
            .collect();
        peer.rejected.clear();
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
        for prefix in advertised {
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
    /// Sent in batches of at most [`FIB_BATCH`] prefixes (one per UPDATE, as a rule).
    ///
    /// While the FIB task is behind, status requests are answered (a reload waits for the
    /// event loop): `weftctl bgp peers` keeps answering while a million routes leave the kernel.
    async fn program_fib(&mut self, prefixes: &[Prefix]) {
        let Some(fib) = self.fib.clone() else { return };
        for chunk in prefixes.chunks(FIB_BATCH) {
            let changes = chunk
                .iter()
                .map(|prefix| FibChange {
                    prefix: *prefix,
                    // Only learned paths go to the kernel; an originated prefix is ours to serve.
                    next_hops: self
                        .loc_rib
                        .multipath(prefix, self.max_paths)
                        .into_iter()
                        .filter(|path| path.source != PathSource::Local)
                        .map(|path| path.attributes.next_hop)
                        .collect(),
                })
                .collect();
            let permit = loop {
                tokio::select! {
                    permit = fib.reserve() => break permit,
                    Some(request) = next_request(&mut self.control), if self.reload_waiting.is_none() => match request {
                        ControlRequest::Reload(reload, done) => self.reload_waiting = Some((reload, done)),
                        request => self.answer(request),
                    },
                }
            };
            match permit {
                Ok(permit) => permit.send(FibRequest::Changes(changes)),
                Err(_) => {
                    tracing::warn!("the FIB task is gone; kernel routes no longer follow the RIB");
                    return;
                }
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

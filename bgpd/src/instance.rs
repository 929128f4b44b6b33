//! The BGP instance: the one task that owns all routing state of the speaker.
//!
//! Owns the Loc-RIB (with the originated prefixes in it), each peer's Adj-RIB-In and
//! Adj-RIB-Out, and each peer's status. Session tasks ([`crate::session`]) report to it over one
//! bounded queue; it answers control requests ([`crate::control`]) from another. Route logic is
//! the pure core's ([`weft_bgp_proto::rib`], [`weft_bgp_proto::export`],
//! [`weft_bgp_proto::update`]); this module feeds it and sends what changed:
//! - Established: advertise the peer's whole export, then End-of-RIB per family (RFC 4724 §2);
//! - UPDATE: Adj-RIB-In, import policy and loop check, Loc-RIB; re-export changed best paths;
//! - Down: the peer's routes leave the Loc-RIB and the change goes to the other peers;
//! - ROUTE-REFRESH: the Adj-RIB-Out is sent again (RFC 2918);
//! - with `kernel.install`, every best-path change goes to the FIB task ([`crate::kernel`]).
//!
//! Must never: touch a socket (session tasks do), hold a lock, or block on a session task
//! (session tasks keep taking its commands while they wait for room in its queue).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_bgp_proto::export::{ExportSession, export_attributes, import_allowed};
use weft_bgp_proto::rib::OutChange;
use weft_bgp_proto::route::{AsPath, Origin};
use weft_bgp_proto::update::{advertisements, end_of_rib, family_of, read_update, withdrawals};
use weft_bgp_proto::wire::iana::RouteRefreshSubcode;
use weft_bgp_proto::wire::update::BgpUpdateMessage;
use weft_bgp_proto::{
    AddressType, AdjRibIn, AdjRibOut, LocRib, Negotiated, Path, PathAttributes, PathSource, PeerInfo, Prefix, State,
};

use crate::config::{Config, PeerConfig};
use crate::control::{ControlRequest, PeerStatus, RouteStatus};
use crate::kernel::FibChange;
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
}

/// What an Established session fixed.
#[derive(Debug)]
struct Established {
    since: Instant,
    negotiated: Box<Negotiated>,
    export: ExportSession,
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
    fib: Option<mpsc::Sender<FibChange>>,
}

impl Instance {
    /// An instance with the originated prefixes in its Loc-RIB; `commands` has one sender per
    /// configured peer; `fib` receives best-path changes for the kernel.
    pub fn new(
        config: &Config,
        commands: BTreeMap<IpAddr, mpsc::Sender<PeerCommand>>,
        fib: Option<mpsc::Sender<FibChange>>,
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
                    },
                ))
            })
            .collect();
        Self {
            asn: config.asn,
            loc_rib,
            peers,
            fib,
        }
    }

    /// Runs until cancelled or until every session task is gone.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<PeerEvent>,
        mut control: mpsc::Receiver<ControlRequest>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                event = events.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => return,
                },
                Some(request) = control.recv() => self.answer(request),
            }
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
            PeerEvent::Update { peer, update } => self.update(peer, &update).await,
            PeerEvent::RouteRefresh { peer, refresh } => {
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
            PeerEvent::Down { peer } => self.down(peer).await,
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
            policy: peer.config.export,
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
        peer.session = Some(Established {
            since: Instant::now(),
            negotiated,
            export,
        });
        self.export_all(address).await;
        let Some(peer) = self.peers.get(&address) else { return };
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
        let Some(session) = &peer.session else { return };
        let source = PathSource::Peer(session.export.peer);
        let routes = read_update(update);
        let mut changed = Vec::new();
        for prefix in routes.withdrawn {
            if peer.adj_rib_in.remove(&prefix) && self.loc_rib.remove(&prefix, &source) {
                changed.push(prefix);
            }
        }
        for (prefix, attributes) in routes.advertised {
            if !session.carries(&prefix) {
                continue; // RFC 4760 §7: a family that was not negotiated is ignored
            }
            peer.adj_rib_in.insert(prefix, attributes.clone());
            let best_changed = if import_allowed(peer.config.import, local_asn, &attributes) {
                self.loc_rib.insert(prefix, Path { source, attributes })
            } else {
                self.loc_rib.remove(&prefix, &source)
            };
            if best_changed {
                changed.push(prefix);
            }
        }
        self.propagate(&changed).await;
    }

    async fn down(&mut self, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(session) = peer.session.take() else { return };
        let source = PathSource::Peer(session.export.peer);
        let mut changed = Vec::new();
        for prefix in peer.adj_rib_in.clear() {
            if self.loc_rib.remove(&prefix, &source) {
                changed.push(prefix);
            }
        }
        peer.adj_rib_out.clear();
        tracing::info!(peer = %address, withdrawn = changed.len(), "routes of the peer withdrawn");
        self.propagate(&changed).await;
    }

    /// Sends changed best paths to the kernel and to every Established peer.
    async fn propagate(&mut self, changed: &[Prefix]) {
        if changed.is_empty() {
            return;
        }
        if let Some(fib) = &self.fib {
            for prefix in changed {
                // Only learned paths go to the kernel; an originated prefix is ours to serve.
                let next_hop = self
                    .loc_rib
                    .best(prefix)
                    .filter(|best| best.source != PathSource::Local)
                    .map(|best| best.attributes.next_hop);
                let change = FibChange {
                    prefix: *prefix,
                    next_hop,
                };
                if fib.send(change).await.is_err() {
                    tracing::warn!("the FIB task is gone; kernel routes no longer follow the RIB");
                    break;
                }
            }
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

async fn send(peer: &Peer, updates: Vec<BgpUpdateMessage>) {
    if updates.is_empty() {
        return;
    }
    if peer.commands.send(PeerCommand::Send(updates)).await.is_err() {
        tracing::debug!(peer = %peer.config.address, "session task gone; updates dropped");
    }
}

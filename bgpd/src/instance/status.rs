//! What the instance tells `weftctl bgp peers|routes|neighbor` ([`crate::control`]).
//!
//! Must never: change the instance's state.

use std::net::IpAddr;

use weft_bgp_proto::export::Policy;
use weft_bgp_proto::graceful_restart::DeferralWait;
use weft_bgp_proto::{AddressType, LocRib, PathSource};

use super::Instance;
use crate::control::{
    ControlRequest, NeighborCapabilities, NeighborCounters, NeighborDeferral, NeighborGracefulRestart, NeighborStatus,
    NeighborTimers, PeerStatus, RouteStatus,
};
use crate::metrics::{MetricsSnapshot, PeerMetrics};

impl Instance {
    pub(super) fn answer(&self, request: ControlRequest) {
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
            ControlRequest::Metrics(reply) => {
                let _ = reply.send(self.metrics());
            }
            // Handled by the instance's loop, which may wait on the session tasks' queues.
            ControlRequest::Reload(_, _) => {}
        }
    }

    fn metrics(&self) -> MetricsSnapshot {
        let peers = self
            .peers
            .values()
            .map(|peer| PeerMetrics {
                address: peer.config.address.to_string(),
                state: peer.state,
                uptime_seconds: peer.session.as_ref().map_or(0, |s| s.since.elapsed().as_secs()),
                prefixes_received: peer.received(&self.loc_rib),
                prefixes_accepted: peer
                    .session
                    .as_ref()
                    .map_or(0, |s| count_from(&self.loc_rib, &PathSource::Peer(s.export.peer))),
                prefixes_sent: peer.adj_rib_out.len(),
                updates_received: peer.counters.updates_received,
                updates_sent: peer.counters.updates_sent,
                fsm_transitions: peer.counters.fsm_transitions,
                established_transitions: peer.counters.established_transitions,
            })
            .collect();
        MetricsSnapshot { peers }
    }

    pub(super) fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|peer| PeerStatus {
                address: peer.config.address.to_string(),
                asn: peer.config.asn,
                state: peer.state.name(),
                prefixes_received: peer.received(&self.loc_rib),
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
                selection_deferred: self.selection_deferred(),
            })
            .collect()
    }

    pub(super) fn neighbor_status(&self, address: IpAddr) -> Option<NeighborStatus> {
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
                advertisement_interval: peer.config.advertisement_interval.as_secs(),
            },
            capabilities: negotiated.map(|n| NeighborCapabilities {
                families: n.families.iter().filter_map(|f| family_name(*f)).collect(),
                four_octet_as: n.four_octet_as,
                route_refresh: n.route_refresh,
                enhanced_route_refresh: n.enhanced_route_refresh,
                extended_messages: n.extended_messages,
                extended_next_hop: n.ipv4_over_ipv6(),
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
                prefixes_received: peer.received(&self.loc_rib),
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
            selection_deferral: self
                .deferral
                .as_ref()
                .filter(|deferral| !deferral.advertised)
                .map(|deferral| {
                    let wait = deferral.peers.wait(
                        address,
                        negotiated.map(|n| &**n),
                        session.map_or(&[][..], |s| &s.end_of_rib[..]),
                    );
                    NeighborDeferral {
                        remaining_seconds: deferral
                            .until
                            .saturating_duration_since(tokio::time::Instant::now())
                            .as_secs(),
                        awaited: wait != DeferralWait::Nothing,
                        end_of_rib_awaited: match wait {
                            DeferralWait::EndOfRib(families) => families.into_iter().filter_map(family_name).collect(),
                            DeferralWait::Session | DeferralWait::Nothing => Vec::new(),
                        },
                    }
                }),
        })
    }

    pub(super) fn route_status(&self) -> Vec<RouteStatus> {
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
                    originator_id: attributes.originator_id.map(|id| id.to_string()),
                    cluster_list: attributes.cluster_list.iter().map(ToString::to_string).collect(),
                    aggregator: attributes.aggregator.map(|a| format!("{} {}", a.asn, a.address)),
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

/// The prefixes `source` has a path to: a counter the Loc-RIB keeps, no walk (`weftctl bgp
/// peers` may be polled while a full table arrives).
fn count_from(loc_rib: &LocRib, source: &PathSource) -> usize {
    loc_rib.count(source)
}

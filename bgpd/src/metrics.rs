//! Prometheus metrics on `GET /metrics` (`metrics_listen: ADDR:PORT`, off by default).
//!
//! | metric | type | meaning |
//! | --- | --- | --- |
//! | `weft_bgp_sessions{state}` | gauge | configured peers by FSM state (all six states, zeros too) |
//! | `weft_bgp_session_uptime_seconds{peer}` | gauge | since the session became Established; 0 when it is not |
//! | `weft_bgp_prefixes_received{peer}` | gauge | the peer's Adj-RIB-In, before import policy |
//! | `weft_bgp_prefixes_accepted{peer}` | gauge | the peer's paths in the Loc-RIB |
//! | `weft_bgp_prefixes_sent{peer}` | gauge | the peer's Adj-RIB-Out |
//! | `weft_bgp_updates_received_total{peer}` | counter | UPDATEs from the peer (End-of-RIB included) |
//! | `weft_bgp_updates_sent_total{peer}` | counter | UPDATEs to the peer (End-of-RIB included) |
//! | `weft_bgp_fsm_transitions_total{peer}` | counter | state changes of the peer's session |
//! | `weft_bgp_established_transitions_total{peer}` | counter | times the session reached Established |
//! | `weft_bgp_kernel_routes` | gauge | routes weft holds in the kernel (learned and blackhole) |
//!
//! Each scrape asks the instance for a [`MetricsSnapshot`] over the control queue, like
//! `weftctl` does, and renders it; the FIB task keeps [`KernelRoutes`] itself. So the instance
//! stays the one owner of its state and no counter is shared between tasks but that gauge.
//!
//! Must never: change protocol state, or wait on a client without a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weft_bgp_proto::State;

use crate::control::ControlRequest;

/// How long a scrape may take, the instance's answer included.
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);

/// The states `weft_bgp_sessions` always lists.
const STATES: [State; 6] = [
    State::Idle,
    State::Connect,
    State::Active,
    State::OpenSent,
    State::OpenConfirm,
    State::Established,
];

/// The number of routes the FIB task holds in the kernel, kept by that task.
#[derive(Debug, Clone, Default)]
pub struct KernelRoutes(Arc<AtomicI64>);

impl KernelRoutes {
    /// Sets the count.
    pub fn set(&self, count: usize) {
        self.0
            .store(i64::try_from(count).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One peer's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMetrics {
    /// The peer's address (the `peer` label).
    pub address: String,
    /// The FSM state.
    pub state: State,
    /// Seconds Established; 0 when not.
    pub uptime_seconds: u64,
    /// Adj-RIB-In.
    pub prefixes_received: usize,
    /// Paths in the Loc-RIB.
    pub prefixes_accepted: usize,
    /// Adj-RIB-Out.
    pub prefixes_sent: usize,
    /// UPDATEs received.
    pub updates_received: u64,
    /// UPDATEs sent.
    pub updates_sent: u64,
    /// State changes.
    pub fsm_transitions: u64,
    /// Times Established.
    pub established_transitions: u64,
}

/// What the instance reports for one scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Every configured peer.
    pub peers: Vec<PeerMetrics>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// The text exposition of `snapshot` and the kernel route count.
pub fn render(snapshot: &MetricsSnapshot, kernel_routes: i64) -> String {
    let mut registry = Registry::with_prefix("weft_bgp");
    let sessions = Family::<StateLabel, Gauge>::default();
    for state in STATES {
        let count = snapshot.peers.iter().filter(|peer| peer.state == state).count();
        sessions
            .get_or_create(&StateLabel { state: state.name() })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    registry.register("sessions", "Configured peers by session state", sessions);
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: fn(&PeerMetrics) -> u64| {
        let family = Family::<PeerLabel, Gauge>::default();
        for peer in &snapshot.peers {
            family
                .get_or_create(&PeerLabel {
                    peer: peer.address.clone(),
                })
                .set(i64::try_from(value(peer)).unwrap_or(i64::MAX));
        }
        registry.register(name, help, family);
    };
    gauge(
        &mut registry,
        "session_uptime_seconds",
        "Seconds since the session became Established; 0 when it is not",
        |p| p.uptime_seconds,
    );
    gauge(
        &mut registry,
        "prefixes_received",
        "Prefixes in the peer's Adj-RIB-In, before import policy",
        |p| p.prefixes_received as u64,
    );
    gauge(
        &mut registry,
        "prefixes_accepted",
        "The peer's paths in the Loc-RIB",
        |p| p.prefixes_accepted as u64,
    );
    gauge(
        &mut registry,
        "prefixes_sent",
        "Prefixes in the peer's Adj-RIB-Out",
        |p| p.prefixes_sent as u64,
    );
    let counter = |registry: &mut Registry, name: &str, help: &str, value: fn(&PeerMetrics) -> u64| {
        let family = Family::<PeerLabel, Counter>::default();
        for peer in &snapshot.peers {
            family
                .get_or_create(&PeerLabel {
                    peer: peer.address.clone(),
                })
                .inc_by(value(peer));
        }
        registry.register(name, help, family);
    };
    counter(
        &mut registry,
        "updates_received",
        "UPDATE messages received from the peer",
        |p| p.updates_received,
    );
    counter(&mut registry, "updates_sent", "UPDATE messages sent to the peer", |p| {
        p.updates_sent
    });
    counter(
        &mut registry,
        "fsm_transitions",
        "State changes of the peer's session",
        |p| p.fsm_transitions,
    );
    counter(
        &mut registry,
        "established_transitions",
        "Times the peer's session reached Established",
        |p| p.established_transitions,
    );
    let kernel = Gauge::<i64>::default();
    kernel.set(kernel_routes);
    registry.register("kernel_routes", "Routes weft holds in the kernel", kernel);
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// Binds the metrics listener.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves `GET /metrics` until cancelled.
pub async fn run(
    listener: TcpListener,
    requests: mpsc::Sender<ControlRequest>,
    kernel_routes: KernelRoutes,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics accept failed");
                continue;
            }
        };
        let requests = requests.clone();
        let kernel_routes = kernel_routes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let requests = requests.clone();
                let kernel_routes = kernel_routes.clone();
                async move {
                    if request.uri().path() != "/metrics" {
                        return Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from("try /metrics\n")));
                    }
                    let (tx, rx) = oneshot::channel();
                    let snapshot = match requests.send(ControlRequest::Metrics(tx)).await {
                        Ok(()) => rx.await.ok(),
                        Err(_) => None,
                    };
                    match snapshot {
                        Some(snapshot) => Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(render(&snapshot, kernel_routes.get())))),
                        None => Response::builder()
                            .status(StatusCode::SERVICE_UNAVAILABLE)
                            .body(Full::new(Bytes::from("the daemon is shutting down\n"))),
                    }
                }
            });
            let serve = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CLIENT_DEADLINE, serve).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "metrics client failed"),
                Err(_) => tracing::debug!("metrics client too slow"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(address: &str, state: State) -> PeerMetrics {
        PeerMetrics {
            address: address.to_owned(),
            state,
            uptime_seconds: 42,
            prefixes_received: 3,
            prefixes_accepted: 2,
            prefixes_sent: 1,
            updates_received: 7,
            updates_sent: 5,
            fsm_transitions: 4,
            established_transitions: 1,
        }
    }

    #[test]
    fn every_state_is_listed_and_peers_are_labelled() {
        let snapshot = MetricsSnapshot {
            peers: vec![
                peer("198.19.0.1", State::Established),
                peer("2001:db8:ff::1", State::Active),
            ],
        };
        let text = render(&snapshot, 9);
        for line in [
            "weft_bgp_sessions{state=\"Established\"} 1",
            "weft_bgp_sessions{state=\"Active\"} 1",
            "weft_bgp_sessions{state=\"Idle\"} 0",
            "weft_bgp_prefixes_received{peer=\"198.19.0.1\"} 3",
            "weft_bgp_prefixes_accepted{peer=\"2001:db8:ff::1\"} 2",
            "weft_bgp_updates_received_total{peer=\"198.19.0.1\"} 7",
            "weft_bgp_updates_sent_total{peer=\"198.19.0.1\"} 5",
            "weft_bgp_fsm_transitions_total{peer=\"198.19.0.1\"} 4",
            "weft_bgp_kernel_routes 9",
            "# TYPE weft_bgp_updates_sent counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
    }
}

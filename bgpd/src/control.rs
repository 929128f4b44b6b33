//! The control socket: a unix stream socket `weftctl bgp …` talks to.
//!
//! Protocol: the client sends one line, a command (`peers`, `routes` or `neighbor ADDRESS`); the
//! daemon answers with one line of JSON and closes the connection. `peers` is the array
//! DESIGN.md fixes (each object has at least `address`, `asn`, `state`, `prefixes_received`,
//! `prefixes_sent`, `uptime_seconds`); `routes` is an array of every path in the Loc-RIB;
//! `neighbor` one object ([`NeighborStatus`]). An unknown command is
//! answered with `{"error": "…"}`. Every request is queued onto the instance, which owns the
//! state; this module only carries bytes.
//!
//! Must never: read or change protocol state itself, or wait on a client without a deadline.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Longest command line accepted.
const MAX_REQUEST: u64 = 1024;
/// How long a client may take to send its command or read the answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

/// One peer as `weftctl bgp peers --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerStatus {
    /// The configured address.
    pub address: String,
    /// The configured AS.
    pub asn: u32,
    /// The FSM state: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    pub state: &'static str,
    /// Prefixes in the Adj-RIB-In (before import policy).
    pub prefixes_received: usize,
    /// Prefixes that passed import policy into the Loc-RIB.
    pub prefixes_accepted: usize,
    /// Prefixes in the Adj-RIB-Out.
    pub prefixes_sent: usize,
    /// Seconds since the session became Established; 0 when it is not.
    pub uptime_seconds: u64,
    /// The peer's BGP Identifier, when Established.
    pub router_id: Option<String>,
    /// The negotiated families, when Established.
    pub families: Vec<&'static str>,
    /// weft restarted and defers route selection (RFC 4724 §4.1): nothing is advertised to
    /// this peer (nor any other) until the peers' End-of-RIB or `select_defer_time`.
    pub selection_deferred: bool,
}

/// One path of the Loc-RIB as `weftctl bgp routes --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteStatus {
    /// The prefix.
    pub prefix: String,
    /// Whether this is the best path to the prefix.
    pub best: bool,
    /// `local` for an originated route, otherwise the peer's address.
    pub from: String,
    /// NEXT_HOP (none for an originated route).
    pub next_hop: Option<String>,
    /// AS_PATH, AS numbers in order.
    pub as_path: Vec<u32>,
    /// ORIGIN: igp, egp, incomplete.
    pub origin: &'static str,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF as carried (iBGP) or set by import policy.
    pub local_pref: Option<u32>,
    /// COMMUNITIES, as `ASN:VALUE`.
    pub communities: Vec<String>,
    /// LARGE_COMMUNITY, as `GLOBAL:LOCAL1:LOCAL2`.
    pub large_communities: Vec<String>,
    /// ORIGINATOR_ID of a reflected route (RFC 4456).
    pub originator_id: Option<String>,
    /// CLUSTER_LIST of a reflected route, most recent first (RFC 4456).
    pub cluster_list: Vec<String>,
    /// AGGREGATOR as `ASN ADDRESS` (the 4-octet AS, also when a 2-octet peer sent it in
    /// AS4_AGGREGATOR, RFC 6793).
    pub aggregator: Option<String>,
    /// Kept from a peer whose session went down, until it comes back with its End-of-RIB
    /// (graceful restart, RFC 4724).
    pub stale: bool,
}

/// One session in detail, as `weftctl bgp neighbor ADDR --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NeighborStatus {
    /// The configured address.
    pub address: String,
    /// The configured AS.
    pub asn: u32,
    /// eBGP or iBGP.
    pub kind: &'static str,
    /// The FSM state.
    pub state: &'static str,
    /// The peer's BGP Identifier, when Established.
    pub router_id: Option<String>,
    /// Our address on the session, when Established.
    pub local_address: Option<String>,
    /// Seconds since the session became Established; 0 when it is not.
    pub uptime_seconds: u64,
    /// Timers, configured and negotiated.
    pub timers: NeighborTimers,
    /// What both OPENs agreed on, when Established.
    pub capabilities: Option<NeighborCapabilities>,
    /// Counters since weft-bgpd started.
    pub counters: NeighborCounters,
    /// The import and export policies: accept, reject or a policy's name.
    pub import: String,
    /// See `import`.
    pub export: String,
    /// The max-prefix limit, if any.
    pub max_prefix: Option<usize>,
    /// TCP MD5 is configured (the key is never shown).
    pub md5: bool,
    /// Why the session last went down.
    pub last_error: Option<String>,
    /// While weft defers route selection after its restart (RFC 4724 §4.1); `None` otherwise.
    pub selection_deferral: Option<NeighborDeferral>,
}

/// Route selection deferral as one peer sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NeighborDeferral {
    /// Seconds until the Selection_Deferral_Timer ends deferral anyway.
    pub remaining_seconds: u64,
    /// Deferral still waits for this peer: its session to come up, or its End-of-RIB.
    pub awaited: bool,
    /// The families whose End-of-RIB from this peer deferral still waits for.
    pub end_of_rib_awaited: Vec<&'static str>,
}

/// A session's timers, in seconds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NeighborTimers {
    /// The hold time we propose.
    pub hold_time_configured: u16,
    /// The hold time in use, when Established.
    pub hold_time: Option<u16>,
    /// The keepalive interval in use, when Established.
    pub keepalive_time: Option<u16>,
    /// Between connection attempts.
    pub connect_retry_time: u64,
    /// MinRouteAdvertisementIntervalTimer, seconds (RFC 4271 §9.2.1.1; 0: none).
    pub advertisement_interval: u64,
}

/// What a session negotiated.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NeighborCapabilities {
    /// Families both sides enabled.
    pub families: Vec<&'static str>,
    /// 4-octet AS numbers (RFC 6793).
    pub four_octet_as: bool,
    /// Route refresh (RFC 2918).
    pub route_refresh: bool,
    /// Enhanced route refresh (RFC 7313).
    pub enhanced_route_refresh: bool,
    /// Extended messages (RFC 8654).
    pub extended_messages: bool,
    /// IPv4 unicast routes with IPv6 next hops (RFC 8950).
    pub extended_next_hop: bool,
    /// The peer's graceful restart capability, when both sides offered one (RFC 4724).
    pub graceful_restart: Option<NeighborGracefulRestart>,
}

/// The peer's graceful restart capability.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NeighborGracefulRestart {
    /// Its Restart Time, seconds.
    pub restart_time: u16,
    /// It has just restarted (Restart State flag).
    pub restarting: bool,
    /// Families it restarts gracefully, with `+` when it kept forwarding state.
    pub families: Vec<String>,
}

/// A session's counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NeighborCounters {
    /// Prefixes in the Adj-RIB-In.
    pub prefixes_received: usize,
    /// Prefixes in the Loc-RIB from this peer.
    pub prefixes_accepted: usize,
    /// Prefixes in the Adj-RIB-Out.
    pub prefixes_sent: usize,
    /// Prefixes kept stale while the peer restarts.
    pub prefixes_stale: usize,
    /// UPDATE messages received (End-of-RIB included).
    pub updates_received: u64,
    /// UPDATE messages sent (End-of-RIB included).
    pub updates_sent: u64,
    /// ROUTE-REFRESH requests received.
    pub route_refreshes_received: u64,
    /// Times the session reached Established.
    pub established_transitions: u64,
}

/// A request queued onto the instance.
#[derive(Debug)]
pub enum ControlRequest {
    /// Every configured peer.
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    /// Every path in the Loc-RIB.
    Routes(oneshot::Sender<Vec<RouteStatus>>),
    /// One peer in detail; `None` if no peer has that address.
    Neighbor(IpAddr, oneshot::Sender<Option<NeighborStatus>>),
    /// What `GET /metrics` shows ([`crate::metrics`]).
    Metrics(oneshot::Sender<crate::metrics::MetricsSnapshot>),
    /// A configuration reload ([`crate::reload`]); answered once applied.
    Reload(Box<crate::reload::InstanceReload>, oneshot::Sender<()>),
}

/// Binds the socket at `path`, making its directory and replacing a stale socket file.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    UnixListener::bind(path)
}

/// Serves clients until cancelled.
pub async fn run(listener: UnixListener, requests: mpsc::Sender<ControlRequest>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let requests = requests.clone();
                tokio::spawn(async move {
                    if let Err(error) = tokio::time::timeout(CLIENT_DEADLINE, serve(stream, requests)).await {
                        tracing::debug!(%error, "control client too slow");
                    }
                });
            }
            Err(error) => tracing::warn!(%error, "control socket accept failed"),
        }
    }
}

async fn serve(stream: UnixStream, requests: mpsc::Sender<ControlRequest>) {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(reader.take(MAX_REQUEST))
        .read_line(&mut line)
        .await
        .is_err()
    {
        return;
    }
    let answer = match line.trim() {
        "peers" => {
            let (tx, rx) = oneshot::channel();
            ask(&requests, ControlRequest::Peers(tx), rx).await
        }
        "routes" => {
            let (tx, rx) = oneshot::channel();
            ask(&requests, ControlRequest::Routes(tx), rx).await
        }
        other => match other.strip_prefix("neighbor ").map(|a| a.trim().parse::<IpAddr>()) {
            Some(Ok(address)) => {
                let (tx, rx) = oneshot::channel();
                match ask(&requests, ControlRequest::Neighbor(address, tx), rx).await {
                    serde_json::Value::Null => {
                        serde_json::json!({ "error": format!("no peer {address} is configured") })
                    }
                    answer => answer,
                }
            }
            Some(Err(_)) => serde_json::json!({ "error": format!("`{other}`: neighbor takes an IP address") }),
            None => serde_json::json!({
                "error": format!("unknown command `{other}` (peers, routes, neighbor ADDRESS)")
            }),
        },
    };
    let mut bytes = answer.to_string().into_bytes();
    bytes.push(b'\n');
    if let Err(error) = writer.write_all(&bytes).await {
        tracing::debug!(%error, "control client went away");
    }
}

async fn ask<T: Serialize>(
    requests: &mpsc::Sender<ControlRequest>,
    request: ControlRequest,
    answer: oneshot::Receiver<T>,
) -> serde_json::Value {
    if requests.send(request).await.is_err() {
        return serde_json::json!({ "error": "the daemon is shutting down" });
    }
    match answer.await {
        Ok(value) => serde_json::to_value(value).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
        Err(_) => serde_json::json!({ "error": "the daemon is shutting down" }),
    }
}

//! The control socket: a unix stream socket `weftctl bgp …` talks to.
//!
//! Protocol: the client sends one line, a command (`peers` or `routes`); the daemon answers with
//! one line of JSON and closes the connection. `peers` is the array DESIGN.md fixes (each object
//! has at least `address`, `asn`, `state`, `prefixes_received`, `prefixes_sent`,
//! `uptime_seconds`); `routes` is an array of every path in the Loc-RIB. An unknown command is
//! answered with `{"error": "…"}`. Every request is queued onto the instance, which owns the
//! state; this module only carries bytes.
//!
//! Must never: read or change protocol state itself, or wait on a client without a deadline.

use std::io;
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
    /// LOCAL_PREF as carried (iBGP).
    pub local_pref: Option<u32>,
}

/// A request queued onto the instance.
#[derive(Debug)]
pub enum ControlRequest {
    /// Every configured peer.
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    /// Every path in the Loc-RIB.
    Routes(oneshot::Sender<Vec<RouteStatus>>),
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
        other => serde_json::json!({ "error": format!("unknown command `{other}` (peers, routes)") }),
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

//! The running session tasks, one per configured peer: started at start-up and by a reload,
//! stopped by a reload ([`crate::reload`]), and what the listener needs to hand each its
//! connections.
//!
//! A peer is first prepared (its command queue made, so that the instance can be told of it)
//! and then spawned, once the instance knows it. Stopping one sends it a close command (a Cease
//! of the given subcode) and waits, bounded, for its task to end.
//!
//! Must never: decide which peers run (the configuration does) or touch a session's protocol
//! state.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use weft_bgp_proto::capabilities::GracefulRestartConfig;
use weft_bgp_proto::notification::CeaseSubcode;

use crate::config::PeerConfig;
use crate::session::{self, Channels, PeerCommand, PeerEvent, PeerSession};
use crate::shutdown::Shutdown;

/// Commands queued from the instance to one session task.
const COMMAND_QUEUE: usize = 64;
/// Connections the listener may hand one session task before it looks at them.
const INBOUND_QUEUE: usize = 2;
/// How long a stopped session task may take to send its Cease and end.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// One peer as the listener sees it: where its connections go, and its TCP MD5 key.
#[derive(Debug, Clone)]
pub struct ListenerPeer {
    /// The session task's queue of accepted connections.
    pub inbound: mpsc::Sender<TcpStream>,
    /// The TCP MD5 key, if any.
    pub key: Option<Vec<u8>>,
}

/// Every configured peer, by address, as the listener sees them.
pub type ListenerPeers = Arc<HashMap<IpAddr, ListenerPeer>>;

#[derive(Debug)]
struct Running {
    commands: mpsc::Sender<PeerCommand>,
    listener: ListenerPeer,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Prepared {
    peer: PeerConfig,
    commands: mpsc::Receiver<PeerCommand>,
    inbound: mpsc::Receiver<TcpStream>,
}

/// The session tasks.
#[derive(Debug)]
pub struct Peers {
    local_asn: u32,
    router_id: Ipv4Addr,
    graceful_restart: Option<GracefulRestartConfig>,
    events: mpsc::Sender<PeerEvent>,
    shutdown: Shutdown,
    running: BTreeMap<IpAddr, Running>,
    prepared: Vec<Prepared>,
    listener: watch::Sender<ListenerPeers>,
}

impl Peers {
    /// No peers yet; `listener` is what the listener task follows.
    pub fn new(
        local_asn: u32,
        router_id: Ipv4Addr,
        graceful_restart: Option<GracefulRestartConfig>,
        events: mpsc::Sender<PeerEvent>,
        shutdown: Shutdown,
    ) -> Self {
        let (listener, _) = watch::channel(ListenerPeers::default());
        Self {
            local_asn,
            router_id,
            graceful_restart,
            events,
            shutdown,
            running: BTreeMap::new(),
            prepared: Vec::new(),
            listener,
        }
    }

    /// The AS and router id sessions started from now on use (cluster mode: the node's
    /// identity changed; every session is restarted for it).
    pub fn set_identity(&mut self, local_asn: u32, router_id: Ipv4Addr) {
        self.local_asn = local_asn;
        self.router_id = router_id;
    }

    /// What the listener follows.
    pub fn listener_peers(&self) -> watch::Receiver<ListenerPeers> {
        self.listener.subscribe()
    }

    /// Makes `peer`'s queues; its task starts at the next [`Self::spawn_prepared`]. Returns the
    /// queue of commands to its task, for the instance.
    pub fn prepare(&mut self, peer: &PeerConfig) -> mpsc::Sender<PeerCommand> {
        let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        self.running.insert(
            peer.address,
            Running {
                commands: command_tx.clone(),
                listener: ListenerPeer {
                    inbound: inbound_tx,
                    key: peer.password.as_ref().map(|password| password.0.clone()),
                },
                task: None,
            },
        );
        self.prepared.push(Prepared {
            peer: peer.clone(),
            commands: command_rx,
            inbound: inbound_rx,
        });
        command_tx
    }

    /// Starts the session tasks of the prepared peers and tells the listener about them.
    pub fn spawn_prepared(&mut self) {
        for prepared in std::mem::take(&mut self.prepared) {
            let address = prepared.peer.address;
            let span = tracing::info_span!("peer", addr = %address, asn = prepared.peer.asn);
            let channels = Channels {
                inbound: prepared.inbound,
                commands: prepared.commands,
                events: self.events.clone(),
            };
            let mut graceful_restart = self.graceful_restart.clone();
            if let (Some(restart), Some(time)) = (graceful_restart.as_mut(), prepared.peer.restart_time) {
                restart.restart_time = time;
            }
            let task = tokio::spawn(
                PeerSession::run(
                    prepared.peer,
                    self.local_asn,
                    self.router_id,
                    session::BGP_PORT,
                    graceful_restart,
                    channels,
                    self.shutdown.clone(),
                )
                .instrument(span),
            );
            if let Some(running) = self.running.get_mut(&address) {
                running.task = Some(task);
            }
        }
        // RFC 4724 §3: the Restart State flag only on the sessions of the restart itself.
        if let Some(restart) = self.graceful_restart.as_mut() {
            restart.restarting = false;
        }
        self.publish();
    }

    /// Ends `address`'s session with a Cease of `subcode` and waits for its task to end.
    pub async fn stop(&mut self, address: IpAddr, subcode: CeaseSubcode) {
        let Some(running) = self.running.remove(&address) else {
            return;
        };
        self.publish();
        if running.commands.send(PeerCommand::Close { subcode }).await.is_err() {
            tracing::debug!(peer = %address, "session task already gone");
        }
        if let Some(task) = running.task
            && tokio::time::timeout(STOP_DEADLINE, task).await.is_err()
        {
            tracing::warn!(peer = %address, "session task did not end in time");
        }
    }

    /// The tasks, to wait for at shutdown.
    pub fn into_tasks(self) -> Vec<JoinHandle<()>> {
        self.running.into_values().filter_map(|running| running.task).collect()
    }

    fn publish(&self) {
        let peers: HashMap<IpAddr, ListenerPeer> = self
            .running
            .iter()
            .filter(|(_, running)| running.task.is_some())
            .map(|(address, running)| (*address, running.listener.clone()))
            .collect();
        self.listener.send_replace(Arc::new(peers));
    }
}

//! The session task of one configured peer: TCP connections driving the pure FSM
//! ([`weft_bgp_proto::Session`], RFC 4271 §8) and nothing else.
//!
//! Owns, for one peer: the outgoing connection attempts ([`crate::connector`]), the connections
//! the listener hands over, a reader task per connection that cuts the byte stream into
//! messages, the FSM of each connection, its timers (the task sleeps until the FSM's next
//! deadline), the back-off before an automatic restart from Idle, and connection collisions
//! (RFC 4271 §6.8): while one connection is in OpenSent or OpenConfirm a second one, from the
//! peer, gets an FSM of its own; when both have the peer's OPEN, the pure
//! [`resolve_collision`] picks the survivor and the other is closed with a Cease (Connection
//! Collision Resolution). A connection that reaches Established wins over any other.
//!
//! ```text
//!   listener ──TcpStream──▶ ┌──────────── session task (this) ─────────────┐
//!   connector ─TcpStream──▶ │ primary: Session FSM + socket                │ ──PeerEvent──▶ instance
//!   reader task ─frames───▶ │ secondary: Session FSM + socket (collision)  │ ◀─PeerCommand─ instance
//!                           └──────────────────────────────────────────────┘
//! ```
//!
//! It reports to the instance (state changes of the primary connection, Established with what
//! was negotiated, received UPDATEs and ROUTE-REFRESHes, Down) and sends the UPDATEs the
//! instance gives it. On cancellation it sends a Cease (Administrative Shutdown, RFC 4486) on
//! every open connection before it returns; on a stop for a restart it closes them without one.
//!
//! Must never: decide on routes, or block the instance: while the instance's queue is full it
//! keeps taking the instance's commands, so neither waits on the other forever.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_bgp_proto::capabilities::GracefulRestartConfig;
use weft_bgp_proto::capabilities::LocalConfig;
use weft_bgp_proto::codec::{decode_message, encode};
use weft_bgp_proto::fsm::collision::{Keep, Speaker, resolve_collision};
use weft_bgp_proto::fsm::{DownReason, SessionConfig};
use weft_bgp_proto::graceful_restart::SessionEnd;
use weft_bgp_proto::notification::{CeaseSubcode, code};
use weft_bgp_proto::wire::route_refresh::BgpRouteRefreshMessage;
use weft_bgp_proto::wire::update::BgpUpdateMessage;
use weft_bgp_proto::{Action, AddressType, Event, Framer, Message, Negotiated, Notification, Session, State};

use crate::config::PeerConfig;
use crate::connector;
use crate::shutdown::Shutdown;
use crate::ttl::Ttl;

/// The BGP port (RFC 4271 §8.2.1).
pub const BGP_PORT: u16 = 179;
/// Bytes read from a socket at a time.
const READ_BUFFER: usize = 64 * 1024;
/// Messages a reader task may have queued for its session.
const IO_QUEUE: usize = 256;
/// Longest wait before an automatic restart, in multiples of ConnectRetryTime.
const MAX_BACKOFF_FACTOR: u32 = 6;
/// How long a closed connection's reader may drain the peer's last bytes.
const LINGER: Duration = Duration::from_secs(2);
/// How long a Cease may take to leave on shutdown.
const SHUTDOWN_WRITE_DEADLINE: Duration = Duration::from_secs(2);

/// What a session task tells the instance.
#[derive(Debug)]
pub enum PeerEvent {
    /// The primary connection's FSM changed state.
    State {
        /// The peer.
        peer: IpAddr,
        /// The new state.
        state: State,
    },
    /// The session is Established.
    Established {
        /// The peer.
        peer: IpAddr,
        /// What both OPENs agreed on.
        negotiated: Box<Negotiated>,
        /// Our address on the connection (the next hop we advertise).
        local_address: IpAddr,
    },
    /// An UPDATE arrived.
    Update {
        /// The peer.
        peer: IpAddr,
        /// The message, RFC 7606 already applied.
        update: Box<BgpUpdateMessage>,
    },
    /// The peer asks for our routes again (RFC 2918).
    RouteRefresh {
        /// The peer.
        peer: IpAddr,
        /// The request.
        refresh: BgpRouteRefreshMessage,
    },
    /// The Established session ended: forget the peer's routes, or keep them stale (graceful
    /// restart).
    Down {
        /// The peer.
        peer: IpAddr,
        /// How it ended.
        end: SessionEnd,
        /// Why, for people (`weftctl bgp neighbor`).
        reason: String,
    },
}

/// What the instance tells a session task.
#[derive(Debug)]
pub enum PeerCommand {
    /// Send these UPDATEs on the Established connection, in order.
    Send(Vec<BgpUpdateMessage>),
    /// End the session with a Cease of this subcode and stay down: for `hold_down`, or with
    /// `None` until the process restarts (max-prefix, RFC 4486).
    Stop {
        /// The Cease subcode.
        subcode: CeaseSubcode,
        /// How long to refuse and not attempt connections.
        hold_down: Option<Duration>,
    },
    /// End the session with a Cease of this subcode and end the task: the peer was removed or
    /// its settings changed (configuration reload).
    Close {
        /// The Cease subcode (RFC 4486: Peer De-configured, Other Configuration Change).
        subcode: CeaseSubcode,
    },
}

/// The channels of one session task.
#[derive(Debug)]
pub struct Channels {
    /// Connections the listener accepted from this peer.
    pub inbound: mpsc::Receiver<TcpStream>,
    /// Commands from the instance.
    pub commands: mpsc::Receiver<PeerCommand>,
    /// Events to the instance.
    pub events: mpsc::Sender<PeerEvent>,
}

/// What a reader task or a connection attempt reports.
#[derive(Debug)]
enum IoEvent {
    /// One framed message.
    Frame(u64, Vec<u8>),
    /// The connection closed or failed.
    Closed(u64),
    /// The byte stream broke the framing rules: send this NOTIFICATION.
    Malformed(u64, Notification),
    /// An outgoing connection attempt ended.
    Connected(u64, std::io::Result<TcpStream>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Primary,
    Secondary,
}

/// One TCP connection and its FSM.
#[derive(Debug)]
struct Connection {
    id: u64,
    session: Session,
    /// Whether the peer opened it (for collision resolution).
    inbound: bool,
    writer: Option<OwnedWriteHalf>,
    reader: Option<JoinHandle<()>>,
    local_address: Option<IpAddr>,
}

impl Connection {
    /// Closes the connection: our FIN follows what was written (a NOTIFICATION), and the reader
    /// drains what the peer still sends until its FIN, for at most [`LINGER`], so that the
    /// kernel does not answer unread data with a reset that could overtake the NOTIFICATION.
    /// Whatever that reader still reports goes to no connection (id 0 is never a reader's).
    fn close(&mut self) {
        self.writer = None;
        self.id = 0;
        if let Some(mut reader) = self.reader.take() {
            // Outside the runtime (a drop while it shuts down) there is nothing to wait with.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(async move {
                    if tokio::time::timeout(LINGER, &mut reader).await.is_err() {
                        reader.abort();
                    }
                })),
                Err(_) => reader.abort(),
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// The session task of one peer.
#[derive(Debug)]
pub struct PeerSession {
    peer: PeerConfig,
    local_asn: u32,
    router_id: Ipv4Addr,
    /// Graceful restart as we offer it; its Restart State flag is set until the first session
    /// is Established after a restart that kept the kernel's routes.
    graceful_restart: Option<GracefulRestartConfig>,
    port: u16,
    primary: Connection,
    secondary: Option<Connection>,
    /// The connection attempt in flight, by id.
    connecting: Option<(u64, JoinHandle<()>)>,
    /// When to restart from Idle.
    restart_at: Option<Instant>,
    /// A secondary connection's Established, reported once it is promoted.
    pending_established: Option<Box<Negotiated>>,
    next_id: u64,
    io_tx: mpsc::Sender<IoEvent>,
    events: mpsc::Sender<PeerEvent>,
    /// Commands taken while waiting for room in the instance's queue.
    held_commands: VecDeque<PeerCommand>,
    shutting_down: bool,
    /// Stopped by the instance (max-prefix): no connections until `restart_at`, or ever when
    /// that is `None`.
    held_down: bool,
    /// Closed for good (a reload removed or changed the peer): the task ends.
    closed: bool,
}

impl PeerSession {
    /// Runs the session task until `cancel` fires. `graceful_restart`: what we offer (RFC
    /// 4724), with the Restart State and Forwarding State flags set when this process kept the
    /// routes of a previous one.
    pub async fn run(
        peer: PeerConfig,
        local_asn: u32,
        router_id: Ipv4Addr,
        port: u16,
        graceful_restart: Option<GracefulRestartConfig>,
        channels: Channels,
        shutdown: Shutdown,
    ) {
        let (io_tx, mut io_rx) = mpsc::channel(IO_QUEUE);
        let Channels {
            mut inbound,
            mut commands,
            events,
        } = channels;
        let primary = Connection {
            id: 0,
            session: Session::new(session_config(
                &peer,
                local_asn,
                router_id,
                graceful_restart.clone(),
                false,
            )),
            inbound: false,
            writer: None,
            reader: None,
            local_address: None,
        };
        let mut task = Self {
            peer,
            local_asn,
            router_id,
            graceful_restart,
            port,
            primary,
            secondary: None,
            connecting: None,
            restart_at: None,
            pending_established: None,
            next_id: 1,
            io_tx,
            events,
            held_commands: VecDeque::new(),
            shutting_down: false,
            held_down: false,
            closed: false,
        };
        task.drive(Slot::Primary, Event::ManualStart, &mut commands).await;
        loop {
            while let Some(command) = task.held_commands.pop_front() {
                task.command(command, &mut commands).await;
            }
            let deadline = task.next_deadline();
            let sleep =
                tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = sleep => task.timeouts(&mut commands).await,
                Some(event) = io_rx.recv() => task.io(event, &mut commands).await,
                Some(stream) = inbound.recv() => task.accept(stream, &mut commands).await,
                Some(command) = commands.recv() => task.command(command, &mut commands).await,
            }
            if task.closed {
                return;
            }
            task.settle(&mut commands).await;
        }
        if shutdown.for_restart() {
            // RFC 4724 §4.1: no NOTIFICATION, so that the peers keep our routes while we restart.
            task.primary.close();
            if let Some(secondary) = task.secondary.as_mut() {
                secondary.close();
            }
        } else {
            task.shutdown().await;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let fsm = [Some(&self.primary), self.secondary.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|c| c.session.timers().next_deadline())
            .map(Instant::from_std);
        fsm.chain(self.restart_at).min()
    }

    fn connection(&mut self, slot: Slot) -> Option<&mut Connection> {
        match slot {
            Slot::Primary => Some(&mut self.primary),
            Slot::Secondary => self.secondary.as_mut(),
        }
    }

    fn slot_of(&self, id: u64) -> Option<Slot> {
        if self.primary.id == id {
            Some(Slot::Primary)
        } else if self.secondary.as_ref().is_some_and(|c| c.id == id) {
            Some(Slot::Secondary)
        } else {
            None
        }
    }

    /// Feeds `event` to a connection's FSM and carries out what it says, including the events
    /// that carrying it out causes (a failed write is a lost connection).
    async fn drive(&mut self, slot: Slot, event: Event, commands: &mut mpsc::Receiver<PeerCommand>) {
        let mut queue = VecDeque::from([(slot, event)]);
        while let Some((slot, event)) = queue.pop_front() {
            let now = Instant::now().into_std();
            let Some(connection) = self.connection(slot) else {
                continue;
            };
            let actions = connection.session.handle(event, now);
            for action in actions {
                self.carry_out(slot, action, &mut queue, commands).await;
            }
        }
    }

    async fn carry_out(
        &mut self,
        slot: Slot,
        action: Action,
        queue: &mut VecDeque<(Slot, Event)>,
        commands: &mut mpsc::Receiver<PeerCommand>,
    ) {
        match action {
            Action::Connect => {
                if slot == Slot::Primary && !self.peer.passive && !self.shutting_down {
                    self.start_connect();
                }
            }
            Action::Send(message) => {
                let send_hold_time = self.peer.send_hold_time;
                if let Some(connection) = self.connection(slot)
                    && let Err(error) = write(connection, &message, send_hold_time).await
                {
                    queue.push_back((slot, write_failed(connection, &error)));
                }
            }
            Action::Close => {
                if let Some(connection) = self.connection(slot) {
                    connection.close();
                }
                if slot == Slot::Primary {
                    self.abort_connect();
                }
            }
            Action::StateChanged { from, to } => {
                tracing::info!(
                    from = from.name(),
                    to = to.name(),
                    secondary = slot == Slot::Secondary,
                    "state"
                );
                if slot == Slot::Primary {
                    self.emit(
                        PeerEvent::State {
                            peer: self.peer.address,
                            state: to,
                        },
                        commands,
                    )
                    .await;
                    if to == State::Idle && !self.shutting_down && !self.held_down {
                        let factor = self
                            .primary
                            .session
                            .connect_retry_counter()
                            .clamp(1, MAX_BACKOFF_FACTOR);
                        self.restart_at = Some(Instant::now() + self.peer.connect_retry_time * factor);
                    }
                }
            }
            Action::Established(negotiated) => {
                tracing::info!(
                    peer_router_id = %negotiated.peer_router_id,
                    hold_time = negotiated.hold_time,
                    families = ?negotiated.families,
                    "established"
                );
                match slot {
                    Slot::Primary => {
                        if !self.report_established(negotiated, commands).await {
                            self.primary.close();
                            queue.push_back((Slot::Primary, Event::TcpConnectionFails));
                        }
                    }
                    Slot::Secondary => self.pending_established = Some(negotiated),
                }
            }
            Action::Deliver(Message::Update(update)) => {
                let peer = self.peer.address;
                let update = Box::new(update);
                self.emit(PeerEvent::Update { peer, update }, commands).await;
            }
            Action::Deliver(Message::RouteRefresh(refresh)) => {
                let peer = self.peer.address;
                self.emit(PeerEvent::RouteRefresh { peer, refresh }, commands).await;
            }
            Action::Deliver(_) => {}
            Action::Down(reason) => {
                match &reason {
                    DownReason::NotificationSent(n) => {
                        tracing::warn!(code = n.code, subcode = n.subcode, "session down: notification sent")
                    }
                    DownReason::NotificationReceived(n) => {
                        tracing::warn!(
                            code = n.code,
                            subcode = n.subcode,
                            "session down: notification received"
                        )
                    }
                    DownReason::ConnectionLost => tracing::warn!("session down: connection lost"),
                }
                if slot == Slot::Primary {
                    let peer = self.peer.address;
                    let (end, reason) = match &reason {
                        DownReason::NotificationSent(n) => (
                            SessionEnd::notification(n),
                            format!("notification sent: code {} subcode {}", n.code, n.subcode),
                        ),
                        DownReason::NotificationReceived(n) => (
                            SessionEnd::notification(n),
                            format!("notification received: code {} subcode {}", n.code, n.subcode),
                        ),
                        DownReason::ConnectionLost => (SessionEnd::ConnectionLost, "connection lost".to_owned()),
                    };
                    self.emit(PeerEvent::Down { peer, end, reason }, commands).await;
                }
            }
        }
    }

    /// Tells the instance the primary connection is Established; `false` if it cannot be used.
    async fn report_established(
        &mut self,
        negotiated: Box<Negotiated>,
        commands: &mut mpsc::Receiver<PeerCommand>,
    ) -> bool {
        let Some(local_address) = self.primary.local_address else {
            // Without our address there is no next hop to advertise: the caller drops it.
            tracing::error!("no local address on the established connection; closing it");
            return false;
        };
        let peer = self.peer.address;
        self.emit(
            PeerEvent::Established {
                peer,
                negotiated,
                local_address,
            },
            commands,
        )
        .await;
        // RFC 4724 §3: the Restart State flag only on the first session after the restart.
        if let Some(restart) = self.graceful_restart.as_mut() {
            restart.restarting = false;
        }
        true
    }

    /// Before an automatic start from Idle: a fresh FSM when our capabilities changed since the
    /// primary one was made (the Restart State flag went off).
    fn renew_idle_primary(&mut self) {
        if self.primary.session.state() != State::Idle
            || self.primary.session.config().local.graceful_restart == self.graceful_restart
        {
            return;
        }
        let config = session_config(
            &self.peer,
            self.local_asn,
            self.router_id,
            self.graceful_restart.clone(),
            false,
        );
        self.primary.session = Session::new(config);
    }

    /// Sends an event to the instance; while its queue is full, holds the instance's commands
    /// so that it is never blocked on us while we wait on it.
    async fn emit(&mut self, event: PeerEvent, commands: &mut mpsc::Receiver<PeerCommand>) {
        if self.shutting_down {
            let _ = self.events.try_send(event);
            return;
        }
        loop {
            tokio::select! {
                permit = self.events.reserve() => {
                    if let Ok(permit) = permit {
                        permit.send(event);
                    }
                    return;
                }
                Some(command) = commands.recv() => self.held_commands.push_back(command),
            }
        }
    }

    fn start_connect(&mut self) {
        self.abort_connect();
        let id = self.next_id;
        self.next_id += 1;
        let remote = SocketAddr::new(self.peer.address, self.port);
        let deadline = self.peer.connect_retry_time;
        let io_tx = self.io_tx.clone();
        let key = self.peer.password.as_ref().map(|password| password.0.clone());
        let ttl = Ttl::for_peer(&self.peer, self.local_asn);
        let source = self.peer.source_address;
        let handle = tokio::spawn(async move {
            let result = connector::connect(remote, deadline, key.as_deref(), ttl, source).await;
            let _ = io_tx.send(IoEvent::Connected(id, result)).await;
        });
        self.connecting = Some((id, handle));
    }

    fn abort_connect(&mut self) {
        if let Some((_, handle)) = self.connecting.take() {
            handle.abort();
        }
    }

    /// Gives a connected stream to a connection slot and starts its reader.
    fn attach(&mut self, slot: Slot, stream: TcpStream) {
        let id = self.next_id;
        self.next_id += 1;
        let local_address = stream.local_addr().ok().map(|a| a.ip().to_canonical());
        let (reader, writer) = stream.into_split();
        let reader = tokio::spawn(read_loop(id, reader, self.io_tx.clone()));
        if let Some(connection) = self.connection(slot) {
            connection.close();
            connection.id = id;
            connection.writer = Some(writer);
            connection.reader = Some(reader);
            connection.local_address = local_address;
        }
    }

    async fn timeouts(&mut self, commands: &mut mpsc::Receiver<PeerCommand>) {
        let now = Instant::now();
        if self.restart_at.is_some_and(|at| at <= now) {
            self.restart_at = None;
            if self.held_down {
                tracing::info!("hold-down over; connecting again");
                self.held_down = false;
            }
            self.renew_idle_primary();
            self.drive(Slot::Primary, Event::AutomaticStart, commands).await;
        }
        for slot in [Slot::Primary, Slot::Secondary] {
            let expired = match self.connection(slot) {
                Some(connection) => connection.session.timers().expired(now.into_std()),
                None => continue,
            };
            for timer in expired {
                self.drive(slot, Event::TimerExpired(timer), commands).await;
            }
        }
    }

    async fn io(&mut self, event: IoEvent, commands: &mut mpsc::Receiver<PeerCommand>) {
        match event {
            IoEvent::Connected(id, result) => {
                if self.connecting.as_ref().is_none_or(|(current, _)| *current != id) {
                    return; // an attempt that was given up on
                }
                self.connecting = None;
                match result {
                    Ok(stream) if self.primary.session.state() == State::Connect => {
                        self.attach(Slot::Primary, stream);
                        self.primary.inbound = false;
                        self.drive(Slot::Primary, Event::TcpConnectionConfirmed, commands).await;
                    }
                    Ok(_) => {} // the peer's connection came first
                    Err(error) => {
                        tracing::debug!(%error, "connection attempt failed");
                        self.drive(Slot::Primary, Event::TcpConnectionFails, commands).await;
                    }
                }
            }
            IoEvent::Frame(id, bytes) => {
                let Some(slot) = self.slot_of(id) else { return };
                let Some(connection) = self.connection(slot) else {
                    return;
                };
                let context = connection.session.codec_context();
                let event = match decode_message(&bytes, &context) {
                    Ok(Some(received)) => {
                        for error in &received.update_errors {
                            tracing::warn!(%error, "malformed update attribute (RFC 7606)");
                        }
                        Event::MessageReceived(received.message)
                    }
                    Ok(None) => return,
                    Err(error) => {
                        tracing::warn!(%error, "malformed message");
                        Event::MalformedMessage(error.notification())
                    }
                };
                self.drive(slot, event, commands).await;
            }
            IoEvent::Malformed(id, notification) => {
                if let Some(slot) = self.slot_of(id) {
                    self.drive(slot, Event::MalformedMessage(notification), commands).await;
                }
            }
            IoEvent::Closed(id) => {
                if let Some(slot) = self.slot_of(id) {
                    self.drive(slot, Event::TcpConnectionFails, commands).await;
                }
            }
        }
    }

    async fn accept(&mut self, stream: TcpStream, commands: &mut mpsc::Receiver<PeerCommand>) {
        if self.shutting_down || self.held_down {
            drop(stream);
            return;
        }
        if let Err(error) = Ttl::for_peer(&self.peer, self.local_asn).apply(&stream, self.peer.address) {
            tracing::warn!(%error, "cannot set the TTL of an accepted connection; closed");
            return;
        }
        if self.primary.session.state() == State::Idle {
            self.restart_at = None;
            self.renew_idle_primary();
            self.drive(Slot::Primary, Event::AutomaticStart, commands).await;
        }
        match self.primary.session.state() {
            State::Idle => {}
            State::Connect | State::Active => {
                self.abort_connect();
                self.attach(Slot::Primary, stream);
                self.primary.inbound = true;
                self.drive(Slot::Primary, Event::TcpConnectionConfirmed, commands).await;
            }
            State::OpenSent | State::OpenConfirm if self.secondary.is_none() => {
                let mut config = session_config(
                    &self.peer,
                    self.local_asn,
                    self.router_id,
                    self.graceful_restart.clone(),
                    true,
                );
                config.jitter_seed = self.next_id;
                self.secondary = Some(Connection {
                    id: 0,
                    session: Session::new(config),
                    inbound: true,
                    writer: None,
                    reader: None,
                    local_address: None,
                });
                self.attach(Slot::Secondary, stream);
                self.drive(Slot::Secondary, Event::ManualStart, commands).await;
                self.drive(Slot::Secondary, Event::TcpConnectionConfirmed, commands)
                    .await;
            }
            // RFC 4271 §6.8: a connection that collides with an Established one is closed, and
            // weft follows at most two connections per peer.
            _ => tracing::info!("connection from the peer closed: one is already up or pending"),
        }
    }

    async fn command(&mut self, command: PeerCommand, commands: &mut mpsc::Receiver<PeerCommand>) {
        let updates = match command {
            PeerCommand::Send(updates) => updates,
            PeerCommand::Stop { subcode, hold_down } => {
                if self.held_down {
                    return;
                }
                tracing::warn!(?subcode, ?hold_down, "stopping the session and holding it down");
                self.held_down = true;
                self.abort_connect();
                for slot in [Slot::Primary, Slot::Secondary] {
                    let stop = Event::Stop {
                        subcode,
                        communication: None,
                    };
                    self.drive(slot, stop, commands).await;
                }
                self.restart_at = hold_down.map(|hold_down| Instant::now() + hold_down);
                return;
            }
            PeerCommand::Close { subcode } => {
                tracing::info!(?subcode, "closing the session: the configuration changed");
                self.shutting_down = true;
                self.closed = true;
                self.abort_connect();
                for slot in [Slot::Primary, Slot::Secondary] {
                    let stop = Event::Stop {
                        subcode,
                        communication: None,
                    };
                    let _ = tokio::time::timeout(SHUTDOWN_WRITE_DEADLINE, self.drive(slot, stop, commands)).await;
                }
                return;
            }
        };
        if self.primary.session.state() != State::Established {
            return; // the instance learns of the Down and resends after the next Established
        }
        for update in updates {
            if let Err(error) = write(&mut self.primary, &Message::Update(update), self.peer.send_hold_time).await {
                let event = write_failed(&mut self.primary, &error);
                self.drive(Slot::Primary, event, commands).await;
                return;
            }
        }
        self.drive(Slot::Primary, Event::MessageSent, commands).await;
    }

    /// Resolves what involves both connections: drops a finished secondary, promotes it when
    /// it wins, and settles collisions (RFC 4271 §6.8).
    async fn settle(&mut self, commands: &mut mpsc::Receiver<PeerCommand>) {
        let collision = || Event::Stop {
            subcode: CeaseSubcode::ConnectionCollisionResolution,
            communication: None,
        };
        // Each round removes or promotes a connection or stops one, so this ends.
        for _ in 0..4 {
            let Some(secondary) = &self.secondary else { return };
            let (primary_state, secondary_state) = (self.primary.session.state(), secondary.session.state());
            if secondary_state == State::Idle {
                self.secondary = None;
                self.pending_established = None;
                return;
            }
            if secondary_state == State::Established || primary_state == State::Idle {
                self.promote(commands).await;
                if self
                    .secondary
                    .as_ref()
                    .is_some_and(|c| c.session.state() != State::Idle)
                {
                    self.drive(Slot::Secondary, collision(), commands).await;
                }
                continue;
            }
            if primary_state == State::Established {
                self.drive(Slot::Secondary, collision(), commands).await;
                continue;
            }
            if primary_state == State::OpenConfirm && secondary_state == State::OpenConfirm {
                let remote = self
                    .primary
                    .session
                    .negotiated()
                    .map(|n| Speaker {
                        router_id: n.peer_router_id,
                        asn: n.peer_asn,
                    })
                    .unwrap_or(Speaker {
                        router_id: Ipv4Addr::UNSPECIFIED,
                        asn: self.peer.asn,
                    });
                let local = Speaker {
                    router_id: self.router_id,
                    asn: self.local_asn,
                };
                let keep_inbound = resolve_collision(local, remote) == Some(Keep::RemotelyInitiated);
                let loser = if self.primary.inbound == keep_inbound {
                    Slot::Secondary
                } else {
                    Slot::Primary
                };
                tracing::info!(keep_inbound, "connection collision resolved");
                if loser == Slot::Primary {
                    self.promote(commands).await;
                }
                self.drive(Slot::Secondary, collision(), commands).await;
                continue;
            }
            return;
        }
    }

    /// Makes the secondary connection the primary one (the old primary becomes secondary).
    async fn promote(&mut self, commands: &mut mpsc::Receiver<PeerCommand>) {
        let Some(secondary) = self.secondary.as_mut() else {
            return;
        };
        std::mem::swap(&mut self.primary, secondary);
        self.restart_at = None;
        self.abort_connect();
        let state = self.primary.session.state();
        let peer = self.peer.address;
        self.emit(PeerEvent::State { peer, state }, commands).await;
        if let Some(negotiated) = self.pending_established.take()
            && !self.report_established(negotiated, commands).await
        {
            self.primary.close();
            self.drive(Slot::Primary, Event::TcpConnectionFails, commands).await;
        }
    }

    /// Sends a Cease (Administrative Shutdown) on every open connection.
    async fn shutdown(mut self) {
        self.shutting_down = true;
        self.abort_connect();
        let stop = || Event::Stop {
            subcode: CeaseSubcode::AdministrativeShutdown,
            communication: None,
        };
        let (_unused, mut commands) = mpsc::channel(1);
        for slot in [Slot::Primary, Slot::Secondary] {
            let _ = tokio::time::timeout(SHUTDOWN_WRITE_DEADLINE, self.drive(slot, stop(), &mut commands)).await;
        }
    }
}

fn session_config(
    peer: &PeerConfig,
    local_asn: u32,
    router_id: Ipv4Addr,
    graceful_restart: Option<GracefulRestartConfig>,
    passive: bool,
) -> SessionConfig {
    let mut local = LocalConfig::new(local_asn, router_id);
    local.hold_time = peer.hold_time;
    local.families = peer.families.clone();
    local.graceful_restart = graceful_restart;
    if peer.extended_next_hop {
        local.extended_next_hop = vec![AddressType::Ipv4Unicast];
    }
    local.extended_messages = peer.extended_messages;
    let mut config = SessionConfig::new(local, Some(peer.asn));
    config.passive = passive || peer.passive;
    config.connect_retry_time = peer.connect_retry_time;
    config.jitter_seed = u64::from(u32::from(router_id)) ^ u64::from(peer.asn);
    config
}

/// What a failed write means to the FSM: the peer stopped reading for the send hold time (RFC
/// 9687: a NOTIFICATION, Send Hold Timer Expired, which cannot be written either) or the
/// connection is lost. Either way the connection is closed.
fn write_failed(connection: &mut Connection, error: &std::io::Error) -> Event {
    if error.kind() == std::io::ErrorKind::TimedOut {
        tracing::warn!(%error, "the peer has not read what we sent: dropping the session (RFC 9687)");
        connection.close();
        return Event::MalformedMessage(Notification::new(code::SEND_HOLD_TIMER_EXPIRED, 0, Vec::new()));
    }
    tracing::info!(%error, "write failed");
    connection.close();
    Event::TcpConnectionFails
}

/// Writes `message`; a write the peer does not take within `send_hold_time` fails with
/// `TimedOut` (the send hold timer of RFC 9687).
async fn write(connection: &mut Connection, message: &Message, send_hold_time: Duration) -> std::io::Result<()> {
    let context = connection.session.codec_context();
    let bytes = match encode(message, &context) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, kind = ?message.message_type(), "cannot encode a message; not sent");
            return Ok(());
        }
    };
    match connection.writer.as_mut() {
        Some(writer) => match tokio::time::timeout(send_hold_time, writer.write_all(&bytes)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("send hold timer expired after {} s", send_hold_time.as_secs()),
            )),
        },
        None => Err(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "connection closed",
        )),
    }
}

async fn read_loop(id: u64, mut reader: OwnedReadHalf, io_tx: mpsc::Sender<IoEvent>) {
    // Up to 65535 octets: the codec checks each message against what the session negotiated
    // (RFC 8654), so a long one without extended messages still gets Bad Message Length.
    let mut framer = Framer::new();
    framer.set_extended_messages(true);
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let read = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = io_tx.send(IoEvent::Closed(id)).await;
                return;
            }
            Ok(read) => read,
        };
        framer.extend(&buffer[..read]);
        loop {
            let event = match framer.next_frame() {
                Ok(Some(frame)) => IoEvent::Frame(id, frame.bytes.to_vec()),
                Ok(None) => break,
                Err(error) => {
                    let _ = io_tx.send(IoEvent::Malformed(id, error.notification())).await;
                    return;
                }
            };
            if io_tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

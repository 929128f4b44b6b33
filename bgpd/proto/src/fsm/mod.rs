//! The BGP finite state machine of RFC 4271 §8, for one connection, pure.
//!
//! Owns a [`Session`]: its [`State`], timers (as deadlines), ConnectRetryCounter, both OPENs and
//! what they negotiated. [`Session::handle`] takes one [`Event`] and the current time and returns
//! the [`Action`]s for the driver to carry out, in order. Implements RFC 4271 §8.2.2 with the
//! optional session attributes PassiveTcpEstablishment (§8.1.1) and without DelayOpen,
//! DampPeerOscillations and automatic stop; RFC 6608 FSM error subcodes; RFC 4486 Cease subcodes
//! on stop. Connection collision detection (§6.8) is the pure [`collision::resolve_collision`];
//! the driver, which owns both connections, applies it and feeds [`Event::Stop`] with
//! `ConnectionCollisionResolution` to the loser.
//!
//! ```text
//!                      ManualStart / AutomaticStart
//!        +------+ ----------------------------------------+
//!        | Idle | <----------------------------+          |
//!        +------+   errors, stop, NOTIFICATION |          | (passive)
//!           | ManualStart                      |          v
//!           v          TcpConnectionFails  +--------+  ConnectRetry  +---------+
//!      +---------+ ----------------------> | Active | -------------> | Connect |
//!      | Connect | <--------------------------------------------------|        |
//!      +---------+     ConnectRetry expired (retry)                   +--------+
//!           | TcpConnectionConfirmed: send OPEN       | TcpConnectionConfirmed: send OPEN
//!           +------------------------+----------------+
//!                                    v
//!                              +----------+  OPEN ok: send KEEPALIVE  +-------------+
//!                              | OpenSent | ------------------------> | OpenConfirm |
//!                              +----------+                           +-------------+
//!                                    | TcpConnectionFails → Active           | KEEPALIVE
//!                                                                            v
//!                                                                    +-------------+
//!                                                                    | Established |
//!                                                                    +-------------+
//! ```
//! Every state falls back to Idle on ManualStop (with a Cease once an OPEN was sent), on a
//! NOTIFICATION sent or received, on hold timer expiry and on a lost connection, except that
//! OpenSent goes to Active when the connection fails (§8.2.2).
//!
//! Must never: perform I/O, read a clock, decode bytes (events carry decoded messages), or
//! decide on routes; Idle restarts only on an explicit [`Event::AutomaticStart`] from the driver,
//! which owns back-off.

pub mod collision;
pub mod open_check;

use std::time::{Duration, Instant};

use netgauze_bgp_pkt::open::BgpOpenMessage;

use crate::capabilities::{LocalConfig, Negotiated, negotiate};
use crate::codec::{CodecContext, Message};
use crate::notification::{CeaseSubcode, Notification, fsm as fsm_subcode};
use crate::timers::{Jitter, Timer, Timers};

/// The six states of RFC 4271 §8.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Refuses connections, waits for a start event.
    Idle,
    /// Waiting for the outgoing TCP connection to complete.
    Connect,
    /// Waiting for the peer to connect (or for ConnectRetry to try again).
    Active,
    /// Our OPEN is sent; waiting for the peer's.
    OpenSent,
    /// OPENs exchanged; waiting for the first KEEPALIVE.
    OpenConfirm,
    /// UPDATEs may flow.
    Established,
}

impl State {
    /// The RFC name, as `weftctl bgp peers` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Connect => "Connect",
            Self::Active => "Active",
            Self::OpenSent => "OpenSent",
            Self::OpenConfirm => "OpenConfirm",
            Self::Established => "Established",
        }
    }
}

/// Inputs to the FSM (RFC 4271 §8.1 events, named for what happened).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Event 1/4: the operator starts the session (active, or passive if configured).
    ManualStart,
    /// Event 3/5: the driver restarts the session after its back-off.
    AutomaticStart,
    /// Event 2 and Cease events: stop with a Cease of this subcode (RFC 4486) and an optional
    /// shutdown communication (RFC 9003).
    Stop {
        /// Why.
        subcode: CeaseSubcode,
        /// Text for the peer's operator, if any.
        communication: Option<String>,
    },
    /// Events 16/17: a TCP connection is up (ours completed, or the peer's accepted).
    TcpConnectionConfirmed,
    /// Event 18: the TCP connection failed or was closed by the peer.
    TcpConnectionFails,
    /// Events 19–28: a message arrived and decoded.
    MessageReceived(Message),
    /// Events 21, 22, 28: a message arrived that must be answered with this NOTIFICATION.
    MalformedMessage(Notification),
    /// Events 9–11: a timer fired.
    TimerExpired(Timer),
    /// The driver sent an UPDATE (or ROUTE-REFRESH) for this session: the keepalive timer
    /// restarts, as a KEEPALIVE is only due after silence (RFC 4271 §4.4).
    MessageSent,
}

/// Why an Established session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION.
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// The TCP connection failed or was closed without a NOTIFICATION.
    ConnectionLost,
}

/// Outputs of the FSM, to carry out in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open the outgoing TCP connection.
    Connect,
    /// Send this message on the connection.
    Send(Message),
    /// Close the TCP connection (after sending what came before).
    Close,
    /// The session moved between states (for logs and metrics).
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
    },
    /// The session is Established with these capabilities; the codec context changes.
    Established(Box<Negotiated>),
    /// An UPDATE or ROUTE-REFRESH for the upper layer (Adj-RIB-In, export).
    Deliver(Message),
    /// An Established session ended.
    Down(DownReason),
}

/// One peer's configuration as the FSM needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// What we offer.
    pub local: LocalConfig,
    /// The peer's AS; `None` accepts any (a dynamic peer).
    pub peer_asn: Option<u32>,
    /// PassiveTcpEstablishment (§8.1.1): wait for the peer to connect.
    pub passive: bool,
    /// ConnectRetryTime (§10, default 120 s).
    pub connect_retry_time: Duration,
    /// Hold time while waiting for the peer's OPEN (§8.2.2 suggests 4 minutes).
    pub open_hold_time: Duration,
    /// Seed for the §10 jitter on ConnectRetry and Keepalive timers.
    pub jitter_seed: u64,
}

impl SessionConfig {
    /// Defaults of RFC 4271 §10 for an active session.
    pub fn new(local: LocalConfig, peer_asn: Option<u32>) -> Self {
        Self {
            local,
            peer_asn,
            passive: false,
            connect_retry_time: Duration::from_secs(120),
            open_hold_time: Duration::from_secs(240),
            jitter_seed: 1,
        }
    }
}

/// One connection's protocol state.
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    state: State,
    timers: Timers,
    jitter: Jitter,
    connect_retry_counter: u32,
    our_open: BgpOpenMessage,
    peer_open: Option<BgpOpenMessage>,
    negotiated: Option<Negotiated>,
}

impl Session {
    /// A session in Idle.
    pub fn new(config: SessionConfig) -> Self {
        let our_open = config.local.open();
        let jitter = Jitter::new(config.jitter_seed);
        Self {
            config,
            state: State::Idle,
            timers: Timers::default(),
            jitter,
            connect_retry_counter: 0,
            our_open,
            peer_open: None,
            negotiated: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What it was made with.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// ConnectRetryCounter (§8.1.1): consecutive failed attempts, for the driver's back-off.
    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// What was negotiated, from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The peer's OPEN, from OpenConfirm on.
    pub fn peer_open(&self) -> Option<&BgpOpenMessage> {
        self.peer_open.as_ref()
    }

    /// The codec context to decode with now: defaults until OPENs are exchanged.
    pub fn codec_context(&self) -> CodecContext {
        let internal = self.config.peer_asn == Some(self.config.local.asn)
            || self
                .negotiated
                .as_ref()
                .is_some_and(|n| n.peer_asn == self.config.local.asn);
        match &self.negotiated {
            Some(negotiated) => negotiated.codec_context(internal),
            None => CodecContext {
                internal_peer: internal,
                ..CodecContext::default()
            },
        }
    }

    /// The running timers; the driver sleeps until [`Timers::next_deadline`].
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn handle_timeouts(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for timer in self.timers.expired(now) {
            // An earlier timer may have stopped this one (e.g. the hold timer ended the session).
            if self.timers.deadline(timer).is_some_and(|deadline| deadline <= now) {
                actions.extend(self.handle(Event::TimerExpired(timer), now));
            }
        }
        actions
    }

    /// Processes one event at time `now`.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Event::TimerExpired(timer) = event {
            if !self.timers.is_running(timer) {
                return out; // stale: the timer was stopped or restarted after it fired
            }
            self.timers.stop(timer);
        }
        match self.state {
            State::Idle => self.idle(event, now, &mut out),
            State::Connect | State::Active => self.connecting(event, now, &mut out),
            State::OpenSent => self.open_sent(event, now, &mut out),
            State::OpenConfirm => self.open_confirm(event, now, &mut out),
            State::Established => self.established(event, now, &mut out),
        }
        out
    }

    fn transition(&mut self, to: State, out: &mut Vec<Action>) {
        if self.state != to {
            out.push(Action::StateChanged { from: self.state, to });
            self.state = to;
        }
    }

    fn start_connect_retry(&mut self, now: Instant) {
        let after = self.jitter.apply(self.config.connect_retry_time);
        self.timers.start(Timer::ConnectRetry, now, after);
    }

    fn start_keepalive(&mut self, now: Instant) {
        let keepalive = self.negotiated.as_ref().map_or(0, |n| n.keepalive_time);
        let after = self.jitter.apply(Duration::from_secs(u64::from(keepalive)));
        self.timers.start(Timer::Keepalive, now, after);
    }

    fn restart_hold(&mut self, now: Instant) {
        let hold = self.negotiated.as_ref().map_or(0, |n| n.hold_time);
        self.timers
            .start(Timer::Hold, now, Duration::from_secs(u64::from(hold)));
    }

    /// Back to Idle: close, stop timers, forget the OPENs, say Down if we were Established.
    fn fall_back_to_idle(&mut self, reason: DownReason, count_failure: bool, out: &mut Vec<Action>) {
        if let DownReason::NotificationSent(notification) = &reason {
            out.push(Action::Send(Message::Notification(notification.clone())));
        }
        if self.state != State::Idle {
            out.push(Action::Close);
        }
        if self.state == State::Established {
            out.push(Action::Down(reason));
        }
        if count_failure {
            self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        }
        self.timers.stop_all();
        self.peer_open = None;
        self.negotiated = None;
        self.transition(State::Idle, out);
    }

    fn stop_notification(subcode: CeaseSubcode, communication: Option<String>) -> Notification {
        match communication {
            Some(text) => Notification::cease_with_communication(subcode, &text),
            None => Notification::cease(subcode),
        }
    }

    fn idle(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) {
        // §8.2.2 Idle: only start events matter; everything else is ignored.
        if matches!(event, Event::ManualStart | Event::AutomaticStart) {
            if event == Event::ManualStart {
                self.connect_retry_counter = 0;
            }
            self.start_connect_retry(now);
            if self.config.passive {
                self.transition(State::Active, out);
            } else {
                out.push(Action::Connect);
                self.transition(State::Connect, out);
            }
        }
    }

    fn send_open(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.timers.stop(Timer::ConnectRetry);
        out.push(Action::Send(Message::Open(self.our_open.clone())));
        self.timers.start(Timer::Hold, now, self.config.open_hold_time);
        self.transition(State::OpenSent, out);
    }

    fn connecting(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart | Event::MessageSent => {}
            Event::Stop { .. } => {
                self.connect_retry_counter = 0;
                self.fall_back_to_idle(DownReason::ConnectionLost, false, out);
            }
            Event::TimerExpired(Timer::ConnectRetry) => {
                if self.state == State::Connect {
                    out.push(Action::Close);
                }
                self.start_connect_retry(now);
                out.push(Action::Connect);
                self.transition(State::Connect, out);
            }
            Event::TcpConnectionConfirmed => self.send_open(now, out),
            Event::TcpConnectionFails if self.state == State::Connect => {
                self.start_connect_retry(now);
                self.transition(State::Active, out);
            }
            // §8.2.2 Connect/Active: any other event drops the connection and counts a failure.
            _ => self.fall_back_to_idle(DownReason::ConnectionLost, true, out),
        }
    }

    fn open_sent(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart | Event::TcpConnectionConfirmed | Event::MessageSent => {}
            Event::Stop { subcode, communication } => {
                self.connect_retry_counter = 0;
                let notification = Self::stop_notification(subcode, communication);
                self.fall_back_to_idle(DownReason::NotificationSent(notification), false, out);
            }
            Event::TimerExpired(Timer::Hold) => self.fall_back_to_idle(
                DownReason::NotificationSent(Notification::hold_timer_expired()),
                true,
                out,
            ),
            Event::TcpConnectionFails => {
                out.push(Action::Close);
                self.timers.stop_all();
                self.start_connect_retry(now);
                self.transition(State::Active, out);
            }
            Event::MessageReceived(Message::Open(open)) => self.receive_open(open, now, out),
            Event::MalformedMessage(notification) => {
                self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out)
            }
            Event::MessageReceived(Message::Notification(notification)) => {
                // §8.2.2: a version error does not count as a failure (the peer may retry with
                // another version); any other NOTIFICATION does.
                let version_error = notification.code == crate::notification::code::OPEN_MESSAGE
                    && notification.subcode == crate::notification::open::UNSUPPORTED_VERSION_NUMBER;
                self.fall_back_to_idle(DownReason::NotificationReceived(notification), !version_error, out)
            }
            Event::MessageReceived(_) => {
                let notification = Notification::fsm_error(fsm_subcode::UNEXPECTED_MESSAGE_IN_OPEN_SENT);
                self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out)
            }
            Event::TimerExpired(_) => {
                let notification = Notification::fsm_error(fsm_subcode::UNSPECIFIED);
                self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out)
            }
        }
    }

    fn receive_open(&mut self, open: BgpOpenMessage, now: Instant, out: &mut Vec<Action>) {
        let local = &self.config.local;
        let checked = open_check::check_open(&open, self.config.peer_asn, local.asn, local.router_id)
            .and_then(|()| negotiate(&self.our_open, &open));
        match checked {
            Ok(negotiated) => {
                self.negotiated = Some(negotiated);
                self.peer_open = Some(open);
                out.push(Action::Send(Message::Keepalive));
                self.start_keepalive(now);
                self.restart_hold(now);
                self.transition(State::OpenConfirm, out);
            }
            Err(notification) => self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out),
        }
    }

    fn keepalive_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Send(Message::Keepalive));
        self.start_keepalive(now);
    }

    fn open_confirm(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart | Event::TcpConnectionConfirmed | Event::MessageSent => {}
            Event::Stop { subcode, communication } => {
                self.connect_retry_counter = 0;
                let notification = Self::stop_notification(subcode, communication);
                self.fall_back_to_idle(DownReason::NotificationSent(notification), false, out);
            }
            Event::TimerExpired(Timer::Hold) => self.fall_back_to_idle(
                DownReason::NotificationSent(Notification::hold_timer_expired()),
                true,
                out,
            ),
            Event::TimerExpired(Timer::Keepalive) => self.keepalive_due(now, out),
            Event::TcpConnectionFails => self.fall_back_to_idle(DownReason::ConnectionLost, true, out),
            Event::MessageReceived(Message::Notification(notification)) => {
                self.fall_back_to_idle(DownReason::NotificationReceived(notification), true, out)
            }
            Event::MalformedMessage(notification) => {
                self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out)
            }
            Event::MessageReceived(Message::Keepalive) => {
                self.restart_hold(now);
                self.transition(State::Established, out);
                if let Some(negotiated) = &self.negotiated {
                    out.push(Action::Established(Box::new(negotiated.clone())));
                }
            }
            Event::MessageReceived(_) => {
                let notification = Notification::fsm_error(fsm_subcode::UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM);
                self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out)
            }
            Event::TimerExpired(Timer::ConnectRetry) => {
                let notification = Notification::fsm_error(fsm_subcode::UNSPECIFIED);
                self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out)
            }
        }
    }

    fn established(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart | Event::TcpConnectionConfirmed => {}
            Event::MessageSent => self.start_keepalive(now),
            Event::Stop { subcode, communication } => {
                self.connect_retry_counter = 0;
                let notification = Self::stop_notification(subcode, communication);
                self.fall_back_to_idle(DownReason::NotificationSent(notification), false, out);
            }
            Event::TimerExpired(Timer::Hold) => self.fall_back_to_idle(
                DownReason::NotificationSent(Notification::hold_timer_expired()),
                true,
                out,
            ),
            Event::TimerExpired(Timer::Keepalive) => self.keepalive_due(now, out),
            Event::TcpConnectionFails => self.fall_back_to_idle(DownReason::ConnectionLost, true, out),
            Event::MessageReceived(Message::Notification(notification)) => {
                self.fall_back_to_idle(DownReason::NotificationReceived(notification), true, out)
            }
            Event::MalformedMessage(notification) => {
                self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out)
            }
            Event::MessageReceived(Message::Keepalive) => self.restart_hold(now),
            Event::MessageReceived(message @ Message::Update(_)) => {
                self.restart_hold(now);
                out.push(Action::Deliver(message));
            }
            Event::MessageReceived(message @ Message::RouteRefresh(_)) => {
                self.restart_hold(now);
                // RFC 2918 §4: only act on it if we advertised the capability.
                if self.negotiated.as_ref().is_some_and(|n| n.route_refresh) {
                    out.push(Action::Deliver(message));
                }
            }
            Event::MessageReceived(Message::Open(_)) => {
                let notification = Notification::fsm_error(fsm_subcode::UNEXPECTED_MESSAGE_IN_ESTABLISHED);
                self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out)
            }
            Event::TimerExpired(Timer::ConnectRetry) => {
                let notification = Notification::fsm_error(fsm_subcode::UNSPECIFIED);
                self.fall_back_to_idle(DownReason::NotificationSent(notification), true, out)
            }
        }
    }
}

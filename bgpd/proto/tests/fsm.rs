//! Transition tests of the RFC 4271 §8 state machine: the normal path and the error paths.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use weft_bgp_proto::capabilities::LocalConfig;
use weft_bgp_proto::fsm::{DownReason, SessionConfig};
use weft_bgp_proto::notification::{CeaseSubcode, code, fsm};
use weft_bgp_proto::timers::Timer;
use weft_bgp_proto::wire::update::BgpUpdateMessage;
use weft_bgp_proto::{Action, Event, Message, Notification, Session, State};

const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

fn session(passive: bool) -> Session {
    let mut config = SessionConfig::new(LocalConfig::new(65001, Ipv4Addr::new(198, 19, 0, 2)), Some(65000));
    config.passive = passive;
    Session::new(config)
}

fn peer_open(hold_time: u16) -> Message {
    let mut peer = LocalConfig::new(65000, PEER_ID);
    peer.hold_time = hold_time;
    Message::Open(peer.open())
}

fn sent(actions: &[Action]) -> Vec<&Message> {
    actions
        .iter()
        .filter_map(|action| if let Action::Send(m) = action { Some(m) } else { None })
        .collect()
}

/// Drives a session to Established and returns it with the time it got there.
fn established() -> (Session, Instant) {
    let now = Instant::now();
    let mut session = session(false);
    session.handle(Event::ManualStart, now);
    session.handle(Event::TcpConnectionConfirmed, now);
    session.handle(Event::MessageReceived(peer_open(30)), now);
    session.handle(Event::MessageReceived(Message::Keepalive), now);
    assert_eq!(session.state(), State::Established);
    (session, now)
}

#[test]
fn active_session_connects_sends_open_and_reaches_established() {
    let now = Instant::now();
    let mut session = session(false);
    let actions = session.handle(Event::ManualStart, now);
    assert!(actions.contains(&Action::Connect));
    assert_eq!(session.state(), State::Connect);

    let actions = session.handle(Event::TcpConnectionConfirmed, now);
    assert!(matches!(sent(&actions)[..], [Message::Open(_)]));
    assert_eq!(session.state(), State::OpenSent);

    let actions = session.handle(Event::MessageReceived(peer_open(30)), now);
    assert_eq!(sent(&actions), vec![&Message::Keepalive]);
    assert_eq!(session.state(), State::OpenConfirm);

    let actions = session.handle(Event::MessageReceived(Message::Keepalive), now);
    let Some(Action::Established(negotiated)) = actions.iter().find(|a| matches!(a, Action::Established(_))) else {
        panic!("no Established action in {actions:?}");
    };
    assert_eq!((negotiated.hold_time, negotiated.peer_asn), (30, 65000));
    assert_eq!(
        session.timers().deadline(Timer::Hold),
        Some(now + Duration::from_secs(30))
    );
}

#[test]
fn passive_session_waits_in_active_without_connecting() {
    let mut session = session(true);
    let actions = session.handle(Event::ManualStart, Instant::now());
    assert!(!actions.contains(&Action::Connect));
    assert_eq!(session.state(), State::Active);
}

#[test]
fn hold_timer_expiry_sends_hold_timer_expired_and_goes_down() {
    let (mut session, now) = established();
    let actions = session.handle_timeouts(now + Duration::from_secs(31));
    assert!(sent(&actions).contains(&&Message::Notification(Notification::hold_timer_expired())));
    assert!(actions.contains(&Action::Close));
    assert!(actions.contains(&Action::Down(DownReason::NotificationSent(
        Notification::hold_timer_expired()
    ))));
    assert_eq!(session.state(), State::Idle);
}

#[test]
fn keepalive_is_sent_before_a_third_of_the_hold_time() {
    let (mut session, now) = established();
    let actions = session.handle_timeouts(now + Duration::from_secs(10));
    assert_eq!(sent(&actions), vec![&Message::Keepalive]);
    assert_eq!(session.state(), State::Established);
}

#[test]
fn update_in_established_is_delivered_and_restarts_the_hold_timer() {
    let (mut session, now) = established();
    let later = now + Duration::from_secs(20);
    let update = Message::Update(BgpUpdateMessage::new(vec![], vec![], vec![]));
    let actions = session.handle(Event::MessageReceived(update.clone()), later);
    assert_eq!(actions, vec![Action::Deliver(update)]);
    assert_eq!(
        session.timers().deadline(Timer::Hold),
        Some(later + Duration::from_secs(30))
    );
}

#[test]
fn unexpected_message_in_open_sent_is_a_finite_state_machine_error() {
    let now = Instant::now();
    let mut session = session(false);
    session.handle(Event::ManualStart, now);
    session.handle(Event::TcpConnectionConfirmed, now);
    let actions = session.handle(Event::MessageReceived(Message::Keepalive), now);
    let expected = Notification::fsm_error(fsm::UNEXPECTED_MESSAGE_IN_OPEN_SENT);
    assert_eq!(sent(&actions), vec![&Message::Notification(expected)]);
    assert_eq!(session.state(), State::Idle);
    assert_eq!(session.connect_retry_counter(), 1);
}

#[test]
fn open_from_the_wrong_as_is_rejected_with_bad_peer_as() {
    let now = Instant::now();
    let mut session = session(false);
    session.handle(Event::ManualStart, now);
    session.handle(Event::TcpConnectionConfirmed, now);
    let wrong = Message::Open(LocalConfig::new(65009, PEER_ID).open());
    let actions = session.handle(Event::MessageReceived(wrong), now);
    let [Message::Notification(notification)] = sent(&actions)[..] else {
        panic!("one NOTIFICATION")
    };
    assert_eq!((notification.code, notification.subcode), (code::OPEN_MESSAGE, 2));
}

#[test]
fn stop_in_established_sends_cease_administrative_shutdown() {
    let (mut session, now) = established();
    let stop = Event::Stop {
        subcode: CeaseSubcode::AdministrativeShutdown,
        communication: Some("bye".into()),
    };
    let actions = session.handle(stop, now);
    let cease = Notification::cease_with_communication(CeaseSubcode::AdministrativeShutdown, "bye");
    assert_eq!(sent(&actions), vec![&Message::Notification(cease)]);
    assert_eq!(session.state(), State::Idle);
    assert_eq!(session.connect_retry_counter(), 0);
}

#[test]
fn notification_received_in_established_reports_the_peer_reason() {
    let (mut session, now) = established();
    let cease = Notification::cease(CeaseSubcode::PeerDeconfigured);
    let actions = session.handle(Event::MessageReceived(Message::Notification(cease.clone())), now);
    assert!(sent(&actions).is_empty(), "a NOTIFICATION is never answered with one");
    assert!(actions.contains(&Action::Down(DownReason::NotificationReceived(cease))));
}

#[test]
fn connection_failure_in_open_sent_falls_back_to_active() {
    let now = Instant::now();
    let mut session = session(false);
    session.handle(Event::ManualStart, now);
    session.handle(Event::TcpConnectionConfirmed, now);
    session.handle(Event::TcpConnectionFails, now);
    assert_eq!(session.state(), State::Active);
    assert!(session.timers().is_running(Timer::ConnectRetry));
}

#[test]
fn connect_retry_expiry_in_active_tries_to_connect_again() {
    let now = Instant::now();
    let mut session = session(true);
    session.handle(Event::ManualStart, now);
    let actions = session.handle_timeouts(now + Duration::from_secs(120));
    assert!(actions.contains(&Action::Connect));
    assert_eq!(session.state(), State::Connect);
}

#[test]
fn stale_timer_event_is_ignored() {
    let (mut session, now) = established();
    let actions = session.handle(Event::TimerExpired(Timer::ConnectRetry), now);
    assert!(actions.is_empty());
    assert_eq!(session.state(), State::Established);
}

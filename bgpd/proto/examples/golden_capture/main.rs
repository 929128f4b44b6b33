//! Captures golden vectors from real BGP speakers (issue 8): BIRD 2, FRR (zebra + bgpd) and
//! GoBGP each run in a network namespace of their own against a scripted speaker in a second
//! namespace, which records every message the peer sends, byte for byte, into
//! `tests/golden/<peer>-<version>-<type>-<what>.hex`. The scripted speaker sends only what
//! weft's encoder produced (OPEN, UPDATE, End-of-RIB, ROUTE-REFRESH, KEEPALIVE, NOTIFICATION), saves
//! those bytes as `tests/golden/weft-<version>-*.hex`, and checks that the peer accepted them: the
//! routes are selected in `birdc show route`, `vtysh show bgp` or `gobgp global rib`, our Cease
//! is reported; saved as `tests/golden/<peer>-<version>-accepted-routes.txt`. `tests/golden.rs` checks the vectors
//! without root; `tests/golden/README.md` says how to run this.
//!
//! A tool, not a test (it rewrites the vectors): it needs root, `ip`, `bird`, FRR and
//! `gobgpd`. Run it with `cargo run -p weft-bgp-proto --example golden_capture`;
//! `WEFT_CAPTURE_PEERS=bird,frr` limits the peers.
//!
//! The script, per peer (names in [`peers`]):
//! 1. eBGP over IPv4 (we offer add-path receive): OPEN, KEEPALIVE, the peer's routes and its
//!    End-of-RIB markers; our routes; the peer withdraws two prefixes; the peer sends
//!    ROUTE-REFRESH (`birdc reload in`, `clear bgp … soft in`; GoBGP has no command for it);
//!    we send one and record the answer
//!    (BoRR/EoRR where enhanced route refresh is supported); the peer shuts the session down
//!    (Cease, Administrative Shutdown).
//! 2. iBGP over IPv6 (we offer the extended next hop for IPv4, RFC 8950): OPEN, LOCAL_PREF, the
//!    IPv4 routes with an IPv6 next hop where the peer does it; our routes; then a malformed
//!    UPDATE from us (Total Path Attribute Length past the end) and the peer's NOTIFICATION.
//! 3. eBGP again: our OPEN with a hold time of 1 s and the peer's NOTIFICATION.
//! 4. iBGP again, ended by our Cease (Administrative Shutdown, "weft golden"), which the peer
//!    must report (`birdc show protocols all`, `show bgp neighbors`, gobgpd's log).
//!
//! A vector is named by what it carries (`update-ebgp-ipv4-nlri-add-path`); an UPDATE sent in
//! answer to our ROUTE-REFRESH gets `-after-our-route-refresh`, one that carries our own routes
//! back `-and-our-routes-back`, a second different message of the same kind `-2`. A message
//! already saved under the same name is not saved again.

mod lab;
mod peers;
mod recorder;
mod wire;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Lab, PEER_V4, PEER_V6, Result, US_V4, US_V6};
use peers::{Neighbor, OUR_EBGP_AS, PEER_AS, Peer};
use recorder::{Recorder, decoded_update};
use weft_bgp_proto::capabilities::{AddPathConfig, GracefulRestartConfig, LocalConfig, negotiate};
use weft_bgp_proto::codec::{CodecContext, Message, decode_message, encode};
use weft_bgp_proto::notification::CeaseSubcode;
use weft_bgp_proto::route::{AsPath, AsPathSegment, Origin, PathAttributes, Prefix};
use weft_bgp_proto::update::{UpdateEncoding, advertisements, end_of_rib, end_of_rib_family, read_update};
use weft_bgp_proto::wire::iana::RouteRefreshSubcode;
use weft_bgp_proto::wire::path_attribute::{MpReach, MpUnreach, PathAttributeValue};
use weft_bgp_proto::wire::route_refresh::BgpRouteRefreshMessage;
use weft_bgp_proto::wire::update::BgpUpdateMessage;
use weft_bgp_proto::{AddressType, Negotiated, Notification};

const ROLE: &str = "WEFT_CAPTURE_ROLE";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The capture, or (started by it inside the lab's namespace) the scripted speaker.
fn main() {
    if std::env::var_os(ROLE).is_some() {
        speaker_session();
    } else {
        capture_vectors_from_bird_frr_and_gobgp();
    }
}

/// Sets up each peer's lab and runs the scripted speaker inside it.
fn capture_vectors_from_bird_frr_and_gobgp() {
    let selected = std::env::var("WEFT_CAPTURE_PEERS").unwrap_or_else(|_| "bird,frr,gobgp".to_string());
    let mut failures = Vec::new();
    for name in selected.split(',') {
        let peer = Peer::from_name(name.trim()).expect("WEFT_CAPTURE_PEERS names bird, frr or gobgp");
        if let Err(error) = capture(peer) {
            eprintln!("{}: {error}", peer.name());
            failures.push(format!("{}: {error}", peer.name()));
        }
    }
    assert!(failures.is_empty(), "captures failed: {failures:#?}");
}

fn capture(peer: Peer) -> Result<()> {
    let version = peer.version()?;
    let mut lab = Lab::create(peer.name())?;
    let result = run_speaker(peer, &version, &mut lab);
    if result.is_err() {
        lab.keep_dir();
    }
    result
}

/// Starts the peer and the scripted speaker, and waits (at most five minutes) for the speaker.
fn run_speaker(peer: Peer, version: &str, lab: &mut Lab) -> Result<()> {
    peer.start(lab)?;
    let mut speaker = Command::new("ip")
        .args(["netns", "exec", &lab.us_namespace])
        .arg(std::env::current_exe()?)
        .env(ROLE, "speaker")
        .env("WEFT_CAPTURE_PEER", peer.name())
        .env("WEFT_CAPTURE_VERSION", version)
        .env("WEFT_CAPTURE_PEER_NS", &lab.peer_namespace)
        .env("WEFT_CAPTURE_US_NS", &lab.us_namespace)
        .env("WEFT_CAPTURE_DIR", &lab.dir)
        .spawn()?;
    let status = lab::poll("the scripted speaker to finish", Duration::from_secs(300), || {
        speaker.try_wait().ok().flatten()
    });
    let status = match status {
        Ok(status) => status,
        Err(error) => {
            let _ = speaker.kill();
            let _ = speaker.wait();
            return Err(error);
        }
    };
    if !status.success() {
        return Err(format!("scripted speaker against {} {version} failed: {status}", peer.name()).into());
    }
    Ok(())
}

/// The scripted speaker: runs inside the lab's "us" namespace, started by the capture.
fn speaker_session() {
    let variable = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the capture"));
    let peer = Peer::from_name(&variable("WEFT_CAPTURE_PEER")).expect("a known peer");
    let lab = Lab::attach(
        variable("WEFT_CAPTURE_PEER_NS"),
        variable("WEFT_CAPTURE_US_NS"),
        PathBuf::from(variable("WEFT_CAPTURE_DIR")),
    );
    let mut recorder = Recorder::new(peer, variable("WEFT_CAPTURE_VERSION"));
    let result = script(peer, &lab, &mut recorder);
    recorder.finish();
    if let Err(error) = result {
        panic!("{} {}: {error}", peer.name(), recorder.version);
    }
}

fn script(peer: Peer, lab: &Lab, recorder: &mut Recorder) -> Result<()> {
    ebgp_session(peer, lab, recorder)?;
    ibgp_session(peer, lab, recorder)?;
    open_error_session(peer, lab, recorder)?;
    cease_session(peer, lab, recorder)
}

fn ebgp_config() -> LocalConfig {
    let mut config = LocalConfig::new(OUR_EBGP_AS, US_V4.parse().expect("address"));
    config.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: false,
        forwarding_preserved: Vec::new(),
        notification: true,
    });
    config.add_path = [AddressType::Ipv4Unicast, AddressType::Ipv6Unicast]
        .into_iter()
        .map(|family| AddPathConfig {
            family,
            send: false,
            receive: true,
        })
        .collect();
    config
}

fn ibgp_config() -> LocalConfig {
    let mut config = ebgp_config();
    config.asn = PEER_AS;
    config.add_path = Vec::new();
    config.extended_next_hop = vec![AddressType::Ipv4Unicast];
    config
}

fn our_attributes(internal: bool, next_hop: IpAddr) -> PathAttributes {
    PathAttributes {
        origin: Origin::Igp,
        as_path: if internal {
            AsPath::default()
        } else {
            AsPath(vec![AsPathSegment::Sequence(vec![OUR_EBGP_AS])])
        },
        next_hop,
        med: Some(20),
        local_pref: internal.then_some(200),
        communities: vec![(65000 << 16) | 100],
        large_communities: vec![[OUR_EBGP_AS, 7, 8]],
        originator_id: None,
        cluster_list: Vec::new(),
        aggregator: None,
        atomic_aggregate: false,
    }
}

fn prefix(text: &str) -> Prefix {
    text.parse().expect("prefix")
}

/// Session 1: eBGP over IPv4.
fn ebgp_session(peer: Peer, lab: &Lab, recorder: &mut Recorder) -> Result<()> {
    let session = "ebgp";
    let ours = ebgp_config();
    let address = SocketAddr::new(PEER_V4.parse()?, 179);
    let mut wire = wire::Wire::connect(address, Duration::from_secs(30))?;
    let (negotiated, context) = exchange_opens(&mut wire, recorder, &ours, session, "eBGP session over IPv4")?;
    println!("{}: eBGP negotiated {negotiated:?}", peer.name());

    let initial = format!(
        "eBGP session over IPv4 (we offered add-path receive; the peer sends path identifiers for {:?}), the peer's routes after Established",
        context.add_path_receive
    );
    let mut end_of_rib_seen = (false, false);
    let mut announced = Vec::new();
    recorder.collect(
        &mut wire,
        &context,
        session,
        &initial,
        Duration::from_secs(30),
        |bytes| {
            mark_end_of_rib(bytes, &context, &mut end_of_rib_seen);
            mark_announced(bytes, &context, &mut announced);
            end_of_rib_seen == (true, true)
                && PEER_PREFIXES
                    .iter()
                    .all(|prefix| announced.contains(&prefix.to_string()))
        },
    )?;
    recorder.expect(
        PEER_PREFIXES
            .iter()
            .all(|prefix| announced.contains(&prefix.to_string())),
        &format!("all of {PEER_PREFIXES:?} announced on {session} (saw {announced:?})"),
    );
    recorder.expect(end_of_rib_seen.0, "End-of-RIB for IPv4 on eBGP");
    recorder.expect(end_of_rib_seen.1, "End-of-RIB for IPv6 on eBGP");

    // Our routes, our encoder's bytes; the peer must show them.
    let v4 = our_attributes(false, US_V4.parse()?);
    let v6 = our_attributes(false, US_V6.parse()?);
    let mut ours_sent = Vec::new();
    for update in advertisements(
        &[prefix("198.19.100.0/24"), prefix("198.19.101.0/24")],
        &v4,
        UpdateEncoding::FOUR_OCTET_AS,
    ) {
        ours_sent.push(("update-ebgp-ipv4-nlri", Message::Update(update)));
    }
    for update in advertisements(&[prefix("2001:db8:200::/48")], &v6, UpdateEncoding::FOUR_OCTET_AS) {
        ours_sent.push(("update-ebgp-ipv6-mp-reach", Message::Update(update)));
    }
    for (family, name) in [
        (AddressType::Ipv4Unicast, "update-end-of-rib-ipv4"),
        (AddressType::Ipv6Unicast, "update-end-of-rib-ipv6"),
    ] {
        ours_sent.push((name, Message::Update(end_of_rib(family).expect("a weft family"))));
    }
    for (name, message) in &ours_sent {
        let bytes = encode(message, &context)?;
        wire.send(&bytes)?;
        recorder.sent(
            name,
            &bytes,
            "eBGP session over IPv4: our routes and End-of-RIB markers",
        );
    }
    recorder.check_accepted(lab, peer, &["198.19.100.0/24", "198.19.101.0/24", "2001:db8:200::/48"]);

    let mut withdrawn = (false, false);
    peer.withdraw(lab)?;
    recorder.collect(
        &mut wire,
        &context,
        session,
        "eBGP session over IPv4, after the peer withdrew 198.19.2.0/24 and 2001:db8:102::/48",
        Duration::from_secs(30),
        |bytes| {
            mark_withdrawals(bytes, &context, &mut withdrawn);
            withdrawn == (true, true)
        },
    )?;
    recorder.expect(withdrawn.0, "IPv4 withdrawal on eBGP");
    recorder.expect(withdrawn.1, "IPv6 MP_UNREACH_NLRI on eBGP");

    let mut refreshes = (false, false);
    if peer.refresh_in(lab, Neighbor::Ebgp)? {
        recorder.collect(
            &mut wire,
            &context,
            session,
            &format!("eBGP session over IPv4, after `{}`", refresh_command(peer)),
            Duration::from_secs(20),
            |bytes| {
                if bytes[18] == 5 && bytes.len() == 23 {
                    match bytes[20] {
                        1 => refreshes.0 = true,
                        2 => refreshes.1 = true,
                        _ => {}
                    }
                }
                refreshes == (true, true)
            },
        )?;
        recorder.expect(refreshes.0, "ROUTE-REFRESH for IPv4 on eBGP");
        recorder.expect(refreshes.1, "ROUTE-REFRESH for IPv6 on eBGP");
    } else {
        recorder.note("the peer has no command that sends ROUTE-REFRESH");
    }

    let refresh = Message::RouteRefresh(BgpRouteRefreshMessage::new(
        AddressType::Ipv4Unicast,
        RouteRefreshSubcode::NormalRequest,
    ));
    let bytes = encode(&refresh, &context)?;
    wire.send(&bytes)?;
    recorder.sent(
        "route-refresh-ipv4",
        &bytes,
        "eBGP session over IPv4: we ask for the IPv4 routes again",
    );
    let mut end_of_refresh = false;
    recorder.phase = "-after-our-route-refresh";
    recorder.collect(
        &mut wire,
        &context,
        session,
        "eBGP session over IPv4, the peer's answer to our ROUTE-REFRESH for IPv4 unicast",
        Duration::from_secs(10),
        |bytes| {
            end_of_refresh |= bytes[18] == 5 && bytes.get(21) == Some(&2);
            end_of_refresh
        },
    )?;
    recorder.phase = "";
    if !negotiated.enhanced_route_refresh {
        recorder.note("no enhanced route refresh negotiated on eBGP: no BoRR/EoRR");
    }

    peer.shutdown(lab, Neighbor::Ebgp)?;
    let mut notified = false;
    recorder.collect(
        &mut wire,
        &context,
        session,
        &format!("eBGP session over IPv4, after `{}`", shutdown_command(peer)),
        Duration::from_secs(20),
        |bytes| {
            notified |= bytes[18] == 3;
            notified
        },
    )?;
    recorder.expect(notified, "NOTIFICATION after the administrative shutdown");
    Ok(())
}

/// Session 2: iBGP over IPv6, then a malformed UPDATE.
fn ibgp_session(peer: Peer, lab: &Lab, recorder: &mut Recorder) -> Result<()> {
    let session = "ibgp";
    let ours = ibgp_config();
    let address = SocketAddr::new(PEER_V6.parse()?, 179);
    let mut wire = wire::Wire::connect(address, Duration::from_secs(30))?;
    let (negotiated, mut context) = exchange_opens(&mut wire, recorder, &ours, session, "iBGP session over IPv6")?;
    context.internal_peer = true;
    println!("{}: iBGP negotiated {negotiated:?}", peer.name());
    let initial = format!(
        "iBGP session over IPv6 (we offered the extended next hop for IPv4; negotiated for {:?}), the peer's routes after Established",
        negotiated.extended_next_hop
    );
    let mut end_of_rib_seen = (false, false);
    let mut announced = Vec::new();
    recorder.collect(
        &mut wire,
        &context,
        session,
        &initial,
        Duration::from_secs(30),
        |bytes| {
            mark_end_of_rib(bytes, &context, &mut end_of_rib_seen);
            mark_announced(bytes, &context, &mut announced);
            end_of_rib_seen == (true, true)
                && PEER_PREFIXES[..2]
                    .iter()
                    .all(|prefix| announced.contains(&prefix.to_string()))
        },
    )?;
    recorder.expect(
        PEER_PREFIXES[..2]
            .iter()
            .all(|prefix| announced.contains(&prefix.to_string())),
        &format!(
            "all of {:?} announced on {session} (saw {announced:?})",
            &PEER_PREFIXES[..2]
        ),
    );
    recorder.expect(end_of_rib_seen.0, "End-of-RIB for IPv4 on iBGP");
    recorder.expect(end_of_rib_seen.1, "End-of-RIB for IPv6 on iBGP");

    let next_hop: Ipv6Addr = US_V6.parse()?;
    let attributes = our_attributes(true, IpAddr::V6(next_hop));
    let mut sent = Vec::new();
    let v6_update = advertisements(
        &[prefix("2001:db8:210::/48")],
        &attributes,
        UpdateEncoding::FOUR_OCTET_AS,
    )
    .into_iter()
    .next()
    .expect("one UPDATE");
    if negotiated.extended_next_hop.contains(&AddressType::Ipv4Unicast) {
        // RFC 8950: the same attributes, IPv4 NLRI in MP_REACH_NLRI with our IPv6 address.
        let v4_update = with_mp_reach(
            &v6_update,
            MpReach::Ipv4Unicast {
                next_hop: IpAddr::V6(next_hop),
                next_hop_local: None,
                nlri: vec![weft_bgp_proto::wire::nlri::Ipv4UnicastAddress::new_no_path_id(
                    weft_bgp_proto::wire::nlri::Ipv4Unicast::from_net("198.19.110.0/24".parse()?)
                        .map_err(|error| format!("{error:?}"))?,
                )]
                .into(),
            },
        );
        sent.push(("update-ibgp-ipv4-mp-reach-ipv6-next-hop", v4_update));
    } else {
        recorder.note("no extended next hop negotiated on iBGP: IPv4 route sent with an IPv4 next hop");
        let v4 = our_attributes(true, US_V4.parse()?);
        for update in advertisements(&[prefix("198.19.110.0/24")], &v4, UpdateEncoding::FOUR_OCTET_AS) {
            sent.push(("update-ibgp-ipv4-nlri", update));
        }
    }
    sent.push(("update-ibgp-ipv6-mp-reach", v6_update));
    for family in [AddressType::Ipv4Unicast, AddressType::Ipv6Unicast] {
        let name = if family == AddressType::Ipv4Unicast {
            "update-end-of-rib-ipv4"
        } else {
            "update-end-of-rib-ipv6"
        };
        sent.push((name, end_of_rib(family).expect("a weft family")));
    }
    for (name, update) in sent {
        let bytes = encode(&Message::Update(update), &context)?;
        wire.send(&bytes)?;
        recorder.sent(name, &bytes, "iBGP session over IPv6: our routes with LOCAL_PREF 200");
    }
    recorder.check_accepted(lab, peer, &["198.19.110.0/24", "2001:db8:210::/48"]);

    if peer.refresh_in(lab, Neighbor::Ibgp)? {
        recorder.collect(
            &mut wire,
            &context,
            session,
            &format!(
                "iBGP session over IPv6, after `{}` for 2001:db8::2",
                refresh_command(peer)
            ),
            Duration::from_secs(5),
            |_| false,
        )?;
    }

    // Total Path Attribute Length 16 with no attribute octets behind it: RFC 4271 §6.3 and RFC
    // 7606 §4 say Malformed Attribute List and a session reset.
    let malformed = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 23, 2, 0, 0,
        0, 16,
    ];
    wire.send(&malformed)?;
    let mut notified = false;
    recorder.collect(
        &mut wire,
        &context,
        session,
        "iBGP session over IPv6, after we sent an UPDATE whose Total Path Attribute Length (16) runs past its end",
        Duration::from_secs(15),
        |bytes| {
            notified |= bytes[18] == 3;
            notified
        },
    )?;
    recorder.expect(notified, "NOTIFICATION for the malformed UPDATE");
    Ok(())
}

/// Session 3: eBGP again, our OPEN with a hold time of one second.
fn open_error_session(peer: Peer, lab: &Lab, recorder: &mut Recorder) -> Result<()> {
    peer.enable(lab, Neighbor::Ebgp)?;
    let mut ours = ebgp_config();
    ours.hold_time = 1;
    let address = SocketAddr::new(PEER_V4.parse()?, 179);
    let bytes = encode(&Message::Open(ours.open()), &CodecContext::default())?;
    recorder.sent(
        "open-ebgp-hold-time-1",
        &bytes,
        "eBGP session over IPv4: our OPEN with a hold time of 1 s",
    );
    let context = CodecContext {
        four_octet_as: true,
        ..CodecContext::default()
    };
    // A peer re-enabled a moment ago may still refuse connections (GoBGP's idle hold time):
    // retry while it closes without a word, for at most a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut notified = false;
    let mut attempts = 0;
    while !notified && Instant::now() < deadline && attempts < 20 {
        attempts += 1;
        let mut wire = wire::Wire::connect(address, Duration::from_secs(30))?;
        wire.send(&bytes)?;
        recorder.collect(
            &mut wire,
            &context,
            "ebgp",
            "eBGP session over IPv4, after our OPEN with a hold time of 1 s (RFC 4271 §6.2: Unacceptable Hold Time)",
            Duration::from_secs(20),
            |bytes| {
                notified |= bytes[18] == 3;
                notified
            },
        )?;
        if !notified {
            std::thread::sleep(Duration::from_secs(3));
        }
    }
    recorder.expect(notified, "NOTIFICATION for the hold time of 1 s");
    Ok(())
}

/// Session 4: iBGP again; we end it with our Cease, Administrative Shutdown, and a shutdown
/// communication (RFC 9003), and check the peer heard it.
fn cease_session(peer: Peer, lab: &Lab, recorder: &mut Recorder) -> Result<()> {
    let session = "ibgp";
    let how = "iBGP session over IPv6, ended by us";
    let address = SocketAddr::new(PEER_V6.parse()?, 179);
    // After our malformed UPDATE the peer may refuse connections for a while (BIRD's error wait,
    // GoBGP's idle hold time): retry while it closes without an OPEN, for at most a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempts = 0;
    let (mut wire, context) = loop {
        attempts += 1;
        let mut wire = wire::Wire::connect(address, Duration::from_secs(30))?;
        match exchange_opens(&mut wire, recorder, &ibgp_config(), session, how) {
            Ok((_, context)) => break (wire, context),
            Err(error) if Instant::now() < deadline && attempts < 20 => {
                println!("{}: {error}; trying again", recorder.label());
                std::thread::sleep(Duration::from_secs(3));
            }
            Err(error) => return Err(error),
        }
    };
    let mut keepalive = false;
    recorder.collect(
        &mut wire,
        &context,
        session,
        &format!("{how}, the peer's first messages"),
        Duration::from_secs(10),
        |bytes| {
            keepalive |= bytes[18] == 4;
            keepalive
        },
    )?;
    let cease = Message::Notification(Notification::cease_with_communication(
        CeaseSubcode::AdministrativeShutdown,
        "weft golden",
    ));
    let bytes = encode(&cease, &context)?;
    wire.send(&bytes)?;
    recorder.sent(
        "notification-cease-administrative-shutdown",
        &bytes,
        "iBGP session over IPv6: our Cease, Administrative Shutdown, \"weft golden\"",
    );
    match lab::poll("the peer to report our Cease", Duration::from_secs(20), || {
        peer.heard_cease(lab, Neighbor::Ibgp)
    }) {
        Ok(report) => recorder.accepted_notification(&report),
        Err(error) => recorder.note(&format!("NOT HEARD: {error}")),
    }
    Ok(())
}

fn refresh_command(peer: Peer) -> &'static str {
    match peer {
        Peer::Bird => "birdc reload in weft_ebgp",
        Peer::Frr => "vtysh -c 'clear bgp ipv4|ipv6 unicast 198.18.0.2 soft in'",
        Peer::Gobgp => "(none: gobgp neighbor softresetin re-applies its Adj-RIB-In and sends nothing)",
    }
}

fn shutdown_command(peer: Peer) -> &'static str {
    match peer {
        Peer::Bird => "birdc disable weft_ebgp \"weft golden\"",
        Peer::Frr => "vtysh: neighbor 198.18.0.2 shutdown message weft golden",
        Peer::Gobgp => "gobgp neighbor 198.18.0.2 disable --reason 'weft golden'",
    }
}

/// Sends our OPEN, records the peer's, answers with a KEEPALIVE; returns what was negotiated.
fn exchange_opens(
    wire: &mut wire::Wire,
    recorder: &mut Recorder,
    ours: &LocalConfig,
    session: &str,
    how: &str,
) -> Result<(Negotiated, CodecContext)> {
    let open = ours.open();
    let bytes = encode(&Message::Open(open.clone()), &CodecContext::default())?;
    wire.send(&bytes)?;
    recorder.sent(&format!("open-{session}"), &bytes, &format!("{how}: our OPEN"));
    let mut theirs = None;
    recorder.collect(
        wire,
        &CodecContext::default(),
        session,
        &format!("{how}, the peer's OPEN"),
        Duration::from_secs(20),
        |bytes| {
            if bytes[18] == 1 {
                theirs = Some(bytes.to_vec());
            }
            theirs.is_some()
        },
    )?;
    let theirs = theirs.ok_or("no OPEN from the peer")?;
    let received = decode_message(&theirs, &CodecContext::default())
        .map_err(|error| format!("the peer's OPEN does not decode: {error}"))?
        .ok_or("the peer's OPEN was ignored")?;
    let Message::Open(their_open) = received.message else {
        return Err("not an OPEN".into());
    };
    let negotiated = negotiate(&open, &their_open).map_err(|notification| format!("negotiation: {notification:?}"))?;
    let context = negotiated.codec_context(false);
    let keepalive = wire::keepalive();
    wire.send(&keepalive)?;
    recorder.sent("keepalive", &keepalive, &format!("{how}: our KEEPALIVE"));
    wire.keepalives = true;
    Ok((negotiated, context))
}

/// The same UPDATE with its MP_REACH_NLRI replaced.
fn with_mp_reach(update: &BgpUpdateMessage, reach: MpReach) -> BgpUpdateMessage {
    let attributes: Vec<_> = update
        .path_attributes()
        .iter()
        .map(|attribute| match attribute.value() {
            PathAttributeValue::MpReach(_) => weft_bgp_proto::wire::path_attribute::PathAttribute::from(
                true,
                false,
                false,
                false,
                PathAttributeValue::MpReach(reach.clone()),
            )
            .expect("valid flags"),
            _ => attribute.clone(),
        })
        .collect();
    BgpUpdateMessage::new(vec![], attributes, vec![])
}

/// What every peer originates; the last two are withdrawn during the eBGP session, so the iBGP
/// session that follows sees only the first two.
const PEER_PREFIXES: [&str; 4] = [
    "198.19.1.0/24",
    "2001:db8:101::/48",
    "198.19.2.0/24",
    "2001:db8:102::/48",
];

fn mark_announced(bytes: &[u8], context: &CodecContext, announced: &mut Vec<String>) {
    if let Some(update) = decoded_update(bytes, context) {
        for (prefix, _) in read_update(&update).advertised {
            announced.push(prefix.to_string());
        }
    }
}

fn mark_end_of_rib(bytes: &[u8], context: &CodecContext, seen: &mut (bool, bool)) {
    if let Some(update) = decoded_update(bytes, context) {
        match end_of_rib_family(&update) {
            Some(AddressType::Ipv4Unicast) => seen.0 = true,
            Some(AddressType::Ipv6Unicast) => seen.1 = true,
            _ => {}
        }
    }
}

fn mark_withdrawals(bytes: &[u8], context: &CodecContext, seen: &mut (bool, bool)) {
    if let Some(update) = decoded_update(bytes, context) {
        seen.0 |= !update.withdraw_routes().is_empty();
        seen.1 |= update.path_attributes().iter().any(|attribute| {
            matches!(attribute.value(), PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) if !nlri.is_empty())
        });
    }
}

//! The send hold timer (RFC 9687) against the real daemon, with a scripted peer on real sockets
//! in network namespaces (only 198.18.0.0/15, removed at the end).
//!
//! The scripted router establishes the session, then keeps sending KEEPALIVEs but never reads
//! again, with a tiny receive buffer; weft (its send buffer pinned small by the namespace's
//! `net.ipv4.tcp_wmem`) has 5,000 prefixes to send and soon cannot write. With
//! `send_hold_time: 2`, weft drops the session (Send Hold Timer Expired, code 8) instead of
//! waiting for ever, although the peer's KEEPALIVEs keep its hold timer happy, and keeps
//! answering `weftctl` meanwhile.
//!
//! ```text
//!   tor (script) 198.19.0.1/24 ── eth ── 198.19.0.2/24 node (weft-bgpd, AS 65001)
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::Result;
use common::wire::{receive, send};
use common::{DEADLINE, POLL, TOR_V4, WeftNode, WeftPeer};
use socket2::{Domain, Protocol, Socket, Type};
use weft_bgp_proto::Message;
use weft_bgp_proto::capabilities::LocalConfig;
use weft_topology_tests::{require_netns, wait_for, wait_until};

const TOR_ASN: u32 = 65000;
const PREFIXES: u32 = 5_000;

#[test]
fn a_peer_that_stops_reading_is_dropped_after_the_send_hold_time() -> Result<()> {
    if require_netns().is_none() {
        return Ok(());
    }
    let tor = weft_topology_tests::Netns::new("sh-tor")?;
    let node = WeftNode::new("sh-node")?;
    common::wire(&tor, &node.netns)?;
    node.netns.run(&["sysctl", "-qw", "net.ipv4.tcp_wmem=4096 4096 4096"])?;
    let prefixes: Vec<String> = (0..PREFIXES)
        .map(|i| format!("198.18.{}.{}/32", 128 + i / 256, i % 256))
        .collect();
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    node.configure_originating(
        &prefixes,
        "",
        &[WeftPeer::new(TOR_V4, TOR_ASN, "ipv4-unicast").with("send_hold_time: 2")],
    )?;
    let listener = tor.within(|| -> std::io::Result<TcpListener> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        // Inherited by the accepted connection: the kernel's smallest receive window.
        socket.set_recv_buffer_size(1024)?;
        socket.bind(&SocketAddr::from(([198, 19, 0, 1], 179)).into())?;
        socket.listen(1)?;
        Ok(socket.into())
    })??;
    listener.set_nonblocking(true)?;
    let weft = node.start()?;
    let (mut stream, _) = wait_for("weft to connect to the router", DEADLINE, POLL, || {
        match listener.accept() {
            Ok(accepted) => Ok(Some(accepted)),
            Err(error) if error.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    })?;
    stream.set_nonblocking(false)?;
    assert!(
        matches!(receive(&mut stream)?, Message::Open(_)),
        "weft opens with an OPEN"
    );
    send(
        &mut stream,
        &Message::Open(LocalConfig::new(TOR_ASN, Ipv4Addr::new(198, 19, 0, 1)).open()),
    )?;
    send(&mut stream, &Message::Keepalive)?;

    // From here on the router never reads; its KEEPALIVEs go on every second.
    let mut writer = stream.try_clone()?;
    let keepalives = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            if send(&mut writer, &Message::Keepalive).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_until("weft to reach Established", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(node.peer_state(TOR_V4)?.as_deref() == Some("Established"))
    })?;
    let neighbor = wait_for("weft to drop the peer that does not read", DEADLINE, POLL, || {
        let neighbor = node.weftctl_value(&["neighbor", TOR_V4])?;
        Ok::<_, anyhow::Error>(neighbor.filter(|n| n["last_error"].as_str().is_some()))
    })?;
    assert_eq!(
        neighbor["last_error"], "notification sent: code 8 subcode 0",
        "Send Hold Timer Expired: {neighbor}"
    );
    assert!(weft.is_running());
    drop(stream);
    drop(keepalives);
    Ok(())
}

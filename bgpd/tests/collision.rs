//! Connection collisions (RFC 4271 §6.8) against the real daemon, with a scripted peer on real
//! sockets in network namespaces (only 198.18.0.0/15, removed at the end).
//!
//! The scripted top-of-rack router accepts weft's connection (A) and opens one of its own (B),
//! reads weft's OPEN on both, answers with its OPEN on A and then on B. Once both connections are
//! in OpenConfirm, weft must keep the one initiated by the speaker with the higher BGP
//! Identifier, close the other with a Cease (Connection Collision Resolution, subcode 7), reach
//! Established on the survivor and exchange routes there.
//!
//! ```text
//!   tor (script) 198.19.0.1/24 ── eth ── 198.19.0.2/24 node (weft-bgpd, AS 65001, id 198.19.0.2)
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use common::wire::{receive, send};
use serde_json::Value;
use weft_bgp_proto::capabilities::LocalConfig;
use weft_bgp_proto::notification::{CeaseSubcode, code};
use weft_bgp_proto::route::{AsPath, Origin};
use weft_bgp_proto::update::{UpdateEncoding, advertisements, read_update};
use weft_bgp_proto::{Message, PathAttributes, Prefix};
use weft_topology_tests::{Netns, Process, binary, require_netns, wait_for, wait_until};

const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const TOR_ASN: u32 = 65000;

/// Reads messages, skipping KEEPALIVEs, until one is not a KEEPALIVE.
fn receive_skipping_keepalives(stream: &mut TcpStream) -> Result<Message> {
    loop {
        match receive(stream)? {
            Message::Keepalive => {}
            other => return Ok(other),
        }
    }
}

struct Lab {
    dir: tempfile::TempDir,
    tor: Netns,
    node: Netns,
}

impl Lab {
    fn new() -> Result<Self> {
        let tor = Netns::new("ctor")?;
        let node = Netns::new("cnode")?;
        tor.veth("eth", &node, "eth")?;
        tor.add_address("eth", "198.19.0.1/24")?;
        node.add_address("eth", "198.19.0.2/24")?;
        let dir = tempfile::tempdir()?;
        let config = format!(
            "asn: 65001\nrouter_id: 198.19.0.2\ncontrol_socket: {}\noriginate: [198.18.1.0/26]\n\
             peers:\n  - address: 198.19.0.1\n    asn: {TOR_ASN}\n    import: accept\n    export: accept\n",
            dir.path().join("weft.sock").display()
        );
        std::fs::write(dir.path().join("weft.yaml"), config)?;
        Ok(Self { dir, tor, node })
    }

    fn start_weft(&self) -> Result<Process> {
        let config = self.dir.path().join("weft.yaml");
        Ok(self
            .node
            .spawn(&[env!("CARGO_BIN_EXE_weft-bgpd"), "--config", config.to_str().unwrap()])?)
    }

    fn weftctl(&self, command: &str) -> Result<Vec<Value>> {
        let socket = self.dir.path().join("weft.sock");
        let output = Command::new(binary("weftctl")?)
            .args(["bgp", "--socket", socket.to_str().unwrap(), command, "--json"])
            .output()?;
        if !output.status.success() {
            return Ok(Vec::new());
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}

/// Runs the collision with the scripted router using `tor_id`; returns (A, B) where A is the
/// connection weft opened and B the one the router opened, after both OPENs were answered.
fn collide(lab: &Lab, tor_id: Ipv4Addr) -> Result<(TcpStream, TcpStream, Process)> {
    let listener = lab.tor.within(|| TcpListener::bind("198.19.0.1:179"))??;
    listener.set_nonblocking(true)?;
    let weft = lab.start_weft()?;
    let (mut a, _) = wait_for("weft to connect to the router", DEADLINE, POLL, || {
        match listener.accept() {
            Ok(accepted) => Ok(Some(accepted)),
            Err(error) if error.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    })?;
    a.set_nonblocking(false)?;
    assert!(matches!(receive(&mut a)?, Message::Open(_)), "weft opens with an OPEN");

    let weft_address = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)), 179);
    let mut b = lab
        .tor
        .within(|| TcpStream::connect_timeout(&weft_address, DEADLINE))??;
    assert!(
        matches!(receive(&mut b)?, Message::Open(_)),
        "weft answers a second connection with an OPEN"
    );

    let open = Message::Open(LocalConfig::new(TOR_ASN, tor_id).open());
    send(&mut a, &open)?;
    send(&mut b, &open)?;
    Ok((a, b, weft))
}

fn expect_collision_cease(loser: &mut TcpStream) -> Result<()> {
    match receive_skipping_keepalives(loser)? {
        Message::Notification(notification) => {
            assert_eq!(notification.code, code::CEASE, "{notification:?}");
            assert_eq!(
                notification.subcode,
                CeaseSubcode::ConnectionCollisionResolution.value(),
                "{notification:?}"
            );
            Ok(())
        }
        other => bail!("expected a Cease on the losing connection, got {other:?}"),
    }
}

/// Establishes the surviving connection and checks that routes flow both ways on it.
fn establish_and_exchange(lab: &Lab, winner: &mut TcpStream) -> Result<()> {
    send(winner, &Message::Keepalive)?;
    wait_until(
        "weft to be Established on the surviving connection",
        DEADLINE,
        POLL,
        || {
            Ok::<_, anyhow::Error>(
                lab.weftctl("peers")?
                    .first()
                    .is_some_and(|p| p["state"] == "Established"),
            )
        },
    )?;
    // weft's export arrives on the survivor.
    let Message::Update(update) = receive_skipping_keepalives(winner)? else {
        bail!("expected weft's UPDATE");
    };
    let routes = read_update(&update);
    let prefix: Prefix = "198.18.1.0/26".parse()?;
    assert_eq!(routes.advertised.len(), 1, "{routes:?}");
    assert_eq!(routes.advertised[0].0, prefix);
    assert_eq!(routes.advertised[0].1.as_path.asns(), vec![65001]);

    // And the router's route reaches weft's Loc-RIB.
    let attributes = PathAttributes {
        origin: Origin::Igp,
        as_path: AsPath::default().prepend(TOR_ASN),
        next_hop: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
        med: None,
        local_pref: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
        originator_id: None,
        cluster_list: Vec::new(),
        aggregator: None,
        atomic_aggregate: false,
    };
    for update in advertisements(
        &["198.18.100.0/24".parse()?],
        &Arc::new(attributes),
        UpdateEncoding::FOUR_OCTET_AS,
    ) {
        send(winner, &Message::Update(update))?;
    }
    wait_until("weft to learn 198.18.100.0/24", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(lab.weftctl("routes")?.iter().any(|r| r["prefix"] == "198.18.100.0/24"))
    })?;
    Ok(())
}

#[test]
fn a_collision_keeps_the_peers_connection_when_the_peer_has_the_higher_identifier() -> Result<()> {
    if require_netns().is_none() {
        return Ok(());
    }
    let lab = Lab::new()?;
    let (mut a, mut b, _weft) = collide(&lab, Ipv4Addr::new(198, 19, 0, 9))?;
    expect_collision_cease(&mut a)?;
    establish_and_exchange(&lab, &mut b)
}

#[test]
fn a_collision_keeps_wefts_connection_when_weft_has_the_higher_identifier() -> Result<()> {
    if require_netns().is_none() {
        return Ok(());
    }
    let lab = Lab::new()?;
    let (mut a, mut b, _weft) = collide(&lab, Ipv4Addr::new(198, 19, 0, 1))?;
    expect_collision_cease(&mut b)?;
    establish_and_exchange(&lab, &mut a)
}

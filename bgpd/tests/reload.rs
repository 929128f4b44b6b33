//! Configuration reload (SIGHUP) against a real FRR 8 ToR, in network namespaces (the lab of
//! `common`: FRR AS 4200000002 at 198.19.0.1 / 2001:db8:ff::1 with a session to each of weft's
//! addresses, weft AS 65001 at .2).
//!
//! Proves, one reload at a time: a peer added comes up and a peer left alone stays up (FRR
//! counts no new connection and no NOTIFICATION, weft's uptime for it keeps growing); an
//! originated prefix added is announced and one removed withdrawn; a peer whose settings changed
//! is re-established with them (FRR receives a Cease, Other Configuration Change) and a peer
//! removed goes down; an invalid file, or a key that needs a restart, is reported and the
//! daemon runs on with the old configuration.

mod common;

use std::time::Instant;

use anyhow::Result;
use common::*;
use serde_json::Value;
use weft_topology_tests::{Signal, require_netns, wait_until};

const KEPT: &str = "198.18.1.0/26";
const DROPPED: &str = "198.18.1.64/26";
const ADDED: &str = "198.18.1.128/26";

fn frr_neighbor(frr: &Frr, neighbor: &str) -> Result<Value> {
    let json = frr.vtysh_json(&format!("show bgp neighbors {neighbor} json"))?;
    Ok(json[neighbor].clone())
}

fn uptime(node: &WeftNode, address: &str) -> Result<u64> {
    let peers = node.peers()?;
    let peer = peers.iter().find(|p| p["address"] == address);
    Ok(peer.and_then(|p| p["uptime_seconds"].as_u64()).unwrap_or(0))
}

#[test]
fn sighup_adds_changes_and_removes_peers_and_prefixes_and_leaves_the_others_up() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut frr = Frr::new("rl-frr")?;
    let node = WeftNode::new("rl-node")?;
    wire(&frr.netns, &node.netns)?;
    frr.configure(&frr_tor_conf(TOR_V4, &[(NODE_V4, "ipv4"), (NODE_V6, "ipv6")], &[], &[]))?;
    let v4 = || WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast");
    let v6 = || WeftPeer::new(TOR_V6, 4_200_000_002, "ipv6-unicast");
    node.configure_originating(&[KEPT, DROPPED], "", &[v4()])?;
    frr.start()?;
    // FRR logs the NOTIFICATIONs it receives, by name.
    frr.vtysh(&["debug bgp neighbor-events"])?;
    let weft = node.start()?;
    wait_until("weft's IPv4 session with FRR Established", DEADLINE, POLL, || {
        node.established(1)
    })?;
    wait_until("FRR to learn weft's two prefixes", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(!frr.paths(KEPT)?.is_empty() && !frr.paths(DROPPED)?.is_empty())
    })?;
    let before = frr_neighbor(&frr, NODE_V4)?;
    let connections = before["connectionsEstablished"].as_u64();
    let notifications = before["messageStats"]["notificationsRecv"].as_u64();
    assert_eq!(connections, Some(1), "{before}");
    let started = Instant::now();
    let uptime_before = uptime(&node, TOR_V4)?;

    // FRR resets an IPv6 session while its link-local address is still tentative (and backs
    // off): wait for duplicate address detection to finish first.
    wait_until("IPv6 link-local addresses usable", DEADLINE, POLL, || {
        let ready = |netns: &weft_topology_tests::Netns| -> Result<bool> {
            let out = netns.run(&["ip", "-6", "addr", "show", "scope", "link"])?.stdout;
            Ok(out.contains("fe80") && !out.contains("tentative"))
        };
        Ok::<_, anyhow::Error>(ready(&frr.netns)? && ready(&node.netns)?)
    })?;

    // Reload 1: the IPv6 peer added, one prefix swapped for another; the IPv4 peer unchanged.
    node.configure_originating(&[KEPT, ADDED, NODE_PREFIX_V6], "", &[v4(), v6()])?;
    weft.signal(Signal::SIGHUP)?;
    wait_until("the added IPv6 peer Established", DEADLINE, POLL, || {
        node.established(2)
    })?;
    wait_until(
        "FRR to learn the added prefix and lose the dropped one",
        DEADLINE,
        POLL,
        || Ok::<_, anyhow::Error>(!frr.paths(ADDED)?.is_empty() && frr.paths(DROPPED)?.is_empty()),
    )?;
    wait_until(
        "FRR to learn weft's IPv6 prefix over the new session",
        DEADLINE,
        POLL,
        || Ok::<_, anyhow::Error>(!frr.paths(NODE_PREFIX_V6)?.is_empty()),
    )?;
    assert!(!frr.paths(KEPT)?.is_empty(), "the kept prefix stays");
    wait_until("the unchanged session's uptime to grow", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(uptime(&node, TOR_V4)? > uptime_before)
    })?;
    let after = frr_neighbor(&frr, NODE_V4)?;
    assert_eq!(after["bgpState"], "Established", "{after}");
    assert_eq!(
        after["connectionsEstablished"].as_u64(),
        connections,
        "no new connection: {after}"
    );
    assert_eq!(
        after["messageStats"]["notificationsRecv"].as_u64(),
        notifications,
        "no NOTIFICATION: {after}"
    );
    let elapsed = started.elapsed().as_secs();
    let uptime_after = uptime(&node, TOR_V4)?;
    assert!(
        uptime_after + 1 >= uptime_before + elapsed,
        "uptime {uptime_before} s, {elapsed} s later {uptime_after} s"
    );
    let neighbor = node.weftctl_value(&["neighbor", TOR_V4])?.expect("an answer");
    assert_eq!(neighbor["counters"]["established_transitions"], 1, "{neighbor}");

    // Reload 2: the IPv4 peer's hold time changed, the IPv6 peer removed.
    node.configure_originating(&[KEPT, ADDED, NODE_PREFIX_V6], "", &[v4().hold_time(6)])?;
    weft.signal(Signal::SIGHUP)?;
    wait_until("FRR to see the IPv6 session go", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(frr.state(NODE_V6)? != "Established")
    })?;
    wait_until("the changed IPv4 session re-established", DEADLINE, POLL, || {
        let neighbor = frr_neighbor(&frr, NODE_V4)?;
        Ok::<_, anyhow::Error>(
            neighbor["bgpState"] == "Established"
                && neighbor["connectionsEstablished"].as_u64() > connections
                && node.established(1)?,
        )
    })?;
    let log = frr.bgpd_log()?;
    let notification = |address: &str, reason: &str| {
        log.lines()
            .any(|line| line.contains("NOTIFICATION") && line.contains(address) && line.contains(reason))
    };
    assert!(
        notification(NODE_V4, "Other Configuration Change"),
        "FRR receives a Cease, Other Configuration Change:\n{log}"
    );
    assert!(
        notification(NODE_V6, "Peer Unconfigured") || notification(NODE_V6, "De-configured"),
        "FRR receives a Cease, Peer De-configured:\n{log}"
    );
    let neighbor = node.weftctl_value(&["neighbor", TOR_V4])?.expect("an answer");
    assert_eq!(neighbor["timers"]["hold_time"], 6, "the new hold time: {neighbor}");
    assert_eq!(node.peers()?.len(), 1);
    node.wait_for_route(TOR_PREFIX_V4)?;

    // Reload 3: a file that does not parse, then one that changes the router id: both refused.
    let good = std::fs::read_to_string(node.path("weft.yaml"))?;
    std::fs::write(node.path("weft.yaml"), "asn: lots\n")?;
    weft.signal(Signal::SIGHUP)?;
    weft.wait_for_output("reload refused", DEADLINE)?;
    std::fs::write(
        node.path("weft.yaml"),
        good.replace(&format!("router_id: {NODE_V4}"), "router_id: 198.19.9.9"),
    )?;
    weft.signal(Signal::SIGHUP)?;
    wait_until("the router id change refused", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(weft.stderr()?.matches("reload refused").count() >= 2)
    })?;
    let log = weft.stderr()?;
    assert!(
        log.contains("error=asn:") && log.contains("error=router_id: cannot change"),
        "each refusal names its key:\n{log}"
    );
    assert!(weft.is_running());
    assert!(node.established(1)?, "still up on the old configuration");
    assert_eq!(frr_neighbor(&frr, NODE_V4)?["bgpState"], "Established");
    assert!(!frr.paths(ADDED)?.is_empty());
    frr.stop_bgpd()?;
    Ok(())
}

//! GTSM (RFC 5082), eBGP multihop and the source address, against a real FRR 8, in network
//! namespaces (only 198.18.0.0/15 and 2001:db8::/32, removed at the end).
//!
//! Proves: with `ttl_security: true` on weft and `ttl-security hops 1` on FRR the IPv4 and IPv6
//! sessions come up; with GTSM on weft alone, FRR's packets (TTL 1, hop limit 1) are dropped by
//! weft's kernel (`TcpExtTCPMinTTLDrop` rises) and no session comes up. Two hops apart, through
//! a router, weft without `multihop` sends with TTL 1 and the router drops it (its ICMP Time
//! Exceeded counter rises); after `multihop: 2` (a reload) the session comes up from weft's
//! loopback address (`source_address`), which FRR sees as the peer.
//!
//! ```text
//!   frr 198.19.1.1 ── 198.19.1.2 router 198.19.2.2 ── 198.19.2.1 node (lo 198.19.20.1)
//! ```

mod common;

use anyhow::Result;
use common::*;
use weft_topology_tests::{Netns, Signal, require_netns, wait_until};

/// A counter of `nstat -asz NAME` in `netns`.
fn nstat(netns: &Netns, name: &str) -> Result<u64> {
    let counters = netns.run(&["nstat", "-asz", name])?.stdout;
    Ok(counters
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0))
}

/// FRR and weft on one link, both families, weft with `ttl_security: true`; FRR with
/// `ttl-security hops 1` when `frr_gtsm`.
fn gtsm_lab(label: &str, frr_gtsm: bool) -> Result<(Frr, WeftNode)> {
    let frr = Frr::new(&format!("{label}-frr"))?;
    let node = WeftNode::new(&format!("{label}-node"))?;
    wire(&frr.netns, &node.netns)?;
    let extra: &[&str] = if frr_gtsm { &["ttl-security hops 1"] } else { &[] };
    frr.configure(&frr_tor_conf(
        TOR_V4,
        &[(NODE_V4, "ipv4"), (NODE_V6, "ipv6")],
        extra,
        &[],
    ))?;
    node.configure(
        "",
        &[
            WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast").with("ttl_security: true"),
            WeftPeer::new(TOR_V6, 4_200_000_002, "ipv6-unicast").with("ttl_security: true"),
        ],
    )?;
    Ok((frr, node))
}

#[test]
fn gtsm_with_frr_comes_up_when_both_use_it_and_drops_a_peer_that_does_not() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let (mut both_frr, both) = gtsm_lab("gtsm", true)?;
    let (mut alone_frr, alone) = gtsm_lab("nogtsm", false)?;
    both_frr.start()?;
    alone_frr.start()?;
    let _both = both.start()?;
    let _alone = alone.start()?;

    wait_until(
        "both sessions Established with GTSM on both sides",
        DEADLINE,
        POLL,
        || both.established(2),
    )?;
    both.wait_for_route(TOR_PREFIX_V4)?;
    both.wait_for_route(TOR_PREFIX_V6)?;
    assert_eq!(both_frr.state(NODE_V4)?, "Established");

    wait_until("weft's kernel to drop FRR's TTL-1 segments", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(nstat(&alone.netns, "TcpExtTCPMinTTLDrop")? > 0)
    })?;
    let peers = alone.peers()?;
    assert!(peers.iter().all(|p| p["state"] != "Established"), "{peers:?}");
    assert_ne!(alone_frr.state(NODE_V4)?, "Established");
    both_frr.stop_bgpd()?;
    alone_frr.stop_bgpd()?;
    Ok(())
}

const FRR_ADDRESS: &str = "198.19.1.1";
const NODE_LOOPBACK: &str = "198.19.20.1";

#[test]
fn multihop_reaches_a_peer_two_hops_away_from_the_source_address() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut frr = Frr::new("mh-frr")?;
    let router = Netns::new("mh-router")?;
    let node = WeftNode::new("mh-node")?;
    frr.netns.veth("eth-r", &router, "eth-frr")?;
    router.veth("eth-node", &node.netns, "eth-r")?;
    frr.netns.add_address("eth-r", &format!("{FRR_ADDRESS}/24"))?;
    router.add_address("eth-frr", "198.19.1.2/24")?;
    router.add_address("eth-node", "198.19.2.2/24")?;
    node.netns.add_address("eth-r", "198.19.2.1/24")?;
    node.netns.run(&["ip", "link", "set", "lo", "up"])?;
    node.netns.add_address("lo", &format!("{NODE_LOOPBACK}/32"))?;
    router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    router.run(&[
        "ip",
        "route",
        "add",
        &format!("{NODE_LOOPBACK}/32"),
        "via",
        "198.19.2.1",
    ])?;
    node.netns
        .run(&["ip", "route", "add", "198.19.1.0/24", "via", "198.19.2.2"])?;
    frr.netns.run(&[
        "ip",
        "route",
        "add",
        &format!("{NODE_LOOPBACK}/32"),
        "via",
        "198.19.1.2",
    ])?;
    frr.configure(&frr_tor_conf(
        FRR_ADDRESS,
        &[(NODE_LOOPBACK, "ipv4")],
        &["ebgp-multihop 2"],
        &[],
    ))?;
    let peer =
        || WeftPeer::new(FRR_ADDRESS, 4_200_000_002, "ipv4-unicast").with(&format!("source_address: {NODE_LOOPBACK}"));
    node.configure("", &[peer()])?;
    frr.start()?;
    let weft = node.start()?;

    // TTL 1: the router drops weft's packets and says so.
    wait_until("the router to drop weft's TTL-1 packets", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(nstat(&router, "IcmpOutTimeExcds")? > 0)
    })?;
    assert!(!node.established(1)?, "no session with TTL 1 two hops away");

    node.configure("", &[peer().with("multihop: 2")])?;
    weft.signal(Signal::SIGHUP)?;
    wait_until("the multihop session Established", DEADLINE, POLL, || {
        node.established(1)
    })?;
    let route = node.wait_for_route(TOR_PREFIX_V4)?;
    assert_eq!(route["next_hop"], FRR_ADDRESS, "{route}");
    let neighbor = node.weftctl_value(&["neighbor", FRR_ADDRESS])?.expect("an answer");
    assert_eq!(neighbor["local_address"], NODE_LOOPBACK, "{neighbor}");
    assert_eq!(
        frr.state(NODE_LOOPBACK)?,
        "Established",
        "FRR peers with weft's loopback"
    );
    frr.stop_bgpd()?;
    Ok(())
}

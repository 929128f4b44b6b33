//! Graceful restart (RFC 4724) both ways, against FRR 8 as the ToR, in network namespaces (the
//! lab of `common`: FRR AS 4200000002 at 198.19.0.1, weft AS 65001 at 198.19.0.2).
//!
//! - Helper: FRR's bgpd is killed (no NOTIFICATION) and comes back with graceful restart and
//!   preserved forwarding state: weft keeps FRR's routes in its FIB all along, marked stale,
//!   and removes the one FRR no longer announces once FRR's End-of-RIB arrives.
//! - Restarting speaker: weft-bgpd is killed (SIGKILL) and started again, then stopped for a
//!   restart (SIGUSR1) and started again, while a ping crosses a route it installed (and FRR's
//!   route back to weft's prefix, which FRR keeps as helper); each new weft-bgpd keeps the
//!   kernel's routes, resyncs, and removes only a stale one. No ping is lost.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use common::*;
use weft_topology_tests::{Signal, require_netns, wait_until};

/// A prefix FRR announces only before its restart.
const GONE_AFTER_RESTART: &str = "198.18.101.0/24";

fn frr_conf(with_extra_prefix: bool) -> String {
    let conf = frr_tor_conf(
        TOR_V4,
        &[(NODE_V4, "ipv4"), (NODE_V6, "ipv6")],
        &[],
        &["bgp graceful-restart", "bgp graceful-restart preserve-fw-state"],
    );
    if with_extra_prefix {
        conf.replace(
            &format!("  network {TOR_PREFIX_V4}\n"),
            &format!("  network {TOR_PREFIX_V4}\n  network {GONE_AFTER_RESTART}\n"),
        )
    } else {
        conf
    }
}

fn lab(with_extra_prefix: bool) -> Result<(Frr, WeftNode)> {
    let frr = Frr::new("frr")?;
    let node = WeftNode::new("node")?;
    wire(&frr.netns, &node.netns)?;
    frr.configure(&frr_conf(with_extra_prefix))?;
    node.configure(
        "graceful_restart: { restart_time: 60 }",
        &[
            WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast"),
            WeftPeer::new(TOR_V6, 4_200_000_002, "ipv6-unicast"),
        ],
    )?;
    Ok((frr, node))
}

#[test]
fn weft_keeps_a_restarting_frrs_routes_in_its_fib_until_frrs_end_of_rib() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let (mut frr, node) = lab(true)?;
    frr.start()?;
    let _weft = node.start()?;
    wait_until("weft's sessions with FRR Established", DEADLINE, POLL, || {
        node.established(2)
    })?;
    let all_in_fib = || -> Result<bool> {
        let routes = node.kernel_routes()?;
        Ok(has_route(&routes, TOR_PREFIX_V4, TOR_V4)
            && has_route(&routes, TOR_PREFIX_V6, TOR_V6)
            && has_route(&routes, GONE_AFTER_RESTART, TOR_V4))
    };
    wait_until("FRR's three prefixes in weft's kernel", DEADLINE, POLL, all_in_fib)?;

    // FRR's bgpd dies without a word: weft keeps its routes, stale, in the RIB and the FIB.
    frr.kill_bgpd()?;
    wait_until("weft to see the sessions go down", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(node.peer_state(TOR_V4)?.is_some_and(|s| s != "Established"))
    })?;
    ensure!(
        all_in_fib()?,
        "FRR's routes left weft's kernel when FRR died:\n{}",
        node.kernel_routes()?
    );
    let route = node.learned(TOR_PREFIX_V4)?.expect("kept in the RIB");
    assert_eq!(route["stale"], true, "{route}");

    // FRR comes back without GONE_AFTER_RESTART: the routes stay in the FIB throughout, and the
    // one it no longer announces goes after its End-of-RIB.
    frr.configure(&frr_conf(false))?;
    frr.start()?;
    let started = Instant::now();
    wait_until(
        "the route FRR no longer announces to leave weft's kernel after End-of-RIB",
        DEADLINE,
        Duration::from_millis(50),
        || {
            let routes = node.kernel_routes()?;
            ensure!(
                has_route(&routes, TOR_PREFIX_V4, TOR_V4) && has_route(&routes, TOR_PREFIX_V6, TOR_V6),
                "a route FRR still announces left weft's kernel during the restart:\n{routes}"
            );
            Ok(!routes.contains(GONE_AFTER_RESTART))
        },
    )?;
    eprintln!(
        "stale route removed {:?} after FRR's bgpd started again",
        started.elapsed()
    );
    // FRR's restarted bgpd may drop a session once more while both sides connect (collision):
    // both come back, and the route is fresh again (not stale) after FRR's End-of-RIB.
    wait_until(
        "weft's sessions with the restarted FRR Established and its route fresh",
        DEADLINE,
        POLL,
        || {
            Ok::<_, anyhow::Error>(
                node.established(2)?
                    && node
                        .learned(TOR_PREFIX_V4)?
                        .is_some_and(|route| route["stale"] == false),
            )
        },
    )?;
    Ok(())
}

#[test]
fn a_ping_through_weft_routes_survives_weft_bgpd_being_killed_or_stopped_and_restarted() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let (mut frr, node) = lab(false)?;
    // Addresses inside the announced prefixes, on loopback, for the ping.
    frr.netns.add_address("lo", "198.18.100.1/32")?;
    node.netns.add_address("lo", "198.18.1.1/32")?;
    frr.start()?;
    let weft = node.start()?;
    wait_until("weft's sessions with FRR Established", DEADLINE, POLL, || {
        node.established(2)
    })?;
    wait_until("the routes both ways in both kernels", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            has_route(&node.kernel_routes()?, TOR_PREFIX_V4, TOR_V4)
                && has_route(&frr.kernel_routes()?, NODE_PREFIX_V4, NODE_V4),
        )
    })?;
    node.netns.ping("198.18.100.1", DEADLINE)?;

    // A UDP stream alongside (iperf3, 20 Mbit/s for 20 s), node to ToR, through the same routes:
    // the receiver must count no lost datagram. (UDP, not TCP: TCP's retransmission count is not
    // zero on this kind of machine even on an idle veth.)
    let iperf = require_program("iperf3", "iperf3");
    let (_iperf_server, iperf_client) = if iperf {
        let server = frr
            .netns
            .spawn(&["iperf3", "-s", "-1", "--forceflush", "-B", "198.18.100.1"])?;
        server.wait_for_output("Server listening", DEADLINE)?;
        let client = node.netns.spawn(&[
            "iperf3",
            "-c",
            "198.18.100.1",
            "-B",
            "198.18.1.1",
            "-u",
            "-b",
            "20M",
            "-t",
            "20",
            "-J",
        ])?;
        (Some(server), Some(client))
    } else {
        (None, None)
    };

    // 800 pings, 25 ms apart (20 s), from the node's prefix to FRR's: out through weft's kernel
    // route, back through FRR's route to weft's prefix.
    let ping = node.netns.spawn(&[
        "ping",
        "-n",
        "-I",
        "198.18.1.1",
        "-i",
        "0.025",
        "-c",
        "800",
        "-W",
        "1",
        "198.18.100.1",
    ])?;
    // Some replies first, so that the loss count covers a working path before the kill.
    ping.wait_for_output("icmp_seq=40 ", DEADLINE)?;
    // A route of a run before: the restarted speaker must remove it once in sync.
    node.netns
        .run(&["ip", "route", "add", "198.18.200.0/24", "via", TOR_V4, "proto", "87"])?;
    weft.signal(Signal::SIGKILL)?;
    weft.wait_exit(DEADLINE)?;
    let weft = node.start()?;
    wait_until("the sessions to come back after weft restarts", DEADLINE, POLL, || {
        node.established(2)
    })?;
    wait_until("the stale route to go once weft is in sync", DEADLINE, POLL, || {
        let routes = node.kernel_routes()?;
        ensure!(
            has_route(&routes, TOR_PREFIX_V4, TOR_V4),
            "a valid route left the kernel during the restart:\n{routes}"
        );
        Ok(!routes.contains("198.18.200.0/24"))
    })?;

    // A planned restart: SIGUSR1 stops weft-bgpd without a Cease and with its routes left in
    // the kernel; the next one takes over as after the crash.
    weft.signal(Signal::SIGUSR1)?;
    let status = weft.wait_exit(DEADLINE)?;
    assert!(status.success(), "weft-bgpd exits 0 on SIGUSR1: {status}");
    let routes = node.kernel_routes()?;
    assert!(
        has_route(&routes, TOR_PREFIX_V4, TOR_V4),
        "routes kept on SIGUSR1:\n{routes}"
    );
    let _weft = node.start()?;
    wait_until(
        "the sessions to come back after the planned restart",
        DEADLINE,
        POLL,
        || node.established(2),
    )?;
    ping.wait_exit(Duration::from_secs(40))?;
    let summary = ping.stdout()?;
    let line = summary
        .lines()
        .find(|line| line.contains("packets transmitted"))
        .unwrap_or_default()
        .to_owned();
    eprintln!("ping across weft-bgpd's restart: {line}");
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (sent, received) = (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    );
    assert_eq!(sent, 800, "{summary}");
    assert_eq!(received, sent, "packets lost across weft-bgpd's restart: {summary}");
    if let Some(client) = iperf_client {
        client.wait_exit(DEADLINE)?;
        let report: serde_json::Value = serde_json::from_str(&client.stdout()?)?;
        let sum = &report["end"]["sum"];
        let (packets, lost) = (sum["packets"].as_u64().unwrap_or(0), sum["lost_packets"].as_u64());
        eprintln!("iperf3 (UDP) across weft-bgpd's restarts: {packets} datagrams, {lost:?} lost");
        assert!(packets > 30_000, "the stream stalled: {packets} datagrams");
        assert_eq!(lost, Some(0), "datagrams lost across weft-bgpd's restarts: {sum}");
    }
    Ok(())
}

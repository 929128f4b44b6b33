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
//! - Route selection deferral (RFC 4724 §4.1): FRR's two sessions are weft's two peers. weft
//!   restarts while FRR holds its IPv6 session down: the IPv4 session comes up and sends its
//!   End-of-RIB, yet FRR gets no UPDATE from weft (no End-of-RIB, weft's route still stale in
//!   FRR, weft's leftover kernel route still there) until the IPv6 session is back with its
//!   End-of-RIB — or, in the second test, until `select_defer_time` runs out. (FRR sets the
//!   Restart State flag in its OPENs for its first 120 s, so its IPv4 session does not count;
//!   the held-down IPv6 peer counts as a configured peer not up yet.) Third test: FRR and a
//!   GoBGP that offers graceful restart without the flag, GoBGP stopped across weft's restart:
//!   FRR gets nothing until GoBGP is back and has sent its End-of-RIB.

mod common;

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::*;
use weft_topology_tests::{Signal, require_netns, wait_until};

/// The ping and UDP stream test counts every lost packet: it runs alone (write), the other
/// labs of this file alongside each other (read), so that their daemons do not starve it of CPU
/// on a small machine.
static QUIET: RwLock<()> = RwLock::new(());

fn alongside_others() -> RwLockReadGuard<'static, ()> {
    QUIET.read().unwrap_or_else(PoisonError::into_inner)
}

fn alone() -> RwLockWriteGuard<'static, ()> {
    QUIET.write().unwrap_or_else(PoisonError::into_inner)
}

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
    lab_with(with_extra_prefix, "graceful_restart: { restart_time: 60 }")
}

/// The lab with weft's `graceful_restart` line given.
fn lab_with(with_extra_prefix: bool, graceful_restart: &str) -> Result<(Frr, WeftNode)> {
    let frr = Frr::new("frr")?;
    let node = WeftNode::new("node")?;
    wire(&frr.netns, &node.netns)?;
    frr.configure(&frr_conf(with_extra_prefix))?;
    node.configure(
        graceful_restart,
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
    let _quiet = alongside_others();
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
    let _quiet = alone();
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

/// A route of a run before weft's restart, which the restarted weft removes when it reconciles.
const LEFTOVER: &str = "198.18.200.0/24";

/// FRR's view of its session with weft at `neighbor` (weft's address): whether it has weft's
/// End-of-RIB, and how many UPDATEs it counts from weft.
fn frr_sees(frr: &Frr, neighbor: &str) -> Result<(bool, u64)> {
    let json = frr.vtysh_json(&format!("show bgp neighbors {neighbor} json"))?;
    let neighbor = &json[neighbor];
    let end_of_rib = neighbor["gracefulRestartInfo"]["endOfRibRecv"]
        .as_object()
        .is_some_and(|families| families.values().any(|received| received == true));
    let updates = neighbor["messageStats"]["updatesRecv"].as_u64().unwrap_or(0);
    Ok((end_of_rib, updates))
}

/// Whether FRR's path to weft's IPv4 prefix is marked stale (kept as helper, not re-announced).
fn frr_path_is_stale(frr: &Frr) -> Result<bool> {
    Ok(frr.paths(NODE_PREFIX_V4)?.iter().any(|path| path["stale"] == true))
}

/// `weftctl bgp neighbor ADDRESS --json`.
fn neighbor(node: &WeftNode, address: &str) -> Result<Option<serde_json::Value>> {
    node.weftctl_value(&["neighbor", address])
}

/// Starts the lab, waits for the routes both ways, leaves a route of "a run before" in weft's
/// kernel, stops weft-bgpd for a restart (SIGUSR1) and shuts FRR's IPv6 session to weft.
fn restart_with_one_peer_held_down(select_defer_time: u16) -> Result<(Frr, WeftNode)> {
    let (mut frr, node) = lab_with(
        false,
        &format!("graceful_restart: {{ restart_time: 60, select_defer_time: {select_defer_time} }}"),
    )?;
    frr.start()?;
    let weft = node.start()?;
    wait_until("weft's sessions with FRR Established", DEADLINE, POLL, || {
        node.established(2)
    })?;
    wait_until("the routes both ways", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            has_route(&node.kernel_routes()?, TOR_PREFIX_V4, TOR_V4) && !frr.paths(NODE_PREFIX_V4)?.is_empty(),
        )
    })?;
    // A first start (no weft route in the kernel) defers nothing.
    let peers = node.peers()?;
    ensure!(peers.iter().all(|p| p["selection_deferred"] == false), "{peers:?}");
    node.netns
        .run(&["ip", "route", "add", LEFTOVER, "via", TOR_V4, "proto", "87"])?;
    weft.signal(Signal::SIGUSR1)?;
    let status = weft.wait_exit(DEADLINE)?;
    ensure!(status.success(), "weft-bgpd exits 0 on SIGUSR1: {status}");
    frr.vtysh(&[
        "configure terminal",
        "router bgp 4200000002",
        &format!("neighbor {NODE_V6} shutdown"),
    ])?;
    Ok((frr, node))
}

/// After the restart: waits for the IPv4 session to be up with FRR's End-of-RIB in weft, and
/// returns how many UPDATEs FRR counted from weft by then.
fn wait_for_the_ipv4_peer_in_sync(frr: &Frr, node: &WeftNode) -> Result<u64> {
    wait_until(
        "weft's IPv4 session Established with FRR's End-of-RIB received",
        DEADLINE,
        POLL,
        || {
            // FRR's route and its End-of-RIB: two UPDATEs at least.
            Ok::<_, anyhow::Error>(
                neighbor(node, TOR_V4)?.is_some_and(|n| {
                    n["state"] == "Established"
                        && n["selection_deferral"]["awaited"] == false
                        && n["counters"]["updates_received"].as_u64() >= Some(2)
                }) && frr.state(NODE_V4)? == "Established",
            )
        },
    )?;
    Ok(frr_sees(frr, NODE_V4)?.1)
}

/// While deferring: weft sends FRR nothing, FRR keeps weft's route stale, and the leftover
/// kernel route is still there; checked every 250 ms for `window`.
fn nothing_is_sent_for(frr: &Frr, node: &WeftNode, updates_before: u64, window: Duration) -> Result<()> {
    nothing_is_sent_for_with(frr, node, updates_before, window, TOR_V6)
}

/// As [`nothing_is_sent_for`], `away` being the peer held down.
fn nothing_is_sent_for_with(
    frr: &Frr,
    node: &WeftNode,
    updates_before: u64,
    window: Duration,
    away: &str,
) -> Result<()> {
    let started = Instant::now();
    wait_until(
        "route selection deferral to hold (nothing sent)",
        window + DEADLINE,
        POLL,
        || {
            let (end_of_rib, updates) = frr_sees(frr, NODE_V4)?;
            ensure!(
                !end_of_rib && updates == updates_before,
                "FRR got an UPDATE or End-of-RIB from weft while it defers: End-of-RIB {end_of_rib}, \
                 UPDATEs {updates_before} -> {updates}"
            );
            ensure!(
                frr_path_is_stale(frr)?,
                "FRR's path to weft's prefix is fresh: {:?}",
                frr.paths(NODE_PREFIX_V4)?
            );
            let v4 = neighbor(node, TOR_V4)?.context("weft-bgpd does not answer")?;
            ensure!(
                v4["counters"]["updates_sent"] == 0 && v4["counters"]["prefixes_sent"] == 0,
                "weft advertised while deferring: {v4}"
            );
            ensure!(
                v4["selection_deferral"]["remaining_seconds"].as_u64().is_some(),
                "weft does not show the deferral: {v4}"
            );
            let peers = node.peers()?;
            ensure!(peers.iter().all(|p| p["selection_deferred"] == true), "{peers:?}");
            ensure!(
                node.peer_state(away)?.as_deref() != Some("Established"),
                "the session with {away} came up while it is held down"
            );
            let routes = node.kernel_routes()?;
            ensure!(
                routes.contains(LEFTOVER),
                "weft reconciled its kernel before deferral ended:\n{routes}"
            );
            Ok(started.elapsed() >= window)
        },
    )?;
    Ok(())
}

/// After deferral: FRR has weft's End-of-RIB and a fresh route, and weft's kernel is
/// reconciled (the leftover gone, FRR's route kept).
fn wait_for_the_full_table_and_end_of_rib(frr: &Frr, node: &WeftNode) -> Result<()> {
    wait_until(
        "FRR to get weft's table and End-of-RIB, and weft's kernel reconciled",
        DEADLINE,
        POLL,
        || {
            let routes = node.kernel_routes()?;
            ensure!(
                has_route(&routes, TOR_PREFIX_V4, TOR_V4),
                "a valid route left weft's kernel:\n{routes}"
            );
            Ok::<_, anyhow::Error>(
                frr_sees(frr, NODE_V4)?.0
                    && !frr.paths(NODE_PREFIX_V4)?.is_empty()
                    && !frr_path_is_stale(frr)?
                    && !routes.contains(LEFTOVER),
            )
        },
    )?;
    let v4 = neighbor(node, TOR_V4)?.context("weft-bgpd does not answer")?;
    ensure!(v4["selection_deferral"].is_null(), "{v4}");
    ensure!(
        v4["counters"]["prefixes_sent"].as_u64() >= Some(1) && v4["counters"]["updates_sent"].as_u64() >= Some(2),
        "the route and End-of-RIB: {v4}"
    );
    ensure!(node.peers()?.iter().all(|p| p["selection_deferred"] == false));
    Ok(())
}

#[test]
fn after_its_restart_weft_advertises_nothing_until_every_peer_sent_end_of_rib() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let _quiet = alongside_others();
    let (frr, node) = restart_with_one_peer_held_down(120)?;
    let _weft = node.start()?;
    let updates_before = wait_for_the_ipv4_peer_in_sync(&frr, &node)?;
    let v6 = neighbor(&node, TOR_V6)?.context("weft-bgpd does not answer")?;
    ensure!(
        v6["selection_deferral"]["awaited"] == true,
        "the IPv6 peer, not up yet, is waited for: {v6}"
    );
    nothing_is_sent_for(&frr, &node, updates_before, Duration::from_secs(4))?;

    // The IPv6 session comes back and sends its End-of-RIB: deferral ends.
    frr.vtysh(&[
        "configure terminal",
        "router bgp 4200000002",
        &format!("no neighbor {NODE_V6} shutdown"),
    ])?;
    wait_for_the_full_table_and_end_of_rib(&frr, &node)?;
    wait_until("both sessions Established", DEADLINE, POLL, || node.established(2))?;
    Ok(())
}

#[test]
fn after_its_restart_weft_advertises_when_the_selection_deferral_timer_runs_out() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let _quiet = alongside_others();
    const SELECT_DEFER_TIME: Duration = Duration::from_secs(8);
    let (frr, node) = restart_with_one_peer_held_down(8)?;
    let started = Instant::now();
    let _weft = node.start()?;
    let updates_before = wait_for_the_ipv4_peer_in_sync(&frr, &node)?;
    // Held until shortly before the timer (the IPv6 session stays down throughout).
    let window = SELECT_DEFER_TIME
        .saturating_sub(started.elapsed())
        .saturating_sub(Duration::from_millis(1500));
    nothing_is_sent_for(&frr, &node, updates_before, window)?;
    wait_for_the_full_table_and_end_of_rib(&frr, &node)?;
    let elapsed = started.elapsed();
    eprintln!("weft advertised {elapsed:?} after it started (select_defer_time 8 s)");
    ensure!(
        elapsed >= SELECT_DEFER_TIME - Duration::from_millis(500),
        "deferral ended before its timer: {elapsed:?}"
    );
    ensure!(node.peer_state(TOR_V6)?.as_deref() != Some("Established"));
    Ok(())
}

/// GoBGP's side of its link to weft, and weft's.
const GOBGP_V4: &str = "198.19.1.1";
const NODE_TO_GOBGP_V4: &str = "198.19.1.2";

/// GoBGP 3 (AS 4200000003) offering graceful restart (without the Restart State flag: gobgpd
/// sets it only when started with `-r`), IPv4 unicast with weft.
fn gobgp_conf() -> String {
    format!(
        r#"[global.config]
  as = 4200000003
  router-id = "{GOBGP_V4}"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{NODE_TO_GOBGP_V4}"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 2
    hold-time = 9
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 60
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"#
    )
}

#[test]
fn after_its_restart_weft_waits_for_a_graceful_restart_peer_that_comes_later() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() || !Gobgp::installed() {
        return Ok(());
    }
    let _quiet = alongside_others();
    // FRR (its IPv4 session only) on the usual link, GoBGP on a second one.
    let mut frr = Frr::new("frr")?;
    let node = WeftNode::new("node")?;
    let mut gobgp = Gobgp::new("gobgp", &gobgp_conf())?;
    wire(&frr.netns, &node.netns)?;
    let _link = gobgp.netns.veth("eth-node", &node.netns, "eth-gobgp")?;
    gobgp.netns.add_address("eth-node", &format!("{GOBGP_V4}/24"))?;
    node.netns.add_address("eth-gobgp", &format!("{NODE_TO_GOBGP_V4}/24"))?;
    frr.configure(&frr_tor_conf(
        TOR_V4,
        &[(NODE_V4, "ipv4")],
        &[],
        &["bgp graceful-restart", "bgp graceful-restart preserve-fw-state"],
    ))?;
    node.configure(
        "graceful_restart: { restart_time: 60, select_defer_time: 120 }",
        &[
            WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast"),
            WeftPeer::new(GOBGP_V4, 4_200_000_003, "ipv4-unicast"),
        ],
    )?;
    frr.start()?;
    gobgp.start()?;
    let weft = node.start()?;
    wait_until("weft's sessions with FRR and GoBGP Established", DEADLINE, POLL, || {
        node.established(2)
    })?;
    wait_until("weft's route in FRR", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(!frr.paths(NODE_PREFIX_V4)?.is_empty())
    })?;
    node.netns
        .run(&["ip", "route", "add", LEFTOVER, "via", TOR_V4, "proto", "87"])?;
    weft.signal(Signal::SIGUSR1)?;
    let status = weft.wait_exit(DEADLINE)?;
    ensure!(status.success(), "weft-bgpd exits 0 on SIGUSR1: {status}");
    gobgp.stop()?;

    // weft restarts while GoBGP is away: FRR's session is up, GoBGP's is awaited.
    let _weft = node.start()?;
    let updates_before = wait_for_the_ipv4_peer_in_sync(&frr, &node)?;
    let away = neighbor(&node, GOBGP_V4)?.context("weft-bgpd does not answer")?;
    ensure!(
        away["selection_deferral"]["awaited"] == true,
        "GoBGP, not up yet, is waited for: {away}"
    );
    nothing_is_sent_for_with(&frr, &node, updates_before, Duration::from_secs(3), GOBGP_V4)?;

    // GoBGP comes (graceful restart, no Restart State flag: it counts) and sends End-of-RIB.
    gobgp.start()?;
    wait_for_the_full_table_and_end_of_rib(&frr, &node)?;
    let back = neighbor(&node, GOBGP_V4)?.context("weft-bgpd does not answer")?;
    ensure!(
        back["state"] == "Established"
            && back["capabilities"]["graceful_restart"]["restarting"] == false
            && back["counters"]["updates_received"].as_u64() >= Some(1),
        "GoBGP counted, its End-of-RIB received: {back}"
    );
    Ok(())
}

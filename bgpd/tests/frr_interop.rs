//! weft-bgpd against a real FRR 8 (zebra + bgpd) as an eBGP top-of-rack router, in network
//! namespaces (the lab of `common`: FRR AS 4200000002 at 198.19.0.1 / 2001:db8:ff::1, weft
//! AS 65001 at .2).
//!
//! Proves: IPv4 and IPv6 sessions reach Established; FRR learns weft's prefixes (AS_PATH 65001,
//! weft's address as next hop) and zebra installs them in FRR's kernel; weft learns FRR's and
//! installs them in its own (proto 87); `clear bgp … soft in` on FRR (a ROUTE-REFRESH) makes
//! weft send its routes again; FRR stopping withdraws its routes from weft's RIB and kernel;
//! TCP MD5 with the same key comes up and with another key does not. FRR comes from Debian's
//! `frr` (scripts/install-deps.sh).

mod common;

use anyhow::Result;
use common::*;
use weft_topology_tests::{require_netns, wait_until};

const METRICS_PORT: u16 = 9179;

struct Lab {
    frr: Frr,
    node: WeftNode,
}

impl Lab {
    /// FRR with `neighbor_extra` on both sessions; weft with `weft_extra` on both peers.
    fn new(neighbor_extra: &[&str], weft_extra: &[&str]) -> Result<Self> {
        let frr = Frr::new("frr")?;
        let node = WeftNode::new("node")?;
        wire(&frr.netns, &node.netns)?;
        frr.configure(&frr_tor_conf(
            TOR_V4,
            &[(NODE_V4, "ipv4"), (NODE_V6, "ipv6")],
            neighbor_extra,
            &[],
        ))?;
        let peers: Vec<WeftPeer> = [
            WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast"),
            WeftPeer::new(TOR_V6, 4_200_000_002, "ipv6-unicast"),
        ]
        .into_iter()
        .map(|peer| weft_extra.iter().fold(peer, |peer, line| peer.with(line)))
        .collect();
        node.configure(&format!("metrics_listen: {NODE_V4}:{METRICS_PORT}"), &peers)?;
        Ok(Self { frr, node })
    }

    fn frr_established(&self) -> Result<bool> {
        Ok(self.frr.state(NODE_V4)? == "Established" && self.frr.state(NODE_V6)? == "Established")
    }

    /// FRR's counter of UPDATEs received from `neighbor`.
    fn frr_updates_received(&self, neighbor: &str) -> Result<u64> {
        let json = self.frr.vtysh_json(&format!("show bgp neighbors {neighbor} json"))?;
        Ok(json[neighbor]["messageStats"]["updatesRecv"].as_u64().unwrap_or(0))
    }
}

#[test]
fn weft_and_frr_exchange_ipv4_and_ipv6_routes_refresh_them_and_withdraw_when_frr_stops() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut lab = Lab::new(&[], &[])?;
    lab.frr.start()?;
    let _weft = lab.node.start()?;

    wait_until(
        "weft's IPv4 and IPv6 sessions with FRR Established",
        DEADLINE,
        POLL,
        || lab.node.established(2),
    )?;
    assert!(lab.frr_established()?, "FRR agrees");

    // FRR learns weft's prefixes, best, with AS_PATH 65001 and weft's next hop, into its kernel.
    wait_until("FRR to learn weft's prefixes", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(!lab.frr.paths(NODE_PREFIX_V4)?.is_empty() && !lab.frr.paths(NODE_PREFIX_V6)?.is_empty())
    })?;
    let v4 = &lab.frr.paths(NODE_PREFIX_V4)?[0];
    assert_eq!(v4["aspath"]["string"], "65001", "{v4}");
    assert_eq!(v4["nexthops"][0]["ip"], NODE_V4, "{v4}");
    assert_eq!(v4["bestpath"]["overall"], true, "{v4}");
    let v6 = &lab.frr.paths(NODE_PREFIX_V6)?[0];
    assert_eq!(v6["aspath"]["string"], "65001", "{v6}");
    assert_eq!(v6["nexthops"][0]["ip"], NODE_V6, "{v6}");
    wait_until(
        "zebra to install weft's prefixes in FRR's kernel",
        DEADLINE,
        POLL,
        || {
            let routes = lab.frr.kernel_routes()?;
            Ok::<_, anyhow::Error>(
                has_route(&routes, NODE_PREFIX_V4, NODE_V4) && has_route(&routes, NODE_PREFIX_V6, NODE_V6),
            )
        },
    )?;

    // weft learns FRR's, with FRR's 4-octet AS, and installs them.
    let route = lab.node.wait_for_route(TOR_PREFIX_V4)?;
    assert_eq!(route["next_hop"], TOR_V4, "{route}");
    assert_eq!(route["as_path"], serde_json::json!([4_200_000_002u32]), "{route}");
    let route = lab.node.wait_for_route(TOR_PREFIX_V6)?;
    assert_eq!(route["next_hop"], TOR_V6, "{route}");
    wait_until("FRR's prefixes in weft's kernel", DEADLINE, POLL, || {
        let routes = lab.node.kernel_routes()?;
        Ok::<_, anyhow::Error>(has_route(&routes, TOR_PREFIX_V4, TOR_V4) && has_route(&routes, TOR_PREFIX_V6, TOR_V6))
    })?;

    // Route refresh: FRR asks (ROUTE-REFRESH) and weft sends its routes again.
    for (neighbor, family) in [(NODE_V4, "ipv4"), (NODE_V6, "ipv6")] {
        let before = lab.frr_updates_received(neighbor)?;
        lab.frr
            .vtysh(&[&format!("clear bgp {family} unicast {neighbor} soft in")])?;
        wait_until(
            &format!("weft to answer FRR's route refresh on {neighbor} with UPDATEs"),
            DEADLINE,
            POLL,
            || Ok::<_, anyhow::Error>(lab.frr_updates_received(neighbor)? > before),
        )?;
    }
    assert!(lab.node.established(2)?, "a route refresh leaves the sessions up");
    assert_eq!(lab.frr.paths(NODE_PREFIX_V4)?.len(), 1);

    // `weftctl bgp neighbor ADDR`: the session in detail.
    let neighbor = lab.node.weftctl_value(&["neighbor", TOR_V4])?.expect("an answer");
    assert_eq!(neighbor["state"], "Established", "{neighbor}");
    assert_eq!(neighbor["kind"], "eBGP", "{neighbor}");
    assert_eq!(neighbor["router_id"], TOR_V4, "{neighbor}");
    assert_eq!(neighbor["local_address"], NODE_V4, "{neighbor}");
    assert_eq!(neighbor["timers"]["hold_time"], 9, "{neighbor}");
    assert_eq!(neighbor["timers"]["keepalive_time"], 3, "{neighbor}");
    let capabilities = &neighbor["capabilities"];
    assert_eq!(
        capabilities["families"],
        serde_json::json!(["ipv4-unicast"]),
        "{neighbor}"
    );
    assert_eq!(capabilities["four_octet_as"], true, "{neighbor}");
    assert_eq!(capabilities["route_refresh"], true, "{neighbor}");
    let counters = &neighbor["counters"];
    // FRR sends weft's own prefix back too (no sender-side loop check); loop detection drops it.
    assert_eq!(counters["prefixes_received"], 2, "{neighbor}");
    assert_eq!(counters["prefixes_accepted"], 1, "{neighbor}");
    assert_eq!(counters["established_transitions"], 1, "{neighbor}");
    assert!(counters["route_refreshes_received"].as_u64() >= Some(1), "{neighbor}");
    assert!(
        counters["updates_sent"].as_u64() >= Some(3),
        "routes, End-of-RIB, refresh: {neighbor}"
    );
    assert!(counters["updates_received"].as_u64() >= Some(1), "{neighbor}");
    let text = std::process::Command::new(weft_topology_tests::binary("weftctl")?)
        .args([
            "--socket",
            lab.node.path("weft.sock").to_str().unwrap_or_default(),
            "bgp",
            "neighbor",
            TOR_V4,
        ])
        .output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("state: Established") && text.contains("four_octet_as: true"),
        "{text}"
    );

    // Prometheus: what a dashboard of this node shows.
    let text = lab.node.scrape(&format!("{NODE_V4}:{METRICS_PORT}"))?;
    let value = |series: &str| metric(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    let peer = |name: &str| format!("weft_bgp_{name}{{peer=\"{TOR_V4}\"}}");
    assert_eq!(value("weft_bgp_sessions{state=\"Established\"}"), 2.0);
    assert_eq!(value("weft_bgp_sessions{state=\"Idle\"}"), 0.0);
    assert_eq!(
        value(&peer("prefixes_received")),
        2.0,
        "weft's own prefix comes back too"
    );
    assert_eq!(value(&peer("prefixes_accepted")), 1.0);
    assert_eq!(value(&peer("prefixes_sent")), 1.0);
    assert!(value(&peer("updates_received_total")) >= 1.0);
    assert!(value(&peer("updates_sent_total")) >= 3.0, "routes, End-of-RIB, refresh");
    assert!(
        value(&peer("fsm_transitions_total")) >= 4.0,
        "Idle, Connect or Active, OpenSent, OpenConfirm, Established"
    );
    assert_eq!(value(&peer("established_transitions_total")), 1.0);
    assert_eq!(value("weft_bgp_kernel_routes"), 2.0, "FRR's IPv4 and IPv6 prefixes");

    let unknown = lab.node.weftctl_value(&["neighbor", "198.19.9.9"])?;
    assert!(
        unknown.is_none(),
        "weftctl fails for a peer that is not configured: {unknown:?}"
    );

    // FRR's bgpd stops (a Cease): weft withdraws FRR's routes from its RIB and its kernel.
    lab.frr.stop_bgpd()?;
    wait_until("weft to withdraw FRR's routes", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(lab.node.learned(TOR_PREFIX_V4)?.is_none() && lab.node.learned(TOR_PREFIX_V6)?.is_none())
    })?;
    wait_until("FRR's routes to leave weft's kernel", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(lab.node.kernel_routes()?.is_empty())
    })?;
    let peers = lab.node.peers()?;
    assert!(peers.iter().all(|p| p["state"] != "Established"), "{peers:?}");
    let neighbor = lab.node.weftctl_value(&["neighbor", TOR_V4])?.expect("an answer");
    // FRR's bgpd closes its sessions on SIGTERM without a NOTIFICATION.
    assert_eq!(neighbor["last_error"], "connection lost", "{neighbor}");
    let text = lab.node.scrape(&format!("{NODE_V4}:{METRICS_PORT}"))?;
    assert_eq!(
        metric(&text, "weft_bgp_sessions{state=\"Established\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(metric(&text, "weft_bgp_kernel_routes"), Some(0.0), "{text}");
    Ok(())
}

#[test]
fn tcp_md5_with_frr_comes_up_with_the_same_key_and_not_with_another() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut same = Lab::new(&["password weft-md5"], &["password: weft-md5"])?;
    let mut other = Lab::new(&["password weft-md5"], &["password: another-key"])?;
    same.frr.start()?;
    other.frr.start()?;
    let _same = same.node.start()?;
    let _other = other.node.start()?;

    wait_until("both sessions Established with MD5", DEADLINE, POLL, || {
        same.node.established(2)
    })?;
    same.node.wait_for_route(TOR_PREFIX_V4)?;
    assert!(same.frr_established()?);

    // The kernel drops the wrongly signed segments: its counter says so.
    wait_until("FRR's kernel to drop wrongly signed segments", DEADLINE, POLL, || {
        let counters = other.frr.netns.run(&["nstat", "-asz", "TcpExtTCPMD5Failure"])?.stdout;
        let failures = counters
            .lines()
            .find(|line| line.starts_with("TcpExtTCPMD5Failure"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(0);
        Ok::<_, anyhow::Error>(failures > 0)
    })?;
    let peers = other.node.peers()?;
    assert!(peers.iter().all(|p| p["state"] != "Established"), "{peers:?}");
    assert_ne!(other.frr.state(NODE_V4)?, "Established");
    Ok(())
}

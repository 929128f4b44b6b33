//! weft-bgpd against a real GoBGP 3 (`gobgpd`) as an eBGP top-of-rack router, in network
//! namespaces (the lab of `common`: GoBGP AS 4200000003 at 198.19.0.1 / 2001:db8:ff::1, weft
//! AS 65001 at .2).
//!
//! Proves: IPv4 and IPv6 sessions reach Established; GoBGP's global RIB holds weft's prefixes
//! with AS_PATH 65001 and weft's next hop; weft learns GoBGP's and installs them in its kernel
//! (proto 87); GoBGP stopping withdraws its routes from weft's RIB and kernel. GoBGP programs no
//! kernel of its own, and its `softresetin` re-reads its own Adj-RIB-In instead of sending a
//! ROUTE-REFRESH, so route refresh is proven against FRR (`frr_interop.rs`). Also: a GoBGP that
//! offers graceful restart and is killed has its routes kept (stale) until its Restart Time
//! runs out. GoBGP comes from Debian's `gobgpd` (scripts/install-deps.sh).

mod common;

use anyhow::Result;
use common::*;
use serde_json::Value;
use weft_topology_tests::{require_netns, wait_until};

/// GoBGP's configuration; `restart_time`: offer graceful restart with this Restart Time.
fn gobgp_conf(restart_time: Option<u16>) -> String {
    let mut conf = format!("[global.config]\n  as = 4200000003\n  router-id = \"{TOR_V4}\"\n");
    for (address, family) in [(NODE_V4, "ipv4-unicast"), (NODE_V6, "ipv6-unicast")] {
        let (restart, mp_restart) = match restart_time {
            Some(seconds) => (
                format!("  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = {seconds}\n"),
                "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n".to_owned(),
            ),
            None => (String::new(), String::new()),
        };
        conf.push_str(&format!(
            r#"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{address}"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 2
    hold-time = 9
{restart}  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{family}"
{mp_restart}"#
        ));
    }
    conf
}

struct Lab {
    gobgp: Gobgp,
    node: WeftNode,
}

impl Lab {
    fn new(restart_time: Option<u16>) -> Result<Self> {
        let gobgp = Gobgp::new("gobgp", &gobgp_conf(restart_time))?;
        let node = WeftNode::new("node")?;
        wire(&gobgp.netns, &node.netns)?;
        node.configure(
            "",
            &[
                WeftPeer::new(TOR_V4, 4_200_000_003, "ipv4-unicast"),
                WeftPeer::new(TOR_V6, 4_200_000_003, "ipv6-unicast"),
            ],
        )?;
        Ok(Self { gobgp, node })
    }

    /// GoBGP's paths to `prefix` in its global RIB.
    fn gobgp_paths(&self, prefix: &str) -> Result<Vec<Value>> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let rib = self.gobgp.gobgp_json(&["global", "rib", "-a", family])?;
        Ok(rib[prefix].as_array().cloned().unwrap_or_default())
    }
}

/// The AS_PATH attribute (type 2) of a GoBGP JSON path, as its AS numbers.
fn as_path(path: &Value) -> Vec<u64> {
    path["attrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == 2)
        .flat_map(|a| a["as_paths"].as_array().cloned().unwrap_or_default())
        .flat_map(|segment| segment["asns"].as_array().cloned().unwrap_or_default())
        .filter_map(|asn| asn.as_u64())
        .collect()
}

/// The next hop of a GoBGP JSON path: NEXT_HOP (type 3) or MP_REACH_NLRI's (type 14).
fn next_hop(path: &Value) -> String {
    path["attrs"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|a| match a["type"].as_u64() {
            Some(3) => a["nexthop"].as_str().map(str::to_owned),
            Some(14) => a["nexthop"].as_str().map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn weft_and_gobgp_exchange_ipv4_and_ipv6_routes_and_withdraw_them_when_gobgp_stops() -> Result<()> {
    if require_netns().is_none() || !Gobgp::installed() {
        return Ok(());
    }
    let mut lab = Lab::new(None)?;
    lab.gobgp.start()?;
    lab.gobgp
        .gobgp(&["global", "rib", "add", TOR_PREFIX_V4, "-a", "ipv4"])?;
    lab.gobgp
        .gobgp(&["global", "rib", "add", TOR_PREFIX_V6, "-a", "ipv6"])?;
    let _weft = lab.node.start()?;

    wait_until(
        "weft's IPv4 and IPv6 sessions with GoBGP Established",
        DEADLINE,
        POLL,
        || lab.node.established(2),
    )?;
    for neighbor in [NODE_V4, NODE_V6] {
        let state = lab.gobgp.state(neighbor)?;
        assert!(
            state.eq_ignore_ascii_case("established") || state == "6",
            "GoBGP: {state}"
        );
    }

    // GoBGP learns weft's prefixes with AS_PATH 65001 and weft's next hop.
    wait_until("GoBGP to learn weft's prefixes", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            !lab.gobgp_paths(NODE_PREFIX_V4)?.is_empty() && !lab.gobgp_paths(NODE_PREFIX_V6)?.is_empty(),
        )
    })?;
    for (prefix, hop) in [(NODE_PREFIX_V4, NODE_V4), (NODE_PREFIX_V6, NODE_V6)] {
        let paths = lab.gobgp_paths(prefix)?;
        assert_eq!(as_path(&paths[0]), [65001], "{paths:?}");
        assert_eq!(next_hop(&paths[0]), hop, "{paths:?}");
    }

    // weft learns GoBGP's and installs them.
    let route = lab.node.wait_for_route(TOR_PREFIX_V4)?;
    assert_eq!(route["next_hop"], TOR_V4, "{route}");
    assert_eq!(route["as_path"], serde_json::json!([4_200_000_003u32]), "{route}");
    let route = lab.node.wait_for_route(TOR_PREFIX_V6)?;
    assert_eq!(route["next_hop"], TOR_V6, "{route}");
    wait_until("GoBGP's prefixes in weft's kernel", DEADLINE, POLL, || {
        let routes = lab.node.kernel_routes()?;
        Ok::<_, anyhow::Error>(has_route(&routes, TOR_PREFIX_V4, TOR_V4) && has_route(&routes, TOR_PREFIX_V6, TOR_V6))
    })?;

    // GoBGP stops: weft withdraws its routes from the RIB and the kernel.
    lab.gobgp.stop()?;
    wait_until("weft to withdraw GoBGP's routes", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(lab.node.learned(TOR_PREFIX_V4)?.is_none() && lab.node.learned(TOR_PREFIX_V6)?.is_none())
    })?;
    wait_until("GoBGP's routes to leave weft's kernel", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(lab.node.kernel_routes()?.is_empty())
    })?;
    Ok(())
}

#[test]
fn weft_keeps_a_killed_gobgps_routes_stale_until_its_restart_time_runs_out() -> Result<()> {
    if require_netns().is_none() || !Gobgp::installed() {
        return Ok(());
    }
    let mut lab = Lab::new(Some(4))?;
    lab.gobgp.start()?;
    lab.gobgp
        .gobgp(&["global", "rib", "add", TOR_PREFIX_V4, "-a", "ipv4"])?;
    lab.gobgp
        .gobgp(&["global", "rib", "add", TOR_PREFIX_V6, "-a", "ipv6"])?;
    let _weft = lab.node.start()?;
    wait_until("weft's sessions with GoBGP Established", DEADLINE, POLL, || {
        lab.node.established(2)
    })?;
    let in_fib = || -> Result<bool> {
        let routes = lab.node.kernel_routes()?;
        Ok(has_route(&routes, TOR_PREFIX_V4, TOR_V4) && has_route(&routes, TOR_PREFIX_V6, TOR_V6))
    };
    wait_until("GoBGP's prefixes in weft's kernel", DEADLINE, POLL, in_fib)?;
    let neighbor = lab.node.weftctl_value(&["neighbor", TOR_V4])?.expect("an answer");
    assert_eq!(
        neighbor["capabilities"]["graceful_restart"]["restart_time"], 4,
        "{neighbor}"
    );

    // GoBGP dies without a NOTIFICATION and stays down: its routes stay, stale, for its
    // Restart Time (4 s), then go.
    lab.gobgp.kill()?;
    let killed = std::time::Instant::now();
    wait_until("weft to see the sessions go down", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(lab.node.peer_state(TOR_V4)?.is_some_and(|s| s != "Established"))
    })?;
    assert!(in_fib()?, "kept in the kernel: {}", lab.node.kernel_routes()?);
    let route = lab.node.learned(TOR_PREFIX_V4)?.expect("kept in the RIB");
    assert_eq!(route["stale"], true, "{route}");
    wait_until(
        "the stale routes to go when the Restart Time runs out",
        DEADLINE,
        POLL,
        || Ok::<_, anyhow::Error>(lab.node.kernel_routes()?.is_empty() && lab.node.learned(TOR_PREFIX_V4)?.is_none()),
    )?;
    let waited = killed.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(3),
        "removed after {waited:?}: before the Restart Time?"
    );
    Ok(())
}

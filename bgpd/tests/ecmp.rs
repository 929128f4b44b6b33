//! ECMP: two FRR top-of-rack routers of one AS announce the same prefixes to weft-bgpd, which
//! installs one kernel route per prefix with both ToRs as next hops, and keeps the other when
//! one ToR goes down. Namespaces made and removed by the test; only 198.18.0.0/15 and
//! 2001:db8::/32.
//!
//! ```text
//!   tor1: FRR AS 4200000002, id 198.19.0.1                 node: weft-bgpd AS 65001
//!   eth-node 198.19.0.1/24, 2001:db8:ff::1/64 ──────────── eth-tor  198.19.0.2, 2001:db8:ff::2
//!   tor2: FRR AS 4200000002, id 198.19.1.1
//!   eth-node 198.19.1.1/24, 2001:db8:fe::1/64 ──────────── eth-tor2 198.19.1.2, 2001:db8:fe::2
//!   both originate 198.18.100.0/24 and 2001:db8:100::/48
//! ```

mod common;

use anyhow::Result;
use common::*;
use serde_json::Value;
use weft_topology_tests::{require_netns, wait_until};

const TOR2_V4: &str = "198.19.1.1";
const TOR2_V6: &str = "2001:db8:fe::1";
const NODE2_V4: &str = "198.19.1.2";
const NODE2_V6: &str = "2001:db8:fe::2";

/// The gateways of weft's kernel route to `prefix` (`ip -j route show proto 87`), sorted.
fn kernel_next_hops(node: &WeftNode, prefix: &str) -> Result<Vec<String>> {
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    let text = node
        .netns
        .run(&["ip", "-j", family, "route", "show", "proto", "87"])?
        .stdout;
    let routes: Vec<Value> = serde_json::from_str(&text)?;
    let mut hops: Vec<String> = routes
        .iter()
        .filter(|r| r["dst"] == prefix)
        .flat_map(|r| match r["nexthops"].as_array() {
            Some(hops) => hops
                .iter()
                .filter_map(|h| h["gateway"].as_str())
                .map(str::to_owned)
                .collect(),
            None => r["gateway"].as_str().map(str::to_owned).into_iter().collect::<Vec<_>>(),
        })
        .collect();
    hops.sort();
    Ok(hops)
}

#[test]
fn equal_paths_from_two_tors_are_one_multipath_kernel_route_and_one_tor_down_leaves_the_other() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut tor1 = Frr::new("tor1")?;
    let mut tor2 = Frr::new("tor2")?;
    let node = WeftNode::new("node")?;
    wire(&tor1.netns, &node.netns)?;
    tor2.netns.veth("eth-node", &node.netns, "eth-tor2")?;
    tor2.netns.add_address("eth-node", &format!("{TOR2_V4}/24"))?;
    tor2.netns.add_address("eth-node", &format!("{TOR2_V6}/64"))?;
    node.netns.add_address("eth-tor2", &format!("{NODE2_V4}/24"))?;
    node.netns.add_address("eth-tor2", &format!("{NODE2_V6}/64"))?;
    tor1.configure(&frr_tor_conf(TOR_V4, &[(NODE_V4, "ipv4"), (NODE_V6, "ipv6")], &[], &[]))?;
    tor2.configure(&frr_tor_conf(
        TOR2_V4,
        &[(NODE2_V4, "ipv4"), (NODE2_V6, "ipv6")],
        &[],
        &[],
    ))?;
    node.configure(
        "",
        &[
            WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast"),
            WeftPeer::new(TOR_V6, 4_200_000_002, "ipv6-unicast"),
            WeftPeer::new(TOR2_V4, 4_200_000_002, "ipv4-unicast"),
            WeftPeer::new(TOR2_V6, 4_200_000_002, "ipv6-unicast"),
        ],
    )?;
    tor1.start()?;
    tor2.start()?;
    let _weft = node.start()?;

    wait_until("weft's four sessions Established", DEADLINE, POLL, || {
        node.established(4)
    })?;
    wait_until("two paths to each ToR prefix in weft's RIB", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            node.learned_paths(TOR_PREFIX_V4)?.len() == 2 && node.learned_paths(TOR_PREFIX_V6)?.len() == 2,
        )
    })?;
    // One best path (tor1: lower router id) is advertised, both are installed.
    let best = node.learned(TOR_PREFIX_V4)?.expect("a best path");
    assert_eq!(best["from"], TOR_V4, "{best}");
    wait_until(
        "one kernel route per prefix with both ToRs as next hops",
        DEADLINE,
        POLL,
        || {
            Ok::<_, anyhow::Error>(
                kernel_next_hops(&node, TOR_PREFIX_V4)? == [TOR_V4, TOR2_V4]
                    && kernel_next_hops(&node, TOR_PREFIX_V6)? == [TOR2_V6, TOR_V6],
            )
        },
    )?;
    let shown = node
        .netns
        .run(&["ip", "route", "show", TOR_PREFIX_V4, "proto", "87"])?
        .stdout;
    assert_eq!(shown.matches("nexthop via").count(), 2, "{shown}");

    // tor1 goes down: its path is withdrawn and the route keeps tor2 alone.
    tor1.stop_bgpd()?;
    wait_until("the kernel route to keep tor2's next hop alone", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            kernel_next_hops(&node, TOR_PREFIX_V4)? == [TOR2_V4]
                && kernel_next_hops(&node, TOR_PREFIX_V6)? == [TOR2_V6],
        )
    })?;
    let best = node.learned(TOR_PREFIX_V4)?.expect("a best path");
    assert_eq!(best["from"], TOR2_V4, "{best}");

    // tor2 goes down too: nothing is left.
    tor2.stop_bgpd()?;
    wait_until("weft's kernel routes to go", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(node.kernel_routes()?.is_empty())
    })?;
    Ok(())
}

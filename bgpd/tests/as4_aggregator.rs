//! AGGREGATOR through weft to a 2-octet speaker (RFC 6793 §4.2.2), with real peers in network
//! namespaces: FRR (AS 4200000002) aggregates, weft passes the aggregate on to a BIRD that does
//! not speak 4-octet AS numbers (`enable as4 off`, AS 65000).
//!
//! ```text
//!   FRR AS 4200000002                  node: weft-bgpd AS 65001           BIRD AS 65000 (2-octet)
//!   198.19.0.1 ─────────────────────── 198.19.0.2   198.19.1.2 ────────── 198.19.1.1
//!   aggregate-address 198.18.100.0/22
//! ```
//!
//! Proves: weft keeps FRR's AGGREGATOR (`weftctl bgp routes`: `4200000002 198.19.0.1`), and
//! BIRD, which reads AGGREGATOR with AS_TRANS and AS4_AGGREGATOR with the true AS, shows the
//! aggregator as AS 4200000002 (and the path as 65001 4200000002, from AS4_PATH), with FRR's
//! ATOMIC_AGGREGATE passed on. Only
//! 198.18.0.0/15; the namespaces go when the test ends, also on failure; every wait is bounded.

mod common;

use anyhow::Result;
use common::*;
use weft_topology_tests::{Netns, require_netns, wait_until};

const BIRD: &str = "198.19.1.1";
const NODE_TO_BIRD: &str = "198.19.1.2";
const AGGREGATE: &str = "198.18.100.0/22";

fn frr_conf() -> String {
    format!(
        "hostname tor\nlog stdout debugging\nrouter bgp 4200000002\n bgp router-id {TOR_V4}\n \
         no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n \
         timers bgp 3 9\n neighbor {NODE_V4} remote-as 65001\n neighbor {NODE_V4} timers connect 2\n \
         address-family ipv4 unicast\n  network {TOR_PREFIX_V4}\n  aggregate-address {AGGREGATE}\n  \
         neighbor {NODE_V4} activate\n exit-address-family\n"
    )
}

fn bird_conf() -> String {
    format!(
        r#"
router id {BIRD};
log stderr all;
protocol device {{ scan time 10; }}
protocol bgp weft {{
  local {BIRD} as 65000;
  neighbor {NODE_TO_BIRD} as 65001;
  enable as4 off;
  connect retry time 2;
  ipv4 {{ import all; export none; }};
}}
"#
    )
}

#[test]
fn a_four_octet_aggregator_reaches_a_two_octet_bird_through_as4_aggregator() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() || !require_program("bird", "bird2") {
        return Ok(());
    }
    let mut frr = Frr::new("agg-frr")?;
    let bird_netns = Netns::new("agg-bird")?;
    let node = WeftNode::new("agg-node")?;
    frr.netns.veth("eth-node", &node.netns, "eth-tor")?;
    frr.netns.add_address("eth-node", &format!("{TOR_V4}/24"))?;
    node.netns.add_address("eth-tor", &format!("{NODE_V4}/24"))?;
    bird_netns.veth("eth-node", &node.netns, "eth-bird")?;
    bird_netns.add_address("eth-node", &format!("{BIRD}/24"))?;
    node.netns.add_address("eth-bird", &format!("{NODE_TO_BIRD}/24"))?;
    frr.configure(&frr_conf())?;
    node.configure(
        "",
        &[
            WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast"),
            WeftPeer::new(BIRD, 65000, "ipv4-unicast"),
        ],
    )?;
    let bird = Bird::start(&bird_netns, &bird_conf())?;
    frr.start()?;
    let _weft = node.start()?;
    wait_until("weft's sessions with FRR and BIRD Established", DEADLINE, POLL, || {
        node.established(2)
    })?;

    let learned = node.wait_for_route(AGGREGATE)?;
    assert_eq!(learned["aggregator"], format!("4200000002 {TOR_V4}"), "{learned}");
    wait_until("BIRD to learn the aggregate", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(bird.birdc(&format!("show route {AGGREGATE}"))?.contains(AGGREGATE))
    })?;
    let route = bird.birdc(&format!("show route all {AGGREGATE}"))?;
    let aggregator = route
        .lines()
        .find(|line| line.contains("BGP.aggregator"))
        .unwrap_or_default();
    assert!(
        aggregator.contains("AS4200000002") && aggregator.contains(TOR_V4),
        "the true AS from AS4_AGGREGATOR: {route}"
    );
    assert!(route.contains("BGP.as_path: 65001 4200000002"), "{route}");
    assert!(route.contains("BGP.atomic_aggr"), "ATOMIC_AGGREGATE passed on: {route}");
    frr.stop_bgpd()?;
    Ok(())
}

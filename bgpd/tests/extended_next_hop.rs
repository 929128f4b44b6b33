//! RFC 8950 extended next hop against a real FRR 8 and a real BIRD 2, in network namespaces:
//! IPv4 routes both ways over an IPv6-only session (the link has no IPv4 address at all).
//!
//! ```text
//!   tor: FRR, AS 4200000002                      node: weft-bgpd, AS 65001
//!   eth-node 2001:db8:ff::1/64 ───────────────── eth-tor 2001:db8:ff::2/64
//!   lo 198.18.100.1/32                            lo 198.18.1.1/32
//!   originates 198.18.100.0/24, 2001:db8:100::/48 originates 198.18.1.0/26, 2001:db8:1::/64
//!   neighbor … capability extended-nexthop        extended_next_hop: true
//! ```
//!
//! Proves: the capability is negotiated (`weftctl bgp neighbor`); FRR learns weft's IPv4 prefix
//! with weft's IPv6 address as next hop and zebra installs it; weft learns FRR's IPv4 prefix
//! with FRR's IPv6 address as next hop and installs it as `via inet6` (RTA_VIA); a ping from
//! 198.18.1.1 to 198.18.100.1 crosses the IPv6-only link both ways. Without `extended_next_hop`
//! on weft, FRR gets no IPv4 route from weft (and FRR sends its own with an IPv4 next hop). The
//! same with BIRD (`extended next hop on`, AS 4200000001): its RIB, both kernels, ping; and with
//! GoBGP (which offers the capability by itself on an IPv6 session): routes both ways. Only 198.18.0.0/15 and 2001:db8::/32; the namespaces go when
//! the test ends, also on failure; every wait is bounded.

mod common;

use anyhow::Result;
use common::*;
use weft_topology_tests::{Netns, require_netns, wait_until};

const NODE_HOST_V4: &str = "198.18.1.1";
const TOR_HOST_V4: &str = "198.18.100.1";

/// The link without IPv4 addresses, and each side's IPv4 loopback address to ping.
fn ipv6_only_link(tor: &Netns, node: &Netns) -> Result<()> {
    tor.veth("eth-node", node, "eth-tor")?;
    tor.add_address("eth-node", &format!("{TOR_V6}/64"))?;
    node.add_address("eth-tor", &format!("{NODE_V6}/64"))?;
    for (netns, host) in [(tor, TOR_HOST_V4), (node, NODE_HOST_V4)] {
        netns.run(&["ip", "link", "set", "lo", "up"])?;
        netns.add_address("lo", &format!("{host}/32"))?;
    }
    Ok(())
}

fn frr_conf() -> String {
    format!(
        "hostname tor\nlog stdout debugging\nrouter bgp 4200000002\n bgp router-id {TOR_V4}\n \
         no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n \
         timers bgp 3 9\n neighbor {NODE_V6} remote-as 65001\n neighbor {NODE_V6} timers connect 2\n \
         neighbor {NODE_V6} capability extended-nexthop\n address-family ipv4 unicast\n  \
         network {TOR_PREFIX_V4}\n  neighbor {NODE_V6} activate\n exit-address-family\n \
         address-family ipv6 unicast\n  network {TOR_PREFIX_V6}\n  neighbor {NODE_V6} activate\n \
         exit-address-family\n"
    )
}

struct Lab {
    frr: Frr,
    node: WeftNode,
}

impl Lab {
    /// The IPv6-only link, the loopback addresses, FRR's configuration, and weft's with one
    /// IPv6 peer carrying both families plus `weft_extra`.
    fn new(weft_extra: &[&str]) -> Result<Self> {
        let frr = Frr::new("enh-frr")?;
        let node = WeftNode::new("enh-node")?;
        ipv6_only_link(&frr.netns, &node.netns)?;
        frr.configure(&frr_conf())?;
        let peer = weft_extra.iter().fold(
            WeftPeer::new(TOR_V6, 4_200_000_002, "ipv4-unicast, ipv6-unicast"),
            |peer, line| peer.with(line),
        );
        node.configure("", &[peer])?;
        Ok(Self { frr, node })
    }
}

/// One ping from `source` to `destination` inside `netns`, answered within a second.
fn ping(netns: &Netns, source: &str, destination: &str) -> Result<bool> {
    let output = netns
        .command("ping")
        .args(["-c", "1", "-W", "1", "-I", source, destination])
        .output()?;
    Ok(output.success())
}

#[test]
fn ipv4_routes_cross_an_ipv6_only_session_with_frr_both_ways_into_both_kernels() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut lab = Lab::new(&["extended_next_hop: true"])?;
    lab.frr.start()?;
    let _weft = lab.node.start()?;
    wait_until("weft's IPv6 session with FRR Established", DEADLINE, POLL, || {
        lab.node.established(1)
    })?;
    let neighbor = lab.node.weftctl_value(&["neighbor", TOR_V6])?.expect("an answer");
    let capabilities = &neighbor["capabilities"];
    assert_eq!(capabilities["extended_next_hop"], true, "{neighbor}");
    assert_eq!(
        capabilities["families"],
        serde_json::json!(["ipv4-unicast", "ipv6-unicast"]),
        "{neighbor}"
    );

    // FRR learns weft's IPv4 prefix through weft's IPv6 address, and zebra installs it.
    wait_until("FRR to learn weft's IPv4 prefix", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(!lab.frr.paths(NODE_PREFIX_V4)?.is_empty())
    })?;
    let v4 = &lab.frr.paths(NODE_PREFIX_V4)?[0];
    assert_eq!(v4["aspath"]["string"], "65001", "{v4}");
    assert_eq!(v4["nexthops"][0]["ip"], NODE_V6, "{v4}");
    assert_eq!(v4["nexthops"][0]["afi"], "ipv6", "{v4}");
    assert_eq!(v4["bestpath"]["overall"], true, "{v4}");
    wait_until("zebra to install weft's IPv4 prefix", DEADLINE, POLL, || {
        let routes = lab.frr.kernel_routes()?;
        Ok::<_, anyhow::Error>(
            routes
                .lines()
                .any(|line| line.starts_with(&format!("{NODE_PREFIX_V4} "))),
        )
    })?;

    // weft learns FRR's IPv4 prefix through FRR's IPv6 address and installs it via inet6.
    let route = lab.node.wait_for_route(TOR_PREFIX_V4)?;
    assert_eq!(route["next_hop"], TOR_V6, "{route}");
    assert_eq!(route["as_path"], serde_json::json!([4_200_000_002u32]), "{route}");
    wait_until("FRR's IPv4 prefix in weft's kernel via inet6", DEADLINE, POLL, || {
        let routes = lab.node.kernel_routes()?;
        Ok::<_, anyhow::Error>(
            routes
                .lines()
                .any(|line| line.starts_with(&format!("{TOR_PREFIX_V4} via inet6 {TOR_V6} "))),
        )
    })?;
    // The IPv6 routes still cross as before.
    lab.node.wait_for_route(TOR_PREFIX_V6)?;

    // Traffic: IPv4 across a link without IPv4 addresses, both directions.
    wait_until(
        "a ping from weft's 198.18.1.1 to FRR's 198.18.100.1",
        DEADLINE,
        POLL,
        || ping(&lab.node.netns, NODE_HOST_V4, TOR_HOST_V4),
    )?;
    assert!(ping(&lab.frr.netns, TOR_HOST_V4, NODE_HOST_V4)?, "and from FRR's side");
    lab.frr.stop_bgpd()?;
    Ok(())
}

#[test]
fn without_extended_next_hop_no_ipv4_route_crosses_an_ipv6_session() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut lab = Lab::new(&[])?;
    lab.frr.start()?;
    let _weft = lab.node.start()?;
    wait_until("weft's IPv6 session with FRR Established", DEADLINE, POLL, || {
        lab.node.established(1)
    })?;
    // The IPv6 prefixes cross; once they have, the IPv4 ones would have too.
    lab.node.wait_for_route(TOR_PREFIX_V6)?;
    wait_until("FRR to learn weft's IPv6 prefix", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(!lab.frr.paths(NODE_PREFIX_V6)?.is_empty())
    })?;
    let neighbor = lab.node.weftctl_value(&["neighbor", TOR_V6])?.expect("an answer");
    assert_eq!(neighbor["capabilities"]["extended_next_hop"], false, "{neighbor}");
    assert!(
        lab.frr.paths(NODE_PREFIX_V4)?.is_empty(),
        "FRR has no IPv4 route from weft"
    );
    // FRR, for its part, sends its IPv4 prefix with an IPv4 next hop it makes up (its router
    // id): never with an IPv6 one the capability did not allow.
    if let Some(route) = lab.node.learned(TOR_PREFIX_V4)? {
        assert_eq!(route["next_hop"], TOR_V4, "{route}");
    }
    lab.frr.stop_bgpd()?;
    Ok(())
}

/// BIRD 2's side of the same lab: AS 4200000001, `extended next hop on` in the IPv4 channel of
/// its IPv6 session, its kernel protocol installing what it learns.
fn bird_conf() -> String {
    format!(
        r#"
router id {TOR_V4};
log stderr all;
protocol device {{ scan time 10; }}
protocol static static4 {{ ipv4; route {TOR_PREFIX_V4} blackhole; }}
protocol kernel {{ ipv4 {{ export where source = RTS_BGP; }}; }}
protocol bgp weft {{
  local {TOR_V6} as 4200000001;
  neighbor {NODE_V6} as 65001;
  connect retry time 2;
  ipv4 {{ import all; export where source = RTS_STATIC; extended next hop on; }};
  ipv6 {{ import all; export none; }};
}}
"#
    )
}

#[test]
fn ipv4_routes_cross_an_ipv6_only_session_with_bird_both_ways_into_both_kernels() -> Result<()> {
    if require_netns().is_none() || !require_program("bird", "bird2") {
        return Ok(());
    }
    let tor = Netns::new("enh-bird")?;
    let node = WeftNode::new("enh-bnode")?;
    ipv6_only_link(&tor, &node.netns)?;
    let peer = WeftPeer::new(TOR_V6, 4_200_000_001, "ipv4-unicast, ipv6-unicast").with("extended_next_hop: true");
    node.configure("", &[peer])?;
    let bird = Bird::start(&tor, &bird_conf())?;
    let _weft = node.start()?;
    wait_until("weft's IPv6 session with BIRD Established", DEADLINE, POLL, || {
        node.established(1)
    })?;

    // BIRD learns weft's IPv4 prefix through weft's IPv6 address, into its kernel via inet6.
    wait_until("BIRD to learn weft's IPv4 prefix", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            bird.birdc(&format!("show route {NODE_PREFIX_V4}"))?
                .contains(NODE_PREFIX_V4),
        )
    })?;
    let route = bird.birdc(&format!("show route all {NODE_PREFIX_V4}"))?;
    assert!(
        route.contains(&format!("via {NODE_V6}")) && route.contains("BGP.as_path: 65001"),
        "{route}"
    );
    wait_until("BIRD's kernel route to weft's IPv4 prefix", DEADLINE, POLL, || {
        let routes = tor.run(&["ip", "-4", "route", "show", "proto", "bird"])?.stdout;
        Ok::<_, anyhow::Error>(routes.contains(&format!("{NODE_PREFIX_V4} via inet6 {NODE_V6} ")))
    })?;

    // weft learns BIRD's through BIRD's IPv6 address and installs it via inet6.
    let learned = node.wait_for_route(TOR_PREFIX_V4)?;
    assert_eq!(learned["next_hop"], TOR_V6, "{learned}");
    wait_until("BIRD's IPv4 prefix in weft's kernel via inet6", DEADLINE, POLL, || {
        let routes = node.kernel_routes()?;
        Ok::<_, anyhow::Error>(routes.contains(&format!("{TOR_PREFIX_V4} via inet6 {TOR_V6} ")))
    })?;
    wait_until(
        "a ping from weft's 198.18.1.1 to BIRD's 198.18.100.1",
        DEADLINE,
        POLL,
        || ping(&node.netns, NODE_HOST_V4, TOR_HOST_V4),
    )?;
    assert!(ping(&tor, TOR_HOST_V4, NODE_HOST_V4)?, "and from BIRD's side");
    Ok(())
}

/// GoBGP 3 on an IPv6 session that carries IPv4 unicast.
fn gobgp_conf() -> String {
    format!(
        r#"[global.config]
  as = 4200000003
  router-id = "{TOR_V4}"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{NODE_V6}"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 2
    hold-time = 9
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#
    )
}

#[test]
fn ipv4_routes_cross_an_ipv6_only_session_with_gobgp_both_ways() -> Result<()> {
    if require_netns().is_none() || !Gobgp::installed() {
        return Ok(());
    }
    let mut gobgp = Gobgp::new("enh-gobgp", &gobgp_conf())?;
    let node = WeftNode::new("enh-gnode")?;
    ipv6_only_link(&gobgp.netns, &node.netns)?;
    let peer = WeftPeer::new(TOR_V6, 4_200_000_003, "ipv4-unicast, ipv6-unicast").with("extended_next_hop: true");
    node.configure("", &[peer])?;
    gobgp.start()?;
    let _weft = node.start()?;
    wait_until("weft's IPv6 session with GoBGP Established", DEADLINE, POLL, || {
        node.established(1)
    })?;
    // GoBGP offers the capability for IPv4 unicast on an IPv6 session by itself.
    let neighbor = node.weftctl_value(&["neighbor", TOR_V6])?.expect("an answer");
    assert_eq!(neighbor["capabilities"]["extended_next_hop"], true, "{neighbor}");

    gobgp.gobgp(&["global", "rib", "add", TOR_PREFIX_V4, "-a", "ipv4"])?;
    let learned = node.wait_for_route(TOR_PREFIX_V4)?;
    assert_eq!(learned["next_hop"], TOR_V6, "{learned}");
    wait_until("GoBGP's IPv4 prefix in weft's kernel via inet6", DEADLINE, POLL, || {
        let routes = node.kernel_routes()?;
        Ok::<_, anyhow::Error>(routes.contains(&format!("{TOR_PREFIX_V4} via inet6 {TOR_V6} ")))
    })?;
    wait_until(
        "GoBGP to learn weft's IPv4 prefix via weft's IPv6 address",
        DEADLINE,
        POLL,
        || {
            let rib = gobgp.gobgp(&["global", "rib", "-a", "ipv4"])?;
            Ok::<_, anyhow::Error>(
                rib.lines()
                    .any(|line| line.contains(NODE_PREFIX_V4) && line.contains(NODE_V6) && line.contains("65001")),
            )
        },
    )?;
    gobgp.stop()?;
    Ok(())
}

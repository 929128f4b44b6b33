//! RFC 8654 extended messages against a real FRR 8 (which offers the capability by default), in
//! network namespaces (the lab of `common`, one IPv4 session).
//!
//! Each side originates 1,500 /29 prefixes (7,500 octets of NLRI, two 4096-octet UPDATEs or one
//! extended one). Proves: with `extended_messages: true` the capability is negotiated (both
//! `weftctl bgp neighbor` and FRR say so), weft sends all of its prefixes in one UPDATE (FRR
//! counts one UPDATE and End-of-RIB), takes FRR's (all 1,500 in its RIB and kernel, the session
//! staying up, in fewer UPDATEs than 4096-octet ones would need); without the key nothing is negotiated and weft's UPDATEs stay within 4096
//! octets (FRR counts two and End-of-RIB). BIRD (`enable extended messages on`) takes weft's one
//! UPDATE whole too. Only 198.18.0.0/15; the namespaces go when the test
//! ends, also on failure; every wait is bounded.

mod common;

use anyhow::Result;
use common::*;
use weft_topology_tests::{require_netns, wait_until};

const PREFIXES: usize = 1500;

/// `PREFIXES` /29 prefixes from `198.18.FIRST.0` on.
fn prefixes(first: usize) -> Vec<String> {
    (0..PREFIXES)
        .map(|i| format!("198.18.{}.{}/29", first + i / 32, (i % 32) * 8))
        .collect()
}

fn frr_conf() -> String {
    let mut conf = format!(
        "hostname tor\nlog stdout debugging\nrouter bgp 4200000002\n bgp router-id {TOR_V4}\n \
         no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n \
         timers bgp 3 9\n neighbor {NODE_V4} remote-as 65001\n neighbor {NODE_V4} timers connect 2\n \
         address-family ipv4 unicast\n  neighbor {NODE_V4} activate\n"
    );
    for prefix in prefixes(128) {
        conf.push_str(&format!("  network {prefix}\n"));
    }
    conf.push_str(" exit-address-family\n");
    conf
}

struct Lab {
    frr: Frr,
    node: WeftNode,
}

impl Lab {
    fn new(weft_extra: &[&str]) -> Result<Self> {
        let frr = Frr::new("xm-frr")?;
        let node = WeftNode::new("xm-node")?;
        wire(&frr.netns, &node.netns)?;
        frr.configure(&frr_conf())?;
        let peer = weft_extra
            .iter()
            .fold(WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast"), |peer, line| {
                peer.with(line)
            });
        let originate = prefixes(16);
        let originate: Vec<&str> = originate.iter().map(String::as_str).collect();
        node.configure_originating(&originate, "", &[peer])?;
        Ok(Self { frr, node })
    }

    fn frr_neighbor(&self) -> Result<serde_json::Value> {
        let json = self.frr.vtysh_json(&format!("show bgp neighbors {NODE_V4} json"))?;
        Ok(json[NODE_V4].clone())
    }

    /// How many of weft's prefixes FRR has accepted.
    fn frr_prefixes_received(&self) -> Result<u64> {
        let neighbor = self.frr_neighbor()?;
        Ok(neighbor["addressFamilyInfo"]["ipv4Unicast"]["acceptedPrefixCounter"]
            .as_u64()
            .unwrap_or(0))
    }

    /// Waits for the session and for both sides to hold all of each other's prefixes.
    fn wait_for_all_routes(&self) -> Result<()> {
        wait_until("weft's session with FRR Established", DEADLINE, POLL, || {
            self.node.established(1)
        })?;
        wait_until("FRR to accept all of weft's prefixes", DEADLINE, POLL, || {
            Ok::<_, anyhow::Error>(self.frr_prefixes_received()? == PREFIXES as u64)
        })?;
        wait_until("weft to accept all of FRR's prefixes", DEADLINE, POLL, || {
            let peers = self.node.peers()?;
            Ok::<_, anyhow::Error>(peers[0]["prefixes_accepted"] == PREFIXES)
        })?;
        Ok(())
    }
}

#[test]
fn with_extended_messages_weft_sends_1500_prefixes_in_one_update_and_takes_frrs() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut lab = Lab::new(&["extended_messages: true"])?;
    lab.frr.start()?;
    let _weft = lab.node.start()?;
    lab.wait_for_all_routes()?;

    let neighbor = lab.node.weftctl_value(&["neighbor", TOR_V4])?.expect("an answer");
    assert_eq!(neighbor["capabilities"]["extended_messages"], true, "{neighbor}");
    let frr = lab.frr_neighbor()?;
    assert_eq!(
        frr["neighborCapabilities"]["extendedMessage"], "advertisedAndReceived",
        "{}",
        frr["neighborCapabilities"]
    );
    // One UPDATE with every prefix (about 7,560 octets), then End-of-RIB.
    assert_eq!(frr["messageStats"]["updatesRecv"], 2, "{}", frr["messageStats"]);
    assert_eq!(neighbor["counters"]["established_transitions"], 1, "{neighbor}");
    // FRR sends its 1,500 and weft's own 1,500 back (weft drops those: its AS is in the path),
    // 5 octets each: more than the UPDATEs weft counts (End-of-RIB aside) could carry at 4096
    // octets, so at least one was longer and weft took it.
    let counters = &neighbor["counters"];
    let updates = counters["updates_received"].as_u64().unwrap_or(0);
    let received = counters["prefixes_received"].as_u64().unwrap_or(0);
    assert!(updates >= 2 && (updates - 1) * 4096 < received * 5, "{counters}");

    // FRR's prefixes are in weft's kernel.
    wait_until("FRR's prefixes in weft's kernel", DEADLINE, POLL, || {
        let routes = lab
            .node
            .netns
            .run(&["ip", "-4", "route", "show", "proto", "87"])?
            .stdout;
        Ok::<_, anyhow::Error>(routes.lines().count() == PREFIXES)
    })?;
    assert!(lab.node.established(1)?, "the session stayed up");
    lab.frr.stop_bgpd()?;
    Ok(())
}

#[test]
fn without_extended_messages_weft_keeps_to_4096_octets() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut lab = Lab::new(&[])?;
    lab.frr.start()?;
    let _weft = lab.node.start()?;
    lab.wait_for_all_routes()?;
    let neighbor = lab.node.weftctl_value(&["neighbor", TOR_V4])?.expect("an answer");
    assert_eq!(neighbor["capabilities"]["extended_messages"], false, "{neighbor}");
    let frr = lab.frr_neighbor()?;
    // Two full UPDATEs (7,500 octets of NLRI), then End-of-RIB.
    assert_eq!(frr["messageStats"]["updatesRecv"], 3, "{}", frr["messageStats"]);
    lab.frr.stop_bgpd()?;
    Ok(())
}

/// BIRD 2 (`enable extended messages on`), AS 4200000001, with the same 1,500 prefixes.
fn bird_conf() -> String {
    let routes: String = prefixes(128)
        .iter()
        .map(|prefix| format!("  route {prefix} blackhole;\n"))
        .collect();
    format!(
        r#"
router id {TOR_V4};
log stderr all;
protocol device {{ scan time 10; }}
protocol static {{
  ipv4;
{routes}}}
protocol bgp weft {{
  local {TOR_V4} as 4200000001;
  neighbor {NODE_V4} as 65001;
  connect retry time 2;
  enable extended messages on;
  ipv4 {{ import all; export where source = RTS_STATIC; }};
}}
"#
    )
}

#[test]
fn bird_takes_wefts_1500_prefixes_in_one_extended_update() -> Result<()> {
    if require_netns().is_none() || !require_program("bird", "bird2") {
        return Ok(());
    }
    let tor = weft_topology_tests::Netns::new("xm-bird")?;
    let node = WeftNode::new("xm-bnode")?;
    wire(&tor, &node.netns)?;
    let originate = prefixes(16);
    let originate: Vec<&str> = originate.iter().map(String::as_str).collect();
    let peer = WeftPeer::new(TOR_V4, 4_200_000_001, "ipv4-unicast").with("extended_messages: true");
    node.configure_originating(&originate, "", &[peer])?;
    let bird = Bird::start(&tor, &bird_conf())?;
    let _weft = node.start()?;
    wait_until("weft's session with BIRD Established", DEADLINE, POLL, || {
        node.established(1)
    })?;
    wait_until("BIRD to import weft's 1,500 prefixes", DEADLINE, POLL, || {
        let protocol = bird.birdc("show protocols all weft")?;
        Ok::<_, anyhow::Error>(protocol.contains(&format!("{PREFIXES} imported")))
    })?;
    wait_until("weft to accept BIRD's 1,500 prefixes", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(node.peers()?[0]["prefixes_accepted"] == PREFIXES)
    })?;
    let neighbor = node.weftctl_value(&["neighbor", TOR_V4])?.expect("an answer");
    assert_eq!(neighbor["capabilities"]["extended_messages"], true, "{neighbor}");
    let counters = &neighbor["counters"];
    // weft: its 1,500 prefixes (7,500 octets of NLRI) in one UPDATE, then End-of-RIB; BIRD took
    // it whole. (BIRD itself sends small UPDATEs even when it may send large ones.)
    assert_eq!(counters["updates_sent"], 2, "{counters}");
    assert_eq!(neighbor["counters"]["established_transitions"], 1, "{neighbor}");
    Ok(())
}

//! The MinRouteAdvertisementIntervalTimer (`advertisement_interval`, RFC 4271 §9.2.1.1) with
//! real peers, in network namespaces: GoBGP changes a route's community twenty times in about
//! two seconds, weft passes the route on to FRR, and FRR counts the UPDATEs.
//!
//! ```text
//!   source: GoBGP AS 4200000003        node: weft-bgpd AS 65001          sink: FRR AS 4200000002
//!   198.19.1.1 ─────────────────────── 198.19.1.2   198.19.0.2 ───────── 198.19.0.1
//!   198.18.100.0/24 community 65000:N                advertisement_interval: 5 (or none)
//! ```
//!
//! Proves: with a 5 s interval (jittered to 3.75-5 s) FRR sees at most one advertisement per
//! interval (plus the first)
//! and ends with the latest community; the withdrawal that follows reaches FRR at once, not
//! after the interval; without the key every change goes through (ten or more UPDATEs). Only
//! 198.18.0.0/15; the namespaces go when the test ends, also on failure; every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;
use weft_topology_tests::{require_netns, wait_until};

const SOURCE: &str = "198.19.1.1";
const NODE_TO_SOURCE: &str = "198.19.1.2";
const ROUTE: &str = "198.18.100.0/24";
const CHANGES: u32 = 20;
const INTERVAL: Duration = Duration::from_secs(5);

fn gobgp_conf() -> String {
    format!(
        r#"[global.config]
  as = 4200000003
  router-id = "{SOURCE}"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{NODE_TO_SOURCE}"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 2
    hold-time = 9
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"#
    )
}

fn frr_conf() -> String {
    format!(
        "hostname sink\nlog stdout debugging\nrouter bgp 4200000002\n bgp router-id {TOR_V4}\n \
         no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n \
         timers bgp 3 9\n neighbor {NODE_V4} remote-as 65001\n neighbor {NODE_V4} timers connect 2\n \
         address-family ipv4 unicast\n  neighbor {NODE_V4} activate\n exit-address-family\n"
    )
}

struct Lab {
    gobgp: Gobgp,
    frr: Frr,
    node: WeftNode,
}

impl Lab {
    /// The three namespaces, GoBGP and FRR started, weft started with `sink_extra` on its FRR
    /// peer; returns once every session is up.
    fn start(sink_extra: &[&str]) -> Result<(Self, weft_topology_tests::Process)> {
        let mut gobgp = Gobgp::new("mrai-src", &gobgp_conf())?;
        let mut frr = Frr::new("mrai-sink")?;
        let node = WeftNode::new("mrai-node")?;
        frr.netns.veth("eth-node", &node.netns, "eth-tor")?;
        frr.netns.add_address("eth-node", &format!("{TOR_V4}/24"))?;
        node.netns.add_address("eth-tor", &format!("{NODE_V4}/24"))?;
        gobgp.netns.veth("eth-node", &node.netns, "eth-src")?;
        gobgp.netns.add_address("eth-node", &format!("{SOURCE}/24"))?;
        node.netns.add_address("eth-src", &format!("{NODE_TO_SOURCE}/24"))?;
        frr.configure(&frr_conf())?;
        let sink = sink_extra
            .iter()
            .fold(WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast"), |peer, line| {
                peer.with(line)
            });
        node.configure("", &[sink, WeftPeer::new(SOURCE, 4_200_000_003, "ipv4-unicast")])?;
        gobgp.start()?;
        frr.start()?;
        let weft = node.start()?;
        wait_until("weft's sessions with GoBGP and FRR Established", DEADLINE, POLL, || {
            node.established(2)
        })?;
        Ok((Self { gobgp, frr, node }, weft))
    }

    /// GoBGP announces the route with community 65000:`n` (replacing the one before).
    fn announce(&self, n: u32) -> Result<()> {
        self.gobgp.gobgp(&[
            "global",
            "rib",
            "add",
            ROUTE,
            "community",
            &format!("65000:{n}"),
            "-a",
            "ipv4",
        ])?;
        Ok(())
    }

    /// The community FRR has on the route, if it has the route.
    fn frr_community(&self) -> Result<Option<String>> {
        Ok(self
            .frr
            .paths(ROUTE)?
            .first()
            .map(|path| path["community"]["string"].as_str().unwrap_or("").to_owned()))
    }

    fn frr_updates_received(&self) -> Result<u64> {
        let json = self.frr.vtysh_json(&format!("show bgp neighbors {NODE_V4} json"))?;
        Ok(json[NODE_V4]["messageStats"]["updatesRecv"].as_u64().unwrap_or(0))
    }

    /// Announces the route, waits for FRR to have it, then changes its community `CHANGES`
    /// times, 100 ms apart, and waits for FRR to have the last one. Returns the UPDATEs FRR
    /// counted from the first change on and the time from the first announcement to the end.
    fn flap(&self) -> Result<(u64, Duration)> {
        let start = Instant::now();
        self.announce(0)?;
        wait_until("FRR to learn the route", DEADLINE, POLL, || {
            Ok::<_, anyhow::Error>(self.frr_community()?.as_deref() == Some("65000:0"))
        })?;
        let before = self.frr_updates_received()?;
        for n in 1..=CHANGES {
            self.announce(n)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        let last = format!("65000:{CHANGES}");
        wait_until(
            "FRR to have the latest community",
            DEADLINE,
            Duration::from_millis(50),
            || Ok::<_, anyhow::Error>(self.frr_community()?.as_deref() == Some(last.as_str())),
        )?;
        Ok((self.frr_updates_received()? - before, start.elapsed()))
    }
}

#[test]
fn a_flapping_route_reaches_frr_once_per_interval_in_its_latest_state_and_withdrawals_do_not_wait() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() || !Gobgp::installed() {
        return Ok(());
    }
    let (mut lab, _weft) = Lab::start(&["advertisement_interval: 5"])?;
    let neighbor = lab.node.weftctl_value(&["neighbor", TOR_V4])?.expect("an answer");
    assert_eq!(neighbor["timers"]["advertisement_interval"], 5, "{neighbor}");
    let (updates, elapsed) = lab.flap()?;
    // One advertisement per interval begun since the first announcement, at most (intervals
    // are jittered to 75-100 %, RFC 4271 §10).
    let shortest = INTERVAL * 3 / 4;
    let allowed = u64::try_from(elapsed.as_millis() / shortest.as_millis()).unwrap_or(u64::MAX) + 1;
    assert!(
        (1..=allowed).contains(&updates),
        "{updates} UPDATEs for {CHANGES} changes in {elapsed:?}"
    );
    assert!(
        elapsed >= shortest,
        "the latest state waited for the interval: {elapsed:?}"
    );
    let learned = lab.node.learned(ROUTE)?.expect("weft has the route");
    assert_eq!(
        learned["communities"],
        serde_json::json!([format!("65000:{CHANGES}")]),
        "{learned}"
    );

    // Withdrawn right after an advertisement: FRR loses the route at once.
    let withdrawn_at = Instant::now();
    lab.gobgp.gobgp(&["global", "rib", "del", ROUTE, "-a", "ipv4"])?;
    wait_until("FRR to lose the route", DEADLINE, Duration::from_millis(50), || {
        Ok::<_, anyhow::Error>(lab.frr.paths(ROUTE)?.is_empty())
    })?;
    assert!(
        withdrawn_at.elapsed() < INTERVAL / 2,
        "the withdrawal did not wait: {:?}",
        withdrawn_at.elapsed()
    );
    lab.frr.stop_bgpd()?;
    lab.gobgp.stop()?;
    Ok(())
}

#[test]
fn without_an_interval_every_change_reaches_frr() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() || !Gobgp::installed() {
        return Ok(());
    }
    let (mut lab, _weft) = Lab::start(&[])?;
    let (updates, elapsed) = lab.flap()?;
    assert!(updates >= 10, "{updates} UPDATEs for {CHANGES} changes in {elapsed:?}");
    lab.frr.stop_bgpd()?;
    lab.gobgp.stop()?;
    Ok(())
}

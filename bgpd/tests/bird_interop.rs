//! weft-bgpd against a real BIRD 2 as an eBGP top-of-rack router, in network namespaces.
//!
//! Topology (only 198.18.0.0/15 and 2001:db8::/32, in namespaces this test makes and removes):
//!
//! ```text
//!   tor: BIRD, AS 4200000001                       node: weft-bgpd, AS 65001
//!   eth-node 198.19.0.1/24, 2001:db8:ff::1/64 ──── eth-tor 198.19.0.2/24, 2001:db8:ff::2/64
//!   originates 198.18.100.0/24, 2001:db8:100::/48   originates 198.18.1.0/26, 2001:db8:1::/64
//! ```
//!
//! One IPv4 and one IPv6 session. Proves: both sessions reach Established with a 4-octet AS
//! peer; BIRD learns weft's prefixes with AS_PATH 65001 and weft's session address as next hop;
//! weft learns BIRD's with AS_PATH 4200000001 and installs them in the kernel (proto 87);
//! SIGTERM makes weft send a Cease, remove its kernel routes and BIRD drop its routes; weft
//! comes back; stopping BIRD makes weft withdraw BIRD's routes from its RIB and the kernel. Also: without
//! policies nothing crosses the eBGP session (RFC 8212), and a peer that falls silent is dropped
//! when the hold timer expires; TCP MD5 with the same key works and with another does not; a
//! BIRD without 4-octet AS numbers (`enable as4 off`, AS 65000) sends AS_TRANS for a 4-octet AS
//! in its paths and the true path in AS4_PATH, which weft merges back (RFC 6793 §4.2.3). BIRD comes from Debian's `bird2` (scripts/install-deps.sh); the
//! test installs nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{DEADLINE, POLL, WeftNode, WeftPeer, require_program, wire};
use weft_topology_tests::{Netns, Process, require_netns, wait_for, wait_until};

/// What a test varies.
#[derive(Debug, Clone, Copy)]
struct Setup {
    /// Give weft's peers `import: accept` and `export: accept`.
    policies: bool,
    hold_time: u16,
    /// TCP MD5 keys: BIRD's and weft's.
    passwords: Option<(&'static str, &'static str)>,
    /// BIRD offers 4-octet AS numbers (`enable as4 off` when not: an old 2-octet speaker).
    as4: bool,
}

impl Setup {
    const fn new(policies: bool, hold_time: u16) -> Self {
        Self {
            policies,
            hold_time,
            passwords: None,
            as4: true,
        }
    }
}

fn bird_conf(setup: Setup) -> String {
    let hold_time = setup.hold_time;
    let password = setup
        .passwords
        .map_or_else(String::new, |(bird, _)| format!("password \"{bird}\";"));
    // The 2-octet BIRD is AS 65000 and puts a 4-octet AS in front of its routes' paths, so
    // that AS_TRANS stands in for it on the wire.
    let (asn, as4, export) = if setup.as4 {
        (4_200_000_001u32, "", "export where source = RTS_STATIC;")
    } else {
        (
            65000,
            "enable as4 off;",
            "export filter { if source = RTS_STATIC then { bgp_path.prepend(4200000009); accept; } reject; };",
        )
    };
    format!(
        r#"
router id 198.19.0.1;
log stderr all;
protocol device {{ scan time 10; }}
protocol static static4 {{ ipv4; route 198.18.100.0/24 blackhole; }}
protocol static static6 {{ ipv6; route 2001:db8:100::/48 blackhole; }}
template bgp tor {{
  local as {asn};
  hold time {hold_time};
  connect retry time 2;
  error wait time 1, 5;
  {password}
  {as4}
}}
protocol bgp weft4 from tor {{
  neighbor 198.19.0.2 as 65001;
  ipv4 {{ import all; {export} }};
}}
protocol bgp weft6 from tor {{
  neighbor 2001:db8:ff::2 as 65001;
  ipv6 {{ import all; {export} }};
}}
"#
    )
}

/// weft's peers; without `policies` they have no import or export policy.
fn weft_peers(setup: Setup) -> Vec<WeftPeer> {
    let asn = if setup.as4 { 4_200_000_001 } else { 65000 };
    [
        WeftPeer::new("198.19.0.1", asn, "ipv4-unicast"),
        WeftPeer::new("2001:db8:ff::1", asn, "ipv6-unicast"),
    ]
    .into_iter()
    .map(|peer| {
        let peer = peer.hold_time(setup.hold_time);
        let peer = if setup.policies { peer } else { peer.without_policies() };
        match setup.passwords {
            Some((_, weft)) => peer.with(&format!("password: {weft}")),
            None => peer,
        }
    })
    .collect()
}

/// Whether BIRD is installed; without it the test skips, except under CI=true.
fn require_bird() -> bool {
    require_program("bird", "bird2")
}

struct Lab {
    dir: tempfile::TempDir,
    tor: Netns,
    node: WeftNode,
}

impl Lab {
    fn new(policies: bool, hold_time: u16) -> Result<Self> {
        Self::with(Setup::new(policies, hold_time))
    }

    fn with(setup: Setup) -> Result<Self> {
        let tor = Netns::new("tor")?;
        let node = WeftNode::new("node")?;
        wire(&tor, &node.netns)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("bird.conf"), bird_conf(setup))?;
        node.configure("", &weft_peers(setup))?;
        Ok(Self { dir, tor, node })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_bird(&self) -> Result<Process> {
        let (conf, ctl, pid) = (self.path("bird.conf"), self.path("bird.ctl"), self.path("bird.pid"));
        Ok(self.tor.spawn(&[
            "bird",
            "-f",
            "-c",
            conf.to_str().unwrap(),
            "-s",
            ctl.to_str().unwrap(),
            "-P",
            pid.to_str().unwrap(),
        ])?)
    }

    fn start_weft(&self) -> Result<Process> {
        self.node.start()
    }

    fn birdc(&self, command: &str) -> Result<String> {
        let ctl = self.path("bird.ctl");
        let output = Command::new("birdc")
            .args(["-s", ctl.to_str().unwrap()])
            .args(command.split_whitespace())
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `weftctl --socket PATH bgp COMMAND --json` (the form DESIGN.md promises), or `None`
    /// while the daemon does not answer.
    fn weftctl(&self, command: &str) -> Result<Option<Vec<serde_json::Value>>> {
        self.node.weftctl(command)
    }

    fn weft_peers_established(&self) -> Result<bool> {
        self.node.established(2)
    }

    fn weft_route(&self, prefix: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.node.learned_paths(prefix)?.into_iter().next())
    }

    /// weft's routes in the node's kernel (`ip route show proto 87`), both families.
    fn kernel_routes(&self) -> Result<String> {
        self.node.kernel_routes()
    }

    fn bird_has(&self, prefix: &str) -> Result<bool> {
        Ok(self.birdc(&format!("show route {prefix}"))?.contains(prefix))
    }
}

#[test]
fn weft_and_bird_exchange_ipv4_and_ipv6_routes_and_withdraw_them_when_a_side_stops() -> Result<()> {
    if require_netns().is_none() || !require_bird() {
        return Ok(());
    }
    let lab = Lab::new(true, 9)?;
    let bird = lab.start_bird()?;
    let weft = lab.start_weft()?;

    wait_until(
        "weft's IPv4 and IPv6 sessions with BIRD Established",
        DEADLINE,
        POLL,
        || lab.weft_peers_established(),
    )?;
    let protocols = lab.birdc("show protocols")?;
    assert_eq!(protocols.matches("Established").count(), 2, "BIRD agrees: {protocols}");

    // BIRD learns weft's prefixes: AS_PATH 65001, next hop weft's session address.
    wait_until("BIRD to learn weft's prefixes", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(lab.bird_has("198.18.1.0/26")? && lab.bird_has("2001:db8:1::/64")?)
    })?;
    let v4 = lab.birdc("show route all 198.18.1.0/26")?;
    assert!(v4.contains("BGP.as_path: 65001") && v4.contains("198.19.0.2"), "{v4}");
    let v6 = lab.birdc("show route all 2001:db8:1::/64")?;
    assert!(
        v6.contains("BGP.as_path: 65001") && v6.contains("2001:db8:ff::2"),
        "{v6}"
    );

    // weft learns BIRD's: AS_PATH 4200000001 (4-octet), next hop BIRD's session address.
    let route = wait_for_route(&lab, "198.18.100.0/24")?;
    assert_eq!(route["next_hop"], "198.19.0.1", "{route}");
    assert_eq!(route["as_path"], serde_json::json!([4_200_000_001u32]), "{route}");
    assert_eq!(route["best"], true, "{route}");
    let route = wait_for_route(&lab, "2001:db8:100::/48")?;
    assert_eq!(route["next_hop"], "2001:db8:ff::1", "{route}");
    // The best paths are in the kernel with weft's protocol number.
    wait_until("weft's routes in the kernel", DEADLINE, POLL, || {
        let routes = lab.kernel_routes()?;
        Ok::<_, anyhow::Error>(
            routes.contains("198.18.100.0/24 via 198.19.0.1")
                && routes.contains("2001:db8:100::/48 via 2001:db8:ff::1"),
        )
    })?;
    let peers = lab.weftctl("peers")?.context("weftctl bgp peers")?;
    for peer in &peers {
        assert_eq!(peer["asn"], 4_200_000_001u32, "{peer}");
        assert_eq!(peer["prefixes_received"], 1, "{peer}");
        assert_eq!(peer["prefixes_sent"], 1, "{peer}");
        assert!(peer["uptime_seconds"].is_u64(), "{peer}");
    }

    // SIGTERM: weft sends a Cease and exits 0; BIRD drops weft's routes at once.
    let status = weft.stop()?;
    assert!(status.success(), "weft-bgpd exits 0 on SIGTERM: {status}");
    let left = lab.kernel_routes()?;
    assert!(left.is_empty(), "weft removes its kernel routes on the way out: {left}");
    wait_until("BIRD to drop weft's prefixes", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(!lab.bird_has("198.18.1.0/26")? && !lab.bird_has("2001:db8:1::/64")?)
    })?;
    let last_error = lab.birdc("show protocols all weft4")?;
    assert!(
        last_error.contains("Administrative shutdown"),
        "BIRD saw a Cease: {last_error}"
    );

    // weft comes back and the sessions with it; a weft route a crashed run left behind goes.
    lab.node.netns.run(&[
        "ip",
        "route",
        "add",
        "198.18.200.0/24",
        "via",
        "198.19.0.1",
        "proto",
        "87",
    ])?;
    let _weft = lab.start_weft()?;
    wait_until("the sessions to come back after weft restarts", DEADLINE, POLL, || {
        lab.weft_peers_established()
    })?;
    wait_for_route(&lab, "198.18.100.0/24")?;
    wait_until(
        "the stale route to go and the learned one to come back",
        DEADLINE,
        POLL,
        || {
            let routes = lab.kernel_routes()?;
            Ok::<_, anyhow::Error>(!routes.contains("198.18.200.0/24") && routes.contains("198.18.100.0/24"))
        },
    )?;

    // BIRD stops: weft withdraws BIRD's routes and its sessions leave Established.
    bird.stop()?;
    wait_until("weft to withdraw BIRD's routes", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            lab.weft_route("198.18.100.0/24")?.is_none() && lab.weft_route("2001:db8:100::/48")?.is_none(),
        )
    })?;
    let peers = lab.weftctl("peers")?.context("weftctl bgp peers")?;
    assert!(
        peers
            .iter()
            .all(|p| p["state"] != "Established" && p["prefixes_received"] == 0),
        "{peers:?}"
    );
    wait_until("BIRD's routes to leave the kernel", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(lab.kernel_routes()?.is_empty())
    })?;
    let routes = lab.weftctl("routes")?.context("weftctl bgp routes")?;
    assert_eq!(routes.len(), 2, "only weft's own prefixes are left: {routes:?}");
    Ok(())
}

#[test]
fn without_import_and_export_policies_nothing_crosses_an_ebgp_session() -> Result<()> {
    if require_netns().is_none() || !require_bird() {
        return Ok(());
    }
    let lab = Lab::new(false, 9)?;
    let _bird = lab.start_bird()?;
    let _weft = lab.start_weft()?;
    wait_until("weft's sessions with BIRD Established", DEADLINE, POLL, || {
        lab.weft_peers_established()
    })?;
    // BIRD's routes arrive (Adj-RIB-In) but RFC 8212 keeps them out of the Loc-RIB ...
    let peers = wait_for("BIRD's routes in weft's Adj-RIB-In", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            lab.weftctl("peers")?
                .filter(|peers| peers.iter().all(|p| p["prefixes_received"] == 1)),
        )
    })?;
    for peer in &peers {
        assert_eq!(peer["prefixes_accepted"], 0, "{peer}");
        assert_eq!(peer["prefixes_sent"], 0, "{peer}");
    }
    assert_eq!(lab.weft_route("198.18.100.0/24")?, None);
    assert_eq!(lab.kernel_routes()?, "", "nothing accepted, nothing installed");
    // ... and nothing of weft's reaches BIRD.
    let learned = lab.birdc("show route protocol weft4")? + &lab.birdc("show route protocol weft6")?;
    assert!(
        !learned.contains("198.18.1.0/26") && !learned.contains("2001:db8:1::/64"),
        "{learned}"
    );
    Ok(())
}

#[test]
fn a_silent_peer_is_dropped_when_the_hold_timer_expires() -> Result<()> {
    if require_netns().is_none() || !require_bird() {
        return Ok(());
    }
    let lab = Lab::new(true, 3)?;
    let _bird = lab.start_bird()?;
    let _weft = lab.start_weft()?;
    wait_until("weft's sessions with BIRD Established", DEADLINE, POLL, || {
        lab.weft_peers_established()
    })?;
    wait_for_route(&lab, "198.18.100.0/24")?;
    // No FIN, no RST: the link just stops carrying anything.
    lab.tor.link_down("eth-node")?;
    let started = std::time::Instant::now();
    wait_until(
        "the hold timer (3 s) to end the sessions and withdraw BIRD's routes",
        DEADLINE,
        POLL,
        || {
            Ok::<_, anyhow::Error>(
                lab.weft_route("198.18.100.0/24")?.is_none() && lab.weft_route("2001:db8:100::/48")?.is_none(),
            )
        },
    )?;
    let waited = started.elapsed();
    wait_until("the routes to leave the kernel", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(lab.kernel_routes()?.is_empty())
    })?;
    assert!(
        waited >= Duration::from_secs(2),
        "withdrawn after {waited:?}: before the hold time?"
    );
    Ok(())
}

#[test]
fn tcp_md5_with_the_same_key_comes_up_and_with_another_key_does_not() -> Result<()> {
    if require_netns().is_none() || !require_bird() {
        return Ok(());
    }
    let same = Lab::with(Setup {
        passwords: Some(("weft-md5", "weft-md5")),
        ..Setup::new(true, 9)
    })?;
    let _bird = same.start_bird()?;
    let _weft = same.start_weft()?;
    wait_until("both sessions Established with MD5", DEADLINE, POLL, || {
        same.weft_peers_established()
    })?;
    wait_for_route(&same, "198.18.100.0/24")?;

    let other = Lab::with(Setup {
        passwords: Some(("weft-md5", "another-key")),
        ..Setup::new(true, 9)
    })?;
    let _bird = other.start_bird()?;
    let _weft = other.start_weft()?;
    // The kernel drops the wrongly signed segments: its counter says so.
    wait_until("BIRD's kernel to drop wrongly signed segments", DEADLINE, POLL, || {
        let counters = other.tor.run(&["nstat", "-asz", "TcpExtTCPMD5Failure"])?.stdout;
        let failures = counters
            .lines()
            .find(|line| line.starts_with("TcpExtTCPMD5Failure"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(0);
        Ok::<_, anyhow::Error>(failures > 0)
    })?;
    let peers = other.weftctl("peers")?.context("weftctl bgp peers")?;
    assert!(peers.iter().all(|p| p["state"] != "Established"), "{peers:?}");
    Ok(())
}

#[test]
fn a_two_octet_birds_as_trans_path_reads_as_its_true_as_through_as4_path() -> Result<()> {
    if require_netns().is_none() || !require_bird() {
        return Ok(());
    }
    let lab = Lab::with(Setup {
        as4: false,
        ..Setup::new(true, 9)
    })?;
    let _bird = lab.start_bird()?;
    let _weft = lab.start_weft()?;
    wait_until(
        "weft's sessions with a 2-octet BIRD Established",
        DEADLINE,
        POLL,
        || lab.weft_peers_established(),
    )?;
    let neighbor = lab
        .node
        .weftctl_value(&["neighbor", "198.19.0.1"])?
        .context("an answer")?;
    assert_eq!(neighbor["capabilities"]["four_octet_as"], false, "{neighbor}");
    // On the wire AS_PATH is 65000 23456 (AS_TRANS); AS4_PATH carries 4200000009 (RFC 6793
    // §4.2.3).
    let route = wait_for_route(&lab, "198.18.100.0/24")?;
    assert_eq!(
        route["as_path"],
        serde_json::json!([65000, 4_200_000_009u32]),
        "{route}"
    );
    let route = wait_for_route(&lab, "2001:db8:100::/48")?;
    assert_eq!(
        route["as_path"],
        serde_json::json!([65000, 4_200_000_009u32]),
        "{route}"
    );
    // BIRD, the 2-octet side, takes weft's routes too.
    wait_until("BIRD to learn weft's prefix", DEADLINE, POLL, || {
        lab.bird_has("198.18.1.0/26")
    })?;
    Ok(())
}

fn wait_for_route(lab: &Lab, prefix: &str) -> Result<serde_json::Value> {
    Ok(wait_for(
        &format!("weft to learn {prefix} from BIRD"),
        DEADLINE,
        POLL,
        || lab.weft_route(prefix),
    )?)
}

//! Two weft-bgpd speakers as iBGP neighbours, one of them passive, in network namespaces (only
//! 198.18.0.0/15, removed at the end).
//!
//! ```text
//!   a: AS 65001, id 198.19.0.1, passive ── 198.19.0.0/24 ── b: AS 65001, id 198.19.0.2, active
//!      originates 198.18.1.0/26                                originates 198.18.2.0/26
//! ```
//!
//! Proves: the passive side accepts the active side's connection; without policies iBGP
//! accepts and sends (RFC 8212 covers eBGP only); an iBGP route carries LOCAL_PREF, an empty
//! AS_PATH and the originator's address as next hop, and lands in the other's kernel. And on a
//! link with IPv6 addresses only, with `extended_next_hop` (RFC 8950) on both, the IPv4
//! prefixes cross with IPv6 next hops into both kernels (`via inet6`), and a ping crosses.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use weft_topology_tests::{Netns, Process, binary, require_netns, wait_for, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

struct Speaker {
    netns: Netns,
    dir: tempfile::TempDir,
}

impl Speaker {
    fn new(label: &str, id: &str, peer: &str, originate: &str, passive: bool) -> Result<Self> {
        Self::with(label, id, peer, originate, passive, "")
    }

    /// [`Self::new`] with `extra` YAML lines in the peer's entry.
    fn with(label: &str, id: &str, peer: &str, originate: &str, passive: bool, extra: &str) -> Result<Self> {
        let netns = Netns::new(label)?;
        let dir = tempfile::tempdir()?;
        let config = format!(
            "asn: 65001\nrouter_id: {id}\ncontrol_socket: {}\noriginate: [{originate}]\nkernel: {{install: true}}\n\
             peers:\n  - address: \"{peer}\"\n    asn: 65001\n    passive: {passive}\n    connect_retry_time: 1\n{extra}",
            dir.path().join("weft.sock").display()
        );
        std::fs::write(dir.path().join("weft.yaml"), config)?;
        Ok(Self { netns, dir })
    }

    fn start(&self) -> Result<Process> {
        let config = self.dir.path().join("weft.yaml");
        Ok(self
            .netns
            .spawn(&[env!("CARGO_BIN_EXE_weft-bgpd"), "--config", config.to_str().unwrap()])?)
    }

    fn weftctl(&self, command: &str) -> Result<Vec<Value>> {
        let socket = self.dir.path().join("weft.sock");
        let output = Command::new(binary("weftctl")?)
            .args(["bgp", "--socket", socket.to_str().unwrap(), command, "--json"])
            .output()?;
        if !output.status.success() {
            return Ok(Vec::new());
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    fn learned(&self, prefix: &str) -> Result<Option<Value>> {
        Ok(self
            .weftctl("routes")?
            .into_iter()
            .find(|r| r["prefix"] == prefix && r["from"] != "local"))
    }
}

#[test]
fn two_weft_speakers_exchange_routes_over_ibgp_with_one_side_passive() -> Result<()> {
    if require_netns().is_none() {
        return Ok(());
    }
    let a = Speaker::new("pair-a", "198.19.0.1", "198.19.0.2", "198.18.1.0/26", true)?;
    let b = Speaker::new("pair-b", "198.19.0.2", "198.19.0.1", "198.18.2.0/26", false)?;
    a.netns.veth("eth0", &b.netns, "eth0")?;
    a.netns.add_address("eth0", "198.19.0.1/24")?;
    b.netns.add_address("eth0", "198.19.0.2/24")?;
    let _a = a.start()?;
    let _b = b.start()?;

    wait_until("both sides Established", DEADLINE, POLL, || {
        let up = |s: &Speaker| -> Result<bool> {
            Ok(s.weftctl("peers")?.first().is_some_and(|p| p["state"] == "Established"))
        };
        Ok::<_, anyhow::Error>(up(&a)? && up(&b)?)
    })?;
    let at_a = wait_for("a to learn b's prefix", DEADLINE, POLL, || a.learned("198.18.2.0/26"))?;
    assert_eq!(at_a["next_hop"], "198.19.0.2", "{at_a}");
    assert_eq!(at_a["as_path"], serde_json::json!([]), "{at_a}");
    assert_eq!(at_a["local_pref"], 100, "{at_a}");
    let at_b = wait_for("b to learn a's prefix", DEADLINE, POLL, || b.learned("198.18.1.0/26"))?;
    assert_eq!(at_b["next_hop"], "198.19.0.1", "{at_b}");

    wait_until("b's prefix in a's kernel", DEADLINE, POLL, || {
        let routes = a.netns.run(&["ip", "-4", "route", "show", "proto", "87"])?.stdout;
        Ok::<_, anyhow::Error>(routes.contains("198.18.2.0/26 via 198.19.0.2"))
    })?;
    Ok(())
}

#[test]
fn two_weft_speakers_exchange_ipv4_routes_over_an_ipv6_only_link_with_extended_next_hop() -> Result<()> {
    if require_netns().is_none() {
        return Ok(());
    }
    let extra = "    families: [ipv4-unicast, ipv6-unicast]\n    extended_next_hop: true\n";
    let a = Speaker::with("pair6-a", "198.19.0.1", "2001:db8:ff::2", "198.18.1.0/26", true, extra)?;
    let b = Speaker::with("pair6-b", "198.19.0.2", "2001:db8:ff::1", "198.18.2.0/26", false, extra)?;
    a.netns.veth("eth0", &b.netns, "eth0")?;
    a.netns.add_address("eth0", "2001:db8:ff::1/64")?;
    b.netns.add_address("eth0", "2001:db8:ff::2/64")?;
    for (speaker, host) in [(&a, "198.18.1.1"), (&b, "198.18.2.1")] {
        speaker.netns.run(&["ip", "link", "set", "lo", "up"])?;
        speaker.netns.add_address("lo", &format!("{host}/32"))?;
    }
    let _a = a.start()?;
    let _b = b.start()?;

    let at_a = wait_for("a to learn b's IPv4 prefix", DEADLINE, POLL, || {
        a.learned("198.18.2.0/26")
    })?;
    assert_eq!(at_a["next_hop"], "2001:db8:ff::2", "{at_a}");
    let at_b = wait_for("b to learn a's IPv4 prefix", DEADLINE, POLL, || {
        b.learned("198.18.1.0/26")
    })?;
    assert_eq!(at_b["next_hop"], "2001:db8:ff::1", "{at_b}");
    for (speaker, route) in [
        (&a, "198.18.2.0/26 via inet6 2001:db8:ff::2 "),
        (&b, "198.18.1.0/26 via inet6 2001:db8:ff::1 "),
    ] {
        wait_until(&format!("`{route}` in the kernel"), DEADLINE, POLL, || {
            let routes = speaker.netns.run(&["ip", "-4", "route", "show", "proto", "87"])?.stdout;
            Ok::<_, anyhow::Error>(routes.contains(route))
        })?;
    }
    wait_until("a ping from a's 198.18.1.1 to b's 198.18.2.1", DEADLINE, POLL, || {
        let output = a
            .netns
            .command("ping")
            .args(["-c", "1", "-W", "1", "-I", "198.18.1.1", "198.18.2.1"])
            .output()?;
        Ok::<_, anyhow::Error>(output.success())
    })?;
    Ok(())
}

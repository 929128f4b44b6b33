//! `next_hop_keep` (cluster mode: `BGPPeer.keepOriginalNextHop`) in network namespaces: four
//! weft-bgpd speakers in four ASes on one L2 segment (a bridge in a switch namespace).
//!
//! ```text
//!                         switch: br0 (198.19.0.0/24)
//!    ┌────────────────────┬──────────────────────┬────────────────────┐
//!    origin .1            middle .2              keep .3              self .4
//!    AS 65010             AS 65001               AS 65020             AS 65030
//!    198.18.100.0/26      198.18.2.0/26          next_hop_keep: true  (default)
//!                         ── eBGP to each of the other three ──
//! ```
//!
//! Proves: the middle speaker passes the origin's route to `keep` with the origin's address as
//! NEXT_HOP (and its own AS prepended), so `keep`'s kernel sends straight to the origin; to
//! `self` with its own address; and its own originated prefix to both with its own address.
//!
//! Only 198.18.0.0/15 is used; the namespaces carry the kit's per-run prefix and go when the
//! test ends, also on failure (their processes with them); every wait is bounded.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use weft_topology_tests::{Netns, Process, binary, require_netns, wait_for, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);
const ORIGIN_PREFIX: &str = "198.18.100.0/26";
const MIDDLE_PREFIX: &str = "198.18.2.0/26";

struct Speaker {
    netns: Netns,
    dir: tempfile::TempDir,
}

impl Speaker {
    fn new(switch: &Netns, name: &str, n: u8) -> Result<Self> {
        let netns = Netns::new(&format!("nhk-{name}"))?;
        let port = format!("port-{name}");
        switch.veth(&port, &netns, "eth0")?;
        switch.ip(&["link", "set", &port, "master", "br0"])?;
        switch.link_up(&port)?;
        netns.link_up("eth0")?;
        netns.add_address("eth0", &format!("198.19.0.{n}/24"))?;
        Ok(Self {
            netns,
            dir: tempfile::tempdir()?,
        })
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("weft.sock")
    }

    /// Writes the configuration (AS `asn`, router id 198.19.0.`n`, `originate`, kernel install,
    /// `peers` as YAML flow mappings) and starts weft-bgpd on it.
    fn start(&self, asn: u32, n: u8, originate: &[&str], peers: &[String]) -> Result<Process> {
        let mut yaml = format!(
            "asn: {asn}\nrouter_id: 198.19.0.{n}\ncontrol_socket: {}\noriginate: [{}]\nkernel: {{install: true}}\npeers:\n",
            self.socket().display(),
            originate.join(", ")
        );
        for peer in peers {
            yaml.push_str(&format!("  - {peer}\n"));
        }
        let path = self.dir.path().join("weft.yaml");
        std::fs::write(&path, yaml)?;
        Ok(self
            .netns
            .command(env!("CARGO_BIN_EXE_weft-bgpd"))
            .args(["--config", path.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .spawn()?)
    }

    fn weftctl(&self, command: &str) -> Result<Option<Vec<Value>>> {
        let output = Command::new(binary("weftctl")?)
            .args(["--socket", self.socket().to_str().unwrap(), "bgp", command, "--json"])
            .output()?;
        if !output.status.success() {
            return Ok(None);
        }
        match serde_json::from_slice(&output.stdout)? {
            Value::Array(items) => Ok(Some(items)),
            other => bail!("weftctl bgp {command} --json printed {other}"),
        }
    }

    fn established(&self, count: usize) -> Result<bool> {
        Ok(self
            .weftctl("peers")?
            .is_some_and(|peers| peers.len() == count && peers.iter().all(|p| p["state"] == "Established")))
    }

    /// The best learned path to `prefix`, once there is one.
    fn learned(&self, prefix: &str) -> Result<Value> {
        Ok(wait_for(&format!("a path to {prefix}"), DEADLINE, POLL, || {
            Ok::<_, anyhow::Error>(
                self.weftctl("routes")?
                    .unwrap_or_default()
                    .into_iter()
                    .find(|r| r["prefix"] == prefix && r["from"] != "local" && r["best"] == true),
            )
        })?)
    }

    fn kernel_has(&self, route: &str) -> Result<bool> {
        let routes = self.netns.run(&["ip", "-4", "route", "show", "proto", "87"])?.stdout;
        Ok(routes.lines().any(|line| line.starts_with(route)))
    }
}

/// A peer entry accepting and sending everything (eBGP needs both, RFC 8212).
fn peer(n: u8, asn: u32, extra: &str) -> String {
    format!(
        "{{address: 198.19.0.{n}, asn: {asn}, families: [ipv4-unicast], import: accept, export: accept, \
         connect_retry_time: 1{extra}}}"
    )
}

#[test]
fn an_ebgp_peer_with_next_hop_keep_gets_the_original_next_hop_and_the_others_ours() -> Result<()> {
    if require_netns().is_none() {
        return Ok(());
    }
    let switch = Netns::new("nhk-switch")?;
    switch.ip(&["link", "add", "br0", "type", "bridge"])?;
    switch.link_up("br0")?;
    let origin = Speaker::new(&switch, "origin", 1)?;
    let middle = Speaker::new(&switch, "middle", 2)?;
    let keep = Speaker::new(&switch, "keep", 3)?;
    let own = Speaker::new(&switch, "self", 4)?;
    let _origin = origin.start(65010, 1, &[ORIGIN_PREFIX], &[peer(2, 65001, "")])?;
    let _middle = middle.start(
        65001,
        2,
        &[MIDDLE_PREFIX],
        &[
            peer(1, 65010, ""),
            peer(3, 65020, ", next_hop_keep: true"),
            peer(4, 65030, ""),
        ],
    )?;
    let _keep = keep.start(65020, 3, &[], &[peer(2, 65001, "")])?;
    let _own = own.start(65030, 4, &[], &[peer(2, 65001, "")])?;
    wait_until("the middle speaker Established with all three", DEADLINE, POLL, || {
        middle.established(3)
    })
    .context("sessions")?;

    let at_keep = keep.learned(ORIGIN_PREFIX)?;
    assert_eq!(at_keep["next_hop"], "198.19.0.1", "the origin's address: {at_keep}");
    assert_eq!(at_keep["as_path"], json!([65001, 65010]), "{at_keep}");
    let at_self = own.learned(ORIGIN_PREFIX)?;
    assert_eq!(at_self["next_hop"], "198.19.0.2", "next hop self: {at_self}");
    for speaker in [&keep, &own] {
        let originated = speaker.learned(MIDDLE_PREFIX)?;
        assert_eq!(originated["next_hop"], "198.19.0.2", "{originated}");
    }
    wait_until("keep's kernel to route straight to the origin", DEADLINE, POLL, || {
        keep.kernel_has(&format!("{ORIGIN_PREFIX} via 198.19.0.1 "))
    })?;
    wait_until("self's kernel to route through the middle", DEADLINE, POLL, || {
        own.kernel_has(&format!("{ORIGIN_PREFIX} via 198.19.0.2 "))
    })?;
    Ok(())
}

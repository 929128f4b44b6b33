//! The receivers: each daemon started alone in its namespace, and its own count of routes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use weft_topology_tests::{Netns, Process, binary, wait_for};

use super::{
    Family, HOLD_TIME, Kind, READY_LIMIT, RECEIVER_ASN, RECEIVER_V4, RECEIVER_V6, SENDER_ASN, SENDER_V4, SENDER_V6,
};

pub(crate) struct Receiver {
    kind: Kind,
    family: Family,
    pub(crate) sender: Netns,
    pub(crate) netns: Netns,
    dir: tempfile::TempDir,
    processes: Vec<Process>,
}

impl Receiver {
    pub(crate) fn start(kind: Kind, family: Family) -> Result<Self> {
        let tag = match kind {
            Kind::Weft => "w",
            Kind::Bird => "b",
            Kind::Frr => "f",
            Kind::Gobgp => "g",
        };
        let sender = Netns::new(&format!("ingest-tx{tag}"))?;
        let netns = Netns::new(&format!("ingest-rx{tag}"))?;
        sender.veth("eth0", &netns, "eth0")?;
        netns.link_up("lo")?;
        sender.add_address("eth0", &format!("{SENDER_V4}/30"))?;
        netns.add_address("eth0", &format!("{RECEIVER_V4}/30"))?;
        sender.ip(&["addr", "add", &format!("{SENDER_V6}/64"), "dev", "eth0", "nodad"])?;
        netns.ip(&["addr", "add", &format!("{RECEIVER_V6}/64"), "dev", "eth0", "nodad"])?;
        let dir = tempfile::tempdir()?;
        let mut receiver = Self {
            kind,
            family,
            sender,
            netns,
            dir,
            processes: Vec::new(),
        };
        receiver.spawn()?;
        let limit = READY_LIMIT;
        wait_for(
            "the receiver to answer its CLI",
            limit,
            Duration::from_millis(100),
            || Ok::<_, anyhow::Error>(receiver.rib_count().ok()),
        )?;
        Ok(receiver)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn dir(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn spawn(&mut self) -> Result<()> {
        let family = self.family;
        let peer = family.sender();
        match self.kind {
            Kind::Weft => {
                let yaml = format!(
                    "asn: {RECEIVER_ASN}\nrouter_id: {RECEIVER_V4}\ncontrol_socket: {}\nkernel: {{ install: true }}\n\
                     graceful_restart: {{ enabled: false }}\npeers:\n  - address: \"{peer}\"\n    asn: {SENDER_ASN}\n    \
                     families: [{}-unicast]\n    import: accept\n    export: reject\n    passive: true\n    hold_time: {HOLD_TIME}\n",
                    self.path("weft.sock").display(),
                    family.key()
                );
                std::fs::write(self.path("weft.yaml"), yaml)?;
                let process = self
                    .netns
                    .command(binary("weft-bgpd")?.to_str().unwrap())
                    .args(["--config", self.path("weft.yaml").to_str().unwrap()])
                    .env("RUST_LOG", "warn")
                    .spawn()?;
                self.processes.push(process);
            }
            Kind::Bird => {
                let conf = format!(
                    "router id {RECEIVER_V4};\nprotocol device {{ }}\n\
                     protocol kernel {{ {key} {{ import none; export all; }}; }}\n\
                     protocol bgp sender {{ local as {RECEIVER_ASN}; neighbor {peer} as {SENDER_ASN}; passive on; \
                     hold time {HOLD_TIME}; {key} {{ import all; export none; }}; }}\n",
                    key = family.key()
                );
                std::fs::write(self.path("bird.conf"), conf)?;
                let process = self
                    .netns
                    .command("bird")
                    .args([
                        "-f",
                        "-c",
                        self.path("bird.conf").to_str().unwrap(),
                        "-s",
                        self.path("bird.ctl").to_str().unwrap(),
                        "-P",
                        self.path("bird.pid").to_str().unwrap(),
                    ])
                    .spawn()?;
                self.processes.push(process);
            }
            Kind::Frr => {
                std::fs::write(self.path("zebra.conf"), "hostname receiver\n")?;
                std::fs::write(
                    self.path("bgpd.conf"),
                    format!(
                        "hostname receiver\nrouter bgp {RECEIVER_ASN}\n bgp router-id {RECEIVER_V4}\n no bgp ebgp-requires-policy\n \
                         no bgp default ipv4-unicast\n neighbor {peer} remote-as {SENDER_ASN}\n neighbor {peer} passive\n \
                         neighbor {peer} timers {} {HOLD_TIME}\n address-family {} unicast\n  neighbor {peer} activate\n exit-address-family\n",
                        HOLD_TIME / 3,
                        family.key()
                    ),
                )?;
                let status = Command::new("chown").args(["-R", "frr:frr", self.dir()]).status()?;
                if !status.success() {
                    bail!("chown frr:frr {} failed", self.dir());
                }
                let dir = self.dir().to_owned();
                let daemon = |program: &str, name: &str, extra: &[&str]| {
                    self.netns
                        .command(program)
                        .args([
                            "-P",
                            "0",
                            "--vty_socket",
                            &dir,
                            "-z",
                            &format!("{dir}/zserv.api"),
                            "-f",
                            &format!("{dir}/{name}.conf"),
                            "-i",
                            &format!("{dir}/{name}.pid"),
                        ])
                        .args(extra)
                        .spawn()
                };
                // Debian's default zebra options: a 90 MB netlink receive buffer.
                let zebra = daemon("/usr/lib/frr/zebra", "zebra", &["-s", "90000000"])?;
                let api = self.path("zserv.api");
                wait_for("zebra's zserv socket", READY_LIMIT, Duration::from_millis(50), || {
                    Ok::<_, anyhow::Error>(api.exists().then_some(()))
                })?;
                let bgpd = daemon("/usr/lib/frr/bgpd", "bgpd", &[])?;
                self.processes.push(zebra);
                self.processes.push(bgpd);
            }
            Kind::Gobgp => {
                let toml = format!(
                    "[global.config]\n  as = {RECEIVER_ASN}\n  router-id = \"{RECEIVER_V4}\"\n\
                     [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{peer}\"\n    peer-as = {SENDER_ASN}\n\
                     \x20 [neighbors.timers.config]\n    hold-time = {HOLD_TIME}\n\
                     \x20 [neighbors.transport.config]\n    passive-mode = true\n\
                     \x20 [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{}-unicast\"\n",
                    family.key()
                );
                std::fs::write(self.path("gobgpd.toml"), toml)?;
                let process = self
                    .netns
                    .command("gobgpd")
                    .args([
                        "-f",
                        self.path("gobgpd.toml").to_str().unwrap(),
                        "--api-hosts",
                        "127.0.0.1:50051",
                        "-l",
                        "warn",
                    ])
                    .spawn()?;
                self.processes.push(process);
            }
        }
        Ok(())
    }

    /// The receiver's own count of routes of the family in its Loc-RIB.
    pub(crate) fn rib_count(&self) -> Result<u64> {
        let family = self.family;
        match self.kind {
            Kind::Weft => {
                let out = Command::new(binary("weftctl")?)
                    .args([
                        "--socket",
                        self.path("weft.sock").to_str().unwrap(),
                        "bgp",
                        "peers",
                        "--json",
                    ])
                    .output()?;
                if !out.status.success() {
                    bail!("weftctl: {}", String::from_utf8_lossy(&out.stderr));
                }
                let peers: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                Ok(peers
                    .as_array()
                    .context("weftctl peers: not an array")?
                    .iter()
                    .filter_map(|p| p["prefixes_accepted"].as_u64())
                    .sum())
            }
            Kind::Bird => {
                // The protocol's own counters (O(1)); `show route count` walks the whole table,
                // which at a million routes slows BIRD's one thread at every poll. Once the
                // session is down and flushed BIRD prints no `Routes:` line: none left.
                let out = Command::new("birdc")
                    .args([
                        "-s",
                        self.path("bird.ctl").to_str().unwrap(),
                        "show",
                        "protocols",
                        "all",
                        "sender",
                    ])
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() || !text.contains("sender") {
                    bail!("birdc: {text:?}");
                }
                let Some(line) = text.lines().find(|l| l.trim_start().starts_with("Routes:")) else {
                    return Ok(0);
                };
                let first = line
                    .split_whitespace()
                    .find(|w| w.chars().all(|c| c.is_ascii_digit()))
                    .context("birdc: no number")?;
                Ok(first.parse()?)
            }
            Kind::Frr => {
                let out = Command::new("vtysh")
                    .args([
                        "--vty_socket",
                        self.dir(),
                        "-c",
                        &format!("show bgp {} unicast summary json", family.key()),
                    ])
                    .output()?;
                if !out.status.success() {
                    bail!("vtysh: {}", String::from_utf8_lossy(&out.stderr));
                }
                let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                // While the session is up, the peer's `pfxRcd` counts its paths in the RIB
                // (`ribCount` counts the table's tree nodes too, about 2N). Once it is down FRR
                // stops reporting `pfxRcd` while it is still flushing; then `ribCount`, 0 only
                // when the table is empty, is the count. Before the first session: `{}`.
                let peers = find_key(&json, "peers").context("FRR summary: no peers")?;
                let established = find_key(peers, "state").and_then(serde_json::Value::as_str) == Some("Established");
                let key = if established { "pfxRcd" } else { "ribCount" };
                Ok(find_key(&json, key).and_then(serde_json::Value::as_u64).unwrap_or(0))
            }
            Kind::Gobgp => {
                let out = self
                    .netns
                    .command("gobgp")
                    .args(["global", "rib", "summary", "-a", family.key()])
                    .output()?;
                if !out.success() {
                    bail!("gobgp: {}", out.stderr);
                }
                let count = out
                    .stdout
                    .split("Destination:")
                    .nth(1)
                    .and_then(|rest| rest.split(',').next())
                    .with_context(|| format!("gobgp: no count in {:?}", out.stdout))?;
                Ok(count.trim().parse()?)
            }
        }
    }

    /// Peak RSS (VmHWM) of the receiver's processes, in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        self.processes
            .iter()
            .filter_map(|p| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).ok()?;
                status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    pub(crate) fn all_running(&self) -> bool {
        self.processes.iter().all(Process::is_running)
    }
}

fn find_key<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map.get(key).or_else(|| map.values().find_map(|v| find_key(v, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}

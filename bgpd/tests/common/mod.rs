//! What the interop tests share: a weft-bgpd node in a namespace of its own, the wire between it
//! and a top-of-rack router, and one adapter per real peer implementation (FRR, GoBGP, BIRD), each
//! with its own sockets and pid files in a temporary directory (never the system's).
//!
//! Topology of every lab (only 198.18.0.0/15 and 2001:db8::/32, namespaces made and removed by
//! the test):
//!
//! ```text
//!   tor: the peer under test                       node: weft-bgpd, AS 65001, id 198.19.0.2
//!   eth-node 198.19.0.1/24, 2001:db8:ff::1/64 ──── eth-tor 198.19.0.2/24, 2001:db8:ff::2/64
//!   originates 198.18.100.0/24, 2001:db8:100::/48   originates 198.18.1.0/26, 2001:db8:1::/64
//! ```

#![allow(dead_code, clippy::unwrap_used)]

pub mod wire;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use weft_topology_tests::{Netns, Process, binary, wait_for};

pub const DEADLINE: Duration = Duration::from_secs(45);
pub const POLL: Duration = Duration::from_millis(250);

/// The ToR's side of the link.
pub const TOR_V4: &str = "198.19.0.1";
pub const TOR_V6: &str = "2001:db8:ff::1";
/// weft's side of the link.
pub const NODE_V4: &str = "198.19.0.2";
pub const NODE_V6: &str = "2001:db8:ff::2";
/// What the ToR originates.
pub const TOR_PREFIX_V4: &str = "198.18.100.0/24";
pub const TOR_PREFIX_V6: &str = "2001:db8:100::/48";
/// What weft originates.
pub const NODE_PREFIX_V4: &str = "198.18.1.0/26";
pub const NODE_PREFIX_V6: &str = "2001:db8:1::/64";

/// Whether `program` is installed; without it the test skips, except under CI=true.
pub fn require_program(program: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {program} is not installed (scripts/install-deps.sh installs {package})"
        );
        eprintln!("skipping: {program} is not installed (apt-get install {package})");
    }
    found
}

/// One link, ToR to node, both families.
pub fn wire(tor: &Netns, node: &Netns) -> Result<()> {
    tor.veth("eth-node", node, "eth-tor")?;
    tor.add_address("eth-node", &format!("{TOR_V4}/24"))?;
    tor.add_address("eth-node", &format!("{TOR_V6}/64"))?;
    node.add_address("eth-tor", &format!("{NODE_V4}/24"))?;
    node.add_address("eth-tor", &format!("{NODE_V6}/64"))?;
    Ok(())
}

/// Whether `routes` (`ip route` output) has a line for `prefix` through `next_hop` (FRR's
/// routes carry an `nhid` between the two).
pub fn has_route(routes: &str, prefix: &str, next_hop: &str) -> bool {
    routes
        .lines()
        .any(|line| line.starts_with(&format!("{prefix} ")) && line.contains(&format!("via {next_hop} ")))
}

/// The value of one series (`weft_bgp_sessions{state="Established"}`) in a Prometheus text
/// exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// One weft-bgpd peer entry.
#[derive(Debug, Clone)]
pub struct WeftPeer {
    pub address: String,
    pub asn: u32,
    pub family: &'static str,
    /// `None`: no `import:` key (RFC 8212's default).
    pub import: Option<String>,
    /// `None`: no `export:` key.
    pub export: Option<String>,
    pub hold_time: u16,
    /// Extra YAML lines of the peer (`    password: x`).
    pub extra: String,
}

impl WeftPeer {
    /// A peer with `import: accept`, `export: accept`, a 9 s hold time and 2 s retries.
    pub fn new(address: &str, asn: u32, family: &'static str) -> Self {
        Self {
            address: address.to_owned(),
            asn,
            family,
            import: Some("accept".to_owned()),
            export: Some("accept".to_owned()),
            hold_time: 9,
            extra: String::new(),
        }
    }

    /// Named (or built-in) import and export policies instead of `accept`.
    pub fn policies(mut self, import: &str, export: &str) -> Self {
        self.import = Some(import.to_owned());
        self.export = Some(export.to_owned());
        self
    }

    /// No `import:` or `export:` key at all.
    pub fn without_policies(mut self) -> Self {
        self.import = None;
        self.export = None;
        self
    }

    pub fn hold_time(mut self, seconds: u16) -> Self {
        self.hold_time = seconds;
        self
    }

    pub fn with(mut self, line: &str) -> Self {
        self.extra.push_str(&format!("\n    {line}"));
        self
    }
}

/// weft-bgpd on the node: its namespace, its configuration and control socket.
pub struct WeftNode {
    pub netns: Netns,
    dir: tempfile::TempDir,
}

impl WeftNode {
    pub fn new(label: &str) -> Result<Self> {
        Ok(Self {
            netns: Netns::new(label)?,
            dir: tempfile::tempdir()?,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the configuration: AS 65001, id 198.19.0.2, the node's two prefixes, kernel
    /// install on, `top` extra top-level YAML (e.g. `max_paths: 4`), and the peers.
    pub fn configure(&self, top: &str, peers: &[WeftPeer]) -> Result<()> {
        self.configure_originating(&[NODE_PREFIX_V4, NODE_PREFIX_V6], top, peers)
    }

    /// [`Self::configure`] with other originated prefixes.
    pub fn configure_originating(&self, originate: &[&str], top: &str, peers: &[WeftPeer]) -> Result<()> {
        let originate: Vec<String> = originate.iter().map(|prefix| format!("\"{prefix}\"")).collect();
        let mut yaml = format!(
            "asn: 65001\nrouter_id: {NODE_V4}\ncontrol_socket: {}\noriginate: [{}]\n\
             kernel: {{ install: true }}\n{top}\npeers:\n",
            self.path("weft.sock").display(),
            originate.join(", ")
        );
        for peer in peers {
            let policy = |key: &str, value: &Option<String>| {
                value
                    .as_ref()
                    .map_or_else(String::new, |value| format!("    {key}: {value}\n"))
            };
            yaml.push_str(&format!(
                "  - address: \"{}\"\n    asn: {}\n    families: [{}]\n{}{}    hold_time: {}\n    \
                 connect_retry_time: 2{}\n",
                peer.address,
                peer.asn,
                peer.family,
                policy("import", &peer.import),
                policy("export", &peer.export),
                peer.hold_time,
                peer.extra
            ));
        }
        std::fs::write(self.path("weft.yaml"), yaml)?;
        Ok(())
    }

    pub fn start(&self) -> Result<Process> {
        let conf = self.path("weft.yaml");
        Ok(self
            .netns
            .command(env!("CARGO_BIN_EXE_weft-bgpd"))
            .args(["--config", conf.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .spawn()?)
    }

    /// `weftctl --socket PATH bgp ARGS… --json`, or `None` while the daemon does not answer.
    pub fn weftctl_value(&self, args: &[&str]) -> Result<Option<Value>> {
        let output = Command::new(binary("weftctl")?)
            .args(["--socket", self.path("weft.sock").to_str().unwrap(), "bgp"])
            .args(args)
            .arg("--json")
            .output()?;
        if !output.status.success() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&output.stdout)?))
    }

    /// `weftctl bgp COMMAND --json` as an array.
    pub fn weftctl(&self, command: &str) -> Result<Option<Vec<Value>>> {
        match self.weftctl_value(&[command])? {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => bail!("weftctl bgp {command} --json printed {other}, not an array"),
        }
    }

    pub fn peers(&self) -> Result<Vec<Value>> {
        self.weftctl("peers")?.context("weftctl bgp peers: no answer")
    }

    /// Whether exactly `count` peers are configured and all are Established.
    pub fn established(&self, count: usize) -> Result<bool> {
        Ok(self
            .weftctl("peers")?
            .is_some_and(|peers| peers.len() == count && peers.iter().all(|p| p["state"] == "Established")))
    }

    /// The state weftctl reports for the peer at `address`.
    pub fn peer_state(&self, address: &str) -> Result<Option<String>> {
        Ok(self.weftctl("peers")?.and_then(|peers| {
            peers
                .into_iter()
                .find(|p| p["address"] == address)
                .and_then(|p| p["state"].as_str().map(str::to_owned))
        }))
    }

    /// The learned paths to `prefix` in the Loc-RIB.
    pub fn learned_paths(&self, prefix: &str) -> Result<Vec<Value>> {
        Ok(self
            .weftctl("routes")?
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["prefix"] == prefix && r["from"] != "local")
            .collect())
    }

    /// The best learned path to `prefix`.
    pub fn learned(&self, prefix: &str) -> Result<Option<Value>> {
        Ok(self.learned_paths(prefix)?.into_iter().find(|r| r["best"] == true))
    }

    pub fn wait_for_route(&self, prefix: &str) -> Result<Value> {
        Ok(wait_for(&format!("weft to learn {prefix}"), DEADLINE, POLL, || {
            self.learned(prefix)
        })?)
    }

    /// `GET /metrics` from weft-bgpd's `metrics_listen` address (inside the node's namespace).
    pub fn scrape(&self, address: &str) -> Result<String> {
        use std::io::{Read, Write};
        let address: std::net::SocketAddr = address.parse()?;
        let response = self.netns.within(|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: weft\r\nConnection: close\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })??;
        let Some((head, body)) = response.split_once("\r\n\r\n") else {
            bail!("not an HTTP response: {response}");
        };
        if !head.starts_with("HTTP/1.1 200") {
            bail!("GET /metrics: {head}");
        }
        Ok(body.to_owned())
    }

    /// weft's routes in the node's kernel (`ip route show proto 87`), both families.
    pub fn kernel_routes(&self) -> Result<String> {
        let v4 = self.netns.run(&["ip", "-4", "route", "show", "proto", "87"])?.stdout;
        let v6 = self.netns.run(&["ip", "-6", "route", "show", "proto", "87"])?.stdout;
        Ok(v4 + &v6)
    }
}

/// BIRD 2 in a namespace the test made (`bird -f`), with its configuration, control socket and
/// pid file in a temporary directory; it ends with the value.
pub struct Bird {
    // Declared first: the process ends before its directory goes.
    _process: Process,
    ctl: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bird {
    /// Starts BIRD in `netns` with `conf` as its configuration.
    pub fn start(netns: &Netns, conf: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (path, ctl, pid) = (
            dir.path().join("bird.conf"),
            dir.path().join("bird.ctl"),
            dir.path().join("bird.pid"),
        );
        std::fs::write(&path, conf)?;
        let text = |path: &PathBuf| path.to_str().unwrap_or_default().to_owned();
        let process = netns.spawn(&["bird", "-f", "-c", &text(&path), "-s", &text(&ctl), "-P", &text(&pid)])?;
        Ok(Self {
            _process: process,
            ctl,
            _dir: dir,
        })
    }

    /// What `birdc COMMAND` prints.
    pub fn birdc(&self, command: &str) -> Result<String> {
        let output = Command::new("birdc")
            .args(["-s", self.ctl.to_str().unwrap_or_default()])
            .args(command.split_whitespace())
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// FRR 8 (zebra + bgpd) as a ToR, in its own namespace, with its own vty sockets, zserv socket,
/// pid files and configuration in a directory owned by the `frr` user.
pub struct Frr {
    pub netns: Netns,
    dir: tempfile::TempDir,
    zebra: Option<Process>,
    bgpd: Option<Process>,
}

impl Frr {
    pub const ZEBRA: &str = "/usr/lib/frr/zebra";
    pub const BGPD: &str = "/usr/lib/frr/bgpd";

    /// Whether FRR is installed; skips (fails under CI=true) otherwise.
    pub fn installed() -> bool {
        require_program(Self::BGPD, "frr") && require_program("vtysh", "frr")
    }

    pub fn new(label: &str) -> Result<Self> {
        let netns = Netns::new(label)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("zebra.conf"), "hostname tor\n")?;
        Ok(Self {
            netns,
            dir,
            zebra: None,
            bgpd: None,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes bgpd.conf.
    pub fn configure(&self, bgpd_conf: &str) -> Result<()> {
        std::fs::write(self.path("bgpd.conf"), bgpd_conf)?;
        Ok(())
    }

    fn chown(&self) -> Result<()> {
        let status = Command::new("chown")
            .args(["-R", "frr:frr", self.dir.path().to_str().unwrap()])
            .status()?;
        if !status.success() {
            bail!("chown frr:frr {} failed", self.dir.path().display());
        }
        Ok(())
    }

    fn daemon(&self, program: &str, name: &str) -> Result<Process> {
        let dir = self.dir.path().to_str().unwrap().to_owned();
        Ok(self
            .netns
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
            .spawn()?)
    }

    /// Starts zebra (once) and bgpd, and waits until bgpd answers vtysh.
    pub fn start(&mut self) -> Result<()> {
        self.chown()?;
        if self.zebra.is_none() {
            let zebra = self.daemon(Self::ZEBRA, "zebra")?;
            let api = self.path("zserv.api");
            wait_for("zebra's zserv socket", DEADLINE, POLL, || {
                Ok::<_, anyhow::Error>(api.exists().then_some(()))
            })?;
            self.zebra = Some(zebra);
        }
        self.bgpd = Some(self.daemon(Self::BGPD, "bgpd")?);
        wait_for("FRR bgpd to answer vtysh", DEADLINE, POLL, || {
            Ok::<_, anyhow::Error>(self.vtysh(&["show bgp summary"]).ok().filter(|o| !o.is_empty()))
        })?;
        Ok(())
    }

    /// Stops bgpd (SIGTERM: FRR sends a Cease to its peers); zebra keeps running.
    pub fn stop_bgpd(&mut self) -> Result<()> {
        if let Some(bgpd) = self.bgpd.take() {
            bgpd.stop()?;
        }
        Ok(())
    }

    /// Kills bgpd without a word (SIGKILL): what a crash looks like to its peers.
    pub fn kill_bgpd(&mut self) -> Result<()> {
        if let Some(bgpd) = self.bgpd.take() {
            bgpd.signal(weft_topology_tests::Signal::SIGKILL)?;
            bgpd.wait_exit(DEADLINE)?;
        }
        Ok(())
    }

    /// What bgpd logged (`log stdout debugging`): NOTIFICATIONs received are there by name.
    pub fn bgpd_log(&self) -> Result<String> {
        let bgpd = self.bgpd.as_ref().context("FRR's bgpd is not running")?;
        Ok(bgpd.stdout()? + &bgpd.stderr()?)
    }

    /// `vtysh -c C1 -c C2 …` against this FRR's own vty sockets.
    pub fn vtysh(&self, commands: &[&str]) -> Result<String> {
        let mut command = Command::new("vtysh");
        command.args(["--vty_socket", self.dir.path().to_str().unwrap()]);
        for c in commands {
            command.args(["-c", c]);
        }
        let output = command.output()?;
        if !output.status.success() {
            bail!(
                "vtysh {commands:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn vtysh_json(&self, command: &str) -> Result<Value> {
        let text = self.vtysh(&[command])?;
        serde_json::from_str(&text).with_context(|| format!("vtysh {command}: not JSON: {text}"))
    }

    /// FRR's `bgpState` of the session with `neighbor`.
    pub fn state(&self, neighbor: &str) -> Result<String> {
        let json = self.vtysh_json(&format!("show bgp neighbors {neighbor} json"))?;
        Ok(json[neighbor]["bgpState"].as_str().unwrap_or("").to_owned())
    }

    /// The paths FRR has for `prefix` (`show bgp ipv4|ipv6 unicast PREFIX json`), possibly none.
    pub fn paths(&self, prefix: &str) -> Result<Vec<Value>> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let json = self.vtysh_json(&format!("show bgp {family} unicast {prefix} json"))?;
        Ok(json["paths"].as_array().cloned().unwrap_or_default())
    }

    /// Whether `routes` (`ip route` output) has a line for `prefix` through `next_hop` (FRR's
    /// routes carry an `nhid` between the two).
    pub fn has_route(routes: &str, prefix: &str, next_hop: &str) -> bool {
        routes
            .lines()
            .any(|line| line.starts_with(&format!("{prefix} ")) && line.contains(&format!("via {next_hop} ")))
    }

    /// FRR's kernel routes of protocol bgp.
    pub fn kernel_routes(&self) -> Result<String> {
        let v4 = self.netns.run(&["ip", "-4", "route", "show", "proto", "bgp"])?.stdout;
        let v6 = self.netns.run(&["ip", "-6", "route", "show", "proto", "bgp"])?.stdout;
        Ok(v4 + &v6)
    }
}

/// The `bgpd.conf` of an FRR ToR (AS 4200000002, id `router_id`) with one IPv4 and one IPv6
/// session to weft, originating the ToR prefixes; `neighbor_extra` lines are added for both
/// neighbours (`password x`, `graceful-restart`), `global_extra` to `router bgp`.
pub fn frr_tor_conf(
    router_id: &str,
    neighbors: &[(&str, &str)],
    neighbor_extra: &[&str],
    global_extra: &[&str],
) -> String {
    let mut conf = format!(
        "hostname tor\nlog stdout debugging\nrouter bgp 4200000002\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n \
         no bgp network import-check\n no bgp default ipv4-unicast\n timers bgp 3 9\n"
    );
    for line in global_extra {
        conf.push_str(&format!(" {line}\n"));
    }
    for (address, _) in neighbors {
        conf.push_str(&format!(
            " neighbor {address} remote-as 65001\n neighbor {address} timers connect 2\n"
        ));
        for line in neighbor_extra {
            conf.push_str(&format!(" neighbor {address} {line}\n"));
        }
    }
    for family in ["ipv4", "ipv6"] {
        conf.push_str(&format!(" address-family {family} unicast\n"));
        let prefix = if family == "ipv4" { TOR_PREFIX_V4 } else { TOR_PREFIX_V6 };
        conf.push_str(&format!("  network {prefix}\n"));
        for (address, neighbor_family) in neighbors {
            if *neighbor_family == family {
                conf.push_str(&format!("  neighbor {address} activate\n"));
            }
        }
        conf.push_str(" exit-address-family\n");
    }
    conf
}

/// GoBGP 3 (`gobgpd`) as a ToR, in its own namespace, with its gRPC API on the namespace's own
/// loopback.
pub struct Gobgp {
    pub netns: Netns,
    dir: tempfile::TempDir,
    daemon: Option<Process>,
}

impl Gobgp {
    pub fn installed() -> bool {
        require_program("gobgpd", "gobgpd") && require_program("gobgp", "gobgpd")
    }

    pub fn new(label: &str, config_toml: &str) -> Result<Self> {
        let netns = Netns::new(label)?;
        netns.run(&["ip", "link", "set", "lo", "up"])?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("gobgpd.toml"), config_toml)?;
        Ok(Self {
            netns,
            dir,
            daemon: None,
        })
    }

    pub fn start(&mut self) -> Result<()> {
        let conf = self.dir.path().join("gobgpd.toml");
        self.daemon = Some(
            self.netns
                .command("gobgpd")
                .args([
                    "-f",
                    conf.to_str().unwrap(),
                    "--api-hosts",
                    "127.0.0.1:50051",
                    "-l",
                    "info",
                ])
                .spawn()?,
        );
        wait_for("gobgpd to answer its API", DEADLINE, POLL, || {
            Ok::<_, anyhow::Error>(self.gobgp(&["global"]).ok())
        })?;
        Ok(())
    }

    /// Stops gobgpd (SIGTERM).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop()?;
        }
        Ok(())
    }

    /// Kills gobgpd without a word (SIGKILL).
    pub fn kill(&mut self) -> Result<()> {
        if let Some(daemon) = self.daemon.take() {
            daemon.signal(weft_topology_tests::Signal::SIGKILL)?;
            daemon.wait_exit(DEADLINE)?;
        }
        Ok(())
    }

    /// `gobgp ARGS…` inside the namespace, checked.
    pub fn gobgp(&self, args: &[&str]) -> Result<String> {
        let output = self.netns.command("gobgp").args(args).output()?;
        if !output.success() {
            bail!("gobgp {args:?} failed: {}{}", output.stdout, output.stderr);
        }
        Ok(output.stdout)
    }

    /// `gobgp … -j` parsed.
    pub fn gobgp_json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.push("-j");
        let text = self.gobgp(&all)?;
        serde_json::from_str(&text).with_context(|| format!("gobgp {args:?} -j: not JSON: {text}"))
    }

    /// The session state GoBGP reports for `neighbor` (e.g. `established`).
    pub fn state(&self, neighbor: &str) -> Result<String> {
        let json = self.gobgp_json(&["neighbor", neighbor])?;
        Ok(json["state"]["session_state"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| json["state"]["session_state"].as_i64().map(|n| n.to_string()))
            .unwrap_or_default())
    }
}

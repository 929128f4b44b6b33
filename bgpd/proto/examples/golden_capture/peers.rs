//! The three real peers: configuration, start, version, and the operator commands that make each
//! send a given message (withdraw, route refresh, administrative shutdown).
//!
//! Every peer runs AS 4200000001 with router id 198.18.0.1 and two passive neighbors:
//! - `ebgp`: 198.18.0.2, AS 4200000002, IPv4 and IPv6 unicast over IPv4, add-path both ways;
//! - `ibgp`: 2001:db8::2, AS 4200000001, IPv4 unicast with an IPv6 next hop (RFC 8950, where the
//!   peer does it) and IPv6 unicast over IPv6;
//!
//! both with graceful restart and route refresh, hold time 90 s (FRR keeps its 180 s). It
//! originates 198.19.1.0/24, 198.19.2.0/24, 2001:db8:101::/48 and 2001:db8:102::/48 with
//! community 65000:1, large community 4200000001:1:2 and MED 50; [`Peer::withdraw`] withdraws the
//! second of each family.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::lab::{Lab, PEER_V4, PEER_V6, Result, US_V4, US_V6, poll};

/// One of the real implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// BIRD 2 (`bird`, `birdc`).
    Bird,
    /// FRR (`zebra` + `bgpd`, `vtysh`).
    Frr,
    /// GoBGP (`gobgpd`, `gobgp`).
    Gobgp,
}

/// Which of the two configured neighbors a command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Neighbor {
    /// 198.18.0.2, AS 4200000002.
    Ebgp,
    /// 2001:db8::2, AS 4200000001.
    Ibgp,
}

impl Neighbor {
    fn address(self) -> &'static str {
        match self {
            Self::Ebgp => US_V4,
            Self::Ibgp => US_V6,
        }
    }

    fn bird_protocol(self) -> &'static str {
        match self {
            Self::Ebgp => "weft_ebgp",
            Self::Ibgp => "weft_ibgp",
        }
    }
}

/// The peer's AS number.
pub const PEER_AS: u32 = 4_200_000_001;
/// Our AS number on the eBGP session.
pub const OUR_EBGP_AS: u32 = 4_200_000_002;

impl Peer {
    /// The name used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bird => "bird",
            Self::Frr => "frr",
            Self::Gobgp => "gobgp",
        }
    }

    /// Parses a name as given in `WEFT_CAPTURE_PEERS`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Bird, Self::Frr, Self::Gobgp]
            .into_iter()
            .find(|peer| peer.name() == name)
    }

    /// The installed version, e.g. `2.0.12`.
    pub fn version(self) -> Result<String> {
        let (program, arg) = match self {
            Self::Bird => ("bird", "--version"),
            Self::Frr => ("/usr/lib/frr/bgpd", "--version"),
            Self::Gobgp => ("gobgpd", "--version"),
        };
        let output = Command::new(program).arg(arg).stdin(Stdio::null()).output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        // "BIRD version 2.0.12", "bgpd version 8.4.4", "gobgpd version 3.10.0"
        let version = text
            .lines()
            .find_map(|line| line.split("version ").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string())
            .filter(|version| !version.is_empty())
            .ok_or_else(|| format!("no version in {text:?}"))?;
        Ok(version)
    }

    /// Writes the configuration and starts the daemon(s) in the lab's peer namespace.
    pub fn start(self, lab: &mut Lab) -> Result<()> {
        match self {
            Self::Bird => start_bird(lab),
            Self::Frr => start_frr(lab),
            Self::Gobgp => start_gobgp(lab),
        }
    }

    /// Withdraws 198.19.2.0/24 and 2001:db8:102::/48.
    pub fn withdraw(self, lab: &Lab) -> Result<()> {
        match self {
            Self::Bird => {
                birdc(lab, &["disable", "static4w"])?;
                birdc(lab, &["disable", "static6w"])?;
            }
            Self::Frr => {
                vtysh(
                    lab,
                    &[
                        "configure terminal",
                        "router bgp 4200000001",
                        "address-family ipv4 unicast",
                        "no network 198.19.2.0/24 route-map WEFT",
                        "exit-address-family",
                        "address-family ipv6 unicast",
                        "no network 2001:db8:102::/48 route-map WEFT",
                    ],
                )?;
            }
            Self::Gobgp => {
                gobgp(lab, &["global", "rib", "del", "198.19.2.0/24", "-a", "ipv4"])?;
                gobgp(lab, &["global", "rib", "del", "2001:db8:102::/48", "-a", "ipv6"])?;
            }
        }
        Ok(())
    }

    /// Asks the peer to re-read our routes: it sends ROUTE-REFRESH for IPv4 and IPv6 unicast.
    /// `false`: the peer has no command for that (GoBGP's `softresetin` re-applies the routes
    /// it kept and sends nothing, pkg/server/server.go `softResetIn`).
    pub fn refresh_in(self, lab: &Lab, neighbor: Neighbor) -> Result<bool> {
        match self {
            Self::Bird => birdc(lab, &["reload", "in", neighbor.bird_protocol()]).map(|_| true),
            Self::Frr => {
                for family in ["ipv4", "ipv6"] {
                    let command = format!("clear bgp {family} unicast {} soft in", neighbor.address());
                    vtysh(lab, &[command.as_str()])?;
                }
                Ok(true)
            }
            Self::Gobgp => Ok(false),
        }
    }

    /// Administratively shuts the session down: the peer sends Cease/Administrative Shutdown.
    pub fn shutdown(self, lab: &Lab, neighbor: Neighbor) -> Result<()> {
        match self {
            Self::Bird => birdc(lab, &["disable", neighbor.bird_protocol(), "\"weft golden\""]).map(drop),
            Self::Frr => {
                let command = format!("neighbor {} shutdown message weft golden", neighbor.address());
                vtysh(lab, &["configure terminal", "router bgp 4200000001", command.as_str()]).map(drop)
            }
            Self::Gobgp => gobgp(
                lab,
                &["neighbor", neighbor.address(), "disable", "--reason", "weft golden"],
            )
            .map(drop),
        }
    }

    /// Undoes [`Peer::shutdown`].
    pub fn enable(self, lab: &Lab, neighbor: Neighbor) -> Result<()> {
        match self {
            Self::Bird => birdc(lab, &["enable", neighbor.bird_protocol()]).map(drop),
            Self::Frr => {
                let command = format!("no neighbor {} shutdown", neighbor.address());
                vtysh(lab, &["configure terminal", "router bgp 4200000001", command.as_str()]).map(drop)
            }
            Self::Gobgp => gobgp(lab, &["neighbor", neighbor.address(), "enable"]).map(drop),
        }
    }

    /// The peer's view of one of our prefixes, or `None` while it does not have it.
    pub fn route(self, lab: &Lab, prefix: &str) -> Option<String> {
        let ipv6 = prefix.contains(':');
        let output = match self {
            Self::Bird => birdc(lab, &["show", "route", "for", prefix, "all"]).ok()?,
            Self::Frr => {
                let command = format!("show bgp {} unicast {prefix}", if ipv6 { "ipv6" } else { "ipv4" });
                vtysh(lab, &[command.as_str()]).ok()?
            }
            Self::Gobgp => gobgp(
                lab,
                &["global", "rib", "-a", if ipv6 { "ipv6" } else { "ipv4" }, prefix],
            )
            .ok()?,
        };
        let network = prefix.split('/').next().unwrap_or(prefix);
        // BIRD marks the selected route with `*`, FRR says `best`, GoBGP `*>`.
        let selected = match self {
            Self::Bird => output.contains("] * ("),
            Self::Frr => output.contains(", best"),
            Self::Gobgp => output.contains("*>"),
        };
        (output.contains(network) && selected).then_some(output)
    }
}

impl Peer {
    /// What the peer says about the NOTIFICATION we sent it, once it has the Cease with our
    /// shutdown communication.
    pub fn heard_cease(self, lab: &Lab, neighbor: Neighbor) -> Option<String> {
        let report = match self {
            Self::Bird => birdc(lab, &["show", "protocols", "all", neighbor.bird_protocol()]).ok()?,
            Self::Frr => {
                let command = format!("show bgp neighbors {}", neighbor.address());
                vtysh(lab, &[command.as_str()]).ok()?
            }
            // `gobgp neighbor` does not show it; gobgpd logs it at debug level.
            Self::Gobgp => std::fs::read_to_string(lab.path("gobgpd.log")).ok()?,
        };
        let lines: Vec<&str> = report
            .lines()
            .filter(|line| {
                let lower = line.to_lowercase();
                let about_it = lower.contains("administrative shutdown") || lower.contains("weft golden");
                // gobgpd's log also holds the Cease it sent to the other neighbor.
                about_it && (self != Self::Gobgp || line.contains(neighbor.address()))
            })
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

fn birdc(lab: &Lab, args: &[&str]) -> Result<String> {
    let socket = lab.path("bird.ctl");
    let socket = socket.to_string_lossy();
    let mut all = vec!["-s", socket.as_ref()];
    all.extend_from_slice(args);
    lab.in_peer("birdc", &all)
}

fn vtysh(lab: &Lab, commands: &[&str]) -> Result<String> {
    let socket = lab.path("frr");
    let socket = socket.to_string_lossy();
    let mut all = vec!["--vty_socket", socket.as_ref()];
    for command in commands {
        all.push("-c");
        all.push(command);
    }
    lab.in_peer("vtysh", &all)
}

fn gobgp(lab: &Lab, args: &[&str]) -> Result<String> {
    lab.in_peer("gobgp", args)
}

fn start_bird(lab: &mut Lab) -> Result<()> {
    let log = lab.path("bird.log");
    let config = format!(
        r#"router id {PEER_V4};
log "{log}" all;
protocol device {{ scan time 5; }}
protocol static static4 {{ ipv4; route 198.19.1.0/24 blackhole; }}
protocol static static4w {{ ipv4; route 198.19.2.0/24 blackhole; }}
protocol static static6 {{ ipv6; route 2001:db8:101::/48 blackhole; }}
protocol static static6w {{ ipv6; route 2001:db8:102::/48 blackhole; }}
filter weft_out {{
  if source != RTS_STATIC then reject;
  bgp_community.add((65000, 1));
  bgp_large_community.add((4200000001, 1, 2));
  bgp_med = 50;
  accept;
}}
template bgp weft {{
  local {PEER_V4} as {PEER_AS};
  passive on;
  hold time 90;
  connect retry time 5;
  error wait time 1, 5;
  graceful restart on;
  long lived graceful restart on;
  enable route refresh on;
  enable extended messages on;
}}
protocol bgp weft_ebgp from weft {{
  neighbor {US_V4} as {OUR_EBGP_AS};
  ipv4 {{ import all; export filter weft_out; add paths on; }};
  ipv6 {{ import all; export filter weft_out; add paths on; next hop address {PEER_V6}; }};
}}
protocol bgp weft_ibgp from weft {{
  local {PEER_V6} as {PEER_AS};
  neighbor {US_V6} as {PEER_AS};
  direct;
  ipv4 {{ import all; export filter weft_out; extended next hop on; gateway direct; }};
  ipv6 {{ import all; export filter weft_out; gateway direct; }};
}}
"#,
        log = log.display()
    );
    let config_path = lab.path("bird.conf");
    std::fs::write(&config_path, config)?;
    let (socket, pid_file) = (lab.path("bird.ctl"), lab.path("bird.pid"));
    lab.track_pid_file(pid_file.clone());
    lab.in_peer(
        "bird",
        &[
            "-c",
            &config_path.to_string_lossy(),
            "-s",
            &socket.to_string_lossy(),
            "-P",
            &pid_file.to_string_lossy(),
        ],
    )?;
    poll("birdc to answer", Duration::from_secs(10), || {
        birdc(lab, &["show", "status"])
            .ok()
            .filter(|status| status.contains("Daemon is up"))
    })?;
    Ok(())
}

fn start_frr(lab: &mut Lab) -> Result<()> {
    let dir = lab.path("frr");
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    std::fs::write(
        dir.join("zebra.conf"),
        format!("hostname weft-golden\nlog file {d}/zebra.log\n"),
    )?;
    let config = format!(
        "hostname weft-golden
log file {d}/bgpd.log
router bgp {PEER_AS}
 bgp router-id {PEER_V4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 bgp graceful-restart
 neighbor {US_V4} remote-as {OUR_EBGP_AS}
 neighbor {US_V4} passive
 neighbor {US_V4} advertisement-interval 0
 neighbor {US_V6} remote-as {PEER_AS}
 neighbor {US_V6} passive
 neighbor {US_V6} advertisement-interval 0
 neighbor {US_V6} capability extended-nexthop
 address-family ipv4 unicast
  network 198.19.1.0/24 route-map WEFT
  network 198.19.2.0/24 route-map WEFT
  neighbor {US_V4} activate
  neighbor {US_V4} addpath-tx-all-paths
  neighbor {US_V6} activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:101::/48 route-map WEFT
  network 2001:db8:102::/48 route-map WEFT
  neighbor {US_V4} activate
  neighbor {US_V4} addpath-tx-all-paths
  neighbor {US_V6} activate
 exit-address-family
!
route-map WEFT permit 10
 set community 65000:1
 set large-community 4200000001:1:2
 set metric 50
!
"
    );
    std::fs::write(dir.join("bgpd.conf"), config)?;
    run_chown(&dir)?;
    let vty = dir.to_string_lossy().into_owned();
    let zserv = format!("{vty}/zserv.api");
    for daemon in ["zebra", "bgpd"] {
        let pid_file = dir.join(format!("{daemon}.pid"));
        lab.track_pid_file(pid_file.clone());
        let config = dir.join(format!("{daemon}.conf"));
        lab.in_peer(
            &format!("/usr/lib/frr/{daemon}"),
            &[
                "-d",
                "-P",
                "0",
                "--vty_socket",
                &vty,
                "-z",
                &zserv,
                "-f",
                &config.to_string_lossy(),
                "-i",
                &pid_file.to_string_lossy(),
            ],
        )?;
        if daemon == "zebra" {
            poll("zebra's zserv socket", Duration::from_secs(10), || {
                std::path::Path::new(&zserv).exists().then_some(())
            })?;
        }
    }
    poll("vtysh to answer", Duration::from_secs(15), || {
        vtysh(lab, &["show bgp summary"])
            .ok()
            .filter(|summary| summary.contains(US_V4))
    })?;
    Ok(())
}

fn run_chown(dir: &std::path::Path) -> Result<()> {
    super::lab::run("chown", &["-R", "frr:frr", &dir.to_string_lossy()]).map(drop)
}

fn start_gobgp(lab: &mut Lab) -> Result<()> {
    let mut config = format!("[global.config]\n  as = {PEER_AS}\n  router-id = \"{PEER_V4}\"\n");
    for (address, asn, families) in [
        (US_V4, OUR_EBGP_AS, [("ipv4-unicast", true), ("ipv6-unicast", true)]),
        (US_V6, PEER_AS, [("ipv4-unicast", false), ("ipv6-unicast", false)]),
    ] {
        config.push_str(&format!(
            "[[neighbors]]
  [neighbors.config]
    neighbor-address = \"{address}\"
    peer-as = {asn}
  [neighbors.transport.config]
    passive-mode = true
  [neighbors.timers.config]
    connect-retry = 5
    hold-time = 90
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
"
        ));
        for (family, add_path) in families {
            config.push_str(&format!(
                "  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"{family}\"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"
            ));
            if add_path {
                config.push_str(
                    "    [neighbors.afi-safis.add-paths.config]
      receive = true
      send-max = 8
",
                );
            }
        }
    }
    let config_path = lab.path("gobgpd.toml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(lab.path("gobgpd.log"))?;
    // GoBGP puts the host's name in its FQDN capability: a UTS namespace of its own, named like
    // FRR's `hostname`, keeps the captured OPEN the same on every machine. `unshare` and `sh`
    // exec, so the child's pid is gobgpd's.
    let command = format!(
        "hostname weft-golden && exec gobgpd -f '{}' --api-hosts 127.0.0.1:50051 -l debug",
        config_path.display()
    );
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.peer_namespace,
            "unshare",
            "--uts",
            "sh",
            "-c",
            &command,
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    lab.track_child(child);
    poll("the gobgp API", Duration::from_secs(15), || {
        gobgp(lab, &["global"]).ok()
    })?;
    let attributes = ["community", "65000:1", "large-community", "4200000001:1:2", "med", "50"];
    for (prefix, family) in [
        ("198.19.1.0/24", "ipv4"),
        ("198.19.2.0/24", "ipv4"),
        ("2001:db8:101::/48", "ipv6"),
        ("2001:db8:102::/48", "ipv6"),
    ] {
        let mut args = vec!["global", "rib", "add", prefix];
        args.extend_from_slice(&attributes);
        args.extend_from_slice(&["-a", family]);
        gobgp(lab, &args)?;
    }
    Ok(())
}

//! Standalone configuration: the YAML file of `weft-bgpd --config FILE` (DESIGN.md, "BGP").
//!
//! Owns reading the file, rejecting unknown keys, and turning every value into its type with an
//! error that names the key (`peers[1].address: …`). The keys of DESIGN.md are a stable contract:
//!
//! ```yaml
//! asn: 65001                      # required; 4-octet AS numbers welcome
//! router_id: 198.19.0.2           # required; the BGP Identifier
//! listen_port: 179                # optional (default 179; 0: accept no connections)
//! listen_addresses: [198.19.0.2]  # optional (default: every address)
//! control_socket: /run/weft/bgpd.sock   # optional
//! metrics_listen: 127.0.0.1:9179  # optional: Prometheus `GET /metrics` (off by default)
//! cluster_id: 198.19.0.2          # optional: route reflection cluster id (default router_id)
//! originate: [198.18.1.0/26, "2001:db8:1::/64"]
//! kernel: { install: true, blackhole: true }  # optional: learned paths into the kernel (proto 87),
//!                                             # blackhole routes for the originated prefixes
//!                                             # max_paths: 8, ECMP next hops per route (1: none)
//! graceful_restart: { enabled: true, restart_time: 120, select_defer_time: 240 }   # optional,
//!                                 # this default (RFC 4724; select_defer_time: §4.1, after our restart)
//! peers:
//!   - address: 198.19.0.1
//!     asn: 65000
//!     password: secret            # optional: TCP MD5 (RFC 2385), at most 80 octets
//!     families: [ipv4-unicast, ipv6-unicast]   # optional, default both
//!     import: accept              # accept | reject | a policy's name; default reject for eBGP (RFC 8212)
//!     export: accept
//!     passive: false              # optional: wait for the peer to connect
//!     hold_time: 90               # optional: seconds, 0 or at least 3
//!     connect_retry_time: 5       # optional: seconds between connection attempts
//!     max_prefix: { limit: 1000, restart_time: 30 }   # optional: a Cease beyond the limit;
//!                                 # try again after restart_time seconds (without it: stay down)
//!     ttl_security: false         # optional: GTSM (RFC 5082), TTL 255 out, at least 254 in
//!     multihop: 2                 # optional, eBGP: the TTL to send with (default 1)
//!     source_address: 198.19.0.2  # optional: connect from this local address
//!     route_reflector_client: false   # optional, iBGP only: reflect routes to and from it
//!     send_hold_time: 480         # optional: seconds a peer may not read before it is dropped
//!                                 # (RFC 9687; default the larger of 480 and twice hold_time)
//!     next_hop_keep: false        # optional, eBGP only: learned routes keep their next hop
//!     extended_next_hop: false    # optional, IPv6 peers: IPv4 routes with IPv6 next hops (RFC 8950)
//!     extended_messages: false    # optional: messages up to 65535 octets (RFC 8654)
//!     advertisement_interval: 0   # optional: seconds between advertisements of one prefix
//!                                 # (RFC 4271 §9.2.1.1 MRAI; withdrawals never wait)
//! ```
//!
//! Named policies (`prefix_lists:`, `policies:`) are read by [`crate::policy_config`].
//!
//! Must never: start anything, or accept a key it does not act on: a configuration that asks for
//! something weft cannot do yet is an error, not a silent no-op.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use weft_bgp_proto::AddressType;
use weft_bgp_proto::export::Policy;
use weft_bgp_proto::policy::NamedPolicy;

use crate::policy_config::{self, RawStatement};

/// Where the control socket is when the file does not say.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/weft/bgpd.sock";
/// The BGP port (RFC 4271 §8.2.1).
pub const DEFAULT_LISTEN_PORT: u16 = 179;
/// Hold time we propose when the file does not say (RFC 4271 §10 suggests 90 s).
pub const DEFAULT_HOLD_TIME: u16 = 90;
/// Most next hops of one kernel route when the file does not say (FRR's `maximum-paths`
/// allows up to 64 and suggests a handful; two ToRs per rack need 2).
pub const DEFAULT_MAX_PATHS: usize = 8;
/// The kernel's limit on next hops of one route (`fib_info` holds at most 256 hops in practice).
pub const MAX_MAX_PATHS: u32 = 256;
/// The graceful restart Restart Time we advertise when the file does not say (RFC 4724 §3
/// suggests at most the hold time; FRR and GoBGP default to 120).
pub const DEFAULT_RESTART_TIME: u16 = 120;
/// After our own restart, how long route selection waits for the peers' End-of-RIB at most
/// (RFC 4724 §4.1's Selection_Deferral_Timer), seconds, when the file does not say: BIRD's
/// `graceful restart wait` default, which Calico's nodes run with. It counts the peers BIRD
/// counts (a configured peer not up yet too), and a mesh peer on a node that is down holds a
/// restarted node's advertisements this long: FRR's 360 s would be half as long again.
pub const DEFAULT_SELECT_DEFER_TIME: u16 = 240;
/// The longest `graceful_restart.select_defer_time` (FRR's limit too).
pub const MAX_SELECT_DEFER_TIME: u16 = 3600;
/// The send hold time when the file does not say, seconds (RFC 9687 §3: at least 8 minutes).
pub const DEFAULT_SEND_HOLD_TIME: u64 = 480;
/// Seconds between connection attempts when the file does not say. RFC 4271 §10 suggests 120;
/// weft uses GoBGP's 5 so that a lab converges in seconds after a peer comes up late.
pub const DEFAULT_CONNECT_RETRY_TIME: u64 = 5;
/// Longest MinRouteAdvertisementIntervalTimer, seconds (RFC 4271 §10 suggests 30 for eBGP;
/// more than ten minutes is a mistake, not a policy).
pub const MAX_ADVERTISEMENT_INTERVAL: u64 = 600;

/// A configuration error, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not YAML of the expected shape (unknown key, wrong type, missing key); `key` is the key
    /// whose value is wrong, when the error points at a value.
    #[error("{}{source}", key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Syntax {
        /// The key of the offending value, as written on its line.
        key: Option<String>,
        /// The parser's error, with line, column and a snippet.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A value is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `peers[0].address`.
        key: String,
        /// What is wrong, as a sentence.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    asn: u32,
    router_id: String,
    listen_port: Option<u16>,
    #[serde(default)]
    listen_addresses: Vec<String>,
    control_socket: Option<PathBuf>,
    metrics_listen: Option<String>,
    cluster_id: Option<String>,
    #[serde(default)]
    originate: Vec<String>,
    kernel: Option<RawKernel>,
    graceful_restart: Option<RawGracefulRestart>,
    #[serde(default)]
    prefix_lists: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    policies: BTreeMap<String, Vec<RawStatement>>,
    #[serde(default)]
    peers: Vec<RawPeer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGracefulRestart {
    enabled: Option<bool>,
    restart_time: Option<u16>,
    select_defer_time: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    #[serde(default)]
    install: bool,
    #[serde(default)]
    blackhole: bool,
    max_paths: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    address: String,
    asn: u32,
    password: Option<String>,
    families: Option<Vec<String>>,
    import: Option<String>,
    export: Option<String>,
    #[serde(default)]
    passive: bool,
    hold_time: Option<u16>,
    connect_retry_time: Option<u64>,
    max_prefix: Option<RawMaxPrefix>,
    #[serde(default)]
    ttl_security: bool,
    multihop: Option<u16>,
    source_address: Option<String>,
    #[serde(default)]
    route_reflector_client: bool,
    send_hold_time: Option<u64>,
    #[serde(default)]
    next_hop_keep: bool,
    #[serde(default)]
    extended_next_hop: bool,
    #[serde(default)]
    extended_messages: bool,
    advertisement_interval: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaxPrefix {
    limit: u64,
    restart_time: Option<u64>,
}

/// The daemon's configuration, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our AS.
    pub asn: u32,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// TCP port to accept connections on; 0 accepts none.
    pub listen_port: u16,
    /// The local addresses connections are accepted on; empty: every address (cluster mode's
    /// `bindMode: NodeIP` gives the node's BGP addresses).
    pub listen_addresses: Vec<IpAddr>,
    /// The unix control socket.
    pub control_socket: PathBuf,
    /// Where `GET /metrics` is served (Prometheus); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The route reflection cluster id (RFC 4456); the router id unless configured.
    pub cluster_id: Ipv4Addr,
    /// Prefixes this speaker originates (in the file: `originate: [CIDR, …]`, with neither
    /// communities nor, unless `kernel.blackhole`, blackholes).
    pub originate: Vec<Originated>,
    /// Install the best learned paths into the kernel's main table.
    pub kernel_install: bool,
    /// Back every originated prefix with a blackhole route (traffic to an unused address of
    /// the node's own block is dropped here instead of following a default route out).
    pub kernel_blackhole: bool,
    /// Most next hops of one kernel route: equal best paths from several peers are installed
    /// together (ECMP); 1 installs the best path alone.
    pub kernel_max_paths: usize,
    /// Graceful restart (RFC 4724), both as helper and as restarting speaker: the Restart Time
    /// we advertise, in seconds; `None`: off.
    pub graceful_restart: Option<u16>,
    /// After our own restart (graceful restart on, kernel routes kept): the longest route
    /// selection waits for the peers' End-of-RIB before weft advertises and reconciles the
    /// kernel anyway, seconds (RFC 4724 §4.1 Selection_Deferral_Timer).
    pub select_defer_time: u16,
    /// Configured neighbours.
    pub peers: Vec<PeerConfig>,
}

/// One originated prefix and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originated {
    /// The prefix.
    pub prefix: IpNet,
    /// Communities (RFC 1997) attached to its path.
    pub communities: Vec<u32>,
    /// Large communities (RFC 8092) attached to its path.
    pub large_communities: Vec<[u32; 3]>,
    /// Backed by a blackhole route in the kernel (with `kernel.blackhole`).
    pub blackhole: bool,
}

impl Originated {
    /// A prefix without communities.
    pub fn plain(prefix: IpNet, blackhole: bool) -> Self {
        Self {
            prefix,
            communities: Vec::new(),
            large_communities: Vec::new(),
            blackhole,
        }
    }
}

/// The prefixes of `originate` that get a blackhole route.
pub fn blackholes(originate: &[Originated]) -> Vec<IpNet> {
    originate
        .iter()
        .filter(|originated| originated.blackhole)
        .map(|originated| originated.prefix)
        .collect()
}

/// A TCP MD5 key; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub Vec<u8>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// One configured neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Its address: where we connect, and whom we accept.
    pub address: IpAddr,
    /// Its AS.
    pub asn: u32,
    /// The TCP MD5 key (RFC 2385), if any.
    pub password: Option<Password>,
    /// Families offered on the session.
    pub families: Vec<AddressType>,
    /// Import policy.
    pub import: Policy,
    /// Export policy.
    pub export: Policy,
    /// Wait for the peer to connect (RFC 4271 §8.1.1 PassiveTcpEstablishment).
    pub passive: bool,
    /// Hold time we propose, seconds.
    pub hold_time: u16,
    /// Time between connection attempts.
    pub connect_retry_time: Duration,
    /// Most prefixes the peer may advertise, if limited.
    pub max_prefix: Option<MaxPrefix>,
    /// GTSM (RFC 5082): send with TTL 255, drop what arrives below 254.
    pub ttl_security: bool,
    /// eBGP multihop: the TTL to send with, for a peer more than one hop away.
    pub multihop: Option<u8>,
    /// The local address outgoing connections are made from.
    pub source_address: Option<IpAddr>,
    /// The peer is our route reflection client (RFC 4456), iBGP only.
    pub route_reflector_client: bool,
    /// How long a write may wait for the peer to read before the session is dropped (RFC 9687).
    pub send_hold_time: Duration,
    /// The graceful restart Restart Time advertised to this peer instead of the speaker's
    /// (cluster mode: `BGPPeer.maxRestartTimeSeconds`); `None`: the speaker's.
    pub restart_time: Option<u16>,
    /// eBGP only: learned routes go to this peer with their own NEXT_HOP, not ours (cluster
    /// mode: `BGPPeer.keepOriginalNextHop`).
    pub next_hop_keep: bool,
    /// Offer the extended next hop capability for IPv4 unicast with IPv6 next hops (RFC 8950):
    /// IPv4 routes both ways over this IPv6 session.
    pub extended_next_hop: bool,
    /// Offer extended messages (RFC 8654): UPDATEs up to 65535 octets both ways.
    pub extended_messages: bool,
    /// MinRouteAdvertisementIntervalTimer (RFC 4271 §9.2.1.1); zero: advertisements go at once.
    pub advertisement_interval: Duration,
}

/// A limit on what one peer may advertise (a leak or a flood ends the session, not the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPrefix {
    /// Most prefixes in the peer's Adj-RIB-In, both families together; one more ends the
    /// session with a Cease, Maximum Number of Prefixes Reached (RFC 4486).
    pub limit: usize,
    /// When to try again; `None`: the peer stays down until weft-bgpd restarts.
    pub restart_time: Option<Duration>,
}

impl Config {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|source| ConfigError::Syntax {
            key: key_at(text, &source),
            source: Box::new(source),
        })?;
        check_asn("asn", raw.asn)?;
        let router_id: Ipv4Addr = raw
            .router_id
            .parse()
            .map_err(|_| invalid("router_id", format!("`{}` is not an IPv4 address", raw.router_id)))?;
        if router_id.is_unspecified() || router_id.is_multicast() || router_id.is_broadcast() {
            return Err(invalid(
                "router_id",
                format!("{router_id} is not a valid BGP Identifier"),
            ));
        }
        let metrics_listen = match raw.metrics_listen {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "metrics_listen",
                    format!("`{text}` is not ADDRESS:PORT (e.g. 127.0.0.1:9179 or \"[::]:9179\")"),
                )
            })?),
        };
        let cluster_id = match raw.cluster_id {
            None => router_id,
            Some(text) => text
                .parse::<Ipv4Addr>()
                .ok()
                .filter(|id| !id.is_unspecified())
                .ok_or_else(|| {
                    invalid(
                        "cluster_id",
                        format!("`{text}` is not a cluster id (a non-zero IPv4 address)"),
                    )
                })?,
        };
        let mut listen_addresses = Vec::new();
        for (i, text) in raw.listen_addresses.iter().enumerate() {
            let key = format!("listen_addresses[{i}]");
            let address: IpAddr = text
                .parse()
                .map_err(|_| invalid(&key, format!("`{text}` is not an IP address")))?;
            if address.is_unspecified() || address.is_multicast() {
                return Err(invalid(
                    &key,
                    format!("{address} is not an address of this host (leave listen_addresses out for every address)"),
                ));
            }
            if !listen_addresses.contains(&address) {
                listen_addresses.push(address);
            }
        }
        let kernel_blackhole = raw.kernel.as_ref().is_some_and(|kernel| kernel.blackhole);
        let mut originate = Vec::new();
        let mut seen = HashSet::new();
        for (i, text) in raw.originate.iter().enumerate() {
            let key = format!("originate[{i}]");
            let prefix: IpNet = text
                .parse()
                .map_err(|_| invalid(&key, format!("`{text}` is not a prefix (ADDRESS/LENGTH)")))?;
            if prefix.trunc() != prefix {
                return Err(invalid(
                    &key,
                    format!("{prefix} has host bits set; did you mean {}?", prefix.trunc()),
                ));
            }
            if seen.insert(prefix) {
                originate.push(Originated::plain(prefix, kernel_blackhole));
            }
        }
        let kernel_max_paths = match raw.kernel.as_ref().and_then(|kernel| kernel.max_paths) {
            None => DEFAULT_MAX_PATHS,
            Some(n @ 1..=MAX_MAX_PATHS) => n as usize,
            Some(n) => {
                return Err(invalid(
                    "kernel.max_paths",
                    format!("{n} is out of range: give 1 (no ECMP) to {MAX_MAX_PATHS}"),
                ));
            }
        };
        let select_defer_time = match raw
            .graceful_restart
            .as_ref()
            .and_then(|restart| restart.select_defer_time)
        {
            None => DEFAULT_SELECT_DEFER_TIME,
            Some(time @ 1..=MAX_SELECT_DEFER_TIME) => time,
            Some(time) => {
                return Err(invalid(
                    "graceful_restart.select_defer_time",
                    format!("{time} is out of range: 1 to {MAX_SELECT_DEFER_TIME} seconds"),
                ));
            }
        };
        let graceful_restart = match raw.graceful_restart {
            None => Some(DEFAULT_RESTART_TIME),
            Some(RawGracefulRestart {
                enabled: Some(false), ..
            }) => None,
            Some(RawGracefulRestart { restart_time, .. }) => match restart_time.unwrap_or(DEFAULT_RESTART_TIME) {
                time @ 1..=4095 => Some(time),
                time => {
                    return Err(invalid(
                        "graceful_restart.restart_time",
                        format!("{time} is out of range: 1 to 4095 seconds (12 bits, RFC 4724 §3)"),
                    ));
                }
            },
        };
        let mut peers = Vec::new();
        let mut addresses = HashSet::new();
        let lists = policy_config::prefix_lists(raw.prefix_lists)?;
        let policies = policy_config::policies(raw.policies, &lists)?;
        for (i, raw_peer) in raw.peers.into_iter().enumerate() {
            let peer = check_peer(i, raw_peer, raw.asn, &policies)?;
            if !addresses.insert(peer.address) {
                return Err(invalid(
                    format!("peers[{i}].address"),
                    format!("{} is configured twice", peer.address),
                ));
            }
            peers.push(peer);
        }
        Ok(Self {
            asn: raw.asn,
            router_id,
            listen_port: raw.listen_port.unwrap_or(DEFAULT_LISTEN_PORT),
            listen_addresses,
            control_socket: raw
                .control_socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
            metrics_listen,
            cluster_id,
            originate,
            kernel_install: raw.kernel.as_ref().is_some_and(|kernel| kernel.install),
            kernel_blackhole,
            kernel_max_paths,
            graceful_restart,
            select_defer_time,
            peers,
        })
    }
}

/// The key on the line a parse error points at, if the error points at its value
/// (`  asn: lots` with the column on `lots` gives `asn`).
fn key_at(text: &str, error: &serde_saphyr::Error) -> Option<String> {
    let location = error.location()?;
    let line = text
        .lines()
        .nth(usize::try_from(location.line()).ok()?.checked_sub(1)?)?;
    let colon = line.find(": ")?;
    let column = usize::try_from(location.column()).ok()?.checked_sub(1)?;
    let value_start = line.char_indices().nth(column).map_or(line.len(), |(i, _)| i);
    if value_start <= colon {
        return None;
    }
    let key = line[..colon].trim_start().trim_start_matches("- ").trim();
    (!key.is_empty()).then(|| key.to_owned())
}

fn check_asn(key: &str, asn: u32) -> Result<(), ConfigError> {
    match asn {
        0 => Err(invalid(key, "AS 0 is reserved (RFC 7607)")),
        23456 => Err(invalid(key, "AS 23456 is AS_TRANS, not a real AS (RFC 6793)")),
        _ => Ok(()),
    }
}

fn check_policy(
    key: &str,
    value: Option<String>,
    internal: bool,
    policies: &BTreeMap<String, Arc<NamedPolicy>>,
) -> Result<Policy, ConfigError> {
    match value.as_deref() {
        None => Ok(Policy::default_for(internal)),
        Some("accept") => Ok(Policy::Accept),
        Some("reject") => Ok(Policy::Reject),
        Some(name) => match policies.get(name) {
            Some(policy) => Ok(Policy::Named(policy.clone())),
            None => Err(invalid(
                key,
                format!("policy `{name}` is not defined (define it under policies:, or use accept or reject)"),
            )),
        },
    }
}

fn check_peer(
    i: usize,
    raw: RawPeer,
    local_asn: u32,
    policies: &BTreeMap<String, Arc<NamedPolicy>>,
) -> Result<PeerConfig, ConfigError> {
    let key = |field: &str| format!("peers[{i}].{field}");
    let address: IpAddr = raw
        .address
        .parse()
        .map_err(|_| invalid(key("address"), format!("`{}` is not an IP address", raw.address)))?;
    if address.is_unspecified() || address.is_multicast() {
        return Err(invalid(key("address"), format!("{address} cannot be a peer")));
    }
    check_asn(&key("asn"), raw.asn)?;
    let password = match raw.password {
        None => None,
        Some(text) if text.is_empty() => return Err(invalid(key("password"), "must not be empty")),
        Some(text) if text.len() > crate::md5::MAX_KEY_LENGTH => {
            return Err(invalid(
                key("password"),
                format!("is {} octets; TCP MD5 keys are at most 80", text.len()),
            ));
        }
        Some(text) => Some(Password(text.into_bytes())),
    };
    let families = match raw.families {
        None => vec![AddressType::Ipv4Unicast, AddressType::Ipv6Unicast],
        Some(names) => {
            let mut families = Vec::new();
            for (j, name) in names.iter().enumerate() {
                let family = match name.as_str() {
                    "ipv4-unicast" => AddressType::Ipv4Unicast,
                    "ipv6-unicast" => AddressType::Ipv6Unicast,
                    other => {
                        return Err(invalid(
                            format!("peers[{i}].families[{j}]"),
                            format!("`{other}` is not a family weft carries (ipv4-unicast, ipv6-unicast)"),
                        ));
                    }
                };
                if !families.contains(&family) {
                    families.push(family);
                }
            }
            if families.is_empty() {
                return Err(invalid(key("families"), "at least one family is needed"));
            }
            families
        }
    };
    let internal = raw.asn == local_asn;
    let hold_time = raw.hold_time.unwrap_or(DEFAULT_HOLD_TIME);
    if matches!(hold_time, 1 | 2) {
        return Err(invalid(
            key("hold_time"),
            "must be 0 or at least 3 seconds (RFC 4271 §4.2)",
        ));
    }
    let connect_retry_time = raw.connect_retry_time.unwrap_or(DEFAULT_CONNECT_RETRY_TIME);
    if connect_retry_time == 0 {
        return Err(invalid(key("connect_retry_time"), "must be at least 1 second"));
    }
    let max_prefix = match raw.max_prefix {
        None => None,
        Some(RawMaxPrefix { limit: 0, .. }) => {
            return Err(invalid(
                key("max_prefix.limit"),
                "must be at least 1 (leave max_prefix out for no limit)",
            ));
        }
        Some(RawMaxPrefix {
            restart_time: Some(0), ..
        }) => {
            return Err(invalid(
                key("max_prefix.restart_time"),
                "must be at least 1 second (leave it out to stay down)",
            ));
        }
        Some(RawMaxPrefix { limit, restart_time }) => Some(MaxPrefix {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            restart_time: restart_time.map(Duration::from_secs),
        }),
    };
    let multihop = match raw.multihop {
        None => None,
        Some(_) if internal => {
            return Err(invalid(
                key("multihop"),
                "is for eBGP peers; iBGP sessions are sent with TTL 64 already",
            ));
        }
        Some(_) if raw.ttl_security => {
            return Err(invalid(
                key("multihop"),
                "cannot be combined with ttl_security (GTSM expects a peer one hop away)",
            ));
        }
        Some(hops @ 1..=255) => Some(u8::try_from(hops).unwrap_or(u8::MAX)),
        Some(hops) => {
            return Err(invalid(
                key("multihop"),
                format!("{hops} is out of range: 1 to 255 hops"),
            ));
        }
    };
    if raw.next_hop_keep && internal {
        return Err(invalid(
            key("next_hop_keep"),
            "is for eBGP peers; iBGP peers get a learned route's own next hop already",
        ));
    }
    if raw.extended_next_hop && (address.is_ipv4() || !families.contains(&AddressType::Ipv4Unicast)) {
        return Err(invalid(
            key("extended_next_hop"),
            "carries IPv4 routes with IPv6 next hops: the peer needs an IPv6 address and ipv4-unicast among its families",
        ));
    }
    let advertisement_interval = match raw.advertisement_interval.unwrap_or(0) {
        seconds @ 0..=MAX_ADVERTISEMENT_INTERVAL => Duration::from_secs(seconds),
        seconds => {
            return Err(invalid(
                key("advertisement_interval"),
                format!("{seconds} s is out of range: 0 to {MAX_ADVERTISEMENT_INTERVAL} seconds"),
            ));
        }
    };
    if raw.route_reflector_client && !internal {
        return Err(invalid(
            key("route_reflector_client"),
            "route reflection is for iBGP peers (RFC 4456); this peer is in another AS",
        ));
    }
    // RFC 9687 §3: the larger of 8 minutes and twice the hold time, unless configured.
    let send_hold_time = match raw.send_hold_time {
        Some(0) => return Err(invalid(key("send_hold_time"), "must be at least 1 second")),
        Some(seconds) => seconds,
        None => DEFAULT_SEND_HOLD_TIME.max(2 * u64::from(hold_time)),
    };
    let source_address = match raw.source_address {
        None => None,
        Some(text) => {
            let source: IpAddr = text
                .parse()
                .map_err(|_| invalid(key("source_address"), format!("`{text}` is not an IP address")))?;
            if source.is_ipv4() != address.is_ipv4() {
                return Err(invalid(
                    key("source_address"),
                    format!("{source} and the peer's {address} are not of the same family"),
                ));
            }
            Some(source)
        }
    };
    Ok(PeerConfig {
        address,
        asn: raw.asn,
        password,
        families,
        import: check_policy(&key("import"), raw.import, internal, policies)?,
        export: check_policy(&key("export"), raw.export, internal, policies)?,
        passive: raw.passive,
        hold_time,
        connect_retry_time: Duration::from_secs(connect_retry_time),
        max_prefix,
        ttl_security: raw.ttl_security,
        multihop,
        source_address,
        route_reflector_client: raw.route_reflector_client,
        send_hold_time: Duration::from_secs(send_hold_time),
        restart_time: None,
        next_hop_keep: raw.next_hop_keep,
        extended_next_hop: raw.extended_next_hop,
        extended_messages: raw.extended_messages,
        advertisement_interval,
    })
}

#[cfg(test)]
mod tests;

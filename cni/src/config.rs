//! The plugin object of a network configuration that names `weft-cni` (DESIGN.md "CNI",
//! configuration contract). Pure: parsing and checking only; every problem names its key.
//!
//! ```json
//! { "type": "weft-cni",
//!   "store": "file:/var/lib/weft/store",      // default
//!   "mtu": 1500,                               // default: the kernel's veth default
//!   "nodename": "node-1",                      // default: the host name
//!   "lock_file": "/run/weft/ipam.lock",        // shared with weft-ipam: one allocator per host
//!   "log_file": "/var/log/weft/cni.log", "log_level": "info",
//!   "ipam": { "type": "weft-ipam", "pools": ["198.18.0.0/16", "2001:db8:100::/56"] } }
//! ```
//!
//! Addresses come from the ipam library with `gateway: none` semantics: host addresses (/32,
//! /128), the pod's gateway is 169.254.1.1 (IPv4) and the host veth's link-local (IPv6).

use std::collections::HashMap;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::Value;
use weft_ipam::cni::config::{DEFAULT_LOCK_FILE, DEFAULT_STORE};

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn error(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// What `weft-cni` reads from its plugin object.
#[derive(Debug, Clone, PartialEq)]
pub struct CniConfig {
    pub store: String,
    pub mtu: Option<u32>,
    pub nodename: Option<String>,
    pub lock_file: PathBuf,
    pub log_file: Option<PathBuf>,
    pub log_level: String,
    /// Pools to allocate from; empty: every enabled pool for the node.
    pub pools: Vec<IpNet>,
    pub assign_ipv4: bool,
    pub assign_ipv6: bool,
}

/// Keys of the plugin object besides the spec's own (`cniVersion`, `name`, `type`, `ipam`, …).
const KNOWN: [&str; 6] = ["store", "mtu", "nodename", "lock_file", "log_file", "log_level"];
const KNOWN_IPAM: [&str; 3] = ["pools", "assign_ipv4", "assign_ipv6"];

fn string(custom: &HashMap<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
    match custom.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(other) => Err(error(key, format!("must be a non-empty string, not {other}"))),
    }
}

fn boolean(custom: &HashMap<String, Value>, key: &str) -> Result<Option<bool>, ConfigError> {
    match custom.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(error(key, format!("must be true or false, not {other}"))),
    }
}

impl CniConfig {
    /// Reads the plugin object's own keys (`custom`) and its `ipam` section (`None`: absent).
    pub fn parse(
        plugin_type: &str,
        custom: &HashMap<String, Value>,
        ipam: Option<(&str, &HashMap<String, Value>)>,
    ) -> Result<CniConfig, ConfigError> {
        if plugin_type != "weft-cni" {
            return Err(error("type", format!("{plugin_type:?} is not \"weft-cni\"")));
        }
        let mut unknown: Vec<&String> = custom.keys().filter(|key| !KNOWN.contains(&key.as_str())).collect();
        unknown.sort();
        if let Some(key) = unknown.first() {
            return Err(error(key, format!("unknown key (weft-cni takes {})", KNOWN.join(", "))));
        }
        let mtu = match custom.get("mtu") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_u64() {
                Some(mtu @ 576..=65535) => Some(mtu as u32),
                _ => return Err(error("mtu", format!("must be a number from 576 to 65535, not {value}"))),
            },
        };
        let log_level = string(custom, "log_level")?.unwrap_or_else(|| "info".to_owned());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(error(
                "log_level",
                format!("{log_level:?} is not error, warn, info, debug or trace"),
            ));
        }
        let (ipam_type, ipam) =
            ipam.ok_or_else(|| error("ipam", "missing: weft-cni needs {\"type\": \"weft-ipam\"}"))?;
        match ipam_type {
            "weft-ipam" => {}
            other => {
                return Err(error(
                    "ipam.type",
                    format!("must be \"weft-ipam\" (weft-cni allocates itself), not {other:?}"),
                ));
            }
        }
        let mut unknown_ipam: Vec<&String> = ipam.keys().filter(|key| !KNOWN_IPAM.contains(&key.as_str())).collect();
        unknown_ipam.sort();
        if let Some(key) = unknown_ipam.first() {
            return Err(error(
                &format!("ipam.{key}"),
                format!("unknown key (weft-cni's ipam section takes {})", KNOWN_IPAM.join(", ")),
            ));
        }
        let pools: Vec<IpNet> = match ipam.get("pools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .and_then(|s| s.parse::<IpNet>().ok())
                        .ok_or_else(|| error("ipam.pools", format!("{item} is not a CIDR like \"198.18.0.0/16\"")))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(error("ipam.pools", format!("must be a list of CIDRs, not {other}"))),
        };
        let (default_v4, default_v6) = if pools.is_empty() {
            (true, false)
        } else {
            (
                pools.iter().any(|p| p.addr().is_ipv4()),
                pools.iter().any(|p| p.addr().is_ipv6()),
            )
        };
        let assign_ipv4 = boolean(ipam, "assign_ipv4")
            .map_err(|e| error("ipam.assign_ipv4", e.problem))?
            .unwrap_or(default_v4);
        let assign_ipv6 = boolean(ipam, "assign_ipv6")
            .map_err(|e| error("ipam.assign_ipv6", e.problem))?
            .unwrap_or(default_v6);
        if !assign_ipv4 && !assign_ipv6 {
            return Err(error(
                "ipam.assign_ipv4",
                "and ipam.assign_ipv6 are both false: nothing to assign",
            ));
        }
        Ok(CniConfig {
            store: string(custom, "store")?.unwrap_or_else(|| DEFAULT_STORE.to_owned()),
            mtu,
            nodename: string(custom, "nodename")?,
            lock_file: string(custom, "lock_file")?
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE)),
            log_file: string(custom, "log_file")?.map(PathBuf::from),
            log_level,
            pools,
            assign_ipv4,
            assign_ipv6,
        })
    }
}

/// The host side's name: `wft` and 11 hex digits of a hash of the attachment (14 bytes, under
/// Linux's 15). FNV-1a, so the name is the same in every build and every process.
pub fn host_interface_name(network: &str, container: &str, ifname: &str) -> String {
    format!(
        "wft{:011x}",
        attachment_hash(network, container, ifname) & 0xfff_ffff_ffff
    )
}

/// A stable 64-bit hash of the attachment (FNV-1a).
pub fn attachment_hash(network: &str, container: &str, ifname: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [network, container, ifname].join("\0").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The pod side's MAC: locally administered, unicast, from the attachment, so a repeated ADD
/// gives the same result.
pub fn pod_mac(network: &str, container: &str, ifname: &str) -> [u8; 6] {
    let hash = attachment_hash(network, container, ifname).to_be_bytes();
    [0x0a, hash[0], hash[1], hash[2], hash[3], hash[4]]
}

/// The WorkloadEndpoint's name: node, pod (or container) and interface, in DNS-label form.
pub fn endpoint_name(node: &str, pod: &str, ifname: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    let name = format!("{}--{}--{}", clean(node), clean(pod), clean(ifname));
    if name.len() <= 253 {
        name
    } else {
        format!("{}-{:016x}", &name[..200], attachment_hash(node, pod, ifname))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn map(value: Value) -> HashMap<String, Value> {
        serde_json::from_value(value).unwrap()
    }

    /// Parses as rscni hands the sections over: `ipam.type` apart from the rest.
    fn parse(custom: Value, ipam: Value) -> Result<CniConfig, ConfigError> {
        let mut ipam = map(ipam);
        let ipam_type = ipam
            .remove("type")
            .and_then(|t| t.as_str().map(str::to_owned))
            .unwrap_or_default();
        CniConfig::parse("weft-cni", &map(custom), Some((&ipam_type, &ipam)))
    }

    #[test]
    fn defaults_use_the_default_store_and_every_pool_for_ipv4() {
        let config = parse(serde_json::json!({}), serde_json::json!({"type": "weft-ipam"})).unwrap();
        assert_eq!(config.store, DEFAULT_STORE);
        assert!(config.assign_ipv4 && !config.assign_ipv6 && config.pools.is_empty());
        assert_eq!(config.mtu, None);
    }

    #[test]
    fn every_bad_key_is_named() {
        let ipam = serde_json::json!({"type": "weft-ipam"});
        let cases = [
            (serde_json::json!({"mtu": 70000}), ipam.clone(), "mtu: must be a number"),
            (serde_json::json!({"mtu": "big"}), ipam.clone(), "mtu: must be a number"),
            (serde_json::json!({"stroe": "x"}), ipam.clone(), "stroe: unknown key"),
            (
                serde_json::json!({"store": 1}),
                ipam.clone(),
                "store: must be a non-empty string",
            ),
            (serde_json::json!({"log_level": "loud"}), ipam.clone(), "log_level:"),
            (
                serde_json::json!({}),
                serde_json::json!({"type": "host-local"}),
                "ipam.type: must be",
            ),
            (
                serde_json::json!({}),
                serde_json::json!({"type": "weft-ipam", "pools": "all"}),
                "ipam.pools: must be a list",
            ),
            (
                serde_json::json!({}),
                serde_json::json!({"type": "weft-ipam", "pools": ["198.18.0.0/33"]}),
                "ipam.pools: \"198.18.0.0/33\"",
            ),
            (
                serde_json::json!({}),
                serde_json::json!({"type": "weft-ipam", "gateway": "block"}),
                "ipam.gateway: unknown key",
            ),
        ];
        for (custom, ipam, expected) in cases {
            let message = parse(custom.clone(), ipam.clone()).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{custom} {ipam}: {message}");
        }
        let missing = CniConfig::parse("weft-cni", &HashMap::new(), None).unwrap_err();
        assert_eq!(missing.key, "ipam");
        let wrong_type = CniConfig::parse("ptp", &HashMap::new(), None).unwrap_err();
        assert_eq!(wrong_type.key, "type");
    }

    #[test]
    fn named_pools_decide_the_families() {
        let config = parse(
            serde_json::json!({}),
            serde_json::json!({"type": "weft-ipam", "pools": ["198.18.0.0/24", "2001:db8:1::/64"]}),
        )
        .unwrap();
        assert!(config.assign_ipv4 && config.assign_ipv6);
    }

    #[test]
    fn host_interface_names_are_short_stable_and_distinct() {
        let a = host_interface_name("net", "ctr-a", "eth0");
        assert_eq!(a, host_interface_name("net", "ctr-a", "eth0"));
        assert_ne!(a, host_interface_name("net", "ctr-b", "eth0"));
        assert_ne!(a, host_interface_name("net", "ctr-a", "eth1"));
        assert!(a.starts_with("wft") && a.len() == 14, "{a}");
        assert_eq!(
            pod_mac("net", "ctr-a", "eth0")[0] & 0x03,
            0x02,
            "locally administered unicast"
        );
    }

    #[test]
    fn endpoint_names_are_dns_labels() {
        assert_eq!(endpoint_name("Node_1", "web.0", "eth0"), "node-1--web-0--eth0");
    }
}

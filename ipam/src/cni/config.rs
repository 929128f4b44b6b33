//! The `ipam` section of a network configuration that names `weft-ipam`, and the `CNI_ARGS`
//! it reads. Pure: parsing and checking only; every problem names the key.
//!
//! ```json
//! "ipam": {
//!   "type": "weft-ipam",
//!   "store": "file:/var/lib/weft/store",    // default
//!   "nodename": "node-1",                    // default: the host name
//!   "pools": ["198.18.0.0/16", "2001:db8:100::/56"],   // default: every pool for the node
//!   "assign_ipv4": true, "assign_ipv6": false,        // defaults, when no pools are named
//!   "gateway": "block",                      // or "none"; see below
//!   "lock_file": "/run/weft/ipam.lock",      // serialises allocations on the host
//!   "log_file": "/var/log/weft/ipam.log", "log_level": "info"
//! }
//! ```
//!
//! `gateway: block` (the default) suits plugins that put the pod on a subnet with a gateway
//! (the reference `ptp` and `bridge`): the pod gets its block's prefix and the block's second
//! address as gateway, and the block's network, gateway and (IPv4) broadcast addresses are
//! never handed to pods. Give such networks pools of their own. `gateway: none` returns host
//! addresses (/32, /128) without gateway or routes, as weft's own data path uses them.

use std::collections::HashMap;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::Value;

/// Where the datastore is when the configuration does not say.
pub const DEFAULT_STORE: &str = "file:/var/lib/weft/store";
pub const DEFAULT_LOCK_FILE: &str = "/run/weft/ipam.lock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayMode {
    Block,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IpamConfig {
    pub store: String,
    pub nodename: Option<String>,
    pub pools: Vec<IpNet>,
    pub assign_ipv4: bool,
    pub assign_ipv6: bool,
    pub gateway: GatewayMode,
    pub lock_file: PathBuf,
    pub log_file: Option<PathBuf>,
    pub log_level: String,
    /// Routes to put in the result, as host-local does (`[{"dst": "0.0.0.0/0"}]`).
    pub routes: Vec<(IpNet, Option<std::net::IpAddr>)>,
}

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ipam.{key}: {problem}")]
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
        // Calico writes these as strings.
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
        Some(other) => Err(error(key, format!("must be true or false, not {other}"))),
    }
}

impl IpamConfig {
    /// Reads the plugin-specific keys of the `ipam` section.
    pub fn parse(custom: &HashMap<String, Value>) -> Result<IpamConfig, ConfigError> {
        let known = [
            "store",
            "nodename",
            "pools",
            "assign_ipv4",
            "assign_ipv6",
            "gateway",
            "lock_file",
            "log_file",
            "log_level",
            "routes",
        ];
        if let Some(unknown) = custom.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(error(
                unknown,
                format!("unknown key (weft-ipam takes {})", known.join(", ")),
            ));
        }
        let pools = match custom.get("pools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .and_then(|s| s.parse::<IpNet>().ok())
                        .ok_or_else(|| error("pools", format!("{item} is not a CIDR like \"198.18.0.0/16\"")))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(error("pools", format!("must be a list of CIDRs, not {other}"))),
        };
        let (default_v4, default_v6) = if pools.is_empty() {
            (true, false)
        } else {
            (
                pools.iter().any(|p| p.addr().is_ipv4()),
                pools.iter().any(|p| p.addr().is_ipv6()),
            )
        };
        let gateway = match string(custom, "gateway")?.as_deref() {
            None | Some("block") => GatewayMode::Block,
            Some("none") => GatewayMode::None,
            Some(other) => return Err(error("gateway", format!("{other:?} is neither \"block\" nor \"none\""))),
        };
        let routes = match custom.get("routes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    let dst = item
                        .get("dst")
                        .and_then(Value::as_str)
                        .and_then(|d| d.parse::<IpNet>().ok())
                        .ok_or_else(|| error("routes", format!("{item} needs a \"dst\" CIDR")))?;
                    let gw = match item.get("gw") {
                        None | Some(Value::Null) => None,
                        Some(gw) => Some(
                            gw.as_str()
                                .and_then(|g| g.parse().ok())
                                .ok_or_else(|| error("routes", format!("{gw} is not an IP address")))?,
                        ),
                    };
                    Ok((dst, gw))
                })
                .collect::<Result<_, ConfigError>>()?,
            Some(other) => return Err(error("routes", format!("must be a list, not {other}"))),
        };
        let config = IpamConfig {
            routes,
            store: string(custom, "store")?.unwrap_or_else(|| DEFAULT_STORE.to_owned()),
            nodename: string(custom, "nodename")?,
            assign_ipv4: boolean(custom, "assign_ipv4")?.unwrap_or(default_v4),
            assign_ipv6: boolean(custom, "assign_ipv6")?.unwrap_or(default_v6),
            pools,
            gateway,
            lock_file: string(custom, "lock_file")?
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE)),
            log_file: string(custom, "log_file")?.map(PathBuf::from),
            log_level: string(custom, "log_level")?.unwrap_or_else(|| "info".to_owned()),
        };
        if !config.assign_ipv4 && !config.assign_ipv6 {
            return Err(error(
                "assign_ipv4",
                "and assign_ipv6 are both false: nothing to assign",
            ));
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&config.log_level.as_str()) {
            return Err(error(
                "log_level",
                format!("{:?} is not error, warn, info, debug or trace", config.log_level),
            ));
        }
        Ok(config)
    }
}

/// The Kubernetes pod a runtime names in `CNI_ARGS` (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Reads `K=V;K=V` pairs; unknown keys are ignored (runtimes pass `IgnoreUnknown=1` and more).
pub fn parse_cni_args(args: Option<&str>) -> PodRef {
    let mut pod = PodRef::default();
    for pair in args.unwrap_or_default().split(';') {
        match pair.split_once('=') {
            Some(("K8S_POD_NAMESPACE", value)) if !value.is_empty() => pod.namespace = Some(value.to_owned()),
            Some(("K8S_POD_NAME", value)) if !value.is_empty() => pod.name = Some(value.to_owned()),
            _ => {}
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn custom(value: Value) -> HashMap<String, Value> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn defaults_give_one_ipv4_address_from_the_default_store() {
        let config = IpamConfig::parse(&custom(serde_json::json!({}))).unwrap();
        assert_eq!(config.store, DEFAULT_STORE);
        assert!(config.assign_ipv4 && !config.assign_ipv6);
        assert_eq!(config.gateway, GatewayMode::Block);
        let with_routes = IpamConfig::parse(&custom(serde_json::json!({"routes": [{"dst": "0.0.0.0/0"}]}))).unwrap();
        assert_eq!(with_routes.routes, [("0.0.0.0/0".parse().unwrap(), None)]);
    }

    #[test]
    fn named_pools_decide_the_families() {
        let config = IpamConfig::parse(&custom(
            serde_json::json!({"pools": ["2001:db8:100::/56"], "gateway": "none"}),
        ))
        .unwrap();
        assert!(!config.assign_ipv4 && config.assign_ipv6);
        assert_eq!(config.gateway, GatewayMode::None);
    }

    #[test]
    fn every_bad_key_is_named() {
        let cases = [
            (
                serde_json::json!({"pools": "198.18.0.0/16"}),
                "ipam.pools: must be a list",
            ),
            (
                serde_json::json!({"pools": ["198.18.0.0/33"]}),
                "ipam.pools: \"198.18.0.0/33\" is not a CIDR",
            ),
            (
                serde_json::json!({"store": 5}),
                "ipam.store: must be a non-empty string",
            ),
            (
                serde_json::json!({"gateway": "yes"}),
                "ipam.gateway: \"yes\" is neither",
            ),
            (serde_json::json!({"assign_ipv4": false}), "nothing to assign"),
            (serde_json::json!({"stroe": "file:/x"}), "ipam.stroe: unknown key"),
            (serde_json::json!({"log_level": "loud"}), "ipam.log_level"),
        ];
        for (value, expected) in cases {
            let message = IpamConfig::parse(&custom(value.clone())).unwrap_err().to_string();
            assert!(message.contains(expected), "{value}: {message}");
        }
    }

    #[test]
    fn cni_args_name_the_pod() {
        let pod = parse_cni_args(Some(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;K8S_POD_INFRA_CONTAINER_ID=c",
        ));
        assert_eq!((pod.namespace.as_deref(), pod.name.as_deref()), (Some("x"), Some("a")));
        assert_eq!(parse_cni_args(None), PodRef::default());
    }
}

//! What a node's image means on this machine: the program that stands in for the container.
//!
//! | image (any registry, any tag)  | runs                                   | config (bind target)          |
//! |--------------------------------|----------------------------------------|-------------------------------|
//! | `…frr…` (`quay.io/frrouting/frr`) | Debian's FRR: zebra + bgpd          | `/etc/frr/frr.conf`           |
//! | `…bird…`                       | Debian's BIRD 2                        | `/etc/bird/bird.conf` (or `/etc/bird.conf`) |
//! | `…weft-node…`                  | weft-bgpd and weft-felix on the lab's store, pods made through weft-cni | `/etc/weft/bgpd.yaml` (without it weft-bgpd runs in cluster mode), optional `/etc/weft/cluster.yaml` |
//! | anything else                  | nothing: a namespace with its links and `exec` commands | — |
//!
//! A weft node's pods are declared with `env: { WEFT_PODS: N }` (what the node image's
//! entrypoint reads under containerlab) or the label `weft.io/pods: N`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::topology::Node;

/// Most pods one node may declare (the lab is for tests, not scale).
pub const MAX_PODS: u32 = 16;

/// The label declaring a weft node's pods.
pub const PODS_LABEL: &str = "weft.io/pods";

/// The environment variable declaring them (read first).
pub const PODS_ENV: &str = "WEFT_PODS";

/// Dual-stack pods: the environment variable.
pub const PODS_IPV6_ENV: &str = "WEFT_IPV6";

/// Whether weft-felix runs: the environment variable.
pub const FELIX_ENV: &str = "WEFT_FELIX";

fn flag(name: &str, node: &Node, key: &str, default: bool) -> Result<bool> {
    match node.env.get(key).map(String::as_str) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => bail!("node {name}: {key} is \"true\" or \"false\", not {other:?}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Frr { config: PathBuf },
    Bird { config: PathBuf },
    Weft(WeftNode),
    Plain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeftNode {
    /// The standalone configuration; `None`: cluster mode on the lab's store.
    pub bgpd: Option<PathBuf>,
    pub cluster: Option<PathBuf>,
    pub pods: u32,
    /// Pods get an IPv6 address too (`WEFT_IPV6: "true"`).
    pub ipv6: bool,
    /// weft-felix runs on the node (`WEFT_FELIX: "false"` leaves it out, e.g. for a BGP-only
    /// benchmark).
    pub felix: bool,
}

impl Role {
    pub fn of(name: &str, node: &Node) -> Result<Self> {
        let image = node.image.rsplit('/').next().unwrap_or(&node.image);
        let image = image.split([':', '@']).next().unwrap_or(image);
        let role = if image.contains("weft-node") {
            let bgpd = node.bind_for("/etc/weft/bgpd.yaml").map(PathBuf::from);
            let declared = [
                (PODS_ENV, node.env.get(PODS_ENV)),
                (PODS_LABEL, node.labels.get(PODS_LABEL)),
            ];
            let pods = match declared.into_iter().find_map(|(key, value)| Some((key, value?))) {
                None => 0,
                Some((key, text)) => text
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= MAX_PODS)
                    .with_context(|| format!("node {name}: {key} must be 0 to {MAX_PODS}, not {text:?}"))?,
            };
            Role::Weft(WeftNode {
                bgpd,
                cluster: node.bind_for("/etc/weft/cluster.yaml").map(PathBuf::from),
                pods,
                ipv6: flag(name, node, PODS_IPV6_ENV, false)?,
                felix: flag(name, node, FELIX_ENV, true)?,
            })
        } else if image.contains("frr") {
            let config = node
                .bind_for("/etc/frr/frr.conf")
                .with_context(|| format!("node {name}: an FRR node needs a bind to /etc/frr/frr.conf"))?;
            Role::Frr {
                config: config.to_path_buf(),
            }
        } else if image.contains("bird") {
            let config = node
                .bind_for_any(&["/etc/bird/bird.conf", "/etc/bird.conf"])
                .with_context(|| format!("node {name}: a BIRD node needs a bind to /etc/bird/bird.conf"))?;
            Role::Bird {
                config: config.to_path_buf(),
            }
        } else {
            Role::Plain
        };
        if !matches!(role, Role::Weft(_)) && (node.labels.contains_key(PODS_LABEL) || node.env.contains_key(PODS_ENV)) {
            bail!("node {name}: only weft nodes (image weft-node) have pods ({PODS_ENV})");
        }
        Ok(role)
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Role::Frr { .. } => "FRR",
            Role::Bird { .. } => "BIRD",
            Role::Weft(_) => "weft",
            Role::Plain => "linux",
        }
    }

    /// Routers and weft nodes forward.
    pub fn forwards(&self) -> bool {
        !matches!(self, Role::Plain)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::topology::Bind;

    fn node(image: &str, binds: &[&str]) -> Node {
        Node {
            kind: "linux".into(),
            image: image.into(),
            binds: binds
                .iter()
                .map(|c| Bind {
                    host: PathBuf::from("/cfg").join(c.trim_start_matches('/')),
                    container: (*c).into(),
                })
                .collect(),
            ..Node::default()
        }
    }

    #[test]
    fn images_map_to_roles() {
        assert!(matches!(
            Role::of("l1", &node("quay.io/frrouting/frr:8.4.4", &["/etc/frr/frr.conf"])).unwrap(),
            Role::Frr { .. }
        ));
        assert!(matches!(
            Role::of("l2", &node("ghcr.io/example/bird:2.0", &["/etc/bird/bird.conf"])).unwrap(),
            Role::Bird { .. }
        ));
        let mut weft = node("ghcr.io/weft-net/weft-node:latest", &["/etc/weft/bgpd.yaml"]);
        weft.labels.insert(PODS_LABEL.into(), "2".into());
        assert_eq!(
            Role::of("n1", &weft).unwrap(),
            Role::Weft(WeftNode {
                bgpd: Some("/cfg/etc/weft/bgpd.yaml".into()),
                cluster: None,
                pods: 2,
                ipv6: false,
                felix: true,
            })
        );
        let cluster_mode = node("weft-node", &["/etc/weft/cluster.yaml"]);
        assert_eq!(
            Role::of("n2", &cluster_mode).unwrap(),
            Role::Weft(WeftNode {
                bgpd: None,
                cluster: Some("/cfg/etc/weft/cluster.yaml".into()),
                pods: 0,
                ipv6: false,
                felix: true,
            })
        );
        assert_eq!(Role::of("h", &node("alpine:3", &[])).unwrap(), Role::Plain);
    }

    #[test]
    fn a_missing_config_bind_is_named() {
        let error = Role::of("leaf1", &node("quay.io/frrouting/frr:8.4.4", &[])).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("node leaf1: an FRR node needs a bind to /etc/frr/frr.conf")
        );
        let mut weft = node("weft-node", &["/etc/weft/bgpd.yaml"]);
        weft.env.insert(PODS_ENV.into(), "many".into());
        assert!(
            Role::of("n1", &weft)
                .unwrap_err()
                .to_string()
                .contains("WEFT_PODS must be 0 to 16")
        );
    }
}

//! A containerlab topology file, the subset weft-lab runs on network namespaces.
//!
//! Reading is two steps: the YAML is checked against containerlab's own JSON schema (embedded,
//! `containerlab/clab.schema.json`), so a file weft-lab accepts is one containerlab accepts;
//! then [`Topology::check`] refuses what the schema allows but a namespace lab cannot do (links
//! to the host, unknown nodes, addresses outside the test plan), naming the node or link.
//!
//! Per node, values come from the node, then `topology.kinds.<kind>`, then
//! `topology.defaults`, as in containerlab; `binds`, `exec` and `labels` are merged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

const SCHEMA: &str = include_str!("../../../../containerlab/clab.schema.json");

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// A topology, merged and checked.
#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub nodes: BTreeMap<String, Node>,
    pub links: Vec<Link>,
}

/// One node after merging kinds and defaults.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub kind: String,
    pub image: String,
    pub binds: Vec<Bind>,
    pub exec: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
}

/// `host-path:container-path[:ro|rw]`, host path made absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub container: String,
}

/// A point-to-point link between two node interfaces.
#[derive(Debug, Clone)]
pub struct Link {
    pub a: Endpoint,
    pub b: Endpoint,
    /// Addresses of the two ends (containerlab's brief-link `ipv4`/`ipv6`), in endpoint order.
    pub addresses: Vec<(IpNet, IpNet)>,
    pub mtu: Option<u32>,
}

/// `node:interface`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub node: String,
    pub interface: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.node, self.interface)
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link {} -- {}", self.a, self.b)
    }
}

impl Node {
    /// The host path bound to `container` (a bind's container path), if any.
    pub fn bind_for(&self, container: &str) -> Option<&Path> {
        self.binds
            .iter()
            .find(|b| b.container == container)
            .map(|b| b.host.as_path())
    }

    /// The first bind whose container path is one of `containers`.
    pub fn bind_for_any(&self, containers: &[&str]) -> Option<&Path> {
        containers.iter().find_map(|c| self.bind_for(c))
    }
}

// --- the raw file -------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct RawFile {
    name: String,
    topology: RawTopology,
}

#[derive(Debug, Default, Deserialize)]
struct RawTopology {
    #[serde(default)]
    nodes: BTreeMap<String, Option<RawNode>>,
    #[serde(default)]
    kinds: BTreeMap<String, RawNode>,
    #[serde(default)]
    defaults: Option<RawNode>,
    #[serde(default)]
    links: Vec<RawLink>,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct RawNode {
    kind: Option<String>,
    image: Option<String>,
    #[serde(default)]
    binds: Vec<String>,
    #[serde(default)]
    exec: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, Value>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct RawLink {
    #[serde(rename = "type")]
    kind: Option<String>,
    endpoints: Vec<RawEndpoint>,
    #[serde(default)]
    ipv4: Vec<String>,
    #[serde(default)]
    ipv6: Vec<String>,
    mtu: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawEndpoint {
    Brief(String),
    Full { node: String, interface: String },
}

impl Topology {
    /// Reads, schema-checks, merges and checks `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let dir = path
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", path.display()))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        Self::parse(&text, &dir).with_context(|| format!("{} is not a topology weft-lab can run", path.display()))
    }

    /// [`Topology::load`] from text; bind sources are relative to `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Self> {
        let value: Value = serde_saphyr::from_str(text).context("invalid YAML")?;
        validate_schema(&value)?;
        let raw: RawFile = serde_json::from_value(value).context("unexpected topology layout")?;
        let topology = Self::merge(raw, dir)?;
        topology.check()?;
        Ok(topology)
    }

    fn merge(raw: RawFile, dir: &Path) -> Result<Self> {
        let defaults = raw.topology.defaults.clone().unwrap_or_default();
        let mut nodes = BTreeMap::new();
        for (name, node) in raw.topology.nodes {
            let node = node.unwrap_or_default();
            let kind =
                node.kind.clone().or_else(|| defaults.kind.clone()).with_context(|| {
                    format!("node {name}: no kind (set `kind` on the node or in topology.defaults)")
                })?;
            let of_kind = raw.topology.kinds.get(&kind).cloned().unwrap_or_default();
            let layers = [&node, &of_kind, &defaults];
            let image = layers
                .iter()
                .find_map(|layer| layer.image.clone())
                .with_context(|| format!("node {name}: no image"))?;
            let mut binds = Vec::new();
            for text in layers.iter().flat_map(|layer| layer.binds.iter()) {
                let bind = parse_bind(text, dir).with_context(|| format!("node {name}: bind {text:?}"))?;
                if !binds.iter().any(|b: &Bind| b.container == bind.container) {
                    binds.push(bind);
                }
            }
            let exec = layers
                .iter()
                .rev()
                .flat_map(|layer| layer.exec.iter().cloned())
                .collect();
            let merged = |pick: fn(&RawNode) -> &BTreeMap<String, Value>| {
                let mut map = BTreeMap::new();
                for layer in layers.iter().rev() {
                    for (key, value) in pick(layer) {
                        let value = match value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        map.insert(key.clone(), value);
                    }
                }
                map
            };
            let (labels, env) = (merged(|n| &n.labels), merged(|n| &n.env));
            nodes.insert(
                name,
                Node {
                    kind,
                    image,
                    binds,
                    exec,
                    labels,
                    env,
                },
            );
        }
        let mut links = Vec::new();
        for (index, raw_link) in raw.topology.links.into_iter().enumerate() {
            links.push(merge_link(index, raw_link)?);
        }
        Ok(Self {
            name: raw.name,
            nodes,
            links,
        })
    }

    /// What the schema allows but a namespace lab cannot run.
    pub fn check(&self) -> Result<()> {
        check_name("lab name", &self.name)?;
        for name in self.nodes.keys() {
            check_name(&format!("node {name}"), name)?;
        }
        let mut used = BTreeSet::new();
        for link in &self.links {
            for end in [&link.a, &link.b] {
                if !self.nodes.contains_key(&end.node) {
                    bail!("{link}: no node named {:?} in topology.nodes", end.node);
                }
                if end.interface.is_empty()
                    || end.interface.len() > MAX_IFNAME
                    || end.interface == "lo"
                    || !end
                        .interface
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    bail!(
                        "{link}: interface name {:?} is not a valid Linux interface name",
                        end.interface
                    );
                }
                if !used.insert(end.clone()) {
                    bail!("{link}: interface {end} is used by more than one link");
                }
            }
            for (a, b) in &link.addresses {
                for net in [a, b] {
                    if !weft_topology_tests::address::in_plan(net) {
                        bail!("{link}: address {net} is outside the test plan (198.18.0.0/15, 2001:db8::/32)");
                    }
                }
            }
        }
        for (name, node) in &self.nodes {
            if node.kind != "linux" {
                bail!(
                    "node {name}: kind {:?} cannot run on namespaces (weft-lab runs kind linux nodes)",
                    node.kind
                );
            }
            for command in &node.exec {
                check_exec(command).with_context(|| format!("node {name}: exec {command:?}"))?;
            }
            for bind in &node.binds {
                if !bind.host.exists() {
                    bail!("node {name}: bind source {} does not exist", bind.host.display());
                }
            }
        }
        Ok(())
    }
}

fn validate_schema(value: &Value) -> Result<()> {
    let schema: Value = serde_json::from_str(SCHEMA).context("containerlab's schema does not parse")?;
    let validator = jsonschema::validator_for(&schema).context("containerlab's schema does not compile")?;
    let problems: Vec<String> = validator
        .iter_errors(value)
        .take(10)
        .map(|error| {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            format!("  at {at}: {error}")
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("not valid against containerlab's schema:\n{}", problems.join("\n"))
    }
}

fn merge_link(index: usize, raw: RawLink) -> Result<Link> {
    let what = || format!("links[{index}]");
    if let Some(kind) = &raw.kind
        && kind != "veth"
    {
        bail!(
            "{}: link type {kind:?} is not supported (weft-lab makes veth links)",
            what()
        );
    }
    let ends: Vec<Endpoint> = raw
        .endpoints
        .iter()
        .map(|end| match end {
            RawEndpoint::Brief(text) => {
                let (node, interface) = text
                    .split_once(':')
                    .with_context(|| format!("{}: endpoint {text:?} is not node:interface", what()))?;
                Ok(Endpoint {
                    node: node.to_owned(),
                    interface: interface.to_owned(),
                })
            }
            RawEndpoint::Full { node, interface } => Ok(Endpoint {
                node: node.clone(),
                interface: interface.clone(),
            }),
        })
        .collect::<Result<_>>()?;
    let [a, b] =
        <[Endpoint; 2]>::try_from(ends).map_err(|_| anyhow::anyhow!("{}: needs exactly two endpoints", what()))?;
    for end in [&a, &b] {
        if matches!(end.node.as_str(), "host" | "mgmt-net" | "macvlan") {
            bail!(
                "{}: endpoint {end} leaves the lab (weft-lab never touches the host's own network)",
                what()
            );
        }
    }
    let mut addresses = Vec::new();
    for (family, list) in [("ipv4", &raw.ipv4), ("ipv6", &raw.ipv6)] {
        match list.as_slice() {
            [] => {}
            [x, y] => {
                let parse = |text: &String| -> Result<IpNet> {
                    text.parse()
                        .with_context(|| format!("{}: {family} {text:?} is not an address/prefix", what()))
                };
                addresses.push((parse(x)?, parse(y)?));
            }
            _ => bail!("{}: {family} needs one address per endpoint (two)", what()),
        }
    }
    Ok(Link {
        a,
        b,
        addresses,
        mtu: raw.mtu,
    })
}

fn parse_bind(text: &str, dir: &Path) -> Result<Bind> {
    let mut parts = text.split(':');
    let (Some(host), Some(container)) = (parts.next(), parts.next()) else {
        bail!("a bind is host-path:container-path");
    };
    match parts.next() {
        None | Some("ro") | Some("rw") => {}
        Some(other) => bail!("unknown bind option {other:?}"),
    }
    let host = Path::new(host);
    let host = if host.is_absolute() {
        host.to_path_buf()
    } else {
        dir.join(host)
    };
    Ok(Bind {
        host,
        container: container.to_owned(),
    })
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        bail!("{what}: {name:?} must be 1 to 40 of A-Z a-z 0-9 - _ and start with a letter or digit")
    }
}

/// `exec` commands run inside the node's namespace; those that configure addresses or routes
/// must stay in the test plan.
fn check_exec(command: &str) -> Result<()> {
    let words: Vec<&str> = command.split_whitespace().collect();
    if words.first() == Some(&"ip") {
        weft_topology_tests::address::check_ip_arguments(&words[1..])?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology> {
        Topology::parse(text, Path::new("/"))
    }

    #[test]
    fn a_brief_topology_merges_kinds_and_defaults() {
        let topo = parse(
            r#"
name: t1
topology:
  defaults: { kind: linux, labels: { a: "1" } }
  kinds: { linux: { image: alpine:3, exec: ["ip link set lo up"] } }
  nodes:
    r1: { labels: { b: 2 } }
    r2: { image: quay.io/frrouting/frr:8.4.4 }
  links:
    - endpoints: ["r1:eth1", "r2:eth1"]
      ipv4: ["198.19.0.0/31", "198.19.0.1/31"]
"#,
        )
        .unwrap();
        let r1 = &topo.nodes["r1"];
        assert_eq!(r1.image, "alpine:3");
        assert_eq!(r1.labels["a"], "1");
        assert_eq!(r1.labels["b"], "2");
        assert_eq!(r1.exec, vec!["ip link set lo up".to_owned()]);
        assert_eq!(topo.nodes["r2"].image, "quay.io/frrouting/frr:8.4.4");
        assert_eq!(topo.links[0].a.to_string(), "r1:eth1");
        assert_eq!(topo.links[0].addresses[0].1.to_string(), "198.19.0.1/31");
    }

    #[test]
    fn the_schema_names_what_is_wrong() {
        let error = parse("name: t1\ntopology:\n  nodes:\n    r1: { kind: linux, image: a, bogus: 1 }\n").unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("/topology/nodes/r1"), "{text}");
    }

    #[test]
    fn a_link_to_an_unknown_node_is_named() {
        let error = parse(
            "name: t1\ntopology:\n  nodes:\n    r1: { kind: linux, image: a }\n  links:\n    - endpoints: [\"r1:eth1\", \"r9:eth1\"]\n",
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("link r1:eth1 -- r9:eth1: no node named \"r9\""),
            "{error:#}"
        );
    }

    #[test]
    fn addresses_outside_the_plan_are_refused() {
        let error = parse(
            "name: t1\ntopology:\n  nodes:\n    r1: { kind: linux, image: a }\n    r2: { kind: linux, image: a }\n  links:\n    - endpoints: [\"r1:eth1\", \"r2:eth1\"]\n      ipv4: [\"203.0.113.0/31\", \"203.0.113.1/31\"]\n",
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("outside the test plan"), "{error:#}");
        let error = parse("name: t1\ntopology:\n  nodes:\n    r1: { kind: linux, image: a, exec: [\"ip addr add 203.0.113.1/24 dev eth1\"] }\n").unwrap_err();
        assert!(format!("{error:#}").contains("node r1: exec"), "{error:#}");
    }

    #[test]
    fn links_to_the_host_and_reused_interfaces_are_refused() {
        let base = "name: t1\ntopology:\n  nodes:\n    r1: { kind: linux, image: a }\n    r2: { kind: linux, image: a }\n  links:\n";
        let error = parse(&format!("{base}    - endpoints: [\"r1:eth1\", \"host:veth9\"]\n")).unwrap_err();
        assert!(format!("{error:#}").contains("leaves the lab"), "{error:#}");
        let error = parse(&format!(
            "{base}    - endpoints: [\"r1:eth1\", \"r2:eth1\"]\n    - endpoints: [\"r1:eth1\", \"r2:eth2\"]\n"
        ))
        .unwrap_err();
        assert!(format!("{error:#}").contains("used by more than one link"), "{error:#}");
    }

    #[test]
    fn other_kinds_are_refused_by_name() {
        let error = parse("name: t1\ntopology:\n  nodes:\n    sw: { kind: nokia_srlinux, image: a }\n").unwrap_err();
        assert!(
            format!("{error:#}").contains("node sw: kind \"nokia_srlinux\""),
            "{error:#}"
        );
    }
}

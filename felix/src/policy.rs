//! A NetworkPolicy (networking.k8s.io/v1) checked and compiled into the shape the calculation
//! uses: selectors compiled, CIDRs parsed, ports resolved to protocol and range or name, and
//! `policyTypes` defaulted as the API server does (Ingress always; Egress when the policy has
//! egress rules).
//!
//! Pure. A policy that does not compile is reported as a [`PolicyError`] naming the field, and
//! only that policy is left out.

use std::fmt;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels::{LabelSelector, SelectorError};

/// The transport protocols NetworkPolicy knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `TCP`, `UDP`, `SCTP` as Kubernetes spells them.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name nft uses (`meta l4proto tcp`).
    pub fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// Which ports of a protocol a rule allows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ports {
    /// Every port of the protocol (a `ports` entry without `port`).
    All,
    /// `port` to `endPort` inclusive (one port when they are equal).
    Range(u16, u16),
    /// A named container port, resolved per destination pod.
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMatch {
    pub protocol: Protocol,
    pub ports: Ports,
}

/// Where a peer's pods may live.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamespaceScope {
    /// The policy's own namespace (a peer with a podSelector only).
    Own(String),
    /// Every namespace the selector matches.
    Selected(LabelSelector),
}

/// One entry of `from` / `to`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Pods matching `pods` in the namespaces of `namespaces` (both must hold: AND).
    Pods {
        namespaces: NamespaceScope,
        pods: LabelSelector,
    },
    /// Addresses in `cidr` but not in any of `except`.
    Block { cidr: IpNet, except: Vec<IpNet> },
}

/// One ingress or egress rule: traffic matching any peer (OR) and any port (OR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `None`: every peer (`from`/`to` missing or empty).
    pub peers: Option<Vec<Peer>>,
    /// `None`: every port and protocol.
    pub ports: Option<Vec<PortMatch>>,
}

/// A checked NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    /// `Some` when the policy is of type Ingress: the pods it selects are isolated for ingress
    /// and these rules allow traffic in (none: deny all).
    pub ingress: Option<Vec<Rule>>,
    /// As `ingress`, for type Egress.
    pub egress: Option<Vec<Rule>>,
}

impl Policy {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Why a policy was left out. The field path says where to look.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("NetworkPolicy {policy}: {field}: {reason}")]
pub struct PolicyError {
    pub policy: String,
    pub field: String,
    pub reason: String,
}

/// Checks and compiles one NetworkPolicy.
pub fn compile(policy: &net::NetworkPolicy) -> Result<Policy, PolicyError> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = policy.metadata.name.clone().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    let error = |field: String, reason: String| PolicyError {
        policy: id.clone(),
        field,
        reason,
    };
    let selector_error = |field: &str, e: SelectorError| error(field.to_owned(), e.to_string());
    let spec = policy.spec.clone().unwrap_or_default();
    let pod_selector = match &spec.pod_selector {
        Some(selector) => LabelSelector::compile(selector).map_err(|e| selector_error("spec.podSelector", e))?,
        None => LabelSelector::everything(),
    };
    let ingress_rules = spec.ingress.clone().unwrap_or_default();
    let egress_rules = spec.egress.clone().unwrap_or_default();
    let (is_ingress, is_egress) = match &spec.policy_types {
        Some(types) if !types.is_empty() => {
            for (i, kind) in types.iter().enumerate() {
                if kind != "Ingress" && kind != "Egress" {
                    return Err(error(
                        format!("spec.policyTypes[{i}]"),
                        format!("{kind:?} is not Ingress or Egress"),
                    ));
                }
            }
            (
                types.iter().any(|t| t == "Ingress"),
                types.iter().any(|t| t == "Egress"),
            )
        }
        _ => (true, !egress_rules.is_empty()),
    };
    let mut compiler = RuleCompiler {
        namespace: &namespace,
        error: &error,
    };
    let ingress = if is_ingress {
        let mut rules = Vec::new();
        for (i, rule) in ingress_rules.iter().enumerate() {
            rules.push(compiler.rule(
                &format!("spec.ingress[{i}]"),
                "from",
                rule.from.as_deref(),
                rule.ports.as_deref(),
            )?);
        }
        Some(rules)
    } else {
        None
    };
    let egress = if is_egress {
        let mut rules = Vec::new();
        for (i, rule) in egress_rules.iter().enumerate() {
            rules.push(compiler.rule(
                &format!("spec.egress[{i}]"),
                "to",
                rule.to.as_deref(),
                rule.ports.as_deref(),
            )?);
        }
        Some(rules)
    } else {
        None
    };
    Ok(Policy {
        namespace,
        name,
        pod_selector,
        ingress,
        egress,
    })
}

struct RuleCompiler<'a, E: Fn(String, String) -> PolicyError> {
    namespace: &'a str,
    error: &'a E,
}

impl<E: Fn(String, String) -> PolicyError> RuleCompiler<'_, E> {
    fn rule(
        &mut self,
        field: &str,
        peers_field: &str,
        peers: Option<&[net::NetworkPolicyPeer]>,
        ports: Option<&[net::NetworkPolicyPort]>,
    ) -> Result<Rule, PolicyError> {
        let peers = match peers {
            Some(peers) if !peers.is_empty() => Some(
                peers
                    .iter()
                    .enumerate()
                    .map(|(i, peer)| self.peer(&format!("{field}.{peers_field}[{i}]"), peer))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        let ports = match ports {
            Some(ports) if !ports.is_empty() => Some(
                ports
                    .iter()
                    .enumerate()
                    .map(|(i, port)| self.port(&format!("{field}.ports[{i}]"), port))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        Ok(Rule { peers, ports })
    }

    fn peer(&mut self, field: &str, peer: &net::NetworkPolicyPeer) -> Result<Peer, PolicyError> {
        let error = self.error;
        if let Some(block) = &peer.ip_block {
            if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                return Err(error(
                    field.to_owned(),
                    "ipBlock cannot be combined with podSelector or namespaceSelector in one peer".into(),
                ));
            }
            let parse = |field: String, text: &str| {
                text.parse::<IpNet>()
                    .map(|net| net.trunc())
                    .map_err(|e| error(field, format!("{text:?} is not a CIDR: {e}")))
            };
            let cidr = parse(format!("{field}.ipBlock.cidr"), &block.cidr)?;
            let mut except = Vec::new();
            for (i, text) in block.except.iter().flatten().enumerate() {
                let except_field = format!("{field}.ipBlock.except[{i}]");
                let net = parse(except_field.clone(), text)?;
                if !cidr.contains(&net) || net.prefix_len() <= cidr.prefix_len() {
                    return Err(error(
                        except_field,
                        format!("{text} is not a strict subnet of {}", block.cidr),
                    ));
                }
                except.push(net);
            }
            except.sort();
            except.dedup();
            return Ok(Peer::Block { cidr, except });
        }
        let compile = |field: String, selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector| {
            LabelSelector::compile(selector).map_err(|e| error(field, e.to_string()))
        };
        let namespaces = match &peer.namespace_selector {
            Some(selector) => NamespaceScope::Selected(compile(format!("{field}.namespaceSelector"), selector)?),
            None if peer.pod_selector.is_some() => NamespaceScope::Own(self.namespace.to_owned()),
            None => {
                return Err(error(
                    field.to_owned(),
                    "a peer needs podSelector, namespaceSelector or ipBlock".into(),
                ));
            }
        };
        let pods = match &peer.pod_selector {
            Some(selector) => compile(format!("{field}.podSelector"), selector)?,
            None => LabelSelector::everything(),
        };
        Ok(Peer::Pods { namespaces, pods })
    }

    fn port(&mut self, field: &str, port: &net::NetworkPolicyPort) -> Result<PortMatch, PolicyError> {
        let error = self.error;
        let protocol = match port.protocol.as_deref() {
            None => Protocol::Tcp,
            Some(text) => Protocol::parse(text)
                .ok_or_else(|| error(format!("{field}.protocol"), format!("{text:?} is not TCP, UDP or SCTP")))?,
        };
        let number = |field: String, value: i32| {
            u16::try_from(value)
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| error(field, format!("{value} is not a port (1 to 65535)")))
        };
        let ports = match (&port.port, port.end_port) {
            (None, None) => Ports::All,
            (None, Some(_)) => {
                return Err(error(format!("{field}.endPort"), "endPort needs a numeric port".into()));
            }
            (Some(IntOrString::Int(start)), end) => {
                let start = number(format!("{field}.port"), *start)?;
                let end = match end {
                    Some(end) => number(format!("{field}.endPort"), end)?,
                    None => start,
                };
                if end < start {
                    return Err(error(
                        format!("{field}.endPort"),
                        format!("endPort {end} is below port {start}"),
                    ));
                }
                Ports::Range(start, end)
            }
            (Some(IntOrString::String(name)), None) => {
                if name.is_empty() || name.len() > 15 {
                    return Err(error(
                        format!("{field}.port"),
                        format!("{name:?} is not a port name (1 to 15 characters)"),
                    ));
                }
                Ports::Named(name.clone())
            }
            (Some(IntOrString::String(_)), Some(_)) => {
                return Err(error(
                    format!("{field}.endPort"),
                    "endPort cannot be used with a named port".into(),
                ));
            }
        };
        Ok(PortMatch { protocol, ports })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn policy(spec: serde_json::Value) -> net::NetworkPolicy {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": "x", "name": "p"}, "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
        let ingress_only = compile(&policy(json!({"podSelector": {}}))).unwrap();
        assert_eq!(ingress_only.ingress, Some(vec![]));
        assert_eq!(ingress_only.egress, None);
        let both = compile(&policy(json!({"podSelector": {}, "egress": [{}]}))).unwrap();
        assert!(both.ingress.is_some() && both.egress.is_some());
        let egress_only = compile(&policy(json!({"podSelector": {}, "policyTypes": ["Egress"]}))).unwrap();
        assert_eq!((egress_only.ingress, egress_only.egress), (None, Some(vec![])));
    }

    #[test]
    fn a_pod_selector_peer_without_namespace_selector_means_the_policys_namespace() {
        let compiled = compile(&policy(
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ))
        .unwrap();
        let peers = compiled.ingress.unwrap()[0].peers.clone().unwrap();
        assert_eq!(
            peers[0],
            Peer::Pods {
                namespaces: NamespaceScope::Own("x".into()),
                pods: LabelSelector::everything()
            }
        );
    }

    #[test]
    fn ports_default_to_tcp_and_take_ranges_and_names() {
        let compiled = compile(&policy(json!({"podSelector": {}, "ingress": [{"ports": [
            {"port": 80}, {"protocol": "UDP", "port": 81, "endPort": 90}, {"port": "serve-80-tcp"}, {"protocol": "SCTP"}
        ]}]})))
        .unwrap();
        let ports = compiled.ingress.unwrap()[0].ports.clone().unwrap();
        assert_eq!(
            ports,
            vec![
                PortMatch {
                    protocol: Protocol::Tcp,
                    ports: Ports::Range(80, 80)
                },
                PortMatch {
                    protocol: Protocol::Udp,
                    ports: Ports::Range(81, 90)
                },
                PortMatch {
                    protocol: Protocol::Tcp,
                    ports: Ports::Named("serve-80-tcp".into())
                },
                PortMatch {
                    protocol: Protocol::Sctp,
                    ports: Ports::All
                },
            ]
        );
    }

    #[test]
    fn invalid_policies_name_the_field_at_fault() {
        let cases = [
            (
                json!({"ingress": [{"from": [{"ipBlock": {"cidr": "198.18.0.0/33"}}]}]}),
                "spec.ingress[0].from[0].ipBlock.cidr",
            ),
            (
                json!({"ingress": [{"from": [{"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.19.0.0/24"]}}]}]}),
                "spec.ingress[0].from[0].ipBlock.except[0]",
            ),
            (
                json!({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
                "spec.ingress[0].ports[0].endPort",
            ),
            (
                json!({"egress": [{"ports": [{"protocol": "ICMP", "port": 1}]}]}),
                "spec.egress[0].ports[0].protocol",
            ),
            (json!({"ingress": [{"from": [{}]}]}), "spec.ingress[0].from[0]"),
            (json!({"policyTypes": ["Sideways"]}), "spec.policyTypes[0]"),
            (
                json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}}),
                "spec.podSelector",
            ),
        ];
        for (spec, field) in cases {
            let error = compile(&policy(spec.clone())).unwrap_err();
            assert_eq!(error.field, field, "{spec}: {error}");
            assert_eq!(error.policy, "x/p");
        }
    }
}

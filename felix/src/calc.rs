//! The policy calculation: this node's endpoints, every pod and namespace the cluster has,
//! NetworkPolicies and pools in; the [`Ruleset`] weft wants in `inet weft` out.
//!
//! Semantics are networking.k8s.io/v1's:
//! - a pod is isolated for a direction once any policy of that type selects it; otherwise that
//!   direction is open;
//! - traffic is allowed in a direction when any rule of any selecting policy allows it (OR);
//!   a rule allows traffic matching any of its peers and any of its ports; a peer with both
//!   podSelector and namespaceSelector needs both (AND);
//! - egress is checked at the sender's node, ingress at the receiver's; a pod-to-pod flow on
//!   one node needs both;
//! - replies of allowed connections pass (conntrack), and the node itself reaches its pods
//!   (locally generated traffic never meets the per-endpoint chains);
//! - named ports resolve against the destination pod's container ports.
//!
//! Each distinct peer becomes one named set shared by every rule using it, each policy one
//! chain per direction, and each distinct combination of policies isolating local endpoints
//! one chain the interface maps point to; so pod churn, local or remote, only changes set and
//! map elements. An invalid policy is reported in [`Calculation::problems`] and left out;
//! every other policy stays in force.
//!
//! Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::labels::Labels;
use crate::policy::{self, NamespaceScope, Peer, Policy, PolicyError, PortMatch, Ports, Protocol};
use crate::ranges::{self, AddressRange};
use crate::ruleset::{
    Action, Chain, Element, FAILSAFE_TCP, FAILSAFE_UDP, FROM_ENDPOINT, Family, Hook, INTERFACE_PREFIX, Match, Rule,
    Ruleset, Set, SetKind, Side, TO_ENDPOINT, Verdict, stable_hash,
};

/// A named container port of a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// One pod interface anywhere in the cluster (its WorkloadEndpoint joined with its Pod).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    /// The host side of the veth (`wft…`).
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    pub labels: Labels,
    pub ports: Vec<NamedPort>,
}

impl Endpoint {
    /// `namespace/pod`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.pod)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub cidr: IpNet,
    pub nat_outgoing: bool,
}

/// Everything the calculation reads.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// This node's name: its endpoints get chains and dispatch entries.
    pub node: String,
    /// Every endpoint of the cluster (peers may live on other nodes).
    pub endpoints: Vec<Endpoint>,
    /// Namespace labels by name.
    pub namespaces: BTreeMap<String, Labels>,
    pub policies: Vec<NetworkPolicy>,
    pub pools: Vec<Pool>,
}

/// What selects one local endpoint, for `weftctl policy show`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EndpointReport {
    pub namespace: String,
    pub pod: String,
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    /// Policies isolating it for ingress (`namespace/name`); empty: ingress is open.
    pub ingress_policies: Vec<String>,
    pub egress_policies: Vec<String>,
    /// The chains it is dispatched to when isolated (shared by every local endpoint isolated
    /// by the same policies).
    pub ingress_chain: Option<String>,
    pub egress_chain: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Calculation {
    pub ruleset: Ruleset,
    pub problems: Vec<PolicyError>,
    pub endpoints: Vec<EndpointReport>,
}

/// The chain egress-allowed traffic continues in: the receiver's ingress, then accept.
pub const ALLOW_EGRESS: &str = "allow-egress";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

/// The shared chain of policy `namespace/name` for a direction (hashed: chain names are
/// limited in length, policy names are not short).
pub fn policy_chain(policy_id: &str, direction: Direction) -> String {
    let suffix = match direction {
        Direction::Ingress => "in",
        Direction::Egress => "out",
    };
    format!("policy-{:016x}-{suffix}", stable_hash(policy_id))
}

/// The chain of one combination of policies (`namespace/name`, sorted) for a direction: a jump
/// to each policy's chain, then a counted drop. Every endpoint isolated by exactly these
/// policies shares it (the interface maps send it there), so a pod added or removed is a map
/// element, not a chain; only a combination never seen before adds one.
pub fn isolation_chain(policy_ids: &[String], direction: Direction) -> String {
    let prefix = match direction {
        Direction::Ingress => "isolated-in",
        Direction::Egress => "isolated-out",
    };
    // The debug form quotes each id: no two lists share it, whatever the names hold.
    format!("{prefix}-{:016x}", stable_hash(&format!("{policy_ids:?}")))
}

/// Computes the desired table.
pub fn calculate(inputs: &Inputs) -> Calculation {
    let mut problems = Vec::new();
    let mut policies: Vec<Policy> = Vec::new();
    for raw in &inputs.policies {
        match policy::compile(raw) {
            Ok(policy) => policies.push(policy),
            Err(error) => problems.push(error),
        }
    }
    policies.sort_by_key(Policy::id);
    let mut builder = Builder {
        inputs,
        ruleset: Ruleset::default(),
    };
    builder.base_chains();
    builder.pools();
    let mut endpoints = Vec::new();
    let mut locals: Vec<&Endpoint> = inputs.endpoints.iter().filter(|e| e.node == inputs.node).collect();
    locals.sort_by(|a, b| a.interface.cmp(&b.interface));
    for endpoint in locals {
        endpoints.push(builder.endpoint(endpoint, &policies));
    }
    Calculation {
        ruleset: builder.ruleset,
        problems,
        endpoints,
    }
}

struct Builder<'a> {
    inputs: &'a Inputs,
    ruleset: Ruleset,
}

/// One way a rule can match, before the cross product of peers and ports.
type Alternative = (Option<Family>, Vec<Match>);

impl Builder<'_> {
    fn base_chains(&mut self) {
        let established = || Rule::new(vec![Match::Established], Action::Verdict(Verdict::Accept), "replies");
        let dispatch = |side, map: &str, comment: &str| {
            Rule::new(
                vec![],
                Action::Dispatch {
                    side,
                    map: map.to_owned(),
                },
                comment,
            )
        };
        let forward = vec![
            established(),
            dispatch(Side::Source, FROM_ENDPOINT, "egress of the sending pod"),
            dispatch(Side::Destination, TO_ENDPOINT, "ingress of the receiving pod"),
            Rule::new(
                vec![Match::InterfacePrefix {
                    side: Side::Destination,
                    prefix: INTERFACE_PREFIX.into(),
                }],
                Action::Verdict(Verdict::Drop),
                "a pod felix has not programmed",
            )
            .counted(),
        ];
        let input = vec![
            established(),
            Rule::new(
                vec![Match::Ports {
                    protocol: Protocol::Tcp,
                    ranges: FAILSAFE_TCP.to_vec(),
                }],
                Action::Verdict(Verdict::Accept),
                "failsafe",
            ),
            Rule::new(
                vec![Match::Ports {
                    protocol: Protocol::Udp,
                    ranges: FAILSAFE_UDP.to_vec(),
                }],
                Action::Verdict(Verdict::Accept),
                "failsafe",
            ),
            Rule::new(
                vec![Match::NeighborDiscovery],
                Action::Verdict(Verdict::Accept),
                "ipv6 neighbour discovery",
            ),
            dispatch(Side::Source, FROM_ENDPOINT, "egress of the sending pod"),
        ];
        let postrouting = [Family::V4, Family::V6]
            .into_iter()
            .map(|family| {
                Rule::new(
                    vec![
                        Match::Address {
                            side: Side::Source,
                            family,
                            set: format!("nat-{}", family.suffix()),
                            negate: false,
                        },
                        Match::Address {
                            side: Side::Destination,
                            family,
                            set: format!("pools-{}", family.suffix()),
                            negate: true,
                        },
                    ],
                    Action::Masquerade,
                    "nat outgoing",
                )
                .counted()
            })
            .collect();
        let allow_egress = vec![
            dispatch(Side::Destination, TO_ENDPOINT, "ingress of the receiving pod"),
            Rule::new(
                vec![Match::InterfacePrefix {
                    side: Side::Destination,
                    prefix: INTERFACE_PREFIX.into(),
                }],
                Action::Verdict(Verdict::Drop),
                "a pod felix has not programmed",
            )
            .counted(),
            Rule::new(vec![], Action::Verdict(Verdict::Accept), "egress allowed"),
        ];
        self.ruleset.chains.insert(
            ALLOW_EGRESS.into(),
            Chain {
                hook: None,
                rules: allow_egress,
            },
        );
        for (name, hook, rules) in [
            ("forward", Hook::Forward, forward),
            ("input", Hook::Input, input),
            ("postrouting", Hook::Postrouting, postrouting),
        ] {
            self.ruleset.chains.insert(
                name.into(),
                Chain {
                    hook: Some(hook),
                    rules,
                },
            );
        }
        self.ruleset.maps.insert(TO_ENDPOINT.into(), BTreeMap::new());
        self.ruleset.maps.insert(FROM_ENDPOINT.into(), BTreeMap::new());
    }

    fn pools(&mut self) {
        for family in [Family::V4, Family::V6] {
            let of_family = |pool: &&Pool| Family::of(pool.cidr.addr()) == family;
            let all: Vec<AddressRange> = self
                .inputs
                .pools
                .iter()
                .filter(of_family)
                .map(|p| AddressRange::of(&p.cidr))
                .collect();
            let nat: Vec<AddressRange> = self
                .inputs
                .pools
                .iter()
                .filter(of_family)
                .filter(|p| p.nat_outgoing)
                .map(|p| AddressRange::of(&p.cidr))
                .collect();
            self.interval_set(format!("pools-{}", family.suffix()), family, all);
            self.interval_set(format!("nat-{}", family.suffix()), family, nat);
        }
    }

    fn interval_set(&mut self, name: String, family: Family, ranges: Vec<AddressRange>) {
        let elements = ranges::merge(ranges).into_iter().map(Element::Range).collect();
        self.ruleset.sets.insert(
            name,
            Set {
                kind: SetKind::Addresses { family, interval: true },
                elements,
            },
        );
    }

    fn endpoint(&mut self, endpoint: &Endpoint, policies: &[Policy]) -> EndpointReport {
        let selecting: Vec<&Policy> = policies
            .iter()
            .filter(|p| p.namespace == endpoint.namespace && p.pod_selector.matches(&endpoint.labels))
            .collect();
        let mut report = EndpointReport {
            namespace: endpoint.namespace.clone(),
            pod: endpoint.pod.clone(),
            interface: endpoint.interface.clone(),
            addresses: endpoint.addresses.clone(),
            ingress_policies: Vec::new(),
            egress_policies: Vec::new(),
            ingress_chain: None,
            egress_chain: None,
        };
        // Ingress: every local endpoint has an entry, so a `wft*` interface without one is a
        // pod felix has not programmed yet (dropped by the forward chain).
        let ingress: Vec<&Policy> = selecting.iter().copied().filter(|p| p.ingress.is_some()).collect();
        let to_verdict = if ingress.is_empty() {
            Verdict::Accept
        } else {
            report.ingress_policies = ingress.iter().map(|p| p.id()).collect();
            let chain = self.isolation_chain(&ingress, &report.ingress_policies, Direction::Ingress);
            report.ingress_chain = Some(chain.clone());
            Verdict::Jump(chain)
        };
        self.map(TO_ENDPOINT).insert(endpoint.interface.clone(), to_verdict);
        let egress: Vec<&Policy> = selecting.iter().copied().filter(|p| p.egress.is_some()).collect();
        if !egress.is_empty() {
            report.egress_policies = egress.iter().map(|p| p.id()).collect();
            let chain = self.isolation_chain(&egress, &report.egress_policies, Direction::Egress);
            report.egress_chain = Some(chain.clone());
            self.map(FROM_ENDPOINT)
                .insert(endpoint.interface.clone(), Verdict::Jump(chain));
        }
        report
    }

    /// The chain shared by every endpoint isolated in one direction by exactly `policies`
    /// (made on first use): a jump to each policy's chain, then a counted drop (isolated:
    /// nothing a policy does not allow passes).
    fn isolation_chain(&mut self, policies: &[&Policy], ids: &[String], direction: Direction) -> String {
        let chain = isolation_chain(ids, direction);
        if self.ruleset.chains.contains_key(&chain) {
            return chain;
        }
        let mut rules = Vec::new();
        for policy in policies {
            let target = self.policy_chain(policy, direction);
            rules.push(Rule::new(vec![], Action::Verdict(Verdict::Jump(target)), policy.id()));
        }
        let what = match direction {
            Direction::Ingress => "ingress not allowed by any policy",
            Direction::Egress => "egress not allowed by any policy",
        };
        rules.push(Rule::new(vec![], Action::Verdict(Verdict::Drop), what).counted());
        self.ruleset.chains.insert(chain.clone(), Chain { hook: None, rules });
        chain
    }

    /// The chain of one policy's rules in one direction, shared by every endpoint it selects
    /// (made on first use: a node carries only the policies of its own pods). Its rules do not
    /// depend on the endpoint: named ports match the destination address with its port.
    fn policy_chain(&mut self, policy: &Policy, direction: Direction) -> String {
        let name = policy_chain(&policy.id(), direction);
        if self.ruleset.chains.contains_key(&name) {
            return name;
        }
        let (rules_of, side, verdict, label) = match direction {
            Direction::Ingress => (&policy.ingress, Side::Source, Verdict::Accept, "ingress"),
            // Egress allowed still meets the receiver's ingress (allow-egress dispatches it).
            Direction::Egress => (
                &policy.egress,
                Side::Destination,
                Verdict::Jump(ALLOW_EGRESS.into()),
                "egress",
            ),
        };
        let mut rules = Vec::new();
        for (i, rule) in rules_of.iter().flatten().enumerate() {
            let comment = format!("{} {label}[{i}]", policy.id());
            rules.extend(self.rule(rule, side, verdict.clone(), &comment));
        }
        self.ruleset.chains.insert(name.clone(), Chain { hook: None, rules });
        name
    }

    fn map(&mut self, name: &str) -> &mut BTreeMap<String, Verdict> {
        self.ruleset.maps.entry(name.to_owned()).or_default()
    }

    /// The nft rules of one policy rule: the cross product of its peers and ports.
    fn rule(&mut self, rule: &policy::Rule, side: Side, verdict: Verdict, comment: &str) -> Vec<Rule> {
        let peers: Vec<Alternative> = match &rule.peers {
            None => vec![(None, vec![])],
            Some(peers) => peers.iter().flat_map(|peer| self.peer(peer, side)).collect(),
        };
        let ports: Vec<Alternative> = match &rule.ports {
            None => vec![(None, vec![])],
            Some(ports) => self.ports(ports),
        };
        let mut out = Vec::new();
        for (peer_family, peer_matches) in &peers {
            for (port_family, port_matches) in &ports {
                if let (Some(a), Some(b)) = (peer_family, port_family)
                    && a != b
                {
                    continue;
                }
                let matches = peer_matches.iter().chain(port_matches).cloned().collect();
                out.push(Rule::new(matches, Action::Verdict(verdict.clone()), comment).counted());
            }
        }
        out
    }

    /// One peer: a shared named set per family.
    fn peer(&mut self, peer: &Peer, side: Side) -> Vec<Alternative> {
        let address = |family: Family, set: String| {
            (
                Some(family),
                vec![Match::Address {
                    side,
                    family,
                    set,
                    negate: false,
                }],
            )
        };
        match peer {
            Peer::Block { cidr, except } => {
                let family = Family::of(cidr.addr());
                let key = format!("{cidr} except {except:?}");
                let name = format!("block-{}-{:016x}", family.suffix(), stable_hash(&key));
                if !self.ruleset.sets.contains_key(&name) {
                    self.interval_set(name.clone(), family, ranges::subtract(cidr, except));
                }
                vec![address(family, name)]
            }
            Peer::Pods { namespaces, pods } => {
                let key = format!("{namespaces:?} {pods:?}");
                let hash = stable_hash(&key);
                let names = [Family::V4, Family::V6].map(|family| format!("pods-{}-{hash:016x}", family.suffix()));
                if !self.ruleset.sets.contains_key(&names[0]) {
                    // One pass for both families; a namespace selector is evaluated once per
                    // namespace, not once per pod.
                    let mut namespace_selected: BTreeMap<&str, bool> = BTreeMap::new();
                    let mut elements = [BTreeSet::new(), BTreeSet::new()];
                    for endpoint in &self.inputs.endpoints {
                        let namespace_ok = *namespace_selected
                            .entry(endpoint.namespace.as_str())
                            .or_insert_with(|| self.namespace_selects(namespaces, &endpoint.namespace));
                        if !namespace_ok || !pods.matches(&endpoint.labels) {
                            continue;
                        }
                        for address in &endpoint.addresses {
                            let slot = usize::from(Family::of(*address) == Family::V6);
                            elements[slot].insert(Element::Range(AddressRange::single(*address)));
                        }
                    }
                    for ((name, family), elements) in names.iter().zip([Family::V4, Family::V6]).zip(elements) {
                        self.ruleset.sets.insert(
                            name.clone(),
                            Set {
                                kind: SetKind::Addresses {
                                    family,
                                    interval: false,
                                },
                                elements,
                            },
                        );
                    }
                }
                names
                    .into_iter()
                    .zip([Family::V4, Family::V6])
                    .map(|(name, family)| address(family, name))
                    .collect()
            }
        }
    }

    fn namespace_selects(&self, namespaces: &NamespaceScope, namespace: &str) -> bool {
        match namespaces {
            NamespaceScope::Own(own) => own == namespace,
            NamespaceScope::Selected(selector) => {
                let empty = Labels::new();
                let labels = self.inputs.namespaces.get(namespace).unwrap_or(&empty);
                selector.matches(labels)
            }
        }
    }

    /// The port part of a rule: numeric ports grouped per protocol into one match, a whole
    /// protocol as `meta l4proto`, named ports as a set of the pods that have them.
    fn ports(&mut self, ports: &[PortMatch]) -> Vec<Alternative> {
        let mut whole: BTreeSet<Protocol> = BTreeSet::new();
        let mut numeric: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
        let mut named: BTreeSet<(Protocol, String)> = BTreeSet::new();
        for port in ports {
            match &port.ports {
                Ports::All => {
                    whole.insert(port.protocol);
                }
                Ports::Range(a, b) => numeric.entry(port.protocol).or_default().push((*a, *b)),
                Ports::Named(name) => {
                    named.insert((port.protocol, name.clone()));
                }
            }
        }
        let mut out: Vec<Alternative> = Vec::new();
        for protocol in &whole {
            out.push((None, vec![Match::Protocol(*protocol)]));
        }
        for (protocol, ranges) in numeric {
            if whole.contains(&protocol) {
                continue;
            }
            let ranges = merge_ports(ranges);
            if ranges.len() == 1 {
                out.push((None, vec![Match::Ports { protocol, ranges }]));
            } else {
                let set = self.port_set(protocol, &ranges);
                out.push((None, vec![Match::PortSet { protocol, set }]));
            }
        }
        for (protocol, name) in named {
            if whole.contains(&protocol) {
                continue;
            }
            for family in [Family::V4, Family::V6] {
                let set = self.named_port_set(&name, family);
                out.push((
                    Some(family),
                    vec![Match::Protocol(protocol), Match::NamedPort { family, set }],
                ));
            }
        }
        out
    }

    fn port_set(&mut self, protocol: Protocol, ranges: &[(u16, u16)]) -> String {
        let set = format!(
            "ports-{}-{:016x}",
            protocol.nft_name(),
            stable_hash(&format!("{ranges:?}"))
        );
        self.ruleset.sets.entry(set.clone()).or_insert_with(|| Set {
            kind: SetKind::Ports,
            elements: ranges.iter().map(|(a, b)| Element::Ports(*a, *b)).collect(),
        });
        set
    }

    fn named_port_set(&mut self, name: &str, family: Family) -> String {
        // A port name is an IANA service name (lowercase letters, digits, '-', at most 15) as
        // Kubernetes validates it; anything else is named by its hash, as set names are nft
        // identifiers in the batch text.
        let valid = !name.is_empty()
            && name.len() <= 15
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let set = if valid {
            format!("port-{}-{name}", family.suffix())
        } else {
            format!("port-{}-x{:016x}", family.suffix(), stable_hash(name))
        };
        if !self.ruleset.sets.contains_key(&set) {
            let mut elements = BTreeSet::new();
            for endpoint in &self.inputs.endpoints {
                for port in endpoint.ports.iter().filter(|p| p.name == name) {
                    for address in endpoint.addresses.iter().filter(|a| Family::of(**a) == family) {
                        elements.insert(Element::NamedPort(*address, port.protocol, port.port));
                    }
                }
            }
            self.ruleset.sets.insert(
                set.clone(),
                Set {
                    kind: SetKind::NamedPorts { family },
                    elements,
                },
            );
        }
        set
    }
}

/// Sorted port ranges with overlapping and adjacent ones joined (an interval set refuses
/// overlaps, and the kernel lists adjacent ones joined).
fn merge_ports(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.sort();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (a, b) in ranges {
        if let Some(last) = out.last_mut()
            && u32::from(a) <= u32::from(last.1) + 1
        {
            last.1 = last.1.max(b);
            continue;
        }
        out.push((a, b));
    }
    out
}

#[cfg(test)]
#[path = "calc_tests.rs"]
mod tests;

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
    let (policies, problems) = compile_policies(&inputs.policies);
    let endpoints: Vec<&Endpoint> = inputs.endpoints.iter().collect();
    let mut builder = Builder::new(endpoints, &inputs.namespaces, &inputs.pools);
    builder.base_chains();
    builder.pools();
    let mut reports = Vec::new();
    let mut locals: Vec<&Endpoint> = inputs.endpoints.iter().filter(|e| e.node == inputs.node).collect();
    locals.sort_by(|a, b| a.interface.cmp(&b.interface));
    for endpoint in locals {
        reports.push(builder.endpoint(endpoint, &policies));
    }
    Calculation {
        ruleset: builder.ruleset,
        problems,
        endpoints: reports,
    }
}

/// The policies that compile, sorted by id, and the problems of the others.
pub(crate) fn compile_policies(raw: &[NetworkPolicy]) -> (Vec<Policy>, Vec<PolicyError>) {
    let mut problems = Vec::new();
    let mut policies: Vec<Policy> = Vec::new();
    for raw in raw {
        match policy::compile(raw) {
            Ok(policy) => policies.push(policy),
            Err(error) => problems.push(error),
        }
    }
    policies.sort_by_key(Policy::id);
    (policies, problems)
}

/// The policies selecting `endpoint`, per direction: their ids and the isolation chain they
/// send it to (`None`: that direction is open).
pub(crate) fn isolation(policies: &[Policy], endpoint: &Endpoint) -> EndpointReport {
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
    for policy in policies
        .iter()
        .filter(|p| p.namespace == endpoint.namespace && p.pod_selector.matches(&endpoint.labels))
    {
        if policy.ingress.is_some() {
            report.ingress_policies.push(policy.id());
        }
        if policy.egress.is_some() {
            report.egress_policies.push(policy.id());
        }
    }
    if !report.ingress_policies.is_empty() {
        report.ingress_chain = Some(isolation_chain(&report.ingress_policies, Direction::Ingress));
    }
    if !report.egress_policies.is_empty() {
        report.egress_chain = Some(isolation_chain(&report.egress_policies, Direction::Egress));
    }
    report
}

/// The rules of an isolation chain: a jump to each policy's chain, then a counted drop
/// (isolated: nothing a policy does not allow passes).
pub(crate) fn isolation_rules(policy_ids: &[String], direction: Direction) -> Vec<Rule> {
    let mut rules: Vec<Rule> = policy_ids
        .iter()
        .map(|id| {
            Rule::new(
                vec![],
                Action::Verdict(Verdict::Jump(policy_chain(id, direction))),
                id.clone(),
            )
        })
        .collect();
    let what = match direction {
        Direction::Ingress => "ingress not allowed by any policy",
        Direction::Egress => "egress not allowed by any policy",
    };
    rules.push(Rule::new(vec![], Action::Verdict(Verdict::Drop), what).counted());
    rules
}

/// Where the elements of a set come from when they depend on endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SetSource {
    /// The addresses of one family of the pods a peer selects.
    Pods {
        namespaces: NamespaceScope,
        pods: crate::labels::LabelSelector,
        family: Family,
    },
    /// `address . protocol . port` of one family for the pods' container ports of this name.
    NamedPort { name: String, family: Family },
}

impl SetSource {
    /// The elements `endpoint` contributes (`namespaces`: namespace labels by name).
    pub(crate) fn elements(
        &self,
        endpoint: &Endpoint,
        namespaces: &BTreeMap<String, Labels>,
        out: &mut BTreeSet<Element>,
    ) {
        match self {
            SetSource::Pods {
                namespaces: scope,
                pods,
                family,
            } => {
                if namespace_selects(namespaces, scope, &endpoint.namespace) && pods.matches(&endpoint.labels) {
                    for address in endpoint.addresses.iter().filter(|a| Family::of(**a) == *family) {
                        out.insert(Element::Range(AddressRange::single(*address)));
                    }
                }
            }
            SetSource::NamedPort { name, family } => {
                for port in endpoint.ports.iter().filter(|p| p.name == *name) {
                    for address in endpoint.addresses.iter().filter(|a| Family::of(**a) == *family) {
                        out.insert(Element::NamedPort(*address, port.protocol, port.port));
                    }
                }
            }
        }
    }
}

fn namespace_selects(namespaces: &BTreeMap<String, Labels>, scope: &NamespaceScope, namespace: &str) -> bool {
    match scope {
        NamespaceScope::Own(own) => own == namespace,
        NamespaceScope::Selected(selector) => {
            let empty = Labels::new();
            selector.matches(namespaces.get(namespace).unwrap_or(&empty))
        }
    }
}

/// Builds a ruleset, each shared chain and set on first use.
pub(crate) struct Builder<'a> {
    /// Every endpoint of the cluster.
    endpoints: Vec<&'a Endpoint>,
    namespaces: &'a BTreeMap<String, Labels>,
    pools: &'a [Pool],
    pub(crate) ruleset: Ruleset,
    /// The sets made so far whose elements depend on endpoints.
    pub(crate) sources: BTreeMap<String, SetSource>,
    /// The sets each policy chain refers to (or made without referring to them).
    pub(crate) chain_sets: BTreeMap<String, BTreeSet<String>>,
    /// The sets the policy chain being made uses.
    using: BTreeSet<String>,
}

/// One way a rule can match, before the cross product of peers and ports.
type Alternative = (Option<Family>, Vec<Match>);

impl<'a> Builder<'a> {
    pub(crate) fn new(
        endpoints: Vec<&'a Endpoint>,
        namespaces: &'a BTreeMap<String, Labels>,
        pools: &'a [Pool],
    ) -> Builder<'a> {
        Builder {
            endpoints,
            namespaces,
            pools,
            ruleset: Ruleset::default(),
            sources: BTreeMap::new(),
            chain_sets: BTreeMap::new(),
            using: BTreeSet::new(),
        }
    }

    pub(crate) fn base_chains(&mut self) {
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
            unprogrammed_pod_drop(),
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
            unprogrammed_pod_drop(),
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

    pub(crate) fn pools(&mut self) {
        for family in [Family::V4, Family::V6] {
            let of_family = |pool: &&Pool| Family::of(pool.cidr.addr()) == family;
            let all: Vec<AddressRange> = self
                .pools
                .iter()
                .filter(of_family)
                .map(|p| AddressRange::of(&p.cidr))
                .collect();
            let nat: Vec<AddressRange> = self
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

    pub(crate) fn endpoint(&mut self, endpoint: &Endpoint, policies: &[Policy]) -> EndpointReport {
        let report = isolation(policies, endpoint);
        // Ingress: every local endpoint has an entry, so a `wft*` interface without one is a
        // pod felix has not programmed yet (dropped by the forward chain).
        let to_verdict = match &report.ingress_chain {
            None => Verdict::Accept,
            Some(chain) => {
                self.isolation_chain(policies, &report.ingress_policies, chain, Direction::Ingress);
                Verdict::Jump(chain.clone())
            }
        };
        self.map(TO_ENDPOINT).insert(endpoint.interface.clone(), to_verdict);
        if let Some(chain) = &report.egress_chain {
            self.isolation_chain(policies, &report.egress_policies, chain, Direction::Egress);
            self.map(FROM_ENDPOINT)
                .insert(endpoint.interface.clone(), Verdict::Jump(chain.clone()));
        }
        report
    }

    /// The chain `chain` shared by every endpoint isolated in one direction by exactly the
    /// policies `ids` (made on first use, with the policy chains it jumps to).
    pub(crate) fn isolation_chain(&mut self, policies: &[Policy], ids: &[String], chain: &str, direction: Direction) {
        if self.ruleset.chains.contains_key(chain) {
            return;
        }
        for policy in policies.iter().filter(|p| ids.contains(&p.id())) {
            self.policy_chain(policy, direction);
        }
        self.ruleset.chains.insert(
            chain.to_owned(),
            Chain {
                hook: None,
                rules: isolation_rules(ids, direction),
            },
        );
    }

    /// The chain of one policy's rules in one direction, shared by every endpoint it selects
    /// (made on first use: a node carries only the policies of its own pods). Its rules do not
    /// depend on the endpoint: named ports match the destination address with its port.
    pub(crate) fn policy_chain(&mut self, policy: &Policy, direction: Direction) -> String {
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
        self.using.clear();
        let mut rules = Vec::new();
        for (i, rule) in rules_of.iter().flatten().enumerate() {
            let comment = format!("{} {label}[{i}]", policy.id());
            rules.extend(self.rule(rule, side, verdict.clone(), &comment));
        }
        self.chain_sets.insert(name.clone(), std::mem::take(&mut self.using));
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
                self.using.insert(name.clone());
                vec![address(family, name)]
            }
            Peer::Pods { namespaces, pods } => {
                let key = format!("{namespaces:?} {pods:?}");
                let hash = stable_hash(&key);
                let names = [Family::V4, Family::V6].map(|family| format!("pods-{}-{hash:016x}", family.suffix()));
                for (name, family) in names.iter().zip([Family::V4, Family::V6]) {
                    let source = SetSource::Pods {
                        namespaces: namespaces.clone(),
                        pods: pods.clone(),
                        family,
                    };
                    self.dependent_set(
                        name,
                        source,
                        SetKind::Addresses {
                            family,
                            interval: false,
                        },
                    );
                    self.using.insert(name.clone());
                }
                names
                    .into_iter()
                    .zip([Family::V4, Family::V6])
                    .map(|(name, family)| address(family, name))
                    .collect()
            }
        }
    }

    /// A set whose elements are what every endpoint contributes to `source` (made on first
    /// use, recorded in [`Builder::sources`]).
    fn dependent_set(&mut self, name: &str, source: SetSource, kind: SetKind) {
        if self.ruleset.sets.contains_key(name) {
            return;
        }
        let mut elements = BTreeSet::new();
        for endpoint in &self.endpoints {
            source.elements(endpoint, self.namespaces, &mut elements);
        }
        self.ruleset.sets.insert(name.to_owned(), Set { kind, elements });
        self.sources.insert(name.to_owned(), source);
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
        self.using.insert(set.clone());
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
        let source = SetSource::NamedPort {
            name: name.to_owned(),
            family,
        };
        self.dependent_set(&set, source, SetKind::NamedPorts { family });
        self.using.insert(set.clone());
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

/// Traffic to a weft interface no dispatch entry covers: a pod felix has not programmed yet.
fn unprogrammed_pod_drop() -> Rule {
    Rule::new(
        vec![Match::InterfacePrefix {
            side: Side::Destination,
            prefix: INTERFACE_PREFIX.into(),
        }],
        Action::Verdict(Verdict::Drop),
        "a pod felix has not programmed",
    )
    .counted()
}

#[cfg(test)]
#[path = "calc_tests.rs"]
mod tests;

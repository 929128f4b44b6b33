//! The calculation kept between store events: the joined endpoints, the compiled policies and
//! the desired [`Ruleset`], with what a pod added, changed or removed needs recomputed and no
//! more.
//!
//! [`State::new`] is the whole calculation ([`crate::calc`]'s builder), for a policy,
//! namespace or pool change and at resync. [`State::update_endpoint`] takes one endpoint
//! (its WorkloadEndpoint joined with its Pod, or its absence) and recomputes only that
//! endpoint: its elements in each endpoint-dependent set (every distinct selector and port
//! name evaluated against the one pod), the isolation chains it maps to (a chain made only
//! when its combination of policies is new, with the policy chains and sets it needs; removed
//! with its last endpoint), and the map elements of its interface. [`State::take_steps`]
//! gives the difference since the last call in exactly the form and order
//! [`crate::render::diff`] gives between the two whole rulesets (a property test checks it
//! against the calculation from scratch), without comparing the whole rulesets.
//!
//! Must never differ from [`crate::calc::calculate`] on the same inputs. Pure: no I/O, no
//! clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::calc::{
    self, Builder, Direction, Endpoint, EndpointReport, Pool, SetSource, compile_policies, isolation_rules,
    policy_chain,
};
use crate::labels::Labels;
use crate::policy::{Policy, PolicyError};
use crate::render::{ElementChange, Step, Verb, set_difference};
use crate::ruleset::{Action, Chain, Element, FROM_ENDPOINT, Ruleset, Set, TO_ENDPOINT, Verdict};

/// The desired table and what it was computed from.
#[derive(Clone, Debug)]
pub struct State {
    node: String,
    namespaces: BTreeMap<String, Labels>,
    policies: Vec<Policy>,
    problems: Vec<PolicyError>,
    /// Every endpoint of the cluster by key (its WorkloadEndpoint's `namespace/name`).
    endpoints: BTreeMap<String, Endpoint>,
    /// The keys of the endpoints holding each address.
    by_address: HashMap<IpAddr, BTreeSet<String>>,
    /// Local endpoints: what isolates each, by key.
    reports: BTreeMap<String, EndpointReport>,
    /// Local endpoints by interface.
    interfaces: BTreeMap<String, BTreeSet<String>>,
    ruleset: Ruleset,
    /// Where the elements of each endpoint-dependent set come from.
    sources: BTreeMap<String, SetSource>,
    /// Isolation chain → the local endpoints it isolates (in either direction).
    chain_users: BTreeMap<String, usize>,
    /// Policy chain → the isolation chains jumping to it.
    chain_refs: BTreeMap<String, usize>,
    /// Policy chain → the sets it uses.
    chain_sets: BTreeMap<String, BTreeSet<String>>,
    /// Set → the policy chains using it.
    set_refs: BTreeMap<String, usize>,
    changes: Changes,
}

/// What changed since the last [`State::take_steps`], each object against its value then.
#[derive(Clone, Debug, Default)]
struct Changes {
    sets: BTreeMap<String, SetChange>,
    /// The chain as it was (`None`: it did not exist).
    chains: BTreeMap<String, Option<Chain>>,
    /// `(map, interface)` → the verdict it had.
    maps: BTreeMap<(String, String), Option<Verdict>>,
}

#[derive(Clone, Debug)]
enum SetChange {
    /// It did not exist.
    Absent,
    /// It exists all along; elements added and removed since.
    Delta {
        added: BTreeSet<Element>,
        removed: BTreeSet<Element>,
    },
    /// It existed as this and was removed (perhaps made again since).
    Was(Set),
}

impl State {
    /// The whole calculation for `node`.
    pub fn new(
        node: &str,
        endpoints: BTreeMap<String, Endpoint>,
        namespaces: BTreeMap<String, Labels>,
        policies: &[NetworkPolicy],
        pools: &[Pool],
    ) -> State {
        let (policies, problems) = compile_policies(policies);
        let mut builder = Builder::new(endpoints.values().collect(), &namespaces, pools);
        builder.base_chains();
        builder.pools();
        let mut locals: Vec<(&String, &Endpoint)> = endpoints.iter().filter(|(_, e)| e.node == node).collect();
        locals.sort_by(|a, b| a.1.interface.cmp(&b.1.interface));
        let mut reports = BTreeMap::new();
        let mut interfaces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut chain_users: BTreeMap<String, usize> = BTreeMap::new();
        for (key, endpoint) in locals {
            let report = builder.endpoint(endpoint, &policies);
            for chain in [&report.ingress_chain, &report.egress_chain].into_iter().flatten() {
                *chain_users.entry(chain.clone()).or_default() += 1;
            }
            interfaces
                .entry(endpoint.interface.clone())
                .or_default()
                .insert(key.clone());
            reports.insert(key.clone(), report);
        }
        let (ruleset, sources, chain_sets) = (builder.ruleset, builder.sources, builder.chain_sets);
        let mut chain_refs: BTreeMap<String, usize> = BTreeMap::new();
        for chain in chain_users.keys().filter_map(|name| ruleset.chains.get(name)) {
            for target in jumps(chain) {
                *chain_refs.entry(target.clone()).or_default() += 1;
            }
        }
        let mut set_refs: BTreeMap<String, usize> = BTreeMap::new();
        for set in chain_sets.values().flatten() {
            *set_refs.entry(set.clone()).or_default() += 1;
        }
        let mut by_address: HashMap<IpAddr, BTreeSet<String>> = HashMap::new();
        for (key, endpoint) in &endpoints {
            for address in &endpoint.addresses {
                by_address.entry(*address).or_default().insert(key.clone());
            }
        }
        State {
            node: node.to_owned(),
            namespaces,
            policies,
            problems,
            endpoints,
            by_address,
            reports,
            interfaces,
            ruleset,
            sources,
            chain_users,
            chain_refs,
            chain_sets,
            set_refs,
            changes: Changes::default(),
        }
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// Moves the desired ruleset out (the state is done with).
    pub fn into_ruleset(self) -> Ruleset {
        self.ruleset
    }

    /// The policies left out.
    pub fn problems(&self) -> &[PolicyError] {
        &self.problems
    }

    /// The local endpoints, as [`calc::Calculation::endpoints`] lists them.
    pub fn reports(&self) -> Vec<EndpointReport> {
        let mut reports: Vec<EndpointReport> = self.reports.values().cloned().collect();
        reports.sort_by(|a, b| a.interface.cmp(&b.interface));
        reports
    }

    pub fn local_endpoints(&self) -> usize {
        self.reports.len()
    }

    /// The endpoints the state was computed from, by key.
    pub fn endpoints(&self) -> &BTreeMap<String, Endpoint> {
        &self.endpoints
    }

    /// Endpoint `key` is now `endpoint` (`None`: gone).
    pub fn update_endpoint(&mut self, key: &str, endpoint: Option<Endpoint>) {
        if self.endpoints.get(key) == endpoint.as_ref() {
            return;
        }
        let old = self.endpoints.remove(key);
        if let Some(old) = &old {
            for address in &old.addresses {
                if let Some(keys) = self.by_address.get_mut(address) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.by_address.remove(address);
                    }
                }
            }
        }
        // Its elements in every endpoint-dependent set: each source evaluated for the one
        // endpoint, before and after.
        let mut moved: Vec<(String, BTreeSet<Element>, BTreeSet<Element>)> = Vec::new();
        for (name, source) in &self.sources {
            let (mut before, mut after) = (BTreeSet::new(), BTreeSet::new());
            if let Some(old) = &old {
                source.elements(old, &self.namespaces, &mut before);
            }
            if let Some(new) = &endpoint {
                source.elements(new, &self.namespaces, &mut after);
            }
            if before != after {
                moved.push((name.clone(), before, after));
            }
        }
        if let Some(new) = &endpoint {
            for address in &new.addresses {
                self.by_address.entry(*address).or_default().insert(key.to_owned());
            }
            self.endpoints.insert(key.to_owned(), new.clone());
        }
        for (set, before, after) in moved {
            for element in before.difference(&after) {
                if !self.contributed(&set, element) {
                    self.remove_element(&set, element);
                }
            }
            for element in after.difference(&before) {
                self.insert_element(&set, element.clone());
            }
        }
        // Its isolation: the new chains in use before the old ones are let go (a chain kept
        // is never removed and made again).
        let old_report = self.reports.remove(key);
        if let Some(report) = &old_report
            && let Some(keys) = self.interfaces.get_mut(&report.interface)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.interfaces.remove(&report.interface);
            }
        }
        if let Some(new) = endpoint.as_ref().filter(|e| e.node == self.node) {
            let report = calc::isolation(&self.policies, new);
            if let Some(chain) = &report.ingress_chain {
                self.use_isolation(chain, &report.ingress_policies, Direction::Ingress);
            }
            if let Some(chain) = &report.egress_chain {
                self.use_isolation(chain, &report.egress_policies, Direction::Egress);
            }
            self.interfaces
                .entry(report.interface.clone())
                .or_default()
                .insert(key.to_owned());
            self.reports.insert(key.to_owned(), report);
        }
        let mut interfaces = BTreeSet::new();
        if let Some(report) = old_report {
            for chain in [&report.ingress_chain, &report.egress_chain].into_iter().flatten() {
                self.release_isolation(chain);
            }
            interfaces.insert(report.interface);
        }
        if let Some(report) = self.reports.get(key) {
            interfaces.insert(report.interface.clone());
        }
        for interface in interfaces {
            self.refresh_maps(&interface);
        }
    }

    /// Whether an endpoint still contributes `element` to `set`.
    fn contributed(&self, set: &str, element: &Element) -> bool {
        let address = match element {
            Element::Range(range) => range.first,
            Element::NamedPort(address, _, _) => *address,
            Element::Ports(_, _) => return false,
        };
        let Some(source) = self.sources.get(set) else {
            return false;
        };
        self.by_address.get(&address).into_iter().flatten().any(|key| {
            self.endpoints.get(key).is_some_and(|endpoint| {
                let mut elements = BTreeSet::new();
                source.elements(endpoint, &self.namespaces, &mut elements);
                elements.contains(element)
            })
        })
    }

    /// The map elements of `interface`, as the whole calculation leaves them: the local
    /// endpoints holding it in key order, the last one's ingress verdict and the last
    /// egress-isolated one's egress chain.
    fn refresh_maps(&mut self, interface: &str) {
        let mut to = None;
        let mut from = None;
        for report in self
            .interfaces
            .get(interface)
            .into_iter()
            .flatten()
            .filter_map(|key| self.reports.get(key))
        {
            to = Some(match &report.ingress_chain {
                None => Verdict::Accept,
                Some(chain) => Verdict::Jump(chain.clone()),
            });
            if let Some(chain) = &report.egress_chain {
                from = Some(Verdict::Jump(chain.clone()));
            }
        }
        self.set_map(TO_ENDPOINT, interface, to);
        self.set_map(FROM_ENDPOINT, interface, from);
    }

    /// One more local endpoint isolated by `chain` (the policies `ids`): made with the policy
    /// chains and sets it needs when it is the first.
    fn use_isolation(&mut self, chain: &str, ids: &[String], direction: Direction) {
        let users = self.chain_users.entry(chain.to_owned()).or_default();
        *users += 1;
        if *users > 1 {
            return;
        }
        for id in ids {
            let target = policy_chain(id, direction);
            let refs = self.chain_refs.entry(target.clone()).or_default();
            *refs += 1;
            if *refs == 1 {
                self.add_policy_chain(id, direction);
            }
        }
        self.insert_chain(
            chain,
            Chain {
                hook: None,
                rules: isolation_rules(ids, direction),
            },
        );
    }

    /// Makes the chain of policy `id` in `direction` and the sets it uses that are missing
    /// (those depending on endpoints filled from every endpoint).
    fn add_policy_chain(&mut self, id: &str, direction: Direction) {
        let Some(policy) = self.policies.iter().find(|p| p.id() == id) else {
            return;
        };
        let mut builder = Builder::new(self.endpoints.values().collect(), &self.namespaces, &[]);
        let name = builder.policy_chain(policy, direction);
        let (mut made, mut sources, mut chain_sets) = (builder.ruleset, builder.sources, builder.chain_sets);
        let uses = chain_sets.remove(&name).unwrap_or_default();
        for set in &uses {
            let refs = self.set_refs.entry(set.clone()).or_default();
            *refs += 1;
            if *refs == 1
                && let Some(contents) = made.sets.remove(set)
            {
                if let Some(source) = sources.remove(set) {
                    self.sources.insert(set.clone(), source);
                }
                self.insert_set(set, contents);
            }
        }
        self.chain_sets.insert(name.clone(), uses);
        if let Some(chain) = made.chains.remove(&name) {
            self.insert_chain(&name, chain);
        }
    }

    /// One local endpoint fewer isolated by `chain`: removed with the last, and with it the
    /// policy chains and sets nothing else uses.
    fn release_isolation(&mut self, chain: &str) {
        let Some(users) = self.chain_users.get_mut(chain) else {
            return;
        };
        *users -= 1;
        if *users > 0 {
            return;
        }
        self.chain_users.remove(chain);
        let Some(removed) = self.remove_chain(chain) else {
            return;
        };
        for target in jumps(&removed) {
            let Some(refs) = self.chain_refs.get_mut(target) else {
                continue;
            };
            *refs -= 1;
            if *refs > 0 {
                continue;
            }
            self.chain_refs.remove(target);
            self.remove_chain(target);
            for set in self.chain_sets.remove(target).unwrap_or_default() {
                let Some(refs) = self.set_refs.get_mut(&set) else {
                    continue;
                };
                *refs -= 1;
                if *refs == 0 {
                    self.set_refs.remove(&set);
                    self.sources.remove(&set);
                    self.remove_set(&set);
                }
            }
        }
    }

    /// The pending change of `set` (an empty delta when none yet).
    fn set_change(&mut self, set: &str) -> &mut SetChange {
        self.changes
            .sets
            .entry(set.to_owned())
            .or_insert_with(|| SetChange::Delta {
                added: BTreeSet::new(),
                removed: BTreeSet::new(),
            })
    }

    fn insert_element(&mut self, set: &str, element: Element) {
        let Some(contents) = self.ruleset.sets.get_mut(set) else {
            return;
        };
        if !contents.elements.insert(element.clone()) {
            return;
        }
        if let SetChange::Delta { added, removed } = self.set_change(set)
            && !removed.remove(&element)
        {
            added.insert(element);
        }
    }

    fn remove_element(&mut self, set: &str, element: &Element) {
        let Some(contents) = self.ruleset.sets.get_mut(set) else {
            return;
        };
        if !contents.elements.remove(element) {
            return;
        }
        if let SetChange::Delta { added, removed } = self.set_change(set)
            && !added.remove(element)
        {
            removed.insert(element.clone());
        }
    }

    fn insert_set(&mut self, name: &str, set: Set) {
        self.changes.sets.entry(name.to_owned()).or_insert(SetChange::Absent);
        self.ruleset.sets.insert(name.to_owned(), set);
    }

    fn remove_set(&mut self, name: &str) {
        let Some(set) = self.ruleset.sets.remove(name) else {
            return;
        };
        match self.changes.sets.remove(name) {
            None => {
                self.changes.sets.insert(name.to_owned(), SetChange::Was(set));
            }
            Some(SetChange::Delta { added, removed }) => {
                let mut was = set;
                for element in &added {
                    was.elements.remove(element);
                }
                was.elements.extend(removed);
                self.changes.sets.insert(name.to_owned(), SetChange::Was(was));
            }
            Some(kept) => {
                self.changes.sets.insert(name.to_owned(), kept);
            }
        }
    }

    fn insert_chain(&mut self, name: &str, chain: Chain) {
        self.changes.chains.entry(name.to_owned()).or_insert(None);
        self.ruleset.chains.insert(name.to_owned(), chain);
    }

    fn remove_chain(&mut self, name: &str) -> Option<Chain> {
        let chain = self.ruleset.chains.remove(name)?;
        self.changes
            .chains
            .entry(name.to_owned())
            .or_insert_with(|| Some(chain.clone()));
        Some(chain)
    }

    fn set_map(&mut self, map: &str, interface: &str, verdict: Option<Verdict>) {
        let entries = self.ruleset.maps.entry(map.to_owned()).or_default();
        if entries.get(interface) == verdict.as_ref() {
            return;
        }
        let was = match verdict {
            Some(verdict) => entries.insert(interface.to_owned(), verdict),
            None => entries.remove(interface),
        };
        self.changes
            .maps
            .entry((map.to_owned(), interface.to_owned()))
            .or_insert(was);
    }

    /// The steps from the ruleset at the last call to this one, as [`crate::render::diff`]
    /// orders them; the changes are forgotten.
    pub fn take_steps(&mut self) -> Vec<Step> {
        let changes = std::mem::take(&mut self.changes);
        let mut steps = Vec::new();
        let mut removed_sets = Vec::new();
        for (name, change) in changes.sets {
            let Some(set) = self.ruleset.sets.get(&name) else {
                if matches!(change, SetChange::Was(_)) {
                    removed_sets.push(name);
                }
                continue;
            };
            match change {
                SetChange::Absent => steps.push(Step::AddSet(name, set.clone())),
                SetChange::Delta { added, removed } => {
                    if !removed.is_empty() {
                        steps.push(element_step(Verb::Delete, &name, removed));
                    }
                    if !added.is_empty() {
                        steps.push(element_step(Verb::Add, &name, added));
                    }
                }
                SetChange::Was(was) => set_difference(&name, &was, set, &mut steps),
            }
        }
        for (name, was) in &changes.chains {
            if was.is_none()
                && let Some(chain) = self.ruleset.chains.get(name)
            {
                steps.push(Step::AddChain(name.clone(), chain.clone()));
            }
        }
        for (name, was) in &changes.chains {
            let Some(chain) = self.ruleset.chains.get(name) else {
                continue;
            };
            match was {
                None if !chain.rules.is_empty() => steps.push(Step::AddRules(name.clone(), chain.rules.clone())),
                Some(was) if was != chain => {
                    steps.push(Step::FlushChain(name.clone()));
                    if !chain.rules.is_empty() {
                        steps.push(Step::AddRules(name.clone(), chain.rules.clone()));
                    }
                }
                _ => {}
            }
        }
        // Per map: the entries deleted, then those added.
        let mut maps: BTreeMap<String, [MapEntries; 2]> = BTreeMap::new();
        for ((map, interface), was) in changes.maps {
            let now = self.ruleset.maps.get(&map).and_then(|m| m.get(&interface));
            let [gone, added] = maps.entry(map).or_default();
            if let Some(was) = &was
                && now != Some(was)
            {
                gone.push((interface.clone(), was.clone()));
            }
            if let Some(now) = now
                && was.as_ref() != Some(now)
            {
                added.push((interface, now.clone()));
            }
        }
        for (map, [gone, added]) in maps {
            for (verb, entries) in [(Verb::Delete, gone), (Verb::Add, added)] {
                if !entries.is_empty() {
                    steps.push(Step::Elements(ElementChange::Map {
                        verb,
                        map: map.clone(),
                        entries,
                    }));
                }
            }
        }
        let removed_chains: Vec<&String> = changes
            .chains
            .iter()
            .filter(|(name, was)| was.is_some() && !self.ruleset.chains.contains_key(*name))
            .map(|(name, _)| name)
            .collect();
        for name in &removed_chains {
            steps.push(Step::FlushChain((*name).clone()));
        }
        for name in &removed_chains {
            steps.push(Step::DeleteChain((*name).clone()));
        }
        steps.extend(removed_sets.into_iter().map(Step::DeleteSet));
        steps
    }
}

/// Map elements: interface → verdict.
type MapEntries = Vec<(String, Verdict)>;

fn element_step(verb: Verb, set: &str, elements: BTreeSet<Element>) -> Step {
    Step::Elements(ElementChange::Set {
        verb,
        set: set.to_owned(),
        elements: elements.into_iter().collect(),
    })
}

/// The chains `chain` jumps to.
fn jumps(chain: &Chain) -> impl Iterator<Item = &String> {
    chain.rules.iter().filter_map(|rule| match &rule.action {
        Action::Verdict(Verdict::Jump(target)) => Some(target),
        _ => None,
    })
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;

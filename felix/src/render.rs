//! [`Ruleset`] → one atomic batch for nftables: either a full replace of `inet weft` or the
//! difference from the ruleset applied last.
//!
//! A full replace is nft's own syntax (`nft -f -`, parsed far faster than JSON) on nft 1.0.6's
//! terms: `add table` + `flush table` (never delete and re-add in one batch), then flushing
//! every set and map the kernel holds, deleting what weft no longer wants, and adding
//! everything back ([`text`]). A difference touches only set elements, map elements and the
//! chains whose rules changed. When it is elements of plain (non-interval) sets and verdict
//! maps only, as pod churn is, it becomes [`Batch::Elements`], which [`crate::nft`] sends as
//! an nf_tables netlink batch of its own, without the `nft` binary (that reads the kernel's
//! whole table first); anything else goes through `nft -f -` as text.
//!
//! Every rule carries its comment and a hash of its content (`x/p ingress[0] #1a2b…`): resync
//! compares hashes instead of parsing rule text back.
//!
//! Pure.

mod text;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::listing::Listing;
use crate::ruleset::{Chain, Element, Rule, Ruleset, Set, SetKind, Verdict, stable_hash};

/// The longest human part of a rule comment (the kernel keeps at most 128 bytes).
const COMMENT_TEXT: usize = 100;

/// The comment a rule carries in the kernel (quotes, backslashes and control characters
/// replaced: it is written inside nft's quoted string).
pub fn comment(rule: &Rule) -> String {
    let mut text: String = rule
        .comment
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if text.len() > COMMENT_TEXT {
        let mut end = COMMENT_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    format!("{text} #{:016x}", stable_hash(&format!("{rule:?}")))
}

/// Add or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Add,
    Delete,
}

/// Elements of one named set or verdict map added or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElementChange {
    Set {
        verb: Verb,
        set: String,
        elements: Vec<Element>,
    },
    /// Interface name → verdict (the verdict is ignored when deleting).
    Map {
        verb: Verb,
        map: String,
        entries: Vec<(String, Verdict)>,
    },
}

/// One operation of a difference, in the order it must run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    AddSet(String, Set),
    /// Empties an interval set before its merged ranges are added back.
    FlushSet(String),
    AddChain(String, Chain),
    /// Empties a chain before its rules are added back (or before it is deleted).
    FlushChain(String),
    AddRules(String, Vec<Rule>),
    DeleteChain(String),
    DeleteSet(String),
    Elements(ElementChange),
}

/// What [`crate::nft::Nft::apply`] takes: one atomic transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Batch {
    /// nft's own syntax, for `nft -f -`.
    Text(String),
    /// Elements of plain sets and verdict maps only (netlink).
    Elements(Vec<ElementChange>),
}

impl Batch {
    /// The batch of a difference: [`Batch::Elements`] when every step is an element change
    /// ([`diff`] never makes one for an interval set: those are flushed and refilled).
    pub fn of(steps: Vec<Step>) -> Batch {
        if steps.iter().all(|s| matches!(s, Step::Elements(_))) {
            Batch::Elements(
                steps
                    .into_iter()
                    .filter_map(|s| match s {
                        Step::Elements(change) => Some(change),
                        _ => None,
                    })
                    .collect(),
            )
        } else {
            Batch::Text(text::steps(&steps))
        }
    }

    /// The same batch as nft text (what the `nft` binary would be given).
    pub fn to_text(&self) -> String {
        match self {
            Batch::Text(text) => text.clone(),
            Batch::Elements(changes) => {
                text::steps(&changes.iter().map(|c| Step::Elements(c.clone())).collect::<Vec<_>>())
            }
        }
    }
}

/// A full replace of the table. `kernel` is what the kernel holds now (to flush and delete
/// leftovers); `None` when the table does not exist yet.
pub fn full(ruleset: &Ruleset, kernel: Option<&Listing>) -> Batch {
    Batch::Text(text::full(ruleset, kernel))
}

fn is_interval(kind: &SetKind) -> bool {
    matches!(kind, SetKind::Addresses { interval: true, .. } | SetKind::Ports)
}

/// The steps that turn `old` (applied last) into `new`; `None` when only a full replace can
/// (a base chain or a set's type changed). No steps means nothing changed.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Option<Vec<Step>> {
    for (name, chain) in &new.chains {
        if chain.hook.is_some() && old.chains.get(name) != Some(chain) {
            return None;
        }
    }
    if old
        .chains
        .iter()
        .any(|(name, c)| c.hook.is_some() && !new.chains.contains_key(name))
        || old.maps.keys().ne(new.maps.keys())
    {
        return None;
    }
    for (name, set) in &new.sets {
        if old.sets.get(name).is_some_and(|o| o.kind != set.kind) {
            return None;
        }
    }
    let mut steps = Vec::new();
    // Sets first: new rules may refer to new sets.
    for (name, set) in &new.sets {
        match old.sets.get(name) {
            None => steps.push(Step::AddSet(name.clone(), set.clone())),
            Some(old_set) => set_difference(name, old_set, set, &mut steps),
        }
    }
    // Every new chain exists before any rule jumps to it.
    for (name, chain) in &new.chains {
        if !old.chains.contains_key(name) {
            steps.push(Step::AddChain(name.clone(), chain.clone()));
        }
    }
    for (name, chain) in &new.chains {
        match old.chains.get(name) {
            None if !chain.rules.is_empty() => steps.push(Step::AddRules(name.clone(), chain.rules.clone())),
            Some(old_chain) if old_chain != chain => {
                steps.push(Step::FlushChain(name.clone()));
                if !chain.rules.is_empty() {
                    steps.push(Step::AddRules(name.clone(), chain.rules.clone()));
                }
            }
            _ => {}
        }
    }
    for (name, entries) in &new.maps {
        let empty = BTreeMap::new();
        let old_entries = old.maps.get(name).unwrap_or(&empty);
        let changed = |from: &BTreeMap<String, Verdict>, to: &BTreeMap<String, Verdict>| -> Vec<(String, Verdict)> {
            from.iter()
                .filter(|(k, v)| to.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let gone = changed(old_entries, entries);
        if !gone.is_empty() {
            steps.push(Step::Elements(ElementChange::Map {
                verb: Verb::Delete,
                map: name.clone(),
                entries: gone,
            }));
        }
        let added = changed(entries, old_entries);
        if !added.is_empty() {
            steps.push(Step::Elements(ElementChange::Map {
                verb: Verb::Add,
                map: name.clone(),
                entries: added,
            }));
        }
    }
    // Deletions last, once nothing refers to them.
    // Removed chains may jump to one another: empty them all before deleting any.
    let removed: Vec<&String> = old.chains.keys().filter(|n| !new.chains.contains_key(*n)).collect();
    for name in &removed {
        steps.push(Step::FlushChain((*name).clone()));
    }
    for name in &removed {
        steps.push(Step::DeleteChain((*name).clone()));
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        steps.push(Step::DeleteSet(name.clone()));
    }
    Some(steps)
}

/// The steps that turn the elements of set `name` from `old`'s into `new`'s (of one kind).
pub fn set_difference(name: &str, old: &Set, new: &Set, steps: &mut Vec<Step>) {
    if old.elements == new.elements {
        return;
    }
    if is_interval(&new.kind) {
        // Interval elements are merged ranges: replace them all.
        steps.push(Step::FlushSet(name.to_owned()));
        if !new.elements.is_empty() {
            steps.push(set_change(Verb::Add, name, new.elements.iter()));
        }
    } else {
        let gone: Vec<&Element> = old.elements.difference(&new.elements).collect();
        let added: Vec<&Element> = new.elements.difference(&old.elements).collect();
        if !gone.is_empty() {
            steps.push(set_change(Verb::Delete, name, gone.into_iter()));
        }
        if !added.is_empty() {
            steps.push(set_change(Verb::Add, name, added.into_iter()));
        }
    }
}

fn set_change<'a>(verb: Verb, set: &str, elements: impl Iterator<Item = &'a Element>) -> Step {
    Step::Elements(ElementChange::Set {
        verb,
        set: set.to_owned(),
        elements: elements.cloned().collect(),
    })
}

/// One set element as nft JSON, as `nft -j list` prints it back for plain sets.
pub fn element(element: &Element) -> Value {
    match element {
        Element::Range(range) if range.first == range.last => json!(range.first.to_string()),
        Element::Range(range) => json!({"range": [range.first.to_string(), range.last.to_string()]}),
        Element::NamedPort(address, protocol, port) => {
            json!({"concat": [address.to_string(), protocol.nft_name(), port]})
        }
        Element::Ports(a, b) if a == b => json!(a),
        Element::Ports(a, b) => json!({"range": [a, b]}),
    }
}

/// A verdict as nft JSON, as `nft -j list` prints map elements.
pub fn verdict(verdict: &Verdict) -> Value {
    match verdict {
        Verdict::Accept => json!({"accept": null}),
        Verdict::Drop => json!({"drop": null}),
        Verdict::Return => json!({"return": null}),
        Verdict::Jump(target) => json!({"jump": {"target": target}}),
    }
}

/// Whether the kernel's table is what `ruleset` renders to: same chains with the same rule
/// hashes, same sets and maps with the same elements (interval sets: the same count, as the
/// kernel prints ranges as prefixes).
pub fn matches_kernel(ruleset: &Ruleset, kernel: &Listing) -> bool {
    let chains_equal = ruleset.chains.len() == kernel.chains.len()
        && ruleset.chains.iter().all(|(name, chain)| {
            kernel.chains.get(name).is_some_and(|rules| {
                rules.len() == chain.rules.len()
                    && rules
                        .iter()
                        .zip(&chain.rules)
                        .all(|(k, r)| k.comment.as_deref() == Some(&comment(r)))
            })
        });
    let sets_equal = ruleset.sets.len() == kernel.sets.len()
        && ruleset.sets.iter().all(|(name, set)| {
            kernel.sets.get(name).is_some_and(|elements| {
                if matches!(set.kind, SetKind::Addresses { interval: true, .. } | SetKind::Ports) {
                    elements.len() == set.elements.len()
                } else {
                    let mut wanted: Vec<String> = set.elements.iter().map(|e| element(e).to_string()).collect();
                    let mut found: Vec<String> = elements.iter().map(Value::to_string).collect();
                    wanted.sort();
                    found.sort();
                    wanted == found
                }
            })
        });
    let maps_equal = ruleset.maps.len() == kernel.maps.len()
        && ruleset.maps.iter().all(|(name, elements)| {
            kernel.maps.get(name).is_some_and(|found| {
                let mut wanted: Vec<String> = elements
                    .iter()
                    .map(|(k, v)| json!([k, verdict(v)]).to_string())
                    .collect();
                let mut found: Vec<String> = found.iter().map(Value::to_string).collect();
                wanted.sort();
                found.sort();
                wanted == found
            })
        });
    chains_equal && sets_equal && maps_equal
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::calc::{Endpoint, Inputs, calculate};
    use crate::ruleset::Action;

    fn inputs(pods: &[(&str, &str)]) -> Inputs {
        let policy = serde_json::from_value(json!({
            "metadata": {"namespace": "x", "name": "from-y"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}
        }))
        .unwrap();
        Inputs {
            node: "n1".into(),
            endpoints: pods
                .iter()
                .enumerate()
                .map(|(i, (namespace, node))| Endpoint {
                    namespace: namespace.to_string(),
                    pod: format!("p{i}"),
                    node: node.to_string(),
                    interface: format!("wft{i}"),
                    addresses: vec![format!("198.18.0.{}", i + 1).parse().unwrap()],
                    labels: Default::default(),
                    ports: vec![],
                })
                .collect(),
            namespaces: [("y".to_string(), [("ns".to_string(), "y".to_string())].into())].into(),
            policies: vec![policy],
            pools: vec![],
        }
    }

    #[test]
    fn a_remote_pod_added_is_one_set_element_and_nothing_else() {
        let before = calculate(&inputs(&[("x", "n1"), ("y", "n2")])).ruleset;
        let after = calculate(&inputs(&[("x", "n1"), ("y", "n2"), ("y", "n3")])).ruleset;
        let steps = diff(&before, &after).unwrap();
        assert_eq!(steps.len(), 1, "{steps:?}");
        let Batch::Elements(changes) = Batch::of(steps) else {
            panic!("not an element batch")
        };
        let ElementChange::Set { verb, elements, .. } = &changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!(*verb, Verb::Add);
        assert_eq!(
            elements,
            &[Element::Range(crate::ranges::AddressRange::single(
                "198.18.0.3".parse().unwrap()
            ))]
        );
    }

    #[test]
    fn a_local_pod_added_is_map_elements_only() {
        let before = calculate(&inputs(&[("x", "n1")])).ruleset;
        let after = calculate(&inputs(&[("x", "n1"), ("x", "n1")])).ruleset;
        let batch = Batch::of(diff(&before, &after).unwrap());
        let Batch::Elements(changes) = &batch else {
            panic!("{batch:?}")
        };
        assert!(
            changes
                .iter()
                .all(|c| matches!(c, ElementChange::Map { verb: Verb::Add, .. })),
            "{changes:?}"
        );
        assert!(
            batch
                .to_text()
                .contains("add element inet weft to-endpoint { \"wft1\" : jump isolated-in-")
        );
    }

    #[test]
    fn a_changed_interval_set_goes_through_nft_as_text() {
        let before = calculate(&inputs(&[("x", "n1")])).ruleset;
        let mut after = before.clone();
        after
            .sets
            .get_mut("pools-v4")
            .unwrap()
            .elements
            .insert(Element::Range(crate::ranges::AddressRange::of(
                &"198.18.0.0/24".parse().unwrap(),
            )));
        let Batch::Text(text) = Batch::of(diff(&before, &after).unwrap()) else {
            panic!("an interval set is not element-only")
        };
        assert_eq!(
            text,
            "flush set inet weft pools-v4\nadd element inet weft pools-v4 { 198.18.0.0-198.18.0.255 }\n"
        );
    }

    #[test]
    fn nothing_changed_is_no_step() {
        let ruleset = calculate(&inputs(&[("x", "n1"), ("y", "n2")])).ruleset;
        assert_eq!(diff(&ruleset, &ruleset), Some(vec![]));
    }

    #[test]
    fn every_rule_comment_carries_a_hash_of_its_content() {
        let a = Rule::new(vec![], Action::Verdict(Verdict::Accept), "x/p ingress[0]");
        let b = Rule::new(vec![], Action::Verdict(Verdict::Drop), "x/p ingress[0]");
        assert!(comment(&a).starts_with("x/p ingress[0] #"));
        assert_ne!(comment(&a), comment(&b));
        let long = Rule::new(vec![], Action::Verdict(Verdict::Accept), "é".repeat(200));
        assert!(comment(&long).len() <= 128);
    }
}

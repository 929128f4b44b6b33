//! [`Ruleset`] → nft JSON (`nft -j -f -`), as one atomic batch: either a full replace of
//! `inet weft` or the difference from the ruleset applied last.
//!
//! A full replace on nft 1.0.6 is `add table` + `flush table` (never delete and re-add in one
//! batch), then flushing every set and map the kernel holds, deleting what weft no longer wants,
//! and adding everything back. A difference touches only set elements, map elements and the
//! chains whose rules changed, so pod churn costs a handful of element updates.
//!
//! Every rule carries its comment and a hash of its content (`x/p ingress[0] #1a2b…`): resync
//! compares hashes instead of parsing rule text back.
//!
//! Pure.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::listing::Listing;
use crate::ruleset::{
    Action, Chain, Element, Family, Hook, Match, Rule, Ruleset, Set, SetKind, Side, TABLE, Verdict, stable_hash,
};

/// The longest human part of a rule comment (the kernel keeps at most 128 bytes).
const COMMENT_TEXT: usize = 100;

/// The comment a rule carries in the kernel.
pub fn comment(rule: &Rule) -> String {
    let mut text = rule.comment.clone();
    if text.len() > COMMENT_TEXT {
        let mut end = COMMENT_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    format!("{text} #{:016x}", stable_hash(&format!("{rule:?}")))
}

fn table() -> Value {
    json!({"family": "inet", "name": TABLE})
}

fn named(name: &str) -> Value {
    json!({"family": "inet", "table": TABLE, "name": name})
}

/// A full replace of the table. `kernel` is what the kernel holds now (to flush and delete
/// leftovers); `None` when the table does not exist yet.
pub fn full(ruleset: &Ruleset, kernel: Option<&Listing>) -> Value {
    let mut batch = vec![json!({"add": {"table": table()}}), json!({"flush": {"table": table()}})];
    if let Some(kernel) = kernel {
        for name in kernel.sets.keys() {
            batch.push(json!({"flush": {"set": named(name)}}));
        }
        for name in kernel.maps.keys() {
            batch.push(json!({"flush": {"map": named(name)}}));
        }
        for name in kernel.chains.keys().filter(|n| !ruleset.chains.contains_key(*n)) {
            batch.push(json!({"delete": {"chain": named(name)}}));
        }
        for name in kernel.sets.keys().filter(|n| !ruleset.sets.contains_key(*n)) {
            batch.push(json!({"delete": {"set": named(name)}}));
        }
        for name in kernel.maps.keys().filter(|n| !ruleset.maps.contains_key(*n)) {
            batch.push(json!({"delete": {"map": named(name)}}));
        }
    }
    for (name, set) in &ruleset.sets {
        batch.push(json!({"add": {"set": set_object(name, set)}}));
    }
    for (name, chain) in &ruleset.chains {
        batch.push(json!({"add": {"chain": chain_object(name, chain)}}));
    }
    for (name, elements) in &ruleset.maps {
        let mut map = named(name);
        map["type"] = json!("ifname");
        map["map"] = json!("verdict");
        let elem: Vec<Value> = elements.iter().map(|(k, v)| json!([k, verdict(v)])).collect();
        if !elem.is_empty() {
            map["elem"] = Value::Array(elem);
        }
        batch.push(json!({"add": {"map": map}}));
    }
    for (name, chain) in &ruleset.chains {
        for rule in &chain.rules {
            batch.push(json!({"add": {"rule": rule_object(name, rule)}}));
        }
    }
    json!({"nftables": batch})
}

/// The batch that turns `old` (applied last) into `new`; `None` when only a full replace can
/// (a base chain or a set's type changed). An empty batch means nothing changed.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Option<Vec<Value>> {
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
    let mut batch = Vec::new();
    // Sets first: new rules may refer to new sets.
    for (name, set) in &new.sets {
        match old.sets.get(name) {
            None => batch.push(json!({"add": {"set": set_object(name, set)}})),
            Some(old_set) if old_set.elements != set.elements => {
                let interval = matches!(set.kind, SetKind::Addresses { interval: true, .. } | SetKind::Ports);
                if interval {
                    // Interval elements are merged ranges: replace them all.
                    batch.push(json!({"flush": {"set": named(name)}}));
                    if let Some(add) = elements(name, &set.elements, "add") {
                        batch.push(add);
                    }
                } else {
                    let gone: BTreeSet<Element> = old_set.elements.difference(&set.elements).cloned().collect();
                    let added: BTreeSet<Element> = set.elements.difference(&old_set.elements).cloned().collect();
                    batch.extend(elements(name, &gone, "delete"));
                    batch.extend(elements(name, &added, "add"));
                }
            }
            Some(_) => {}
        }
    }
    // Every new chain exists before any rule jumps to it.
    for (name, chain) in &new.chains {
        if !old.chains.contains_key(name) {
            batch.push(json!({"add": {"chain": chain_object(name, chain)}}));
        }
    }
    for (name, chain) in &new.chains {
        match old.chains.get(name) {
            None => {
                for rule in &chain.rules {
                    batch.push(json!({"add": {"rule": rule_object(name, rule)}}));
                }
            }
            Some(old_chain) if old_chain != chain => {
                batch.push(json!({"flush": {"chain": named(name)}}));
                for rule in &chain.rules {
                    batch.push(json!({"add": {"rule": rule_object(name, rule)}}));
                }
            }
            Some(_) => {}
        }
    }
    for (name, elements) in &new.maps {
        let empty = Default::default();
        let old_elements = old.maps.get(name).unwrap_or(&empty);
        let gone: Vec<Value> = old_elements
            .iter()
            .filter(|(k, v)| elements.get(*k) != Some(*v))
            .map(|(k, _)| json!(k))
            .collect();
        if !gone.is_empty() {
            batch.push(json!({"delete": {"element": with_elem(name, gone)}}));
        }
        let added: Vec<Value> = elements
            .iter()
            .filter(|(k, v)| old_elements.get(*k) != Some(*v))
            .map(|(k, v)| json!([k, verdict(v)]))
            .collect();
        if !added.is_empty() {
            batch.push(json!({"add": {"element": with_elem(name, added)}}));
        }
    }
    // Deletions last, once nothing refers to them.
    // Removed chains may jump to one another: empty them all before deleting any.
    let removed: Vec<&String> = old.chains.keys().filter(|n| !new.chains.contains_key(*n)).collect();
    for name in &removed {
        batch.push(json!({"flush": {"chain": named(name)}}));
    }
    for name in &removed {
        batch.push(json!({"delete": {"chain": named(name)}}));
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        batch.push(json!({"delete": {"set": named(name)}}));
    }
    Some(batch)
}

fn with_elem(name: &str, elem: Vec<Value>) -> Value {
    let mut object = named(name);
    object["elem"] = Value::Array(elem);
    object
}

fn elements(name: &str, elements: &BTreeSet<Element>, verb: &str) -> Option<Value> {
    if elements.is_empty() {
        return None;
    }
    let elem = elements.iter().map(element).collect();
    Some(json!({verb: {"element": with_elem(name, elem)}}))
}

fn set_object(name: &str, set: &Set) -> Value {
    let mut object = named(name);
    let address_type = |family: Family| match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    };
    match set.kind {
        SetKind::Addresses { family, interval } => {
            object["type"] = json!(address_type(family));
            if interval {
                object["flags"] = json!(["interval"]);
            }
        }
        SetKind::NamedPorts { family } => {
            object["type"] = json!([address_type(family), "inet_proto", "inet_service"]);
        }
        SetKind::Ports => {
            object["type"] = json!("inet_service");
            object["flags"] = json!(["interval"]);
        }
    }
    if !set.elements.is_empty() {
        object["elem"] = set.elements.iter().map(element).collect();
    }
    object
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

fn chain_object(name: &str, chain: &Chain) -> Value {
    let mut object = named(name);
    if let Some(hook) = chain.hook {
        let (kind, hook, priority) = match hook {
            Hook::Forward => ("filter", "forward", 0),
            Hook::Input => ("filter", "input", 0),
            Hook::Output => ("filter", "output", 0),
            Hook::Postrouting => ("nat", "postrouting", 100),
        };
        object["type"] = json!(kind);
        object["hook"] = json!(hook);
        object["prio"] = json!(priority);
        object["policy"] = json!("accept");
    }
    object
}

pub fn verdict(verdict: &Verdict) -> Value {
    match verdict {
        Verdict::Accept => json!({"accept": null}),
        Verdict::Drop => json!({"drop": null}),
        Verdict::Return => json!({"return": null}),
        Verdict::Jump(target) => json!({"jump": {"target": target}}),
    }
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn address_payload(family: Family, side: Side) -> Value {
    let protocol = match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    };
    payload(
        protocol,
        match side {
            Side::Source => "saddr",
            Side::Destination => "daddr",
        },
    )
}

fn matching(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn l4proto(protocol: crate::policy::Protocol) -> Value {
    matching("==", json!({"meta": {"key": "l4proto"}}), json!(protocol.nft_name()))
}

fn interface_key(side: Side) -> Value {
    json!({"meta": {"key": match side { Side::Source => "iifname", Side::Destination => "oifname" }}})
}

fn rule_object(chain: &str, rule: &Rule) -> Value {
    let mut expr = Vec::new();
    for m in &rule.matches {
        match m {
            Match::Established => expr.push(matching(
                "in",
                json!({"ct": {"key": "state"}}),
                json!(["established", "related"]),
            )),
            Match::Address {
                side,
                family,
                set,
                negate,
            } => expr.push(matching(
                if *negate { "!=" } else { "==" },
                address_payload(*family, *side),
                json!(format!("@{set}")),
            )),
            Match::Protocol(protocol) => expr.push(l4proto(*protocol)),
            Match::Ports { protocol, ranges } => {
                expr.push(l4proto(*protocol));
                let ports: Vec<Value> = ranges
                    .iter()
                    .map(|(a, b)| if a == b { json!(a) } else { json!({"range": [a, b]}) })
                    .collect();
                let right = match ports.as_slice() {
                    [one] => one.clone(),
                    _ => json!({"set": ports}),
                };
                expr.push(matching("==", payload("th", "dport"), right));
            }
            Match::PortSet { protocol, set } => {
                expr.push(l4proto(*protocol));
                expr.push(matching("==", payload("th", "dport"), json!(format!("@{set}"))));
            }
            Match::NamedPort { family, set } => expr.push(matching(
                "==",
                json!({"concat": [address_payload(*family, Side::Destination), {"meta": {"key": "l4proto"}}, payload("th", "dport")]}),
                json!(format!("@{set}")),
            )),
            Match::NeighborDiscovery => {
                expr.push(matching("==", json!({"meta": {"key": "l4proto"}}), json!("ipv6-icmp")));
                expr.push(matching(
                    "==",
                    payload("icmpv6", "type"),
                    json!({"set": ["nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert"]}),
                ));
            }
            Match::InterfacePrefix { side, prefix } => {
                expr.push(matching("==", interface_key(*side), json!(format!("{prefix}*"))))
            }
        }
    }
    if rule.counter {
        expr.push(json!({"counter": null}));
    }
    match &rule.action {
        Action::Verdict(v) => expr.push(verdict(v)),
        Action::Dispatch { side, map } => {
            expr.push(json!({"vmap": {"key": interface_key(*side), "data": format!("@{map}")}}))
        }
        Action::Masquerade => expr.push(json!({"masquerade": null})),
    }
    json!({"family": "inet", "table": TABLE, "chain": chain, "comment": comment(rule), "expr": expr})
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
        let batch = diff(&before, &after).unwrap();
        assert_eq!(batch.len(), 1, "{batch:?}");
        assert_eq!(batch[0]["add"]["element"]["elem"], json!(["198.18.0.3"]));
    }

    #[test]
    fn a_local_pod_added_is_a_chain_and_a_map_element() {
        let before = calculate(&inputs(&[("x", "n1")])).ruleset;
        let after = calculate(&inputs(&[("x", "n1"), ("x", "n1")])).ruleset;
        let batch = diff(&before, &after).unwrap();
        let verbs: Vec<String> = batch
            .iter()
            .map(|op| {
                let (verb, body) = op.as_object().unwrap().iter().next().unwrap();
                format!("{verb} {}", body.as_object().unwrap().keys().next().unwrap())
            })
            .collect();
        assert_eq!(verbs.first().map(String::as_str), Some("add chain"));
        assert!(verbs.iter().any(|v| v == "add element"), "{verbs:?}");
        assert!(
            verbs
                .iter()
                .all(|v| !v.starts_with("flush") && !v.starts_with("delete")),
            "{verbs:?}"
        );
    }

    #[test]
    fn nothing_changed_is_an_empty_batch() {
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

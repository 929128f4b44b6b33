//! Batches in nft's own syntax (`nft -f -`): the full replace of `inet weft` and the
//! differences that are more than set and map elements. Written straight into one `String`
//! (no intermediate JSON tree): nft parses this text far faster than its JSON, and a 5k-pod
//! table is tens of thousands of elements.
//!
//! Names (`pods-v4-…`, `isolated-in-…`, `forward`) are nft identifiers as they are; interface
//! names and comments are quoted ([`super::comment`] keeps quotes out of comments).
//!
//! Pure.

use std::fmt::Write;

use super::{ElementChange, Step, Verb, comment};
use crate::listing::Listing;
use crate::ruleset::{Action, Chain, Element, Family, Hook, Match, Rule, Ruleset, Set, SetKind, Side, TABLE, Verdict};

const PREFIX: &str = "inet";

/// A full replace: `add table` + `flush table`, the kernel's sets and maps flushed and what
/// weft no longer wants deleted, then every set (with its elements), chain, map and rule.
pub fn full(ruleset: &Ruleset, kernel: Option<&Listing>) -> String {
    let elements: usize = ruleset.sets.values().map(|s| s.elements.len()).sum::<usize>()
        + ruleset.maps.values().map(|m| m.len()).sum::<usize>();
    let mut out = String::with_capacity(4096 + elements * 48);
    let _ = writeln!(out, "add table {PREFIX} {TABLE}");
    let _ = writeln!(out, "flush table {PREFIX} {TABLE}");
    if let Some(kernel) = kernel {
        for name in kernel.sets.keys() {
            let _ = writeln!(out, "flush set {PREFIX} {TABLE} {name}");
        }
        for name in kernel.maps.keys() {
            let _ = writeln!(out, "flush map {PREFIX} {TABLE} {name}");
        }
        for name in kernel.chains.keys().filter(|n| !ruleset.chains.contains_key(*n)) {
            let _ = writeln!(out, "delete chain {PREFIX} {TABLE} {name}");
        }
        for name in kernel.sets.keys().filter(|n| !ruleset.sets.contains_key(*n)) {
            let _ = writeln!(out, "delete set {PREFIX} {TABLE} {name}");
        }
        for name in kernel.maps.keys().filter(|n| !ruleset.maps.contains_key(*n)) {
            let _ = writeln!(out, "delete map {PREFIX} {TABLE} {name}");
        }
    }
    for (name, set) in &ruleset.sets {
        add_set(&mut out, name, set);
    }
    for (name, chain) in &ruleset.chains {
        add_chain(&mut out, name, chain);
    }
    for (name, entries) in &ruleset.maps {
        let _ = writeln!(out, "add map {PREFIX} {TABLE} {name} {{ type ifname : verdict; }}");
        map_elements(&mut out, Verb::Add, name, entries.iter().map(|(k, v)| (k.as_str(), v)));
    }
    for (name, chain) in &ruleset.chains {
        for rule in &chain.rules {
            add_rule(&mut out, name, rule);
        }
    }
    out
}

/// The steps of a difference, in order.
pub fn steps(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::AddSet(name, set) => add_set(&mut out, name, set),
            Step::FlushSet(name) => {
                let _ = writeln!(out, "flush set {PREFIX} {TABLE} {name}");
            }
            Step::AddChain(name, chain) => add_chain(&mut out, name, chain),
            Step::FlushChain(name) => {
                let _ = writeln!(out, "flush chain {PREFIX} {TABLE} {name}");
            }
            Step::AddRules(name, rules) => {
                for rule in rules {
                    add_rule(&mut out, name, rule);
                }
            }
            Step::DeleteChain(name) => {
                let _ = writeln!(out, "delete chain {PREFIX} {TABLE} {name}");
            }
            Step::DeleteSet(name) => {
                let _ = writeln!(out, "delete set {PREFIX} {TABLE} {name}");
            }
            Step::Elements(ElementChange::Set { verb, set, elements }) => {
                set_elements(&mut out, *verb, set, elements.iter());
            }
            Step::Elements(ElementChange::Map { verb, map, entries }) => {
                map_elements(&mut out, *verb, map, entries.iter().map(|(k, v)| (k.as_str(), v)));
            }
        }
    }
    out
}

fn verb(verb: Verb) -> &'static str {
    match verb {
        Verb::Add => "add",
        Verb::Delete => "delete",
    }
}

fn address_type(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    }
}

fn add_set(out: &mut String, name: &str, set: &Set) {
    let (kind, interval) = match set.kind {
        SetKind::Addresses { family, interval } => (address_type(family).to_owned(), interval),
        SetKind::NamedPorts { family } => (format!("{} . inet_proto . inet_service", address_type(family)), false),
        SetKind::Ports => ("inet_service".to_owned(), true),
    };
    let flags = if interval { " flags interval;" } else { "" };
    let _ = writeln!(out, "add set {PREFIX} {TABLE} {name} {{ type {kind};{flags} }}");
    set_elements(out, Verb::Add, name, set.elements.iter());
}

fn set_elements<'a>(out: &mut String, verb_: Verb, name: &str, elements: impl Iterator<Item = &'a Element>) {
    let mut elements = elements.peekable();
    if elements.peek().is_none() {
        return;
    }
    let _ = write!(out, "{} element {PREFIX} {TABLE} {name} {{ ", verb(verb_));
    for (i, element) in elements.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match element {
            Element::Range(range) if range.first == range.last => {
                let _ = write!(out, "{}", range.first);
            }
            Element::Range(range) => {
                let _ = write!(out, "{}-{}", range.first, range.last);
            }
            Element::NamedPort(address, protocol, port) => {
                let _ = write!(out, "{address} . {} . {port}", protocol.nft_name());
            }
            Element::Ports(a, b) if a == b => {
                let _ = write!(out, "{a}");
            }
            Element::Ports(a, b) => {
                let _ = write!(out, "{a}-{b}");
            }
        }
    }
    out.push_str(" }\n");
}

fn map_elements<'a>(out: &mut String, verb_: Verb, name: &str, entries: impl Iterator<Item = (&'a str, &'a Verdict)>) {
    let mut entries = entries.peekable();
    if entries.peek().is_none() {
        return;
    }
    let _ = write!(out, "{} element {PREFIX} {TABLE} {name} {{ ", verb(verb_));
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match verb_ {
            Verb::Add => {
                let _ = write!(out, "\"{key}\" : ");
                verdict(out, value);
            }
            Verb::Delete => {
                let _ = write!(out, "\"{key}\"");
            }
        }
    }
    out.push_str(" }\n");
}

fn verdict(out: &mut String, verdict: &Verdict) {
    match verdict {
        Verdict::Accept => out.push_str("accept"),
        Verdict::Drop => out.push_str("drop"),
        Verdict::Return => out.push_str("return"),
        Verdict::Jump(target) => {
            let _ = write!(out, "jump {target}");
        }
    }
}

fn add_chain(out: &mut String, name: &str, chain: &Chain) {
    let _ = write!(out, "add chain {PREFIX} {TABLE} {name}");
    if let Some(hook) = chain.hook {
        let (kind, hook, priority) = match hook {
            Hook::Forward => ("filter", "forward", 0),
            Hook::Input => ("filter", "input", 0),
            Hook::Output => ("filter", "output", 0),
            Hook::Postrouting => ("nat", "postrouting", 100),
        };
        let _ = write!(
            out,
            " {{ type {kind} hook {hook} priority {priority}; policy accept; }}"
        );
    }
    out.push('\n');
}

fn address(family: Family, side: Side) -> &'static str {
    match (family, side) {
        (Family::V4, Side::Source) => "ip saddr",
        (Family::V4, Side::Destination) => "ip daddr",
        (Family::V6, Side::Source) => "ip6 saddr",
        (Family::V6, Side::Destination) => "ip6 daddr",
    }
}

fn interface(side: Side) -> &'static str {
    match side {
        Side::Source => "iifname",
        Side::Destination => "oifname",
    }
}

fn add_rule(out: &mut String, chain: &str, rule: &Rule) {
    let _ = write!(out, "add rule {PREFIX} {TABLE} {chain}");
    for m in &rule.matches {
        match m {
            Match::Established => out.push_str(" ct state established,related"),
            Match::Address {
                side,
                family,
                set,
                negate,
            } => {
                let op = if *negate { "!= " } else { "" };
                let _ = write!(out, " {} {op}@{set}", address(*family, *side));
            }
            Match::Protocol(protocol) => {
                let _ = write!(out, " meta l4proto {}", protocol.nft_name());
            }
            Match::Ports { protocol, ranges } => {
                let _ = write!(out, " meta l4proto {} th dport ", protocol.nft_name());
                let single = ranges.len() == 1;
                if !single {
                    out.push_str("{ ");
                }
                for (i, (a, b)) in ranges.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    if a == b {
                        let _ = write!(out, "{a}");
                    } else {
                        let _ = write!(out, "{a}-{b}");
                    }
                }
                if !single {
                    out.push_str(" }");
                }
            }
            Match::PortSet { protocol, set } => {
                let _ = write!(out, " meta l4proto {} th dport @{set}", protocol.nft_name());
            }
            Match::NamedPort { family, set } => {
                let _ = write!(
                    out,
                    " {} . meta l4proto . th dport @{set}",
                    address(*family, Side::Destination)
                );
            }
            Match::NeighborDiscovery => out.push_str(
                " meta l4proto ipv6-icmp icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert }",
            ),
            Match::InterfacePrefix { side, prefix } => {
                let _ = write!(out, " {} \"{prefix}*\"", interface(*side));
            }
        }
    }
    if rule.counter {
        out.push_str(" counter");
    }
    match &rule.action {
        Action::Verdict(v) => {
            out.push(' ');
            verdict(out, v);
        }
        Action::Dispatch { side, map } => {
            let _ = write!(out, " {} vmap @{map}", interface(*side));
        }
        Action::Masquerade => out.push_str(" masquerade"),
    }
    let _ = writeln!(out, " comment \"{}\"", comment(rule));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::Protocol;

    #[test]
    fn a_rule_is_written_in_nfts_syntax_with_its_comment() {
        let rule = Rule::new(
            vec![
                Match::Address {
                    side: Side::Source,
                    family: Family::V4,
                    set: "pods-v4-1".into(),
                    negate: false,
                },
                Match::Ports {
                    protocol: Protocol::Tcp,
                    ranges: vec![(80, 80), (90, 99)],
                },
            ],
            Action::Verdict(Verdict::Jump("allow-egress".into())),
            "x/p \"egress\"[0]",
        )
        .counted();
        let mut out = String::new();
        add_rule(&mut out, "policy-1-out", &rule);
        assert_eq!(
            out,
            format!(
                "add rule inet weft policy-1-out ip saddr @pods-v4-1 meta l4proto tcp th dport {{ 80, 90-99 }} counter jump allow-egress comment \"{}\"\n",
                comment(&rule)
            )
        );
        assert!(comment(&rule).starts_with("x/p _egress_[0] #"));
    }

    #[test]
    fn a_named_port_element_is_a_concatenation() {
        let mut out = String::new();
        let element = Element::NamedPort("2001:db8::1".parse().unwrap(), Protocol::Udp, 53);
        set_elements(&mut out, Verb::Delete, "port-v6-dns", [element].iter());
        assert_eq!(out, "delete element inet weft port-v6-dns { 2001:db8::1 . udp . 53 }\n");
    }
}

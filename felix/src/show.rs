//! What `weftctl policy show` prints: per endpoint, the policies that isolate it in each
//! direction and, when the node's table can be read, the hit counters of each policy rule;
//! and every policy left out as invalid, with the reason.
//!
//! Pure: takes the store's objects and (optionally) the kernel's listing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::calc::{self, Direction, EndpointReport};
use crate::inputs::Cache;
use crate::listing::Listing;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub endpoints: Vec<EndpointView>,
    pub invalid_policies: Vec<Invalid>,
    /// Stored objects felix cannot read (left out), with the reason.
    pub unreadable: Vec<String>,
    /// Whether rule counters were read from this host's nftables.
    pub counters: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Invalid {
    pub policy: String,
    pub field: String,
    pub reason: String,
}

/// The invalid policies a calculation reported.
fn invalid_of(calculation: &calc::Calculation) -> Vec<Invalid> {
    calculation
        .problems
        .iter()
        .map(|p| Invalid {
            policy: p.policy.clone(),
            field: p.field.clone(),
            reason: p.reason.clone(),
        })
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct EndpointView {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    pub ingress: DirectionView,
    pub egress: DirectionView,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DirectionView {
    /// Isolated: only what the policies allow passes.
    pub isolated: bool,
    pub policies: Vec<String>,
    /// Hits per policy rule (`x/allow ingress[0]`, counted over every endpoint the policy
    /// selects on this node) and of the final drop (counted over every endpoint of this node
    /// isolated by the same policies: they share one chain).
    pub rules: Vec<RuleHits>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleHits {
    pub rule: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Builds the report for every endpoint of every node.
pub fn report(cache: &Cache, kernel: Option<&Listing>) -> Report {
    let (all, unreadable) = cache.inputs("");
    let unreadable = unreadable.iter().map(ToString::to_string).collect();
    let mut nodes: Vec<String> = all.endpoints.iter().map(|e| e.node.clone()).collect();
    nodes.sort();
    nodes.dedup();
    let mut endpoints = Vec::new();
    let mut invalid = Vec::new();
    for node in &nodes {
        let (inputs, _) = cache.inputs(node);
        let calculation = calc::calculate(&inputs);
        invalid = invalid_of(&calculation);
        for endpoint in calculation.endpoints {
            endpoints.push(view(node, endpoint, kernel));
        }
    }
    if nodes.is_empty() {
        invalid = invalid_of(&calc::calculate(&all));
    }
    endpoints.sort_by(|a, b| (&a.namespace, &a.pod, &a.interface).cmp(&(&b.namespace, &b.pod, &b.interface)));
    Report {
        endpoints,
        invalid_policies: invalid,
        unreadable,
        counters: kernel.is_some(),
    }
}

fn view(node: &str, endpoint: EndpointReport, kernel: Option<&Listing>) -> EndpointView {
    // The policies' shared chains hold their rules' counters (all the endpoints they select);
    // the chain of the endpoint's combination of policies ends with the final drop.
    let direction = |policies: Vec<String>, chain: Option<String>, direction: Direction| {
        let mut rules = Vec::new();
        if let (Some(kernel), Some(chain)) = (kernel, &chain) {
            for policy in &policies {
                if let Some(listed) = kernel.chains.get(&calc::policy_chain(policy, direction)) {
                    rules.extend(hits(listed));
                }
            }
            if let Some(last) = kernel.chains.get(chain).and_then(|rules| rules.last()) {
                rules.extend(hits(std::slice::from_ref(last)));
            }
        }
        DirectionView {
            isolated: chain.is_some(),
            policies,
            rules,
        }
    };
    EndpointView {
        namespace: endpoint.namespace,
        pod: endpoint.pod,
        node: node.to_owned(),
        interface: endpoint.interface,
        addresses: endpoint.addresses,
        ingress: direction(endpoint.ingress_policies, endpoint.ingress_chain, Direction::Ingress),
        egress: direction(endpoint.egress_policies, endpoint.egress_chain, Direction::Egress),
    }
}

/// Sums the counters of the nft rules rendered from one policy rule (their comments agree up
/// to the content hash).
fn hits(rules: &[crate::listing::ListedRule]) -> Vec<RuleHits> {
    let mut order = Vec::new();
    let mut sums: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for rule in rules {
        let Some(comment) = &rule.comment else { continue };
        let text = comment
            .rsplit_once(" #")
            .map_or(comment.as_str(), |(text, _)| text)
            .to_owned();
        let sum = sums.entry(text.clone()).or_insert_with(|| {
            order.push(text);
            (0, 0)
        });
        sum.0 += rule.packets;
        sum.1 += rule.bytes;
    }
    order
        .into_iter()
        .map(|rule| {
            let (packets, bytes) = sums[&rule];
            RuleHits { rule, packets, bytes }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::inputs::kinds;
    use crate::listing::ListedRule;
    use serde_json::json;

    #[test]
    fn an_endpoint_lists_its_policies_counters_and_the_invalid_ones() {
        let kinds = kinds();
        let mut cache = Cache::default();
        cache.upsert(
            &kinds[0],
            json!({"metadata": {"namespace": "x", "name": "n1-a-eth0"},
                   "spec": {"node": "n1", "pod": "a", "interfaceName": "wft0", "ipNetworks": ["198.18.0.1/32"]}}),
        );
        cache.upsert(
            &kinds[3],
            json!({"metadata": {"namespace": "x", "name": "deny"}, "spec": {"podSelector": {}}}),
        );
        cache.upsert(
            &kinds[3],
            json!({"metadata": {"namespace": "x", "name": "bad"}, "spec": {"ingress": [{"ports": [{"protocol": "ICMP"}]}]}}),
        );
        let mut kernel = Listing::default();
        kernel.chains.insert(
            calc::isolation_chain(&["x/deny".to_string()], Direction::Ingress),
            vec![ListedRule {
                comment: Some("ingress not allowed by any policy #0011".into()),
                packets: 7,
                bytes: 420,
            }],
        );
        let report = report(&cache, Some(&kernel));
        let endpoint = &report.endpoints[0];
        assert_eq!(endpoint.ingress.policies, ["x/deny"]);
        assert!(endpoint.ingress.isolated && !endpoint.egress.isolated);
        assert_eq!(
            endpoint.ingress.rules,
            [RuleHits {
                rule: "ingress not allowed by any policy".into(),
                packets: 7,
                bytes: 420
            }]
        );
        assert_eq!(report.invalid_policies[0].policy, "x/bad");
    }
}

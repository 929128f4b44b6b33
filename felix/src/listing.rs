//! What the kernel holds in `inet weft`, read from `nft -j list table inet weft`: chains with
//! their rules' comments and counters, sets and maps with their elements. Enough to tell
//! whether someone changed the table (resync) and to show rule hit counters; rule expressions
//! are never parsed back.
//!
//! Pure: parses JSON text.

use std::collections::BTreeMap;

use serde_json::Value;

/// One rule as listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListedRule {
    pub comment: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    pub chains: BTreeMap<String, Vec<ListedRule>>,
    pub sets: BTreeMap<String, Vec<Value>>,
    pub maps: BTreeMap<String, Vec<Value>>,
}

#[derive(Debug, thiserror::Error)]
#[error("nft's listing of inet weft is not the JSON expected: {reason}")]
pub struct ListingError {
    pub reason: String,
}

impl Listing {
    pub fn parse(text: &str) -> Result<Listing, ListingError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ListingError { reason: e.to_string() })?;
        let objects = value
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or_else(|| ListingError {
                reason: "no \"nftables\" array".into(),
            })?;
        let mut listing = Listing::default();
        let name = |object: &Value| object.get("name").and_then(Value::as_str).map(str::to_owned);
        for object in objects {
            if let Some(chain) = object.get("chain") {
                if let Some(name) = name(chain) {
                    listing.chains.entry(name).or_default();
                }
            } else if let Some(set) = object.get("set") {
                if let Some(name) = name(set) {
                    listing.sets.insert(name, elements(set));
                }
            } else if let Some(map) = object.get("map") {
                if let Some(name) = name(map) {
                    listing.maps.insert(name, elements(map));
                }
            } else if let Some(rule) = object.get("rule") {
                let Some(chain) = rule.get("chain").and_then(Value::as_str) else {
                    continue;
                };
                let mut listed = ListedRule {
                    comment: rule.get("comment").and_then(Value::as_str).map(str::to_owned),
                    ..ListedRule::default()
                };
                for expr in rule.get("expr").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(counter) = expr.get("counter") {
                        listed.packets = counter.get("packets").and_then(Value::as_u64).unwrap_or(0);
                        listed.bytes = counter.get("bytes").and_then(Value::as_u64).unwrap_or(0);
                    }
                }
                listing.chains.entry(chain.to_owned()).or_default().push(listed);
            }
        }
        Ok(listing)
    }
}

fn elements(object: &Value) -> Vec<Value> {
    object
        .get("elem")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Captured from nft 1.0.6 (`nft -j list table inet weft`), trimmed.
    const CAPTURED: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "weft", "handle": 1}}, {"set": {"family": "inet", "name": "pods-v4", "table": "weft", "type": "ipv4_addr", "handle": 1, "elem": ["198.18.0.1", "198.18.0.2"]}}, {"map": {"family": "inet", "name": "to-endpoint", "table": "weft", "type": "ifname", "handle": 5, "map": "verdict", "elem": [["wftxa", {"jump": {"target": "to-wftxa"}}], ["wftxb", {"accept": null}]]}}, {"chain": {"family": "inet", "table": "weft", "name": "to-wftxa", "handle": 4}}, {"rule": {"family": "inet", "table": "weft", "chain": "to-wftxa", "handle": 19, "comment": "x/p ingress[0] #00", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@pods-v4"}}, {"counter": {"packets": 3, "bytes": 180}}, {"accept": null}]}}]}"#;

    #[test]
    fn a_captured_listing_yields_chains_rules_counters_sets_and_maps() {
        let listing = Listing::parse(CAPTURED).unwrap();
        assert_eq!(listing.sets["pods-v4"].len(), 2);
        assert_eq!(listing.maps["to-endpoint"].len(), 2);
        assert_eq!(
            listing.chains["to-wftxa"],
            vec![ListedRule {
                comment: Some("x/p ingress[0] #00".into()),
                packets: 3,
                bytes: 180
            }]
        );
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_table() {
        assert!(Listing::parse("{}").is_err());
        assert!(Listing::parse("not json").is_err());
    }
}

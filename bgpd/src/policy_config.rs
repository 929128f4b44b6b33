//! The `prefix_lists:` and `policies:` sections of the standalone configuration, turned into the
//! pure core's [`NamedPolicy`] values ([`weft_bgp_proto::policy`]), every error naming its key.
//!
//! ```yaml
//! prefix_lists:
//!   tor-routes: ["198.18.100.0/22 le 24", "2001:db8:100::/40 ge 48 le 64"]
//! policies:
//!   from-tor:                     # statements in order; the first that matches applies
//!     - match: { community: "65000:666" }
//!       action: reject
//!     - match:
//!         prefix_list: tor-routes
//!         large_community: "4200000002:1:1"
//!         as_path: { neighbor: 4200000002, origin: 4200000002, contains: 4200000002, max_length: 3 }
//!       set: { local_pref: 200 }
//!       action: accept            # accept | reject; absent: go on with the next statement
//!   to-tor:
//!     - set: { prepend: 2, med: 10, community: ["65001:1"], large_community: ["65001:1:1"] }
//!       action: accept
//! ```
//!
//! A route no statement accepts is rejected. Peers name them in `import:` and `export:`.
//!
//! Must never: accept a key it does not act on, or a name that is not defined.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use weft_bgp_proto::Prefix;
use weft_bgp_proto::policy::{
    Actions, AsPathMatch, Conditions, NamedPolicy, PrefixList, PrefixListEntry, Statement, Verdict,
};

use crate::config::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatement {
    #[serde(rename = "match")]
    conditions: Option<RawConditions>,
    set: Option<RawActions>,
    action: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditions {
    prefix_list: Option<String>,
    community: Option<String>,
    large_community: Option<String>,
    as_path: Option<RawAsPath>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsPath {
    contains: Option<u32>,
    origin: Option<u32>,
    neighbor: Option<u32>,
    max_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActions {
    local_pref: Option<u32>,
    med: Option<u32>,
    #[serde(default)]
    community: Vec<String>,
    #[serde(default)]
    large_community: Vec<String>,
    prepend: Option<u8>,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The named prefix lists, checked.
pub fn prefix_lists(raw: BTreeMap<String, Vec<String>>) -> Result<BTreeMap<String, Arc<PrefixList>>, ConfigError> {
    let mut lists = BTreeMap::new();
    for (name, entries) in raw {
        let mut list = Vec::new();
        for (i, text) in entries.iter().enumerate() {
            list.push(prefix_list_entry(&format!("prefix_lists.{name}[{i}]"), text)?);
        }
        lists.insert(name, Arc::new(PrefixList(list)));
    }
    Ok(lists)
}

/// `PREFIX [ge N] [le M]`.
fn prefix_list_entry(key: &str, text: &str) -> Result<PrefixListEntry, ConfigError> {
    let mut words = text.split_whitespace();
    let prefix: Prefix = words
        .next()
        .and_then(|word| word.parse().ok())
        .ok_or_else(|| invalid(key, format!("`{text}` does not start with a prefix (ADDRESS/LENGTH)")))?;
    if prefix.trunc() != prefix {
        return Err(invalid(
            key,
            format!("{prefix} has host bits set; did you mean {}?", prefix.trunc()),
        ));
    }
    let (mut ge, mut le) = (None, None);
    while let Some(word) = words.next() {
        let slot = match word {
            "ge" => &mut ge,
            "le" => &mut le,
            other => return Err(invalid(key, format!("`{other}` in `{text}`: expected ge or le"))),
        };
        let length: u8 = words
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|n| (prefix.prefix_len()..=prefix.max_prefix_len()).contains(n))
            .ok_or_else(|| {
                invalid(
                    key,
                    format!(
                        "{word} in `{text}` needs a length from {} to {}",
                        prefix.prefix_len(),
                        prefix.max_prefix_len()
                    ),
                )
            })?;
        *slot = Some(length);
    }
    if let (Some(ge), Some(le)) = (ge, le)
        && ge > le
    {
        return Err(invalid(key, format!("ge {ge} is greater than le {le} in `{text}`")));
    }
    Ok(PrefixListEntry { prefix, ge, le })
}

/// The named policies, checked against the prefix lists.
pub fn policies(
    raw: BTreeMap<String, Vec<RawStatement>>,
    lists: &BTreeMap<String, Arc<PrefixList>>,
) -> Result<BTreeMap<String, Arc<NamedPolicy>>, ConfigError> {
    let mut policies = BTreeMap::new();
    for (name, statements) in raw {
        if matches!(name.as_str(), "accept" | "reject") {
            return Err(invalid(
                format!("policies.{name}"),
                "accept and reject are built in; give the policy another name",
            ));
        }
        let mut checked = Vec::new();
        for (i, statement) in statements.into_iter().enumerate() {
            checked.push(statement_of(&format!("policies.{name}[{i}]"), statement, lists)?);
        }
        policies.insert(
            name.clone(),
            Arc::new(NamedPolicy {
                name,
                statements: checked,
            }),
        );
    }
    Ok(policies)
}

fn statement_of(
    key: &str,
    raw: RawStatement,
    lists: &BTreeMap<String, Arc<PrefixList>>,
) -> Result<Statement, ConfigError> {
    let mut conditions = Conditions::default();
    if let Some(raw) = raw.conditions {
        if let Some(name) = raw.prefix_list {
            let list = lists.get(&name).ok_or_else(|| {
                invalid(
                    format!("{key}.match.prefix_list"),
                    format!("prefix list `{name}` is not defined under prefix_lists"),
                )
            })?;
            conditions.prefix_list = Some(list.clone());
        }
        if let Some(text) = raw.community {
            conditions.community = Some(community(&format!("{key}.match.community"), &text)?);
        }
        if let Some(text) = raw.large_community {
            conditions.large_community = Some(large_community(&format!("{key}.match.large_community"), &text)?);
        }
        if let Some(path) = raw.as_path {
            conditions.as_path = AsPathMatch {
                contains: path.contains,
                origin: path.origin,
                neighbor: path.neighbor,
                max_length: path.max_length,
            };
        }
    }
    let mut actions = Actions::default();
    if let Some(raw) = raw.set {
        actions.local_pref = raw.local_pref;
        actions.med = raw.med;
        for (i, text) in raw.community.iter().enumerate() {
            actions
                .add_communities
                .push(community(&format!("{key}.set.community[{i}]"), text)?);
        }
        for (i, text) in raw.large_community.iter().enumerate() {
            actions
                .add_large_communities
                .push(large_community(&format!("{key}.set.large_community[{i}]"), text)?);
        }
        let prepend = raw.prepend.unwrap_or(0);
        if prepend > 16 {
            return Err(invalid(
                format!("{key}.set.prepend"),
                format!("{prepend} is more than 16 prepends; that is surely a mistake"),
            ));
        }
        actions.prepend = prepend;
    }
    let verdict = match raw.action.as_deref() {
        None => None,
        Some("accept") => Some(Verdict::Accept),
        Some("reject") => Some(Verdict::Reject),
        Some(other) => {
            return Err(invalid(
                format!("{key}.action"),
                format!("`{other}` is not an action (accept, reject; leave it out to go on)"),
            ));
        }
    };
    Ok(Statement {
        conditions,
        actions,
        verdict,
    })
}

/// `ASN:VALUE`, both 16 bits (RFC 1997).
fn community(key: &str, text: &str) -> Result<u32, ConfigError> {
    let parts: Vec<Option<u16>> = text.split(':').map(|part| part.parse().ok()).collect();
    match parts.as_slice() {
        [Some(asn), Some(value)] => Ok(u32::from(*asn) << 16 | u32::from(*value)),
        _ => Err(invalid(
            key,
            format!("`{text}` is not a community (ASN:VALUE, each 0 to 65535; large ones are large_community)"),
        )),
    }
}

/// `GLOBAL:LOCAL1:LOCAL2`, each 32 bits (RFC 8092).
fn large_community(key: &str, text: &str) -> Result<[u32; 3], ConfigError> {
    let parts: Vec<Option<u32>> = text.split(':').map(|part| part.parse().ok()).collect();
    match parts.as_slice() {
        [Some(global), Some(one), Some(two)] => Ok([*global, *one, *two]),
        _ => Err(invalid(
            key,
            format!("`{text}` is not a large community (GLOBAL:LOCAL1:LOCAL2, each 0 to 4294967295)"),
        )),
    }
}

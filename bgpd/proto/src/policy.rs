//! Named routing policies: what an import or export policy other than plain `accept` or
//! `reject` does to one route.
//!
//! A [`NamedPolicy`] is an ordered list of [`Statement`]s. Each statement has conditions (all
//! must hold: a [`PrefixList`] with ge/le, a community, a large community, AS_PATH conditions)
//! and actions (set LOCAL_PREF or MED, add communities or large communities, prepend our AS)
//! and an optional verdict. The first statement whose conditions hold applies its actions;
//! with a verdict, that decides; without, evaluation goes on with the next statement on the
//! modified route. A route no verdict decided is rejected: a policy lets through only what
//! it names, in the spirit of RFC 8212.
//!
//! Prefix-list entries follow the usual router semantics: `198.18.0.0/16` alone matches only
//! that prefix; with `ge G` the prefixes inside it of length G to 32 (128); with `le L` those of
//! its own length to L; with both, G to L.
//!
//! Must never: do I/O, or look at anything but the route and the policy.

use std::sync::Arc;

use crate::route::{PathAttributes, Prefix};

/// One prefix-list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixListEntry {
    /// The covering prefix.
    pub prefix: Prefix,
    /// Shortest matching length, if given.
    pub ge: Option<u8>,
    /// Longest matching length, if given.
    pub le: Option<u8>,
}

impl PrefixListEntry {
    /// Whether `prefix` is of this entry's address family.
    pub fn same_family(&self, prefix: &Prefix) -> bool {
        matches!(
            (self.prefix, prefix),
            (Prefix::V4(_), Prefix::V4(_)) | (Prefix::V6(_), Prefix::V6(_))
        )
    }

    /// Whether `prefix` matches this entry.
    pub fn matches(&self, prefix: &Prefix) -> bool {
        if !self.same_family(prefix) || !self.prefix.contains(prefix) {
            return false;
        }
        let length = prefix.prefix_len();
        let own = self.prefix.prefix_len();
        let (low, high) = match (self.ge, self.le) {
            (None, None) => (own, own),
            (Some(ge), None) => (ge, self.prefix.max_prefix_len()),
            (None, Some(le)) => (own, le),
            (Some(ge), Some(le)) => (ge, le),
        };
        (low..=high).contains(&length)
    }
}

/// A list of prefix entries; a prefix matches the list when it matches any entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixList(pub Vec<PrefixListEntry>);

impl PrefixList {
    /// Whether `prefix` matches an entry.
    pub fn matches(&self, prefix: &Prefix) -> bool {
        self.0.iter().any(|entry| entry.matches(prefix))
    }

    /// Whether `prefix` is of the family of one of the entries and matches none: the negated
    /// match (a list of IPv4 entries says nothing about IPv6 prefixes, either way).
    pub fn misses(&self, prefix: &Prefix) -> bool {
        self.0.iter().any(|entry| entry.same_family(prefix)) && !self.matches(prefix)
    }
}

/// AS_PATH conditions; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AsPathMatch {
    /// The AS appears anywhere in the path.
    pub contains: Option<u32>,
    /// The path ends with this AS (it originated the route).
    pub origin: Option<u32>,
    /// The path starts with this AS (the neighbouring AS).
    pub neighbor: Option<u32>,
    /// The path is at most this long (§9.1.2.2 a counting).
    pub max_length: Option<usize>,
}

impl AsPathMatch {
    fn matches(&self, attributes: &PathAttributes) -> bool {
        let path = &attributes.as_path;
        let asns = path.asns();
        self.contains.is_none_or(|asn| path.contains(asn))
            && self.origin.is_none_or(|asn| asns.last() == Some(&asn))
            && self.neighbor.is_none_or(|asn| path.neighbor_as() == Some(asn))
            && self.max_length.is_none_or(|max| path.length() <= max)
    }
}

/// A statement's conditions; all given ones must hold (none given: every route).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// The prefix matches this list (does not, with `prefix_list_negated`).
    pub prefix_list: Option<Arc<PrefixList>>,
    /// The prefix must be of the list's family and match none of its entries (BGPFilter's
    /// `NotEqual` and `NotIn`).
    pub prefix_list_negated: bool,
    /// The route carries this community.
    pub community: Option<u32>,
    /// The route carries this large community.
    pub large_community: Option<[u32; 3]>,
    /// AS_PATH conditions.
    pub as_path: AsPathMatch,
}

impl Conditions {
    /// Whether the route meets every condition.
    pub fn hold(&self, prefix: &Prefix, attributes: &PathAttributes) -> bool {
        self.prefix_list
            .as_ref()
            .is_none_or(|list| match self.prefix_list_negated {
                false => list.matches(prefix),
                true => list.misses(prefix),
            })
            && self.community.is_none_or(|c| attributes.communities.contains(&c))
            && self
                .large_community
                .is_none_or(|c| attributes.large_communities.contains(&c))
            && self.as_path.matches(attributes)
    }
}

/// A statement's actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// Set LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// Set MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// Add these communities (once each).
    pub add_communities: Vec<u32>,
    /// Add these large communities (once each).
    pub add_large_communities: Vec<[u32; 3]>,
    /// Prepend our AS this many more times.
    pub prepend: u8,
}

impl Actions {
    fn apply(&self, attributes: &mut PathAttributes, local_asn: u32) {
        if let Some(local_pref) = self.local_pref {
            attributes.local_pref = Some(local_pref);
        }
        if let Some(med) = self.med {
            attributes.med = Some(med);
        }
        for community in &self.add_communities {
            if !attributes.communities.contains(community) {
                attributes.communities.push(*community);
            }
        }
        for community in &self.add_large_communities {
            if !attributes.large_communities.contains(community) {
                attributes.large_communities.push(*community);
            }
        }
        for _ in 0..self.prepend {
            attributes.as_path = attributes.as_path.prepend(local_asn);
        }
    }
}

/// What a statement decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the route through (with the actions applied so far).
    Accept,
    /// Drop it.
    Reject,
}

/// One statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    /// When it applies.
    pub conditions: Conditions,
    /// What it changes.
    pub actions: Actions,
    /// What it decides; `None`: go on with the next statement.
    pub verdict: Option<Verdict>,
}

/// A named policy: statements in order, reject at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPolicy {
    /// Its name in the configuration.
    pub name: String,
    /// Its statements.
    pub statements: Vec<Statement>,
}

impl NamedPolicy {
    /// The route's attributes after the policy, or `None` if it rejects the route.
    /// `local_asn` is the AS that `prepend` adds.
    pub fn apply(&self, prefix: &Prefix, attributes: &PathAttributes, local_asn: u32) -> Option<PathAttributes> {
        let mut result = attributes.clone();
        for statement in &self.statements {
            if !statement.conditions.hold(prefix, &result) {
                continue;
            }
            statement.actions.apply(&mut result, local_asn);
            match statement.verdict {
                Some(Verdict::Accept) => return Some(result),
                Some(Verdict::Reject) => return None,
                None => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::route::{AsPath, AsPathSegment, Origin};

    fn prefix(text: &str) -> Prefix {
        text.parse().expect("prefix")
    }

    fn entry(text: &str, ge: Option<u8>, le: Option<u8>) -> PrefixListEntry {
        PrefixListEntry {
            prefix: prefix(text),
            ge,
            le,
        }
    }

    fn route(as_path: &[u32], communities: &[u32]) -> PathAttributes {
        PathAttributes {
            origin: Origin::Igp,
            as_path: AsPath(vec![AsPathSegment::Sequence(as_path.to_vec())]),
            next_hop: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
            med: None,
            local_pref: None,
            communities: communities.to_vec(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            aggregator: None,
            atomic_aggregate: false,
        }
    }

    #[test]
    fn a_prefix_list_entry_without_ge_or_le_matches_exactly() {
        let exact = entry("198.18.0.0/16", None, None);
        assert!(exact.matches(&prefix("198.18.0.0/16")));
        assert!(!exact.matches(&prefix("198.18.1.0/24")));
        assert!(!exact.matches(&prefix("2001:db8::/32")));
    }

    #[test]
    fn ge_and_le_bound_the_length_of_prefixes_inside_the_entry() {
        let ge = entry("198.18.0.0/16", Some(24), None);
        assert!(ge.matches(&prefix("198.18.1.0/24")) && ge.matches(&prefix("198.18.1.1/32")));
        assert!(!ge.matches(&prefix("198.18.0.0/20")));
        let le = entry("198.18.0.0/16", None, Some(20));
        assert!(le.matches(&prefix("198.18.0.0/16")) && le.matches(&prefix("198.18.16.0/20")));
        assert!(!le.matches(&prefix("198.18.1.0/24")));
        let both = entry("2001:db8::/32", Some(48), Some(64));
        assert!(both.matches(&prefix("2001:db8:1::/48")) && both.matches(&prefix("2001:db8:1:2::/64")));
        assert!(!both.matches(&prefix("2001:db8::/40")) && !both.matches(&prefix("2001:db8:1:2::/80")));
        assert!(!both.matches(&prefix("2001:db9::/48")), "outside the entry");
    }

    #[test]
    fn the_first_matching_statement_decides_and_nothing_matched_is_rejected() {
        let pods = Arc::new(PrefixList(vec![entry("198.18.0.0/15", Some(24), Some(26))]));
        let policy = NamedPolicy {
            name: "from-tor".to_owned(),
            statements: vec![
                Statement {
                    conditions: Conditions {
                        community: Some(65000 << 16 | 666),
                        ..Conditions::default()
                    },
                    verdict: Some(Verdict::Reject),
                    ..Statement::default()
                },
                Statement {
                    conditions: Conditions {
                        prefix_list: Some(pods),
                        ..Conditions::default()
                    },
                    actions: Actions {
                        local_pref: Some(200),
                        add_communities: vec![65001 << 16 | 1],
                        ..Actions::default()
                    },
                    verdict: Some(Verdict::Accept),
                },
            ],
        };
        let accepted = policy
            .apply(&prefix("198.18.100.0/24"), &route(&[65000], &[]), 65001)
            .expect("accepted");
        assert_eq!(accepted.local_pref, Some(200));
        assert_eq!(accepted.communities, [65001 << 16 | 1]);
        assert_eq!(
            policy.apply(
                &prefix("198.18.100.0/24"),
                &route(&[65000], &[65000 << 16 | 666]),
                65001
            ),
            None,
            "the blackhole community is rejected first"
        );
        assert_eq!(
            policy.apply(&prefix("198.18.0.0/16"), &route(&[65000], &[]), 65001),
            None,
            "too short for the list: nothing matched, rejected"
        );
    }

    #[test]
    fn statements_without_a_verdict_chain_and_as_path_conditions_combine() {
        let policy = NamedPolicy {
            name: "to-tor".to_owned(),
            statements: vec![
                Statement {
                    actions: Actions {
                        prepend: 2,
                        med: Some(50),
                        ..Actions::default()
                    },
                    ..Statement::default()
                },
                Statement {
                    conditions: Conditions {
                        as_path: AsPathMatch {
                            neighbor: Some(65001),
                            origin: Some(65001),
                            max_length: Some(3),
                            contains: None,
                        },
                        large_community: None,
                        ..Conditions::default()
                    },
                    actions: Actions {
                        add_large_communities: vec![[65001, 1, 1]],
                        ..Actions::default()
                    },
                    verdict: Some(Verdict::Accept),
                },
            ],
        };
        let sent = policy
            .apply(&prefix("198.18.1.0/26"), &route(&[65001], &[]), 65001)
            .expect("accepted");
        assert_eq!(sent.as_path.asns(), [65001, 65001, 65001]);
        assert_eq!(sent.med, Some(50));
        assert_eq!(sent.large_communities, [[65001, 1, 1]]);
        assert_eq!(
            policy.apply(&prefix("198.18.1.0/26"), &route(&[65001, 65000], &[]), 65001),
            None,
            "originated elsewhere: the second statement does not hold"
        );
    }
}

//! `BGPFilter` objects as routing policy statements (Calico's BGPFilter semantics).
//!
//! A filter's rules are tried in order, V4 rules on IPv4 routes and V6 rules on IPv6 routes;
//! the first rule that matches decides (Accept or Reject). A route no rule matches falls
//! through to what the peer does without filters, which the caller appends as the policy's
//! last statements. Match operators: `Equal` (exactly the rule's CIDR), `In` (inside it,
//! optionally of a prefix length in `prefixLength`), and their negations `NotEqual` (any other
//! prefix) and `NotIn` (any prefix `In` would not match).
//!
//! Must never: do I/O, or accept a rule it cannot express (an error naming the rule, not a
//! filter that silently lets everything through).

use std::sync::Arc;

use ipnet::IpNet;
use weft_api::resources::{BGPFilterSpec, FilterAction, FilterRule, MatchOperator};
use weft_bgp_proto::policy::{Conditions, PrefixList, PrefixListEntry, Statement, Verdict};

/// What went wrong with one rule: its key (`spec.importV4[0].cidr`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule's key inside the filter.
    pub key: String,
    /// Why, as a sentence.
    pub message: String,
}

/// Import or export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Routes from the peer.
    Import,
    /// Routes to the peer.
    Export,
}

/// The statements of `filter`'s rules for `direction`, in order (V4 rules, then V6 rules: a
/// rule of one family never matches a route of the other).
pub fn statements(filter: &BGPFilterSpec, direction: Direction) -> Result<Vec<Statement>, RuleError> {
    let lists: [(&str, &Vec<FilterRule>); 2] = match direction {
        Direction::Import => [
            ("spec.importV4", &filter.import_v4),
            ("spec.importV6", &filter.import_v6),
        ],
        Direction::Export => [
            ("spec.exportV4", &filter.export_v4),
            ("spec.exportV6", &filter.export_v6),
        ],
    };
    let mut statements = Vec::new();
    for (field, rules) in lists {
        for (i, rule) in rules.iter().enumerate() {
            statements.push(statement(&format!("{field}[{i}]"), rule)?);
        }
    }
    Ok(statements)
}

fn statement(key: &str, rule: &FilterRule) -> Result<Statement, RuleError> {
    let error = |field: &str, message: String| RuleError {
        key: format!("{key}.{field}"),
        message,
    };
    let prefix: IpNet = rule
        .cidr
        .parse()
        .map_err(|_| error("cidr", format!("{:?} is not a CIDR", rule.cidr)))?;
    if prefix.trunc() != prefix {
        return Err(error(
            "cidr",
            format!("{prefix} has host bits set (did you mean {}?)", prefix.trunc()),
        ));
    }
    let max = prefix.max_prefix_len();
    let length = |value: Option<u8>, field: &str| match value {
        Some(length) if length > max => Err(error(
            &format!("prefixLength.{field}"),
            format!("{length} is longer than {max}"),
        )),
        other => Ok(other),
    };
    let (min_length, max_length) = match rule.prefix_length {
        None => (None, None),
        Some(range) => (length(range.min, "min")?, length(range.max, "max")?),
    };
    let exact = PrefixListEntry {
        prefix,
        ge: None,
        le: None,
    };
    let inside = PrefixListEntry {
        prefix,
        ge: Some(min_length.unwrap_or(prefix.prefix_len()).max(prefix.prefix_len())),
        le: Some(max_length.unwrap_or(max)),
    };
    let (entry, negated) = match rule.match_operator {
        MatchOperator::Equal => (exact, false),
        MatchOperator::NotEqual => (exact, true),
        MatchOperator::In => (inside, false),
        MatchOperator::NotIn => (inside, true),
    };
    Ok(Statement {
        conditions: Conditions {
            prefix_list: Some(Arc::new(PrefixList(vec![entry]))),
            prefix_list_negated: negated,
            ..Conditions::default()
        },
        actions: Default::default(),
        verdict: Some(match rule.action {
            FilterAction::Accept => Verdict::Accept,
            FilterAction::Reject => Verdict::Reject,
        }),
    })
}

#[cfg(test)]
mod tests {
    use weft_api::resources::PrefixLength;
    use weft_bgp_proto::policy::NamedPolicy;
    use weft_bgp_proto::route::{AsPath, Origin, PathAttributes};

    use super::*;

    fn rule(cidr: &str, match_operator: MatchOperator, action: FilterAction) -> FilterRule {
        FilterRule {
            cidr: cidr.to_owned(),
            match_operator,
            action,
            prefix_length: None,
        }
    }

    fn accepts(statements: &[Statement], prefix: &str) -> bool {
        let mut statements = statements.to_vec();
        statements.push(Statement {
            verdict: Some(Verdict::Accept),
            ..Statement::default()
        });
        let policy = NamedPolicy {
            name: "test".to_owned(),
            statements,
        };
        let attributes = PathAttributes {
            origin: Origin::Igp,
            as_path: AsPath::default(),
            next_hop: "198.19.0.1".parse().expect("address"),
            med: None,
            local_pref: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            aggregator: None,
            atomic_aggregate: false,
        };
        policy
            .apply(&prefix.parse().expect("prefix"), &attributes, 64512)
            .is_some()
    }

    #[test]
    fn the_first_matching_rule_decides_and_the_rest_falls_through() {
        let filter = BGPFilterSpec {
            import_v4: vec![
                rule("198.18.1.0/26", MatchOperator::Equal, FilterAction::Accept),
                rule("198.18.0.0/16", MatchOperator::In, FilterAction::Reject),
            ],
            ..BGPFilterSpec::default()
        };
        let statements = statements(&filter, Direction::Import).expect("valid");
        assert!(accepts(&statements, "198.18.1.0/26"));
        assert!(!accepts(&statements, "198.18.2.0/26"));
        assert!(!accepts(&statements, "198.18.0.0/16"), "In includes the CIDR itself");
        assert!(accepts(&statements, "198.19.0.0/24"), "no rule matches: falls through");
        assert!(super::statements(&filter, Direction::Export).expect("valid").is_empty());
    }

    #[test]
    fn prefix_length_narrows_in() {
        let mut only_24s = rule("198.18.0.0/16", MatchOperator::In, FilterAction::Reject);
        only_24s.prefix_length = Some(PrefixLength {
            min: Some(24),
            max: Some(24),
        });
        let filter = BGPFilterSpec {
            export_v4: vec![only_24s],
            ..BGPFilterSpec::default()
        };
        let statements = statements(&filter, Direction::Export).expect("valid");
        assert!(!accepts(&statements, "198.18.3.0/24"));
        assert!(accepts(&statements, "198.18.3.0/26"));
    }

    #[test]
    fn not_equal_and_not_in_match_every_other_prefix_of_their_family_only() {
        let filter = BGPFilterSpec {
            export_v4: vec![rule("198.18.1.0/26", MatchOperator::NotEqual, FilterAction::Reject)],
            export_v6: vec![rule("2001:db8:1::/48", MatchOperator::NotIn, FilterAction::Reject)],
            ..BGPFilterSpec::default()
        };
        let statements = statements(&filter, Direction::Export).expect("valid");
        assert!(accepts(&statements, "198.18.1.0/26"), "the one prefix NotEqual spares");
        assert!(!accepts(&statements, "198.18.1.0/27"));
        assert!(!accepts(&statements, "198.19.0.0/24"));
        assert!(
            accepts(&statements, "2001:db8:1:5::/64"),
            "inside: NotIn does not match"
        );
        assert!(!accepts(&statements, "2001:db8:2::/48"));
        // An IPv4 rule never matches an IPv6 route, negated or not, and the other way round.
        let v4_only = BGPFilterSpec {
            import_v4: vec![rule("198.18.0.0/16", MatchOperator::NotIn, FilterAction::Reject)],
            ..BGPFilterSpec::default()
        };
        let statements = super::statements(&v4_only, Direction::Import).expect("valid");
        assert!(accepts(&statements, "2001:db8:2::/48"), "falls through");
        assert!(!accepts(&statements, "198.19.0.0/24"));
        assert!(accepts(&statements, "198.18.5.0/26"));
    }

    #[test]
    fn bad_cidrs_are_named() {
        let filter = BGPFilterSpec {
            export_v6: vec![
                rule("2001:db8::/32", MatchOperator::In, FilterAction::Accept),
                rule("2001:db8::1/32", MatchOperator::NotIn, FilterAction::Accept),
            ],
            ..BGPFilterSpec::default()
        };
        let error = statements(&filter, Direction::Export).expect_err("refused");
        assert_eq!(error.key, "spec.exportV6[1].cidr");
        let filter = BGPFilterSpec {
            import_v4: vec![rule("198.18.1.1/26", MatchOperator::In, FilterAction::Accept)],
            ..BGPFilterSpec::default()
        };
        let error = statements(&filter, Direction::Import).expect_err("refused");
        assert_eq!(error.key, "spec.importV4[0].cidr");
    }
}

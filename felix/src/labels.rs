//! Kubernetes label selectors (`metav1.LabelSelector`) as NetworkPolicy uses them: `matchLabels`
//! and `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`, all ANDed; an empty
//! selector selects everything.
//!
//! Pure. Parse once ([`LabelSelector::compile`]), match many times.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

pub type Labels = BTreeMap<String, String>;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A compiled selector: every requirement must hold. Sorted, so equal selectors compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Why a selector cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("matchExpressions operator {operator:?} on {key:?} is not In, NotIn, Exists or DoesNotExist")]
    UnknownOperator { key: String, operator: String },
    #[error("matchExpressions {operator} on {key:?} needs at least one value")]
    MissingValues { key: String, operator: String },
    #[error("matchExpressions {operator} on {key:?} takes no values")]
    UnexpectedValues { key: String, operator: String },
}

impl LabelSelector {
    /// The selector that selects everything.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    pub fn compile(selector: &meta::LabelSelector) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(key.clone(), vec![value.clone()]));
        }
        for expression in selector.match_expressions.iter().flatten() {
            let key = expression.key.clone();
            let mut values = expression.values.clone().unwrap_or_default();
            values.sort();
            values.dedup();
            let operator = expression.operator.clone();
            let requirement = match operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::MissingValues { key, operator });
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::UnexpectedValues { key, operator });
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                _ => return Err(SelectorError::UnknownOperator { key, operator }),
            };
            requirements.push(requirement);
        }
        requirements.sort();
        requirements.dedup();
        Ok(LabelSelector { requirements })
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|requirement| match requirement {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return write!(f, "all");
        }
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|requirement| match requirement {
                Requirement::In(key, values) if values.len() == 1 => format!("{key}={}", values[0]),
                Requirement::In(key, values) => format!("{key} in ({})", values.join(",")),
                Requirement::NotIn(key, values) => format!("{key} notin ({})", values.join(",")),
                Requirement::Exists(key) => key.clone(),
                Requirement::DoesNotExist(key) => format!("!{key}"),
            })
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use meta::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> meta::LabelSelector {
        meta::LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
        }
    }

    #[test]
    fn empty_selector_selects_every_pod() {
        let selector = LabelSelector::compile(&meta::LabelSelector::default()).unwrap();
        assert!(selector.matches(&labels(&[])));
        assert!(selector.matches(&labels(&[("pod", "a")])));
    }

    #[test]
    fn match_expressions_follow_kubernetes_operators() {
        let pod = labels(&[("pod", "a"), ("tier", "web")]);
        let cases = [
            (expression("pod", "In", &["a", "b"]), true),
            (expression("pod", "In", &["c"]), false),
            (expression("pod", "NotIn", &["c"]), true),
            (expression("missing", "NotIn", &["c"]), true),
            (expression("pod", "NotIn", &["a"]), false),
            (expression("tier", "Exists", &[]), true),
            (expression("missing", "Exists", &[]), false),
            (expression("missing", "DoesNotExist", &[]), true),
            (expression("tier", "DoesNotExist", &[]), false),
        ];
        for (selector, expected) in cases {
            assert_eq!(
                LabelSelector::compile(&selector).unwrap().matches(&pod),
                expected,
                "{selector:?}"
            );
        }
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let mut selector = expression("tier", "Exists", &[]);
        selector.match_labels = Some([("pod".to_string(), "a".to_string())].into());
        let selector = LabelSelector::compile(&selector).unwrap();
        assert!(selector.matches(&labels(&[("pod", "a"), ("tier", "x")])));
        assert!(!selector.matches(&labels(&[("pod", "a")])));
        assert!(!selector.matches(&labels(&[("pod", "b"), ("tier", "x")])));
    }

    #[test]
    fn bad_operators_and_values_are_refused() {
        assert!(matches!(
            LabelSelector::compile(&expression("pod", "Equals", &["a"])),
            Err(SelectorError::UnknownOperator { .. })
        ));
        assert!(matches!(
            LabelSelector::compile(&expression("pod", "In", &[])),
            Err(SelectorError::MissingValues { .. })
        ));
        assert!(matches!(
            LabelSelector::compile(&expression("pod", "Exists", &["a"])),
            Err(SelectorError::UnexpectedValues { .. })
        ));
    }
}

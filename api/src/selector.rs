//! Label selectors in Calico's syntax, as `IPPool.nodeSelector`, `BGPPeer.nodeSelector` and
//! `BGPPeer.peerSelector` use them:
//!
//! ```text
//! all()                      every object ("" means the same)
//! has(rack)   !has(rack)     the label is there / is not
//! rack == 'r1'               equal (a missing label is not equal)
//! rack != 'r1'               not equal (a missing label is not equal, so this matches)
//! rack in {'r1', 'r2'}       one of
//! rack not in {'r1'}         none of
//! a && b   a || b   !a   ( … )
//! ```
//!
//! Pure: parse once ([`Selector::parse`]), evaluate many times ([`Selector::matches`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    Has(String),
    Equal(String, String),
    NotEqual(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Not(Box<Selector>),
    And(Box<Selector>, Box<Selector>),
    Or(Box<Selector>, Box<Selector>),
}

/// Why a selector does not parse: what was expected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {text:?}: {expected} at character {position}")]
pub struct SelectorError {
    pub text: String,
    pub position: usize,
    pub expected: &'static str,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser { text, position: 0 };
        parser.skip_space();
        if parser.at_end() {
            return Ok(Selector::All);
        }
        let selector = parser.or()?;
        parser.skip_space();
        if !parser.at_end() {
            return Err(parser.error("end of selector"));
        }
        Ok(selector)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::All => true,
            Selector::Has(key) => labels.contains_key(key),
            Selector::Equal(key, value) => labels.get(key) == Some(value),
            Selector::NotEqual(key, value) => labels.get(key) != Some(value),
            Selector::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Selector::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Selector::Not(inner) => !inner.matches(labels),
            Selector::And(a, b) => a.matches(labels) && b.matches(labels),
            Selector::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(text: &str) -> Result<Selector, SelectorError> {
        Selector::parse(text)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |values: &[String]| values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
        match self {
            Selector::All => write!(f, "all()"),
            Selector::Has(key) => write!(f, "has({key})"),
            Selector::Equal(key, value) => write!(f, "{key} == '{value}'"),
            Selector::NotEqual(key, value) => write!(f, "{key} != '{value}'"),
            Selector::In(key, values) => write!(f, "{key} in {{{}}}", set(values)),
            Selector::NotIn(key, values) => write!(f, "{key} not in {{{}}}", set(values)),
            Selector::Not(inner) => write!(f, "!({inner})"),
            Selector::And(a, b) => write!(f, "({a} && {b})"),
            Selector::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    position: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.position..]
    }

    fn at_end(&self) -> bool {
        self.position >= self.text.len()
    }

    fn error(&self, expected: &'static str) -> SelectorError {
        SelectorError {
            text: self.text.to_owned(),
            position: self.position,
            expected,
        }
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.position = self.text.len() - trimmed.len();
    }

    /// Consumes `token` (after spaces) if it is next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.position += token.len();
            true
        } else {
            false
        }
    }

    /// Consumes the keyword `word` if it is next and not the start of a longer name.
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_space();
        let rest = self.rest();
        if rest.starts_with(word) && !rest[word.len()..].starts_with(is_key_char) {
            self.position += word.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Selector::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            left = Selector::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Selector, SelectorError> {
        self.skip_space();
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.position += 1;
            return Ok(Selector::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Selector, SelectorError> {
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("')'"));
            }
            return Ok(inner);
        }
        if self.eat_word("all") {
            if !(self.eat("(") && self.eat(")")) {
                return Err(self.error("'()' after all"));
            }
            return Ok(Selector::All);
        }
        if self.eat_word("has") {
            if !self.eat("(") {
                return Err(self.error("'(' after has"));
            }
            let key = self.key()?;
            if !self.eat(")") {
                return Err(self.error("')'"));
            }
            return Ok(Selector::Has(key));
        }
        let key = self.key()?;
        if self.eat("==") {
            return Ok(Selector::Equal(key, self.value()?));
        }
        if self.eat("!=") {
            return Ok(Selector::NotEqual(key, self.value()?));
        }
        if self.eat_word("in") {
            return Ok(Selector::In(key, self.set()?));
        }
        if self.eat_word("not") {
            if !self.eat_word("in") {
                return Err(self.error("'in' after not"));
            }
            return Ok(Selector::NotIn(key, self.set()?));
        }
        Err(self.error("'==', '!=', 'in' or 'not in'"))
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        self.skip_space();
        let length = self.rest().find(|c: char| !is_key_char(c)).unwrap_or(self.rest().len());
        if length == 0 {
            return Err(self.error("a label name"));
        }
        let key = self.rest()[..length].to_owned();
        self.position += length;
        Ok(key)
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        self.skip_space();
        let quote = match self.rest().chars().next() {
            Some(quote @ ('\'' | '"')) => quote,
            _ => return Err(self.error("a quoted value")),
        };
        self.position += 1;
        let Some(length) = self.rest().find(quote) else {
            return Err(self.error("a closing quote"));
        };
        let value = self.rest()[..length].to_owned();
        self.position += length + 1;
        Ok(value)
    }

    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        if !self.eat("{") {
            return Err(self.error("'{'"));
        }
        let mut values = Vec::new();
        if self.eat("}") {
            return Ok(values);
        }
        loop {
            values.push(self.value()?);
            if self.eat("}") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error("',' or '}'"));
            }
        }
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn empty_and_all_match_everything() {
        for text in ["", "  ", "all()"] {
            assert!(Selector::parse(text).unwrap().matches(&labels(&[])));
        }
    }

    #[test]
    fn operators_follow_calico_semantics() {
        let node = labels(&[("rack", "r1"), ("zone", "a"), ("kubernetes.io/os", "linux")]);
        let cases = [
            ("rack == 'r1'", true),
            ("rack == \"r2\"", false),
            ("rack != 'r2'", true),
            ("missing != 'x'", true),
            ("missing == 'x'", false),
            ("has(rack)", true),
            ("!has(rack)", false),
            ("rack in {'r1', 'r2'}", true),
            ("rack not in {'r1'}", false),
            ("missing not in {'r1'}", true),
            ("missing in {'r1'}", false),
            ("rack == 'r1' && zone == 'b'", false),
            ("rack == 'r9' || zone == 'a'", true),
            ("!(rack == 'r9' || zone == 'b') && has(kubernetes.io/os)", true),
            ("kubernetes.io/os == 'linux'", true),
        ];
        for (text, expected) in cases {
            assert_eq!(Selector::parse(text).unwrap().matches(&node), expected, "{text}");
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let selector = Selector::parse("a == '1' || b == '1' && c == '1'").unwrap();
        assert!(selector.matches(&labels(&[("a", "1")])));
        assert!(!selector.matches(&labels(&[("b", "1")])));
    }

    #[test]
    fn a_broken_selector_says_what_was_expected_where() {
        let error = Selector::parse("rack = 'r1'").unwrap_err();
        assert_eq!((error.position, error.expected), (5, "'==', '!=', 'in' or 'not in'"));
        assert_eq!(Selector::parse("rack == 'r1").unwrap_err().expected, "a closing quote");
        assert_eq!(Selector::parse("has(rack").unwrap_err().expected, "')'");
        assert_eq!(
            Selector::parse("rack == 'a' zone").unwrap_err().expected,
            "end of selector"
        );
        assert_eq!(Selector::parse("rack in {'a' 'b'}").unwrap_err().expected, "',' or '}'");
    }

    #[test]
    fn display_parses_back_to_the_same_selector() {
        for text in ["!has(a) && (b in {'1', '2'} || c != 'x')", "rack not in {}", "all()"] {
            let selector = Selector::parse(text).unwrap();
            assert_eq!(Selector::parse(&selector.to_string()).unwrap(), selector);
        }
    }
}

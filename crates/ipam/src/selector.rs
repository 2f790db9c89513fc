//! The subset of Calico's label selector language that IP pools use in `nodeSelector`, so that
//! each orchestrator's nodes (labelled e.g. `coe=kubernetes` / `coe=dcos`) draw from their own
//! pool as in the seed.
//!
//! Grammar (whitespace between tokens is ignored):
//!
//! ```text
//! expr    := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | primary
//! primary := "(" expr ")" | "all()" | "has(" key ")"
//!          | key "==" string | key "!=" string
//!          | key "in" "{" [ string ( "," string )* ] "}"
//!          | key "not in" "{" [ string ( "," string )* ] "}"
//!          | key ( "contains" | "starts with" | "ends with" ) string
//!          | "global()"                       (for pools: every node)
//! string  := '...' | "..."
//! ```
//!
//! An empty selector means `all()`.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed selector; evaluation is a pure function of a node's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Matches every node.
    All,
    /// The label is present, whatever its value.
    Has(String),
    /// The label is present with exactly this value.
    Eq(String, String),
    /// The label is absent or has another value (Calico's semantics for `!=`).
    Ne(String, String),
    /// The label is present and its value contains / starts with / ends with this text.
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    /// The label is present with one of these values.
    In(String, Vec<String>),
    /// The label is absent or has none of these values.
    NotIn(String, Vec<String>),
    Not(Box<Selector>),
    And(Box<Selector>, Box<Selector>),
    Or(Box<Selector>, Box<Selector>),
}

/// Why a selector string was rejected, with the byte offset where parsing stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {input:?} at offset {offset}: {reason}")]
pub struct SelectorError {
    pub input: String,
    pub offset: usize,
    pub reason: String,
}

impl Selector {
    /// Parse a selector; the empty string (or only whitespace) is `all()`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser { input, pos: 0 };
        parser.skip_ws();
        if parser.pos == input.len() {
            return Ok(Selector::All);
        }
        let selector = parser.expr()?;
        parser.skip_ws();
        if parser.pos != input.len() {
            return Err(parser.error("unexpected trailing input"));
        }
        Ok(selector)
    }

    /// Does a node with these labels match?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::All => true,
            Selector::Has(k) => labels.contains_key(k),
            Selector::Eq(k, v) => labels.get(k) == Some(v),
            Selector::Ne(k, v) => labels.get(k) != Some(v),
            Selector::Contains(k, s) => labels.get(k).is_some_and(|v| v.contains(s.as_str())),
            Selector::StartsWith(k, s) => labels.get(k).is_some_and(|v| v.starts_with(s.as_str())),
            Selector::EndsWith(k, s) => labels.get(k).is_some_and(|v| v.ends_with(s.as_str())),
            Selector::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Selector::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
            Selector::Not(s) => !s.matches(labels),
            Selector::And(a, b) => a.matches(labels) && b.matches(labels),
            Selector::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }
}

impl fmt::Display for Selector {
    /// Canonical text form; parsing it back yields the same selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(vs: &[String]) -> String {
            vs.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ")
        }
        match self {
            Selector::All => write!(f, "all()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Eq(k, v) => write!(f, "{k} == '{v}'"),
            Selector::Ne(k, v) => write!(f, "{k} != '{v}'"),
            Selector::Contains(k, v) => write!(f, "{k} contains '{v}'"),
            Selector::StartsWith(k, v) => write!(f, "{k} starts with '{v}'"),
            Selector::EndsWith(k, v) => write!(f, "{k} ends with '{v}'"),
            Selector::In(k, vs) => write!(f, "{k} in {{{}}}", list(vs)),
            Selector::NotIn(k, vs) => write!(f, "{k} not in {{{}}}", list(vs)),
            Selector::Not(s) => write!(f, "!({s})"),
            Selector::And(a, b) => write!(f, "({a} && {b})"),
            Selector::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

/// Recursive-descent parser state: the input and the current byte offset.
struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, reason: &str) -> SelectorError {
        SelectorError { input: self.input.to_string(), offset: self.pos, reason: reason.to_string() }
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.input.len() - trimmed.len();
    }

    /// Consume `token` (after whitespace) if it is next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), SelectorError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {token:?}")))
        }
    }

    fn expr(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Selector::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            let right = self.unary()?;
            left = Selector::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Selector, SelectorError> {
        self.skip_ws();
        // `!` alone negates; `!=` never starts a term, so no ambiguity here.
        if self.rest().starts_with('!') {
            self.pos += 1;
            return Ok(Selector::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Selector, SelectorError> {
        if self.eat("(") {
            let inner = self.expr()?;
            self.expect(")")?;
            return Ok(inner);
        }
        let key = self.key()?;
        if key == "all" && self.eat("(") {
            self.expect(")")?;
            return Ok(Selector::All);
        }
        // `global()` selects everything that is not namespaced: every node, for a pool.
        if key == "global" && self.eat("(") {
            self.expect(")")?;
            return Ok(Selector::All);
        }
        if key == "has" && self.eat("(") {
            let k = self.key()?;
            self.expect(")")?;
            return Ok(Selector::Has(k));
        }
        if self.eat("==") {
            return Ok(Selector::Eq(key, self.string()?));
        }
        if self.eat("!=") {
            return Ok(Selector::Ne(key, self.string()?));
        }
        if self.eat_word("in") {
            return Ok(Selector::In(key, self.set()?));
        }
        if self.eat_word("contains") {
            return Ok(Selector::Contains(key, self.string()?));
        }
        for (word, make) in [("starts", Selector::StartsWith as fn(String, String) -> Selector), ("ends", Selector::EndsWith)] {
            if self.eat_word(word) {
                if !self.eat_word("with") {
                    return Err(self.error(&format!("expected \"with\" after \"{word}\"")));
                }
                return Ok(make(key, self.string()?));
            }
        }
        if self.eat_word("not") {
            if !self.eat_word("in") {
                return Err(self.error("expected \"in\" after \"not\""));
            }
            return Ok(Selector::NotIn(key, self.set()?));
        }
        Err(self.error(&format!(
            "expected an operator (==, !=, in, not in, contains, starts with, ends with) after label {key:?}"
        )))
    }

    /// A keyword that must not run on into a label name (so `inner == 'x'` is not `in`).
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        if rest.starts_with(word) && !rest[word.len()..].starts_with(is_key_char) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// A label key: letters, digits and `_ . / -` (Kubernetes label key characters).
    fn key(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let len = self.rest().find(|c: char| !is_key_char(c)).unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("expected a label name"));
        }
        let key = self.rest()[..len].to_string();
        self.pos += len;
        Ok(key)
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let quote = match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.error("expected a quoted value")),
        };
        let body = &self.rest()[1..];
        let Some(end) = body.find(quote) else {
            return Err(self.error("unterminated string"));
        };
        let value = body[..end].to_string();
        self.pos += end + 2;
        Ok(value)
    }

    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.expect("{")?;
        let mut values = Vec::new();
        if self.eat("}") {
            return Ok(values);
        }
        loop {
            values.push(self.string()?);
            if self.eat("}") {
                return Ok(values);
            }
            self.expect(",")?;
        }
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn seed_pools_split_nodes_by_coe() {
        let k8s = Selector::parse("coe == 'kubernetes'").unwrap();
        let dcos = Selector::parse("coe == \"dcos\"").unwrap();
        let k8s_node = labels(&[("coe", "kubernetes")]);
        let dcos_node = labels(&[("coe", "dcos")]);
        assert!(k8s.matches(&k8s_node));
        assert!(!k8s.matches(&dcos_node));
        assert!(dcos.matches(&dcos_node));
        assert!(!dcos.matches(&k8s_node));
        assert!(!k8s.matches(&labels(&[])));
    }

    #[test]
    fn operators_and_precedence() {
        let node = labels(&[("coe", "dcos"), ("zone", "a"), ("gpu", "")]);
        let cases = [
            ("", true),
            ("all()", true),
            ("has(gpu)", true),
            ("has(ssd)", false),
            ("!has(ssd)", true),
            ("coe != 'kubernetes'", true),
            ("missing != 'x'", true),
            ("coe in {'dcos', 'nomad'}", true),
            ("coe in {}", false),
            ("coe not in {'dcos'}", false),
            ("missing not in {'dcos'}", true),
            ("coe == 'kubernetes' || zone == 'a' && has(gpu)", true),
            ("(coe == 'kubernetes' || zone == 'a') && has(ssd)", false),
            ("!(coe == 'dcos') || zone == 'b'", false),
            ("!!has(gpu)", true),
            ("global()", true),
            ("coe contains 'co'", true),
            ("coe starts with 'dc'", true),
            ("coe ends with 'os'", true),
            ("coe ends with 'dc'", false),
            ("missing contains ''", false),
        ];
        for (text, expected) in cases {
            let sel = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(sel.matches(&node), expected, "{text}");
            // The canonical form parses back to the same tree.
            assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel, "{text}");
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let sel = Selector::parse("a == '1' || b == '1' && c == '1'").unwrap();
        assert!(matches!(sel, Selector::Or(_, _)));
    }

    #[test]
    fn keyword_prefix_is_a_label() {
        let sel = Selector::parse("inner == 'x'").unwrap();
        assert_eq!(sel, Selector::Eq("inner".into(), "x".into()));
    }

    #[test]
    fn errors_name_the_offset() {
        let cases = [
            ("coe ==", 6, "quoted value"),
            ("coe = 'x'", 4, "operator"),
            ("coe == 'x", 7, "unterminated"),
            ("has(coe", 7, "\")\""),
            ("coe == 'x' junk", 11, "trailing"),
            ("coe in {'a' 'b'}", 12, "\",\""),
            ("coe not {'a'}", 8, "\"in\""),
            ("coe starts 'a'", 11, "\"with\""),
            ("&& x", 0, "label name"),
        ];
        for (text, offset, reason) in cases {
            let err = Selector::parse(text).unwrap_err();
            assert_eq!(err.offset, offset, "{text}: {err}");
            assert!(err.reason.contains(reason), "{text}: {err}");
        }
    }
}

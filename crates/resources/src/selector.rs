//! Calico's label selector language (`role == 'db' && has(tier)`): one parser and evaluator
//! used by `apply` (so a broken selector is refused up front, naming the position), by the
//! policy compiler (to pick endpoints for sets) and by the IPAM (pool `nodeSelector`s).
//!
//! Grammar:
//!   expr    := and ("||" and)*
//!   and     := unary ("&&" unary)*
//!   unary   := "!" unary | "(" expr ")" | "all()" | "global()" | "has(" LABEL ")" | LABEL test
//!   test    := ("==" | "!=" | "contains" | "starts with" | "ends with") STRING
//!            | ["not"] "in" "{" [STRING ("," STRING)*] "}"
//!   STRING  := '...' | "..."
//!
//! `Selector::parse("")` is `all()` (an absent selector selects everything), while
//! [`validate_selector`] refuses an empty text: a selector that is written must say something.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed selector; evaluation is a pure function of a label map.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// Matches everything.
    All,
    /// Calico's `global()`: non-namespaced objects. Label maps carry no namespace, so for
    /// [`Selector::matches`] it selects everything (as IP pool node selectors need); the policy
    /// compiler gives it its namespace meaning itself.
    Global,
    /// The label is present, whatever its value.
    Has(String),
    /// The label is present with exactly this value.
    Eq(String, String),
    /// The label is absent or has another value (Calico's semantics for `!=`).
    Ne(String, String),
    /// The label is present and its value contains / starts with / ends with the text.
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

/// Why a selector text was rejected, with the byte offset where parsing stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {input:?} at offset {offset}: {reason}")]
pub struct SelectorError {
    pub input: String,
    pub offset: usize,
    pub reason: String,
}

impl Selector {
    /// Parse a selector; the empty text (or only whitespace) is `all()`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let err = |(offset, reason): (usize, String)| SelectorError { input: input.to_string(), offset, reason };
        let tokens = tokenize(input).map_err(err)?;
        if tokens.is_empty() {
            return Ok(Selector::All);
        }
        let mut p = Parser { tokens, at: 0, len: input.len() };
        let sel = p.expr().map_err(err)?;
        if p.at != p.tokens.len() {
            return Err(err((p.pos(), "unexpected text".into())));
        }
        Ok(sel)
    }

    /// Does an object with these labels match?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::All | Selector::Global => true,
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

    /// `a && b`, simplifying `all()` away.
    pub fn and(self, other: Selector) -> Selector {
        match (self, other) {
            (Selector::All, x) | (x, Selector::All) => x,
            (a, b) => Selector::And(Box::new(a), Box::new(b)),
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, SelectorError> {
        Selector::parse(s)
    }
}

/// Quote a value with whichever quote it does not contain (the grammar has no escapes).
fn quote(v: &str) -> String {
    if v.contains('\'') {
        format!("\"{v}\"")
    } else {
        format!("'{v}'")
    }
}

impl fmt::Display for Selector {
    /// Canonical text form; parsing it back yields the same selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(vs: &[String]) -> String {
            vs.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
        }
        match self {
            Selector::All => write!(f, "all()"),
            Selector::Global => write!(f, "global()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Eq(k, v) => write!(f, "{k} == {}", quote(v)),
            Selector::Ne(k, v) => write!(f, "{k} != {}", quote(v)),
            Selector::Contains(k, v) => write!(f, "{k} contains {}", quote(v)),
            Selector::StartsWith(k, v) => write!(f, "{k} starts with {}", quote(v)),
            Selector::EndsWith(k, v) => write!(f, "{k} ends with {}", quote(v)),
            Selector::In(k, vs) => write!(f, "{k} in {{{}}}", list(vs)),
            Selector::NotIn(k, vs) => write!(f, "{k} not in {{{}}}", list(vs)),
            Selector::Not(s) => write!(f, "!({s})"),
            Selector::And(a, b) => write!(f, "({a} && {b})"),
            Selector::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

/// A lexical token; positions travel alongside in the token list.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Not,
    And,
    Or,
    Eq,
    Ne,
}

/// An error position and reason, before it is given the input text.
type PErr = (usize, String);

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, PErr> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        let next = chars.get(i + 1).map(|x| x.1);
        let (tok, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Token::LParen, 1),
            ')' => (Token::RParen, 1),
            '{' => (Token::LBrace, 1),
            '}' => (Token::RBrace, 1),
            ',' => (Token::Comma, 1),
            '&' if next == Some('&') => (Token::And, 2),
            '|' if next == Some('|') => (Token::Or, 2),
            '=' if next == Some('=') => (Token::Eq, 2),
            '!' if next == Some('=') => (Token::Ne, 2),
            '!' => (Token::Not, 1),
            '\'' | '"' => {
                let end = chars[i + 1..].iter().position(|x| x.1 == c);
                match end {
                    Some(n) => {
                        let s: String = chars[i + 1..i + 1 + n].iter().map(|x| x.1).collect();
                        (Token::Str(s), n + 2)
                    }
                    None => return Err((pos, "unterminated string starting".into())),
                }
            }
            c if is_label_char(c) => {
                let n = chars[i..].iter().take_while(|x| is_label_char(x.1)).count();
                let word: String = chars[i..i + n].iter().map(|x| x.1).collect();
                (Token::Word(word), n)
            }
            other => return Err((pos, format!("unexpected character {other:?}"))),
        };
        out.push((pos, tok));
        i += len;
    }
    Ok(out)
}

/// Recursive-descent parser over the token list.
struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|t| &t.1)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).map(|t| t.0).unwrap_or(self.len)
    }

    fn fail<T>(&self, what: &str) -> Result<T, PErr> {
        Err((self.pos(), what.to_string()))
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), PErr> {
        if self.peek() == Some(&want) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(&format!("expected {what}"))
        }
    }

    fn word_is(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(x)) if x == w)
    }

    fn expr(&mut self) -> Result<Selector, PErr> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            let right = self.and()?;
            left = Selector::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Selector, PErr> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            let right = self.unary()?;
            left = Selector::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Selector, PErr> {
        match self.peek().cloned() {
            Some(Token::Not) => {
                self.at += 1;
                Ok(Selector::Not(Box::new(self.unary()?)))
            }
            Some(Token::LParen) => {
                self.at += 1;
                let e = self.expr()?;
                self.expect(Token::RParen, "')'")?;
                Ok(e)
            }
            Some(Token::Word(w)) => {
                self.at += 1;
                let call = self.peek() == Some(&Token::LParen);
                match w.as_str() {
                    "all" | "global" if call => {
                        self.at += 1;
                        self.expect(Token::RParen, "')'")?;
                        Ok(if w == "all" { Selector::All } else { Selector::Global })
                    }
                    "has" if call => {
                        self.at += 1;
                        let label = match self.peek().cloned() {
                            Some(Token::Word(l)) => {
                                self.at += 1;
                                l
                            }
                            _ => return self.fail("expected a label name in has()"),
                        };
                        self.expect(Token::RParen, "')'")?;
                        Ok(Selector::Has(label))
                    }
                    _ => self.test(w),
                }
            }
            _ => self.fail("expected a label test, has(), all(), '!' or '('"),
        }
    }

    fn string(&mut self) -> Result<String, PErr> {
        match self.peek().cloned() {
            Some(Token::Str(s)) => {
                self.at += 1;
                Ok(s)
            }
            _ => self.fail("expected a quoted string"),
        }
    }

    fn test(&mut self, label: String) -> Result<Selector, PErr> {
        match self.peek().cloned() {
            Some(Token::Eq) => {
                self.at += 1;
                Ok(Selector::Eq(label, self.string()?))
            }
            Some(Token::Ne) => {
                self.at += 1;
                Ok(Selector::Ne(label, self.string()?))
            }
            Some(Token::Word(w)) if w == "contains" => {
                self.at += 1;
                Ok(Selector::Contains(label, self.string()?))
            }
            Some(Token::Word(w)) if w == "starts" || w == "ends" => {
                self.at += 1;
                if !self.word_is("with") {
                    return self.fail("expected 'with'");
                }
                self.at += 1;
                let s = self.string()?;
                Ok(if w == "starts" { Selector::StartsWith(label, s) } else { Selector::EndsWith(label, s) })
            }
            Some(Token::Word(w)) if w == "not" || w == "in" => {
                self.at += 1;
                if w == "not" {
                    if !self.word_is("in") {
                        return self.fail("expected 'in'");
                    }
                    self.at += 1;
                }
                self.expect(Token::LBrace, "'{'")?;
                let mut values = Vec::new();
                if self.peek() == Some(&Token::RBrace) {
                    self.at += 1;
                } else {
                    loop {
                        values.push(self.string()?);
                        match self.peek() {
                            Some(Token::Comma) => self.at += 1,
                            Some(Token::RBrace) => {
                                self.at += 1;
                                break;
                            }
                            _ => return self.fail("expected ',' or '}'"),
                        }
                    }
                }
                Ok(if w == "not" { Selector::NotIn(label, values) } else { Selector::In(label, values) })
            }
            _ => self.fail("expected ==, !=, in, not in, contains, starts with or ends with"),
        }
    }
}

/// Check a selector's syntax. Empty (or only spaces) is refused: callers treat an absent
/// selector as "all" themselves, but a present one must say something.
pub fn validate_selector(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("selector is empty; use all() to select everything".into());
    }
    Selector::parse(text).map(|_| ()).map_err(|e| format!("{} at offset {}", e.reason, e.offset))
}

#[cfg(test)]
mod tests {
    use super::{validate_selector, Selector};
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn accepts_calico_selectors() {
        for s in [
            "all()",
            "global()",
            "role == 'db'",
            "role != \"db\"",
            "has(tier)",
            "!has(tier)",
            "role in {'a', 'b'}",
            "role not in {}",
            "(a == 'x' || b == 'y') && !has(c)",
            "projectcalico.org/namespace == 'kube-system'",
            "name starts with 'web'",
            "name ends with 'db' && name contains 'x'",
        ] {
            assert_eq!(validate_selector(s), Ok(()), "{s}");
            // The canonical form parses back to the same tree.
            let sel = Selector::parse(s).unwrap();
            assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel, "{s} -> {sel}");
        }
    }

    #[test]
    fn rejects_broken_selectors_with_position() {
        for (s, want) in [
            ("", "empty"),
            ("   ", "empty"),
            ("role == 'db", "unterminated string starting at offset 8"),
            ("(role == 'db'", "expected ')' at offset 13"),
            ("role == 'db')", "unexpected text at offset 12"),
            ("role = 'db'", "unexpected character '=' at offset 5"),
            ("role == db", "expected a quoted string at offset 8"),
            ("has()", "expected a label name in has() at offset 4"),
            ("a == 'x' &&", "at offset 11"),
            ("role in {'a' 'b'}", "expected ',' or '}' at offset 13"),
            ("role", "expected ==, !=, in"),
        ] {
            let err = validate_selector(s).expect_err(s);
            assert!(err.contains(want), "{s:?}: {err}");
        }
        let e = Selector::parse("role == db").unwrap_err();
        assert_eq!((e.offset, e.reason.as_str()), (8, "expected a quoted string"));
        assert!(e.to_string().contains("\"role == db\""), "{e}");
    }

    #[test]
    fn evaluates_every_operator() {
        let db = labels(&[("role", "db"), ("tier", "backend"), ("name", "web-db-1")]);
        let fe = labels(&[("role", "frontend")]);
        let none = labels(&[]);
        // (selector, matches db, matches fe, matches none)
        for (s, a, b, c) in [
            ("", true, true, true),
            ("all()", true, true, true),
            ("role == 'db'", true, false, false),
            ("role != 'db'", false, true, true),
            ("has(tier)", true, false, false),
            ("!has(tier)", false, true, true),
            ("role in {'db', 'cache'}", true, false, false),
            ("role in {}", false, false, false),
            ("role not in {'db'}", false, true, true),
            ("name contains 'db'", true, false, false),
            ("name starts with 'web'", true, false, false),
            ("name ends with '-1'", true, false, false),
            ("role == 'db' && has(tier)", true, false, false),
            ("role == 'db' || role == 'frontend'", true, true, false),
            ("!(role == 'db' || role == 'frontend')", false, false, true),
            // && binds tighter than ||.
            ("role == 'frontend' || role == 'db' && !has(tier)", false, true, false),
            ("(role == 'frontend' || role == 'db') && !has(tier)", false, true, false),
            // A keyword prefix is still a label.
            ("inside == 'x' || has(notes)", false, false, false),
        ] {
            let sel = Selector::parse(s).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((sel.matches(&db), sel.matches(&fe), sel.matches(&none)), (a, b, c), "{s}");
            let again = Selector::parse(&sel.to_string()).unwrap();
            assert_eq!((again.matches(&db), again.matches(&fe), again.matches(&none)), (a, b, c), "{sel}");
        }
    }

    #[test]
    fn quotes_survive_display() {
        let sel = Selector::parse(r#"msg == "it's""#).unwrap();
        assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
        assert!(sel.matches(&labels(&[("msg", "it's")])));
    }
}

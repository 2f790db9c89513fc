//! Syntax check for Calico label selectors (`role == 'db' && has(tier)`), so a broken selector
//! is refused at `apply` instead of silently matching nothing in the agent. Evaluation lives
//! with the policy engine; this only accepts or rejects the text, naming the position.
//!
//! Grammar (Calico's selector language):
//!   expr    := and ("||" and)*
//!   and     := unary ("&&" unary)*
//!   unary   := "!" unary | "(" expr ")" | "all()" | "global()" | "has(" LABEL ")" | LABEL test
//!   test    := ("==" | "!=" | "contains" | "starts with" | "ends with") STRING
//!            | ["not"] "in" "{" [STRING ("," STRING)*] "}"

/// A lexical token with the byte offset where it starts.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Str,
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

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, String> {
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
                    Some(n) => (Token::Str, n + 2),
                    None => return Err(format!("unterminated string starting at offset {pos}")),
                }
            }
            c if is_label_char(c) => {
                let n = chars[i..].iter().take_while(|x| is_label_char(x.1)).count();
                let word: String = chars[i..i + n].iter().map(|x| x.1).collect();
                (Token::Word(word), n)
            }
            other => return Err(format!("unexpected character {other:?} at offset {pos}")),
        };
        out.push((pos, tok));
        i += len;
    }
    Ok(out)
}

/// Recursive-descent checker over the token list.
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

    fn expect(&mut self, want: Token, what: &str) -> Result<(), String> {
        if self.peek() == Some(&want) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {what} at offset {}", self.pos()))
        }
    }

    fn word_is(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(x)) if x == w)
    }

    fn expr(&mut self) -> Result<(), String> {
        self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            self.and()?;
        }
        Ok(())
    }

    fn and(&mut self) -> Result<(), String> {
        self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            self.unary()?;
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<(), String> {
        match self.peek().cloned() {
            Some(Token::Not) => {
                self.at += 1;
                self.unary()
            }
            Some(Token::LParen) => {
                self.at += 1;
                self.expr()?;
                self.expect(Token::RParen, "')'")
            }
            Some(Token::Word(w)) => {
                self.at += 1;
                let call = self.peek() == Some(&Token::LParen);
                match w.as_str() {
                    "all" | "global" if call => {
                        self.at += 1;
                        self.expect(Token::RParen, "')'")
                    }
                    "has" if call => {
                        self.at += 1;
                        match self.peek() {
                            Some(Token::Word(_)) => self.at += 1,
                            _ => return Err(format!("expected a label name in has() at offset {}", self.pos())),
                        }
                        self.expect(Token::RParen, "')'")
                    }
                    _ => self.test(),
                }
            }
            _ => Err(format!("expected a label test, has(), all(), '!' or '(' at offset {}", self.pos())),
        }
    }

    fn string(&mut self) -> Result<(), String> {
        self.expect(Token::Str, "a quoted string")
    }

    fn test(&mut self) -> Result<(), String> {
        match self.peek().cloned() {
            Some(Token::Eq) | Some(Token::Ne) => {
                self.at += 1;
                self.string()
            }
            Some(Token::Word(w)) if w == "contains" => {
                self.at += 1;
                self.string()
            }
            Some(Token::Word(w)) if w == "starts" || w == "ends" => {
                self.at += 1;
                if !self.word_is("with") {
                    return Err(format!("expected 'with' at offset {}", self.pos()));
                }
                self.at += 1;
                self.string()
            }
            Some(Token::Word(w)) if w == "not" || w == "in" => {
                self.at += 1;
                if w == "not" {
                    if !self.word_is("in") {
                        return Err(format!("expected 'in' at offset {}", self.pos()));
                    }
                    self.at += 1;
                }
                self.expect(Token::LBrace, "'{'")?;
                if self.peek() == Some(&Token::RBrace) {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    self.string()?;
                    match self.peek() {
                        Some(Token::Comma) => self.at += 1,
                        Some(Token::RBrace) => {
                            self.at += 1;
                            return Ok(());
                        }
                        _ => return Err(format!("expected ',' or '}}' at offset {}", self.pos())),
                    }
                }
            }
            _ => Err(format!(
                "expected ==, !=, in, not in, contains, starts with or ends with at offset {}",
                self.pos()
            )),
        }
    }
}

/// Check a selector's syntax. Empty (or only spaces) is refused: callers treat an absent
/// selector as "all" themselves, but a present one must say something.
pub fn validate_selector(text: &str) -> Result<(), String> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err("selector is empty; use all() to select everything".into());
    }
    let mut p = Parser { tokens, at: 0, len: text.len() };
    p.expr()?;
    if p.at != p.tokens.len() {
        return Err(format!("unexpected text at offset {}", p.pos()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_selector;

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
    }
}

//! `${NAME}` / `$NAME` expansion over the raw text of a config file.
//!
//! GoBGP itself does not expand variables; deployments such as the seed's run the file
//! through `envsubst` first. Doing it here keeps those files working unchanged while
//! turning an unset variable into an error instead of an empty string (an empty
//! `router-id` would otherwise surface later as a confusing parse error).
//!
//! Rules:
//! - `${NAME}` and `$NAME` (NAME = letter or `_`, then letters, digits, `_`) are replaced
//!   by the variable's value, inserted as raw text (so `as = ${ASN}` works).
//! - `$$` is a literal `$`; a `$` followed by anything else is kept as is.
//! - Comments are left alone: a `# set $ROUTER_IP first` note never needs the variable.
//! - An unset variable, an unterminated `${`, or a value spanning lines is an error that
//!   names the variable and the line (values must not add lines so that later errors
//!   point at the right line of the file the user wrote).

use super::{ConfigError, Location};

/// Where the scanner is, lexically: comments are skipped and `#` inside strings is not
/// a comment, so the scanner tracks TOML's four string forms.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Normal,
    Comment,
    Basic,
    Literal,
    MultiBasic,
    MultiLiteral,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expand variables in `text`. `source_name` only labels errors.
pub(crate) fn expand(
    text: &str,
    source_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut lex = Lex::Normal;
    let mut line = 1usize;
    let mut chars = text.char_indices().peekable();
    let at = |line: usize| Location {
        source_name: source_name.to_string(),
        line: Some(line),
    };

    while let Some((i, c)) = chars.next() {
        let rest = &text[i..];
        match lex {
            Lex::Comment => {
                if c == '\n' {
                    lex = Lex::Normal;
                }
            }
            Lex::Normal => match c {
                '#' => lex = Lex::Comment,
                '"' if rest.starts_with("\"\"\"") => {
                    out.push_str("\"\"");
                    chars.next();
                    chars.next();
                    lex = Lex::MultiBasic;
                }
                '"' => lex = Lex::Basic,
                '\'' if rest.starts_with("'''") => {
                    out.push_str("''");
                    chars.next();
                    chars.next();
                    lex = Lex::MultiLiteral;
                }
                '\'' => lex = Lex::Literal,
                _ => {}
            },
            Lex::Basic | Lex::MultiBasic => {
                if c == '\\' {
                    // An escaped character never ends the string; copy both.
                    out.push(c);
                    if let Some((_, next)) = chars.next() {
                        if next == '\n' {
                            line += 1;
                        }
                        out.push(next);
                    }
                    continue;
                }
                if lex == Lex::Basic && (c == '"' || c == '\n') {
                    lex = Lex::Normal;
                } else if lex == Lex::MultiBasic && rest.starts_with("\"\"\"") {
                    out.push_str("\"\"");
                    chars.next();
                    chars.next();
                    lex = Lex::Normal;
                }
            }
            Lex::Literal | Lex::MultiLiteral => {
                if lex == Lex::Literal && (c == '\'' || c == '\n') {
                    lex = Lex::Normal;
                } else if lex == Lex::MultiLiteral && rest.starts_with("'''") {
                    out.push_str("''");
                    chars.next();
                    chars.next();
                    lex = Lex::Normal;
                }
            }
        }

        if c == '\n' {
            line += 1;
        }
        if c != '$' || lex == Lex::Comment {
            out.push(c);
            continue;
        }

        // A `$` outside a comment.
        let after = &rest[1..];
        if after.starts_with('$') {
            chars.next();
            out.push('$');
            continue;
        }
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let Some(end) = braced.find('}') else {
                return Err(ConfigError::Variable {
                    name: braced.chars().take_while(|c| is_name_char(*c)).collect(),
                    at: at(line),
                    problem: "has no closing `}`",
                });
            };
            let name = &braced[..end];
            let valid =
                name.chars().next().is_some_and(is_name_start) && name.chars().all(is_name_char);
            if !valid {
                return Err(ConfigError::Variable {
                    name: name.to_string(),
                    at: at(line),
                    problem: "is not a valid variable name (letters, digits and `_`)",
                });
            }
            (name, end + 2)
        } else if after.chars().next().is_some_and(is_name_start) {
            let len = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
            (&after[..len], len)
        } else {
            out.push('$');
            continue;
        };
        // Names and braces are ASCII, so `consumed` bytes are that many chars.
        for _ in 0..consumed {
            chars.next();
        }
        let Some(value) = env(name) else {
            return Err(ConfigError::UnsetVariable {
                name: name.to_string(),
                at: at(line),
            });
        };
        if value.contains('\n') || value.contains('\r') {
            return Err(ConfigError::Variable {
                name: name.to_string(),
                at: at(line),
                problem: "has a value spanning several lines",
            });
        }
        out.push_str(&value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "ROUTER_IP" => Some("10.0.0.1".into()),
            "ASN" => Some("64511".into()),
            "EMPTY" => Some(String::new()),
            "MULTI" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn ex(text: &str) -> Result<String, ConfigError> {
        expand(text, "t.toml", &vars)
    }

    #[test]
    fn braced_and_bare_forms() {
        assert_eq!(
            ex("id = \"${ROUTER_IP}\"\nas = $ASN\n").unwrap(),
            "id = \"10.0.0.1\"\nas = 64511\n"
        );
        assert_eq!(ex("x = \"$ROUTER_IP/32\"").unwrap(), "x = \"10.0.0.1/32\"");
        assert_eq!(ex("x = \"${EMPTY}\"").unwrap(), "x = \"\"");
    }

    #[test]
    fn dollar_escapes_and_literals() {
        assert_eq!(ex("p = \"a$$b\"").unwrap(), "p = \"a$b\"");
        assert_eq!(ex("p = \"$$ASN\"").unwrap(), "p = \"$ASN\"");
        assert_eq!(
            ex("p = \"cost $5 and $\"").unwrap(),
            "p = \"cost $5 and $\""
        );
    }

    #[test]
    fn comments_are_not_expanded() {
        let text = "# set $UNSET and ${ALSO_UNSET} first\nas = ${ASN} # $NOPE\np = \"#${ASN}\"\n";
        assert_eq!(
            ex(text).unwrap(),
            "# set $UNSET and ${ALSO_UNSET} first\nas = 64511 # $NOPE\np = \"#64511\"\n"
        );
        // A quote inside a comment does not open a string.
        assert_eq!(
            ex("# it's \"fine\"\nas = $ASN").unwrap(),
            "# it's \"fine\"\nas = 64511"
        );
        // Escaped quotes do not end a string, so the `#` after them is still in the string.
        assert_eq!(ex("p = \"a\\\"#$ASN\"").unwrap(), "p = \"a\\\"#64511\"");
        assert_eq!(
            ex("p = '''x#$ASN'''\nq = $ASN").unwrap(),
            "p = '''x#64511'''\nq = 64511"
        );
        assert_eq!(
            ex("p = \"\"\"x\n#$ASN\"\"\"\nq = $ASN").unwrap(),
            "p = \"\"\"x\n#64511\"\"\"\nq = 64511"
        );
    }

    #[test]
    fn unset_variable_names_variable_file_and_line() {
        let err = ex("[global.config]\n  as = 1\n  router-id = \"${NOT_SET}\"\n").unwrap_err();
        assert_eq!(err.to_string(), "${NOT_SET} is not set (t.toml line 3)");
        let err = ex("\n\nx = $NOT_SET_EITHER").unwrap_err();
        assert_eq!(
            err.to_string(),
            "${NOT_SET_EITHER} is not set (t.toml line 3)"
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        let err = ex("x = \"${ROUTER_IP\"").unwrap_err().to_string();
        assert!(
            err.contains("${ROUTER_IP") && err.contains("closing") && err.contains("t.toml line 1"),
            "{err}"
        );
        let err = ex("\nx = \"${1BAD}\"").unwrap_err().to_string();
        assert!(err.contains("1BAD") && err.contains("line 2"), "{err}");
        let err = ex("x = \"${MULTI}\"").unwrap_err().to_string();
        assert!(
            err.contains("${MULTI}") && err.contains("several lines"),
            "{err}"
        );
    }
}

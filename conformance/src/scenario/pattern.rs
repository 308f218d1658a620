//! Patterns over server lines (`scenarios/README.md` section 5) and the matcher that compares
//! them with the runner's own tokens ([`crate::wire::token`]).

use std::collections::HashMap;

use super::template::{self, Env, Mode, Template, TemplateError};
use crate::wire::token::{Spanned, Token};
use crate::wire::visible::visible_capped;

/// One pattern element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pat {
    /// What it matches.
    pub kind: PatKind,
    /// Its text in the scenario, for reports.
    pub src: String,
}

/// The kinds of pattern element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatKind {
    /// An atom, ASCII case-insensitive (exact in first position).
    Atom(Vec<u8>),
    /// A string (quoted or literal) with these bytes.
    Str(Template),
    /// An atom or a string with exactly these bytes (`$tag`, `$box`, `${x}`).
    Value(Template),
    /// Any one token.
    Any,
    /// Any string.
    AnyStr,
    /// Any atom.
    AnyAtom,
    /// Any atom of digits.
    AnyNum,
    /// Any one token, captured under this name.
    Capture(String),
    /// One of these.
    Alt(Vec<Pat>),
    /// A parenthesised list.
    List(Vec<Pat>),
    /// A bracketed response code.
    Code(Vec<Pat>),
    /// The rest of the sequence.
    Rest,
}

/// A whole-line pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Elements in order.
    pub items: Vec<Pat>,
    /// The pattern's text.
    pub src: String,
}

/// Why a line does not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Byte offset in the line where the difference starts.
    pub offset: usize,
    /// The pattern element expected there.
    pub expected: String,
    /// What the line has there.
    pub got: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at byte {}: expected {}, got {}",
            self.offset, self.expected, self.got
        )
    }
}

/// Parse a pattern. Errors carry a byte offset into `text`.
pub fn parse(text: &str) -> Result<Pattern, TemplateError> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let items = parse_seq(text, bytes, &mut pos, None)?;
    Ok(Pattern {
        items,
        src: text.to_string(),
    })
}

fn perr(offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError {
        offset,
        message: message.into(),
    }
}

fn parse_seq(
    text: &str,
    bytes: &[u8],
    pos: &mut usize,
    close: Option<u8>,
) -> Result<Vec<Pat>, TemplateError> {
    let mut out: Vec<Pat> = Vec::new();
    loop {
        while bytes.get(*pos) == Some(&b' ') {
            *pos += 1;
        }
        let Some(&b) = bytes.get(*pos) else {
            return match close {
                None => Ok(out),
                Some(c) => Err(perr(*pos, format!("missing '{}'", char::from(c)))),
            };
        };
        if out.last().is_some_and(|p| p.kind == PatKind::Rest) && Some(b) != close {
            return Err(perr(*pos, "'...' must be the last element"));
        }
        if Some(b) == close {
            *pos += 1;
            return Ok(out);
        }
        let start = *pos;
        match b {
            b'(' | b'[' => {
                *pos += 1;
                let end = if b == b'(' { b')' } else { b']' };
                let inner = parse_seq(text, bytes, pos, Some(end))?;
                let src = text.get(start..*pos).unwrap_or_default().to_string();
                let kind = if b == b'(' {
                    PatKind::List(inner)
                } else {
                    PatKind::Code(inner)
                };
                out.push(Pat { kind, src });
            }
            b')' | b']' => return Err(perr(*pos, format!("unexpected '{}'", char::from(b)))),
            _ => {
                let end = word_end(bytes, *pos, close)?;
                let word = text.get(start..end).unwrap_or_default();
                *pos = end;
                out.push(parse_word(word, start)?);
            }
        }
    }
}

/// End of a pattern word: a space or a delimiter outside quotes, `${...}` and inner brackets.
fn word_end(bytes: &[u8], start: usize, close: Option<u8>) -> Result<usize, TemplateError> {
    let mut i = start;
    let mut bracket = 0usize;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(perr(start, "unterminated quoted string")),
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                continue;
            }
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                i = template::matching_brace(bytes, i + 1).ok_or_else(|| perr(i, "unclosed ${"))?
                    + 1;
                continue;
            }
            b'[' if i > start => bracket += 1,
            b']' if bracket > 0 => bracket -= 1,
            b' ' | b'(' | b')' if bracket == 0 => break,
            b']' if Some(b']') == close => break,
            _ => {}
        }
        i += 1;
    }
    Ok(i)
}

fn split_alternatives(word: &str) -> Vec<(usize, &str)> {
    let bytes = word.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut in_quote = false;
    let mut depth = 0usize;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'{' if !in_quote => depth += 1,
            b'}' if !in_quote => depth = depth.saturating_sub(1),
            b'|' if !in_quote && depth == 0 => {
                parts.push((start, word.get(start..i).unwrap_or_default()));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push((start, word.get(start..).unwrap_or_default()));
    parts
}

fn parse_word(word: &str, offset: usize) -> Result<Pat, TemplateError> {
    let parts = split_alternatives(word);
    if parts.len() == 1 {
        return parse_simple(word, offset);
    }
    let alts = parts
        .into_iter()
        .map(|(o, p)| {
            if p.is_empty() {
                Err(perr(offset + o, "empty alternative"))
            } else {
                parse_simple(p, offset + o)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Pat {
        kind: PatKind::Alt(alts),
        src: word.to_string(),
    })
}

fn parse_simple(word: &str, offset: usize) -> Result<Pat, TemplateError> {
    let shift = |e: TemplateError| TemplateError {
        offset: offset + e.offset,
        message: e.message,
    };
    let kind = if word == "..." {
        PatKind::Rest
    } else if let Some(inner) = word.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| perr(offset, "text after a quoted string"))?;
        PatKind::Str(
            template::parse(inner, Mode::Quoted).map_err(|e| TemplateError {
                offset: offset + 1 + e.offset,
                message: e.message,
            })?,
        )
    } else if let Some(name) = word
        .strip_prefix('$')
        .filter(|n| template::is_wildcard_name(n))
    {
        match name {
            "any" => PatKind::Any,
            "str" => PatKind::AnyStr,
            "atom" => PatKind::AnyAtom,
            _ => PatKind::AnyNum,
        }
    } else if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix("=}")) {
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(perr(offset, format!("bad capture name {name:?}")));
        }
        PatKind::Capture(name.to_string())
    } else if word.contains('$') {
        PatKind::Value(template::parse(word, Mode::Send).map_err(shift)?)
    } else if word.contains('"') {
        return Err(perr(offset, "a quote inside an atom"));
    } else {
        PatKind::Atom(word.as_bytes().to_vec())
    };
    Ok(Pat {
        kind,
        src: word.to_string(),
    })
}

/// Captured values of one successful match.
pub type Captures = HashMap<String, Vec<u8>>;

fn describe(t: &Spanned, line: &[u8]) -> String {
    let raw = line.get(t.start..t.end).unwrap_or_default();
    format!("{} `{}`", t.token.kind_name(), visible_capped(raw, 80))
}

fn token_value<'a>(t: &'a Spanned, line: &'a [u8]) -> &'a [u8] {
    match &t.token {
        Token::Atom(v) | Token::Quoted(v) | Token::Literal { data: v, .. } => v,
        _ => line.get(t.start..t.end).unwrap_or_default(),
    }
}

/// Match `pattern` against the tokens of `line`. Captures are returned, not stored, so a failed
/// attempt leaves nothing behind.
pub fn match_line(
    pattern: &Pattern,
    line: &[u8],
    tokens: &[Spanned],
    env: &Env,
) -> Result<Captures, Mismatch> {
    let mut caps = Captures::new();
    match_seq(
        &pattern.items,
        tokens,
        line,
        env,
        &mut caps,
        true,
        line.len(),
    )?;
    Ok(caps)
}

fn match_seq(
    pats: &[Pat],
    tokens: &[Spanned],
    line: &[u8],
    env: &Env,
    caps: &mut Captures,
    top: bool,
    end_offset: usize,
) -> Result<(), Mismatch> {
    for (i, pat) in pats.iter().enumerate() {
        if pat.kind == PatKind::Rest {
            return Ok(());
        }
        let Some(tok) = tokens.get(i) else {
            return Err(Mismatch {
                offset: end_offset,
                expected: format!("`{}`", pat.src),
                got: "the end of the line".into(),
            });
        };
        match_one(pat, tok, line, env, caps, top && i == 0)?;
    }
    if let Some(extra) = tokens.get(pats.len()) {
        return Err(Mismatch {
            offset: extra.start,
            expected: "the end of the line".into(),
            got: describe(extra, line),
        });
    }
    Ok(())
}

fn match_one(
    pat: &Pat,
    tok: &Spanned,
    line: &[u8],
    env: &Env,
    caps: &mut Captures,
    first: bool,
) -> Result<(), Mismatch> {
    let fail = || Mismatch {
        offset: tok.start,
        expected: format!("`{}`", pat.src),
        got: describe(tok, line),
    };
    let value_of = |t: &Template| -> Result<Vec<u8>, Mismatch> {
        let mut env2 = env.clone();
        for (k, v) in caps.iter() {
            env2.set(k, v.clone());
        }
        t.expand(&env2).map_err(|e| Mismatch {
            offset: tok.start,
            expected: format!("`{}`", pat.src),
            got: e,
        })
    };
    let ok = match &pat.kind {
        PatKind::Rest | PatKind::Any => true,
        PatKind::Atom(a) => match &tok.token {
            Token::Atom(v) if first => v == a,
            Token::Atom(v) => v.eq_ignore_ascii_case(a),
            _ => false,
        },
        PatKind::Str(t) => {
            let want = value_of(t)?;
            tok.token.string_value() == Some(want.as_slice())
        }
        PatKind::Value(t) => {
            let want = value_of(t)?;
            match &tok.token {
                Token::Atom(v) => *v == want,
                other => other.string_value() == Some(want.as_slice()),
            }
        }
        PatKind::AnyStr => tok.token.string_value().is_some(),
        PatKind::AnyAtom => matches!(tok.token, Token::Atom(_)),
        PatKind::AnyNum => {
            matches!(&tok.token, Token::Atom(v) if !v.is_empty() && v.iter().all(u8::is_ascii_digit))
        }
        PatKind::Capture(name) => {
            caps.insert(name.clone(), token_value(tok, line).to_vec());
            true
        }
        PatKind::Alt(alts) => {
            for alt in alts {
                let mut trial = caps.clone();
                if match_one(alt, tok, line, env, &mut trial, first).is_ok() {
                    *caps = trial;
                    return Ok(());
                }
            }
            false
        }
        PatKind::List(inner) | PatKind::Code(inner) => {
            let items = match (&pat.kind, &tok.token) {
                (PatKind::List(_), Token::List(items)) | (PatKind::Code(_), Token::Code(items)) => {
                    items
                }
                _ => return Err(fail()),
            };
            return match_seq(
                inner,
                items,
                line,
                env,
                caps,
                false,
                tok.end.saturating_sub(1),
            );
        }
    };
    if ok { Ok(()) } else { Err(fail()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::token::tokenize;

    fn env() -> Env {
        let mut e = Env::default();
        e.set("tag", "F1");
        e.set("box", "ctn1a");
        e.set("host", "ctn1za");
        e
    }

    fn m(p: &str, line: &[u8]) -> Result<Captures, Mismatch> {
        let pat = parse(p).unwrap();
        match_line(&pat, line, &tokenize(line), &env())
    }

    #[test]
    fn quoted_pattern_matches_quoted_and_literal() {
        let p = r#"$tag MAILBOX "$box" "$host!p" "anyone\tlrs\t""#;
        assert!(m(p, b"F1 MAILBOX \"ctn1a\" \"ctn1za!p\" \"anyone\tlrs\t\"").is_ok());
        assert!(
            m(
                p,
                b"F1 MAILBOX {5+}\r\nctn1a {8}\r\nctn1za!p {11+}\r\nanyone\tlrs\t"
            )
            .is_ok()
        );
        let e = m(p, b"F1 MAILBOX \"ctn1a\" \"ctn1za!q\" \"anyone\tlrs\t\"").unwrap_err();
        assert_eq!(e.offset, 19);
        assert!(e.got.contains("ctn1za!q"), "{e}");
    }

    #[test]
    fn tag_is_exact_keywords_are_not() {
        assert!(m("$tag ok ...", b"F1 OK \"done\"").is_ok());
        assert!(m("$tag OK ...", b"f1 OK \"done\"").is_err());
        assert!(m("F1 OK", b"f1 OK").is_err());
        assert!(m("* ok", b"* OK").is_ok());
    }

    #[test]
    fn rest_alternatives_and_wildcards() {
        assert!(m("$tag NO|BAD ...", b"F1 BAD x y z").is_ok());
        assert!(m("$tag NO|BAD ...", b"F1 OK x").is_err());
        assert!(m("$tag OK $str", b"F1 OK done").is_err());
        assert!(m("$tag OK $str", b"F1 OK {4+}\r\ndone").is_ok());
        assert!(m("* $num EXISTS", b"* 12 EXISTS").is_ok());
        assert!(m("* $num EXISTS", b"* 1a EXISTS").is_err());
        assert!(m("$tag OK", b"F1 OK extra").is_err());
        assert!(m("$tag OK ...", b"F1 OK").is_ok());
        assert!(m("$tag $any", b"F1 (a (b))").is_ok());
    }

    #[test]
    fn lists_codes_and_captures() {
        let caps = m(
            "$tag OK [APPENDUID ${v=} ${uids=}] ...",
            b"F1 OK [APPENDUID 38505 3955:3956] APPEND completed",
        )
        .unwrap();
        assert_eq!(caps["v"], b"38505");
        assert_eq!(caps["uids"], b"3955:3956");
        assert!(
            m(
                "* 1 FETCH (FLAGS (\\Seen ...))",
                b"* 1 FETCH (FLAGS (\\Seen \\Recent))"
            )
            .is_ok()
        );
        assert!(
            m(
                "* 1 FETCH (FLAGS (\\Seen))",
                b"* 1 FETCH (FLAGS (\\Seen \\Recent))"
            )
            .is_err()
        );
        assert!(m("* 1 FETCH (BODY[] \"hi\")", b"* 1 FETCH (BODY[] {2}\r\nhi)").is_ok());
    }

    #[test]
    fn capture_is_usable_later_in_the_same_line() {
        assert!(m("* ${n=} X ${n}", b"* 7 X 7").is_ok());
        assert!(m("* ${n=} X ${n}", b"* 7 X 8").is_err());
    }

    #[test]
    fn pattern_syntax_errors() {
        assert!(parse("a ... b").is_err());
        assert!(parse("(a b").is_err());
        assert!(parse("a \"b").is_err());
        assert!(parse("a )").is_err());
        assert!(parse("$bogus").is_err());
        assert!(parse("NO||BAD").is_err());
    }

    #[test]
    fn missing_tokens_point_at_the_end() {
        let e = m("$tag MAILBOX $str $str $str", b"F1 MAILBOX \"a\" \"b\"").unwrap_err();
        assert_eq!(e.offset, 18);
        assert_eq!(e.got, "the end of the line");
    }
}

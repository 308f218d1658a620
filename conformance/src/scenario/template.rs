//! Text with escapes, placeholders and generators (`scenarios/README.md` sections 3.2 and 4),
//! parsed once and expanded per run.

use std::collections::HashMap;

use base64::Engine as _;

/// Longest regex (`<~`) a scenario may expand to, in bytes. Beyond it the regex crate's parser
/// can take gigabytes (found by the `scenario_parser` fuzz target with a `${repeat:...}` inside
/// a regex); a line worth matching with a regex is far shorter. 64 KiB.
pub const MAX_REGEX_LEN: usize = 64 * 1024;

/// Largest expansion of one template, in bytes (a `${repeat:N:...}` beyond it is an error, not
/// an allocation that aborts the runner). The corpus's longest line is about 32 MiB. 256 MiB.
pub const MAX_EXPANSION: usize = 256 << 20;

/// Compile the expanded source of a `<~` regex, refusing one longer than [`MAX_REGEX_LEN`].
pub fn compile_regex(src: &str) -> Result<regex::bytes::Regex, String> {
    if src.len() > MAX_REGEX_LEN {
        return Err(format!(
            "bad regex: {} bytes long, more than {MAX_REGEX_LEN}",
            src.len()
        ));
    }
    regex::bytes::Regex::new(src).map_err(|e| format!("bad regex: {e}"))
}

/// How backslashes are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Send text and `<=` lines: `\r \n \t \0 \xHH \\ \$`, other backslashes kept as they are.
    Send,
    /// Inside a pattern's quoted string: as `Send`, plus `\"` for a quote.
    Quoted,
    /// A regex: only `${...}` expands (regex-escaped); everything else is kept.
    Regex,
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes as they are.
    Bytes(Vec<u8>),
    /// A named value: `$box`, `${uid1}`.
    Var(String),
    /// `${repeat:N:TEXT}`.
    Repeat(usize, Template),
    /// `${pad:N:TEXT}`.
    Pad(usize, Template),
    /// `${lit:TEXT}`: `{n+}` CRLF TEXT.
    Literal(Template),
    /// `${len:TEXT}`.
    Len(Template),
    /// `${b64:TEXT}`.
    Base64(Template),
}

/// A parsed template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    /// The pieces in order.
    pub pieces: Vec<Piece>,
    /// Regex templates escape the values they insert.
    pub regex: bool,
}

/// A template syntax error at a character offset of the parsed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// Offset in bytes from the start of the text given to [`parse`].
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Values for placeholders: fixed names (`box`, `tag`, ...) and captures.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// Every known value by name.
    pub vars: HashMap<String, Vec<u8>>,
}

impl Env {
    /// Set a value.
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.vars.insert(name.to_string(), value.into());
    }

    /// A value, if set.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.vars.get(name).map(Vec::as_slice)
    }
}

/// The placeholder names every case has (section 4); captures add their own.
pub fn is_fixed_name(name: &str) -> bool {
    let numbered = |base: &str| {
        name.strip_prefix(base).is_some_and(|d| {
            d.is_empty() || (d.len() == 1 && matches!(d.as_bytes(), [b'2'..=b'9']))
        })
    };
    numbered("box")
        || numbered("host")
        || matches!(
            name,
            "tag" | "run" | "user" | "pass" | "user2" | "pass2" | "plain" | "plain2"
        )
}

/// Pattern-only wildcard names (`$any`, `$str`, `$atom`, `$num`).
pub fn is_wildcard_name(name: &str) -> bool {
    matches!(name, "any" | "str" | "atom" | "num")
}

/// Parse `text` in `mode`.
pub fn parse(text: &str, mode: Mode) -> Result<Template, TemplateError> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    let err = |offset: usize, message: String| TemplateError { offset, message };
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' if mode != Mode::Regex => {
                let next = bytes.get(i + 1).copied();
                match next {
                    Some(b'r') => lit.push(b'\r'),
                    Some(b'n') => lit.push(b'\n'),
                    Some(b't') => lit.push(b'\t'),
                    Some(b'0') => lit.push(0),
                    Some(b'\\') => lit.push(b'\\'),
                    Some(b'$') => lit.push(b'$'),
                    Some(b'"') if mode == Mode::Quoted => lit.push(b'"'),
                    Some(b'x') => {
                        let hex = bytes
                            .get(i + 2..i + 4)
                            .and_then(|h| std::str::from_utf8(h).ok())
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                            .ok_or_else(|| {
                                err(i, "\\x must be followed by two hex digits".into())
                            })?;
                        lit.push(hex);
                        i += 4;
                        continue;
                    }
                    Some(other) => {
                        lit.push(b'\\');
                        lit.push(other);
                    }
                    None => lit.push(b'\\'),
                }
                i += 2;
            }
            b'$' => match bytes.get(i + 1) {
                Some(b'$') if mode != Mode::Regex => {
                    lit.push(b'$');
                    i += 2;
                }
                Some(b'{') => {
                    let close =
                        matching_brace(bytes, i + 1).ok_or_else(|| err(i, "unclosed ${".into()))?;
                    let inner = text.get(i + 2..close).unwrap_or_default();
                    if !lit.is_empty() {
                        pieces.push(Piece::Bytes(std::mem::take(&mut lit)));
                    }
                    pieces.push(parse_braced(inner, i + 2, mode)?);
                    i = close + 1;
                }
                Some(c) if c.is_ascii_alphabetic() && mode != Mode::Regex => {
                    let start = i + 1;
                    let mut end = start;
                    while bytes
                        .get(end)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    {
                        end += 1;
                    }
                    let name = text.get(start..end).unwrap_or_default();
                    if !is_fixed_name(name) {
                        return Err(err(
                            i,
                            format!(
                                "unknown placeholder ${name} (captured values are written ${{{name}}})"
                            ),
                        ));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Bytes(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Var(name.to_string()));
                    i = end;
                }
                _ if mode == Mode::Regex => {
                    lit.push(b'$');
                    i += 1;
                }
                _ => return Err(err(i, "a lone $: write $$ for a dollar sign".into())),
            },
            _ => {
                lit.push(b);
                i += 1;
            }
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Bytes(lit));
    }
    Ok(Template {
        pieces,
        regex: mode == Mode::Regex,
    })
}

/// Offset of the `}` matching the `{` at `open`.
pub fn matching_brace(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_braced(inner: &str, offset: usize, mode: Mode) -> Result<Piece, TemplateError> {
    let err = |message: String| TemplateError { offset, message };
    let sub_mode = if mode == Mode::Regex {
        Mode::Send
    } else {
        mode
    };
    let sub = |text: &str, at: usize| {
        parse(text, sub_mode).map_err(|e| TemplateError {
            offset: at + e.offset,
            message: e.message,
        })
    };
    let (head, rest) = match inner.split_once(':') {
        Some((h, r)) => (h, Some(r)),
        None => (inner, None),
    };
    let count_and_text = |rest: Option<&str>| -> Result<(usize, Template), TemplateError> {
        let rest = rest.unwrap_or_default();
        let (n, text) = rest
            .split_once(':')
            .ok_or_else(|| err(format!("${{{head}:N:TEXT}} needs a count and a text")))?;
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| err(format!("${{{head}:...}}: {n:?} is not a count")))?;
        Ok((n, sub(text, offset + head.len() + n_len(rest) + 2)?))
    };
    fn n_len(rest: &str) -> usize {
        rest.find(':').unwrap_or(0)
    }
    match (head, rest) {
        ("repeat", r) => count_and_text(r).map(|(n, t)| Piece::Repeat(n, t)),
        ("pad", r) => count_and_text(r).map(|(n, t)| Piece::Pad(n, t)),
        ("lit", Some(t)) => Ok(Piece::Literal(sub(t, offset + 4)?)),
        ("len", Some(t)) => Ok(Piece::Len(sub(t, offset + 4)?)),
        ("b64", Some(t)) => Ok(Piece::Base64(sub(t, offset + 4)?)),
        (name, None)
            if !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') =>
        {
            Ok(Piece::Var(name.to_string()))
        }
        _ => Err(err(format!("unknown ${{{inner}}}"))),
    }
}

impl Template {
    /// A template of fixed bytes.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Self {
        Template {
            pieces: vec![Piece::Bytes(b.into())],
            regex: false,
        }
    }

    /// Every variable name used, generators included.
    pub fn vars(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Bytes(_) => {}
                Piece::Var(v) => out.push(v.as_str()),
                Piece::Repeat(_, t)
                | Piece::Pad(_, t)
                | Piece::Literal(t)
                | Piece::Len(t)
                | Piece::Base64(t) => out.extend(t.vars()),
            }
        }
        out
    }

    /// An upper bound of the expanded size when every placeholder's value is `var_len` bytes
    /// (saturating; regex escaping can double a value, count that in `var_len`).
    pub fn size_bound(&self, var_len: usize) -> usize {
        self.pieces.iter().fold(0usize, |acc, p| {
            let n = match p {
                Piece::Bytes(b) => b.len(),
                Piece::Var(_) => var_len,
                Piece::Repeat(n, t) => n.saturating_mul(t.size_bound(var_len)),
                Piece::Pad(n, t) => (*n).max(t.size_bound(var_len)),
                Piece::Literal(t) => t.size_bound(var_len).saturating_add(24),
                Piece::Len(_) => 20,
                Piece::Base64(t) => t.size_bound(var_len).saturating_mul(4) / 3 + 4,
            };
            acc.saturating_add(n)
        })
    }

    /// The bytes, with every placeholder replaced. Fails on a name with no value.
    pub fn expand(&self, env: &Env) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Bytes(b) => out.extend_from_slice(b),
                Piece::Var(name) => {
                    let v = env
                        .get(name)
                        .ok_or_else(|| format!("no value for ${{{name}}}"))?;
                    if self.regex {
                        let s = String::from_utf8_lossy(v);
                        out.extend_from_slice(regex::escape(&s).as_bytes());
                    } else {
                        out.extend_from_slice(v);
                    }
                }
                Piece::Repeat(n, t) => {
                    let one = t.expand(env)?;
                    if one.len().saturating_mul(*n) > MAX_EXPANSION {
                        return Err(format!(
                            "${{repeat:{n}:...}} of {} bytes is more than {MAX_EXPANSION} bytes",
                            one.len()
                        ));
                    }
                    // `repeat` copies by doubling: fast for 10 MiB even in a debug build.
                    out.extend_from_slice(&one.repeat(*n));
                }
                Piece::Pad(n, t) => {
                    if *n > MAX_EXPANSION {
                        return Err(format!(
                            "${{pad:{n}:...}} is more than {MAX_EXPANSION} bytes"
                        ));
                    }
                    let mut v = t.expand(env)?;
                    if v.len() > *n {
                        return Err(format!(
                            "${{pad:{n}:...}}: the text is already {} bytes",
                            v.len()
                        ));
                    }
                    v.resize(*n, b'x');
                    out.extend_from_slice(&v);
                }
                Piece::Literal(t) => {
                    let v = t.expand(env)?;
                    out.extend_from_slice(format!("{{{}+}}\r\n", v.len()).as_bytes());
                    out.extend_from_slice(&v);
                }
                Piece::Len(t) => out.extend_from_slice(t.expand(env)?.len().to_string().as_bytes()),
                Piece::Base64(t) => out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(t.expand(env)?)
                        .as_bytes(),
                ),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        let mut e = Env::default();
        e.set("box", "ctabcn1a");
        e.set("user", "u");
        e.set("pass", "p");
        e.set("x", "1.2");
        e
    }

    fn exp(text: &str) -> Vec<u8> {
        parse(text, Mode::Send).unwrap().expand(&env()).unwrap()
    }

    #[test]
    fn escapes_and_kept_backslashes() {
        assert_eq!(exp(r"a\r\n\t\0\x41\\\$$$"), b"a\r\n\t\0A\\$$".to_vec());
        assert_eq!(exp(r"(\Seen \Flagged)"), b"(\\Seen \\Flagged)".to_vec());
        assert_eq!(exp(r#""q\"u\\\\x""#), b"\"q\\\"u\\\\x\"".to_vec());
        assert!(parse(r"\xZZ", Mode::Send).is_err());
    }

    #[test]
    fn placeholders_and_generators() {
        assert_eq!(
            exp("F1 FIND \"$box.sub\""),
            b"F1 FIND \"ctabcn1a.sub\"".to_vec()
        );
        assert_eq!(exp("${lit:$box}"), b"{8+}\r\nctabcn1a".to_vec());
        assert_eq!(exp("{${len:$box}}"), b"{8}".to_vec());
        assert_eq!(exp("${repeat:3:ab}"), b"ababab".to_vec());
        assert_eq!(exp("${pad:10:$box}"), b"ctabcn1axx".to_vec());
        assert_eq!(exp("${b64:\\0$user\\0$pass}"), b"AHUAcA==".to_vec());
        assert_eq!(exp("${lit:${pad:4:a}}"), b"{4+}\r\naxxx".to_vec());
        assert_eq!(exp("${x}"), b"1.2".to_vec());
    }

    #[test]
    fn errors_have_offsets() {
        let e = parse("ab $bogus", Mode::Send).unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(parse("${repeat:x:a}", Mode::Send).is_err());
        assert!(compile_regex("a+").is_ok());
        let huge = parse("${repeat:18446744073709551615:ab}", Mode::Send).unwrap();
        assert!(huge.expand(&Env::default()).is_err());
        assert_eq!(huge.size_bound(1), usize::MAX);
        assert!(compile_regex(&"a".repeat(MAX_REGEX_LEN + 1)).is_err());
        assert!(parse("${lit:a", Mode::Send).is_err());
        assert!(parse("a $ b", Mode::Send).is_err());
        assert!(parse("${nope:1}", Mode::Send).is_err());
    }

    #[test]
    fn regex_mode_escapes_values() {
        let t = parse(r"\* OK ${x}.*$", Mode::Regex).unwrap();
        assert_eq!(t.expand(&env()).unwrap(), b"\\* OK 1\\.2.*$".to_vec());
    }

    #[test]
    fn missing_value_is_an_error() {
        let t = parse("${later}", Mode::Send).unwrap();
        assert!(t.expand(&env()).is_err());
    }
}

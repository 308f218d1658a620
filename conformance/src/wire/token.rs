//! Tokens of one logical server line: atoms, strings (quoted or literal), parenthesised lists and
//! bracketed response codes. Tokenizing never fails: what cannot be read becomes a
//! [`Token::Rest`] holding the remaining bytes, so a report can still show it.

/// One token, with its byte span in the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned {
    /// The token.
    pub token: Token,
    /// Offset of its first byte in the line.
    pub start: usize,
    /// Offset just past its last byte.
    pub end: usize,
}

/// The kinds of token a server line is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// A run of bytes up to a space or a delimiter (`OK`, `123`, `\Seen`, `BODY[TEXT]`).
    Atom(Vec<u8>),
    /// A quoted string; the value with `\` escapes removed.
    Quoted(Vec<u8>),
    /// A literal `{n}` / `{n+}` CRLF and n bytes; `sync` is false for `{n+}`.
    Literal {
        /// The literal's data.
        data: Vec<u8>,
        /// True for a synchronizing literal `{n}`.
        sync: bool,
    },
    /// `( ... )`.
    List(Vec<Spanned>),
    /// `[ ... ]` at the start of a token (an IMAP response code).
    Code(Vec<Spanned>),
    /// Bytes that do not tokenize (an unterminated string or list, a bad literal).
    Rest(Vec<u8>),
}

impl Token {
    /// The value of a string token (quoted or literal).
    pub fn string_value(&self) -> Option<&[u8]> {
        match self {
            Token::Quoted(v) | Token::Literal { data: v, .. } => Some(v),
            _ => None,
        }
    }

    /// A short description for mismatch reports.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Token::Atom(_) => "atom",
            Token::Quoted(_) => "quoted string",
            Token::Literal { sync: true, .. } => "literal {n}",
            Token::Literal { sync: false, .. } => "literal {n+}",
            Token::List(_) => "list",
            Token::Code(_) => "response code",
            Token::Rest(_) => "untokenizable bytes",
        }
    }
}

/// Split `line` into tokens.
pub fn tokenize(line: &[u8]) -> Vec<Spanned> {
    let mut pos = 0;
    let (tokens, _) = seq(line, &mut pos, None);
    tokens
}

/// Read tokens until the end of input or the closing byte `close`. Returns the tokens and whether
/// the closing byte was found (it is consumed).
fn seq(line: &[u8], pos: &mut usize, close: Option<u8>) -> (Vec<Spanned>, bool) {
    let mut out = Vec::new();
    loop {
        while line.get(*pos) == Some(&b' ') {
            *pos += 1;
        }
        let Some(&b) = line.get(*pos) else {
            return (out, false);
        };
        if Some(b) == close {
            *pos += 1;
            return (out, true);
        }
        let start = *pos;
        let token = match b {
            b'"' => quoted(line, pos),
            b'{' => literal(line, pos).unwrap_or_else(|| atom(line, pos, close)),
            b'(' | b'[' => {
                *pos += 1;
                let end = if b == b'(' { b')' } else { b']' };
                let (inner, closed) = seq(line, pos, Some(end));
                if closed {
                    if b == b'(' {
                        Token::List(inner)
                    } else {
                        Token::Code(inner)
                    }
                } else {
                    *pos = line.len();
                    Token::Rest(line.get(start..).unwrap_or_default().to_vec())
                }
            }
            _ => atom(line, pos, close),
        };
        out.push(Spanned {
            token,
            start,
            end: *pos,
        });
    }
}

fn quoted(line: &[u8], pos: &mut usize) -> Token {
    let start = *pos;
    let mut i = start + 1;
    let mut value = Vec::new();
    while let Some(&b) = line.get(i) {
        match b {
            b'"' => {
                *pos = i + 1;
                return Token::Quoted(value);
            }
            b'\\' => {
                if let Some(&next) = line.get(i + 1) {
                    value.push(next);
                    i += 2;
                } else {
                    break;
                }
            }
            b'\r' | b'\n' => break,
            _ => {
                value.push(b);
                i += 1;
            }
        }
    }
    *pos = line.len();
    Token::Rest(line.get(start..).unwrap_or_default().to_vec())
}

/// `{n}` or `{n+}`, CRLF (or LF), n bytes. `None` when the bytes at `pos` are not a literal header.
fn literal(line: &[u8], pos: &mut usize) -> Option<Token> {
    let rest = line.get(*pos..)?;
    let close = rest.iter().position(|&b| b == b'}')?;
    let inner = rest.get(1..close)?;
    let (digits, sync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let after = rest.get(close + 1..)?;
    let skip = if after.starts_with(b"\r\n") {
        2
    } else if after.starts_with(b"\n") {
        1
    } else {
        return None;
    };
    let data_start = *pos + close + 1 + skip;
    let data = line.get(data_start..data_start.checked_add(n)?)?;
    *pos = data_start + n;
    Some(Token::Literal {
        data: data.to_vec(),
        sync,
    })
}

/// An atom: up to a space, a quote, `(`, `)`, or the enclosing closer; brackets opened inside the
/// atom (`BODY[HEADER.FIELDS (A B)]`) are kept whole.
fn atom(line: &[u8], pos: &mut usize, close: Option<u8>) -> Token {
    let start = *pos;
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&b) = line.get(i) {
        if depth > 0 {
            if b == b'[' {
                depth += 1;
            } else if b == b']' {
                depth -= 1;
            }
            i += 1;
            continue;
        }
        let stop = match b {
            b' ' | b'"' | b'(' | b'\r' | b'\n' => true,
            b')' | b']' => Some(b) == close,
            b'[' => {
                depth += 1;
                false
            }
            _ => false,
        };
        if stop && i > start {
            break;
        }
        if stop {
            // A lone delimiter that cannot start a token here: keep it as a one-byte atom.
            i += 1;
            break;
        }
        i += 1;
    }
    *pos = i;
    Token::Atom(line.get(start..i).unwrap_or_default().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(line: &[u8]) -> Vec<Token> {
        tokenize(line).into_iter().map(|s| s.token).collect()
    }

    fn a(s: &str) -> Token {
        Token::Atom(s.as_bytes().to_vec())
    }

    #[test]
    fn quoted_and_literal_carry_the_same_value() {
        let q = kinds(b"F1 MAILBOX \"user.foo\"");
        let l = kinds(b"F1 MAILBOX {8+}\r\nuser.foo");
        let s = kinds(b"F1 MAILBOX {8}\r\nuser.foo");
        assert_eq!(q[2].string_value(), Some(&b"user.foo"[..]));
        assert_eq!(l[2].string_value(), q[2].string_value());
        assert_eq!(s[2].string_value(), q[2].string_value());
        assert!(matches!(l[2], Token::Literal { sync: false, .. }));
        assert!(matches!(s[2], Token::Literal { sync: true, .. }));
    }

    #[test]
    fn quoted_escapes_are_removed() {
        assert_eq!(
            kinds(b"\"q\\\"u\\\\x\""),
            vec![Token::Quoted(b"q\"u\\x".to_vec())]
        );
    }

    #[test]
    fn literal_data_may_hold_crlf_and_spaces() {
        let t = kinds(b"X {7+}\r\na\r\nb cd Y");
        assert_eq!(t[1].string_value(), Some(&b"a\r\nb cd"[..]));
        assert_eq!(t[2], a("Y"));
    }

    #[test]
    fn lists_codes_and_fetch_atoms() {
        let t = kinds(b"* OK [APPENDUID 38505 3955:3956] done");
        assert_eq!(t[0], a("*"));
        assert_eq!(
            t[2],
            Token::Code(vec![
                Spanned {
                    token: a("APPENDUID"),
                    start: 6,
                    end: 15
                },
                Spanned {
                    token: a("38505"),
                    start: 16,
                    end: 21
                },
                Spanned {
                    token: a("3955:3956"),
                    start: 22,
                    end: 31
                },
            ])
        );
        let f = kinds(b"* 1 FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (A B)] {2}\r\nhi)");
        let Token::List(items) = &f[3] else {
            panic!("{f:?}")
        };
        assert_eq!(items[2].token, a("BODY[HEADER.FIELDS (A B)]"));
        assert_eq!(items[3].token.string_value(), Some(&b"hi"[..]));
    }

    #[test]
    fn broken_input_becomes_rest() {
        assert_eq!(
            kinds(b"X \"unterminated"),
            vec![a("X"), Token::Rest(b"\"unterminated".to_vec())]
        );
        assert_eq!(
            kinds(b"X (a b"),
            vec![a("X"), Token::Rest(b"(a b".to_vec())]
        );
        // A literal whose data is missing is not a literal.
        assert_eq!(kinds(b"X {5+}\r\nab")[1], a("{5+}"));
        // Stray closers at top level are atoms, so text like "done)" survives.
        assert_eq!(kinds(b"OK done)"), vec![a("OK"), a("done)")]);
    }

    #[test]
    fn empty_line_has_no_tokens() {
        assert!(tokenize(b"").is_empty());
        assert!(tokenize(b"   ").is_empty());
    }
}

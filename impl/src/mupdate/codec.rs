//! The MUPDATE command decoder (RFC 3656 sections 2 and 5), sans-IO.
//!
//! Bytes go in through a [`BytesMut`]; [`Decoder::decode`] returns one [`Event`] at a time, or
//! `Ok(None)` when it needs more input (or, after [`Event::LiteralRequest`], a decision from the
//! session). Framing errors that lose the command boundaries are [`Fatal`]: the caller sends
//! `* BYE` and closes. Every other error is an [`Event::Error`] that the caller answers with BAD
//! and then keeps reading.
//!
//! Lexical rules (strict reading of RFC 3656 section 5 and ACAP, RFC 2244 section 8):
//! * `tag` and the command word are `1*ATOM-CHAR` (printable US-ASCII except `(){%*"\` and SP);
//!   tags are limited to [`Limits::max_tag`] octets.
//! * Arguments are separated by exactly one SP and are quoted strings, literals or atoms. The
//!   session decides which arguments may be atoms (only AUTHENTICATE's mechanism and `=`).
//! * Quoted strings are 7-bit, without NUL, CR or LF; `\"` and `\\` are the only escapes.
//! * Literals are `{n}` (synchronizing: the decoder emits [`Event::LiteralRequest`]) or `{n+}`;
//!   they may not contain NUL and are limited to [`Limits::max_literal`] octets.
//! * Lines end with CRLF. A line ending in a bare LF is answered BAD (it is still consumed).

use bytes::{Buf, BytesMut};
use std::fmt;

use super::config::Limits;

/// One argument of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// An atom (ATOM-CHARs only).
    Atom(Vec<u8>),
    /// A quoted string or literal, unescaped.
    String(Vec<u8>),
}

/// A syntactically complete command: tag, command word and arguments, not yet interpreted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCommand {
    /// The tag, echoed byte-exactly in responses.
    pub tag: Vec<u8>,
    /// The command word as sent (compare case-insensitively).
    pub word: Vec<u8>,
    /// The arguments in order.
    pub args: Vec<Token>,
}

/// Which lexical rule a command broke; the line was consumed and the connection can go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    /// Empty line or a line that does not start with a tag (RFC 3656 3.3 "Need command").
    MissingTag,
    /// A tag longer than [`Limits::max_tag`].
    TagTooLong,
    /// The tag is not followed by SP and a command word.
    MissingCommand,
    /// A byte that no rule allows at this position.
    UnexpectedByte(u8),
    /// Two spaces, or a space at the end of the line.
    ExtraSpace,
    /// A quoted string that is not closed on its line.
    UnterminatedQuoted,
    /// A backslash in a quoted string not followed by `"` or `\`.
    BadEscape,
    /// An 8-bit byte, NUL or control character in a quoted string (quoted strings are 7-bit).
    BadQuotedByte(u8),
    /// A `{` that does not start a valid `{n}` or `{n+}` at the end of the line.
    BadLiteralSyntax,
    /// A literal larger than [`Limits::max_literal`]; its size if it fits in 64 bits.
    LiteralTooLarge(Option<u64>),
    /// A NUL octet inside a literal.
    NulInLiteral,
    /// A line ending in a bare LF (only CRLF ends a line here).
    BareLf,
    /// More than [`Limits::max_args`] arguments.
    TooManyArguments,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::MissingTag => f.write_str("Need command"),
            SyntaxError::TagTooLong => f.write_str("tag too long"),
            SyntaxError::MissingCommand => f.write_str("Null command"),
            SyntaxError::UnexpectedByte(b) => write!(f, "unexpected byte 0x{b:02x}"),
            SyntaxError::ExtraSpace => f.write_str("extra space"),
            SyntaxError::UnterminatedQuoted => f.write_str("unterminated quoted string"),
            SyntaxError::BadEscape => f.write_str("invalid escape in quoted string"),
            SyntaxError::BadQuotedByte(b) => {
                write!(f, "byte 0x{b:02x} not allowed in a quoted string")
            }
            SyntaxError::BadLiteralSyntax => f.write_str("invalid literal"),
            SyntaxError::LiteralTooLarge(Some(n)) => write!(f, "literal of {n} octets too large"),
            SyntaxError::LiteralTooLarge(None) => f.write_str("literal count too large"),
            SyntaxError::NulInLiteral => f.write_str("NUL in literal"),
            SyntaxError::BareLf => f.write_str("line must end with CRLF"),
            SyntaxError::TooManyArguments => f.write_str("too many arguments"),
        }
    }
}

/// A recoverable error: answer `<tag> BAD` (or `* BAD` without a usable tag) and continue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The command's tag, when it could be read.
    pub tag: Option<Vec<u8>>,
    /// The rule that was broken.
    pub error: SyntaxError,
}

/// An error after which the command boundaries are lost: send `* BYE` and close.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// No CRLF within [`Limits::max_line`] octets.
    #[error("line too long")]
    LineTooLong,
    /// A non-synchronizing literal above [`Limits::literal_drain_limit`].
    #[error("literal too large")]
    LiteralTooLarge,
}

/// What the decoder found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete command.
    Command(RawCommand),
    /// The command so far ends with a synchronizing literal `{size}`. The caller either sends
    /// `+ go ahead` and calls [`Decoder::accept_literal`], or answers the command (NO/BAD) and
    /// calls [`Decoder::refuse_literal`].
    LiteralRequest {
        /// The command's tag.
        tag: Vec<u8>,
        /// The command word.
        word: Vec<u8>,
        /// The announced size.
        size: usize,
    },
    /// One line of a SASL exchange (see [`Decoder::expect_sasl_line`]), without its CRLF.
    SaslLine(Vec<u8>),
    /// A broken command, fully consumed: answer BAD.
    Error(DecodeError),
}

/// Where the decoder is inside the input.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a line: the start of a command, or the rest of one after a literal.
    Line,
    /// Waiting for the caller to accept or refuse a synchronizing literal.
    AwaitDecision(usize),
    /// Reading the bytes of a literal.
    Literal(usize),
    /// Throwing away a broken command: `drain` literal octets, then lines until the command ends.
    Skip { drain: u64 },
    /// The next line is a SASL response.
    SaslLine,
}

/// The command being assembled.
#[derive(Clone, Debug, Default)]
struct Partial {
    tag: Option<Vec<u8>>,
    word: Option<Vec<u8>>,
    args: Vec<Token>,
    literal: Vec<u8>,
    error: Option<SyntaxError>,
}

/// How a line of a command ended.
enum LineEnd {
    /// CRLF: the command is complete.
    Complete,
    /// A literal announcement: `(size or None when over 64 bits, synchronizing)`.
    Literal(Option<u64>, bool),
}

/// The incremental command decoder of one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    state: State,
    partial: Partial,
    /// How much of the input buffer's first line was already searched for LF.
    scanned: usize,
}

/// ATOM-CHAR of ACAP (RFC 2244 8): printable US-ASCII except atom-specials.
pub fn is_atom_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            state: State::Line,
            partial: Partial::default(),
            scanned: 0,
        }
    }

    /// The next line is a SASL response, not a command (AUTHENTICATE in progress).
    pub fn expect_sasl_line(&mut self) {
        self.state = State::SaslLine;
    }

    /// True while the decoder is between commands (nothing half-read).
    pub fn is_idle(&self) -> bool {
        self.state == State::Line && self.partial.tag.is_none()
    }

    /// The caller sent `+ go ahead`: read the literal.
    pub fn accept_literal(&mut self) {
        if let State::AwaitDecision(n) = self.state {
            self.state = State::Literal(n);
        }
    }

    /// The caller answered the command instead: forget it (the client will not send the literal).
    pub fn refuse_literal(&mut self) {
        if let State::AwaitDecision(_) = self.state {
            self.reset();
        }
    }

    fn reset(&mut self) {
        self.state = State::Line;
        self.partial = Partial::default();
    }

    /// Decode the next event from `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        loop {
            match self.state.clone() {
                State::AwaitDecision(_) => return Ok(None),
                State::SaslLine => {
                    let Some((line, crlf)) = self.take_line(buf)? else {
                        return Ok(None);
                    };
                    self.state = State::Line;
                    if !crlf {
                        return Ok(Some(Event::Error(DecodeError {
                            tag: None,
                            error: SyntaxError::BareLf,
                        })));
                    }
                    return Ok(Some(Event::SaslLine(line)));
                }
                State::Literal(remaining) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = remaining.min(buf.len());
                    let chunk = buf.split_to(n);
                    self.partial.literal.extend_from_slice(&chunk);
                    if n < remaining {
                        self.state = State::Literal(remaining - n);
                        return Ok(None);
                    }
                    let data = std::mem::take(&mut self.partial.literal);
                    if data.contains(&0) {
                        self.partial.error = Some(SyntaxError::NulInLiteral);
                        self.state = State::Skip { drain: 0 };
                    } else {
                        self.partial.args.push(Token::String(data));
                        self.state = State::Line;
                    }
                }
                State::Skip { drain } if drain > 0 => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(drain).unwrap_or(usize::MAX).min(buf.len());
                    buf.advance(n);
                    self.state = State::Skip {
                        drain: drain - n as u64,
                    };
                }
                State::Skip { .. } => {
                    let Some((line, _crlf)) = self.take_line(buf)? else {
                        return Ok(None);
                    };
                    match trailing_literal(&line) {
                        Some((size, false)) => {
                            let size = size.unwrap_or(u64::MAX);
                            if size > self.limits.literal_drain_limit {
                                return Err(Fatal::LiteralTooLarge);
                            }
                            self.state = State::Skip { drain: size };
                        }
                        // A synchronizing literal is never continued in a broken command.
                        Some((_, true)) | None => return Ok(Some(self.finish_error())),
                    }
                }
                State::Line => {
                    let Some((line, crlf)) = self.take_line(buf)? else {
                        return Ok(None);
                    };
                    if let Some(ev) = self.line(&line, crlf)? {
                        return Ok(Some(ev));
                    }
                }
            }
        }
    }

    /// Take one line (without its line end) from `buf`: `Some((line, ended_with_crlf))`.
    fn take_line(&mut self, buf: &mut BytesMut) -> Result<Option<(Vec<u8>, bool)>, Fatal> {
        let window = buf.len().min(self.limits.max_line);
        // Bytes before `scanned` were searched already (a line arriving in small pieces is
        // scanned once, not once per piece).
        let start = self.scanned.min(window);
        match buf
            .get(start..window)
            .and_then(|w| w.iter().position(|&b| b == b'\n'))
            .map(|i| i + start)
        {
            Some(i) => {
                self.scanned = 0;
                let mut line = buf.split_to(i + 1).to_vec();
                line.pop();
                let crlf = line.last() == Some(&b'\r');
                if crlf {
                    line.pop();
                }
                Ok(Some((line, crlf)))
            }
            None if buf.len() >= self.limits.max_line => Err(Fatal::LineTooLong),
            None => {
                self.scanned = window;
                Ok(None)
            }
        }
    }

    fn finish_error(&mut self) -> Event {
        let tag = self.partial.tag.take();
        let error = self
            .partial
            .error
            .take()
            .unwrap_or(SyntaxError::MissingCommand);
        self.reset();
        Event::Error(DecodeError { tag, error })
    }

    /// Handle one line of a command (the first, or one following a literal).
    fn line(&mut self, line: &[u8], crlf: bool) -> Result<Option<Event>, Fatal> {
        let parsed = if crlf {
            self.parse_line(line)
        } else {
            // Bare LF: report it with the tag when one can be read.
            if self.partial.tag.is_none() {
                let tag: Vec<u8> = line
                    .iter()
                    .take_while(|&&b| is_atom_char(b))
                    .copied()
                    .collect();
                if !tag.is_empty() && tag.len() <= self.limits.max_tag {
                    self.partial.tag = Some(tag);
                }
            }
            Err(SyntaxError::BareLf)
        };
        match parsed {
            Ok(LineEnd::Complete) => {
                let p = std::mem::take(&mut self.partial);
                self.reset();
                match (p.tag, p.word) {
                    (Some(tag), Some(word)) => Ok(Some(Event::Command(RawCommand {
                        tag,
                        word,
                        args: p.args,
                    }))),
                    (tag, _) => Ok(Some(Event::Error(DecodeError {
                        tag,
                        error: SyntaxError::MissingCommand,
                    }))),
                }
            }
            Ok(LineEnd::Literal(size, sync)) => {
                let fits = size
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n <= self.limits.max_literal);
                match (fits, sync) {
                    (Some(n), true) => {
                        self.state = State::AwaitDecision(n);
                        Ok(Some(Event::LiteralRequest {
                            tag: self.partial.tag.clone().unwrap_or_default(),
                            word: self.partial.word.clone().unwrap_or_default(),
                            size: n,
                        }))
                    }
                    (Some(n), false) => {
                        self.state = State::Literal(n);
                        Ok(None)
                    }
                    (None, true) => {
                        self.partial.error = Some(SyntaxError::LiteralTooLarge(size));
                        Ok(Some(self.finish_error()))
                    }
                    (None, false) => {
                        let n = size.unwrap_or(u64::MAX);
                        if n > self.limits.literal_drain_limit {
                            return Err(Fatal::LiteralTooLarge);
                        }
                        self.partial.error = Some(SyntaxError::LiteralTooLarge(size));
                        self.state = State::Skip { drain: n };
                        Ok(None)
                    }
                }
            }
            Err(e) => {
                self.partial.error = Some(e);
                if crlf && let Some((size, false)) = trailing_literal(line) {
                    let n = size.unwrap_or(u64::MAX);
                    if n > self.limits.literal_drain_limit {
                        return Err(Fatal::LiteralTooLarge);
                    }
                    self.state = State::Skip { drain: n };
                    return Ok(None);
                }
                Ok(Some(self.finish_error()))
            }
        }
    }

    /// Parse one line into `self.partial`.
    fn parse_line(&mut self, line: &[u8]) -> Result<LineEnd, SyntaxError> {
        let mut pos = 0usize;
        if self.partial.tag.is_none() {
            let tag_len = line.iter().take_while(|&&b| is_atom_char(b)).count();
            if tag_len == 0 {
                return Err(SyntaxError::MissingTag);
            }
            if tag_len > self.limits.max_tag {
                return Err(SyntaxError::TagTooLong);
            }
            let tag = line.get(..tag_len).unwrap_or_default().to_vec();
            match line.get(tag_len) {
                None | Some(b' ') => {}
                Some(_) => return Err(SyntaxError::MissingTag),
            }
            self.partial.tag = Some(tag);
            if line.get(tag_len) != Some(&b' ') {
                return Err(SyntaxError::MissingCommand);
            }
            pos = tag_len + 1;
            let rest = line.get(pos..).unwrap_or_default();
            let word_len = rest.iter().take_while(|&&b| is_atom_char(b)).count();
            if word_len == 0 {
                return Err(SyntaxError::MissingCommand);
            }
            self.partial.word = Some(rest.get(..word_len).unwrap_or_default().to_vec());
            pos += word_len;
        }
        loop {
            let Some(&b) = line.get(pos) else {
                return Ok(LineEnd::Complete);
            };
            if b != b' ' {
                return Err(SyntaxError::UnexpectedByte(b));
            }
            pos += 1;
            if self.partial.args.len() >= self.limits.max_args {
                return Err(SyntaxError::TooManyArguments);
            }
            match line.get(pos) {
                None | Some(b' ') => return Err(SyntaxError::ExtraSpace),
                Some(b'"') => {
                    let (s, used) = parse_quoted(line.get(pos + 1..).unwrap_or_default())?;
                    self.partial.args.push(Token::String(s));
                    pos += 1 + used;
                }
                Some(b'{') => {
                    let rest = line.get(pos..).unwrap_or_default();
                    return match trailing_literal(rest) {
                        Some((size, sync)) if is_exact_literal(rest) => {
                            Ok(LineEnd::Literal(size, sync))
                        }
                        _ => Err(SyntaxError::BadLiteralSyntax),
                    };
                }
                Some(&c) if is_atom_char(c) => {
                    let rest = line.get(pos..).unwrap_or_default();
                    let n = rest.iter().take_while(|&&b| is_atom_char(b)).count();
                    self.partial
                        .args
                        .push(Token::Atom(rest.get(..n).unwrap_or_default().to_vec()));
                    pos += n;
                }
                Some(&c) => return Err(SyntaxError::UnexpectedByte(c)),
            }
        }
    }
}

/// Is `s` exactly one literal announcement `{digits}` or `{digits+}`?
fn is_exact_literal(s: &[u8]) -> bool {
    let Some(inner) = s.strip_prefix(b"{").and_then(|r| r.strip_suffix(b"}")) else {
        return false;
    };
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// If `line` ends with a literal announcement, its size (None when it overflows 64 bits) and
/// whether it is synchronizing.
fn trailing_literal(line: &[u8]) -> Option<(Option<u64>, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let (digits_end, sync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    let start = digits_end.iter().rposition(|&b| b == b'{')?;
    let digits = digits_end.get(start + 1..)?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Some((size, sync))
}

/// Parse a quoted string body (after the opening quote): the unescaped bytes and the number of
/// input bytes used, closing quote included.
fn parse_quoted(s: &[u8]) -> Result<(Vec<u8>, usize), SyntaxError> {
    let mut out = Vec::new();
    let mut i = 0usize;
    loop {
        match s.get(i) {
            None => return Err(SyntaxError::UnterminatedQuoted),
            Some(b'"') => return Ok((out, i + 1)),
            Some(b'\\') => match s.get(i + 1) {
                Some(&c @ (b'"' | b'\\')) => {
                    out.push(c);
                    i += 2;
                }
                _ => return Err(SyntaxError::BadEscape),
            },
            Some(&c) if c == 0 || c >= 0x80 || c == b'\r' || c == b'\n' => {
                return Err(SyntaxError::BadQuotedByte(c));
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec() -> Decoder {
        Decoder::new(Limits::default())
    }

    fn all(d: &mut Decoder, input: &[u8]) -> Vec<Event> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(ev) = d.decode(&mut buf).unwrap() {
            let accept = matches!(ev, Event::LiteralRequest { .. });
            out.push(ev);
            if accept {
                d.accept_literal();
            }
        }
        out
    }

    fn cmd(tag: &str, word: &str, args: Vec<Token>) -> Event {
        Event::Command(RawCommand {
            tag: tag.into(),
            word: word.into(),
            args,
        })
    }

    fn s(x: &str) -> Token {
        Token::String(x.into())
    }

    fn err(tag: Option<&str>, error: SyntaxError) -> Event {
        Event::Error(DecodeError {
            tag: tag.map(Into::into),
            error,
        })
    }

    #[test]
    fn simple_commands_and_pipelining() {
        let mut d = dec();
        let evs = all(&mut d, b"N1 NOOP\r\nF1 FIND \"a b\"\r\nL1 list\r\n");
        assert_eq!(
            evs,
            vec![
                cmd("N1", "NOOP", vec![]),
                cmd("F1", "FIND", vec![s("a b")]),
                cmd("L1", "list", vec![])
            ]
        );
    }

    #[test]
    fn incremental_input_needs_more() {
        let mut d = dec();
        let mut buf = BytesMut::new();
        for &b in b"A1 ACTIVATE {3+}\r\nabc \"h!p\" \"\"\r\n" {
            assert!(d.decode(&mut buf).unwrap().is_none());
            buf.extend_from_slice(&[b]);
        }
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(cmd("A1", "ACTIVATE", vec![s("abc"), s("h!p"), s("")]))
        );
    }

    #[test]
    fn literal_with_crlf_inside() {
        let mut d = dec();
        let evs = all(&mut d, b"X ACTIVATE {7+}\r\na\r\nb.cd \"h!p\" \"\"\r\n");
        assert_eq!(
            evs,
            vec![cmd("X", "ACTIVATE", vec![s("a\r\nb.cd"), s("h!p"), s("")])]
        );
    }

    #[test]
    fn sync_literal_asks_first() {
        let mut d = dec();
        let mut buf = BytesMut::from(&b"X FIND {3}\r\n"[..]);
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(Event::LiteralRequest {
                tag: "X".into(),
                word: "FIND".into(),
                size: 3
            })
        );
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        d.accept_literal();
        buf.extend_from_slice(b"abc\r\n");
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(cmd("X", "FIND", vec![s("abc")]))
        );
    }

    #[test]
    fn refused_literal_resets() {
        let mut d = dec();
        let mut buf = BytesMut::from(&b"X ACTIVATE {3}\r\nN NOOP\r\n"[..]);
        assert!(matches!(
            d.decode(&mut buf).unwrap(),
            Some(Event::LiteralRequest { .. })
        ));
        d.refuse_literal();
        assert_eq!(d.decode(&mut buf).unwrap(), Some(cmd("N", "NOOP", vec![])));
    }

    #[test]
    fn quoted_escapes_and_bad_bytes() {
        let mut d = dec();
        let evs = all(
            &mut d,
            b"X FIND \"q\\\"u\\\\x\"\r\nY FIND \"a\\b\"\r\nZ FIND \"caf\xc3\xa9\"\r\n",
        );
        assert_eq!(
            evs,
            vec![
                cmd("X", "FIND", vec![s("q\"u\\x")]),
                err(Some("Y"), SyntaxError::BadEscape),
                err(Some("Z"), SyntaxError::BadQuotedByte(0xc3)),
            ]
        );
        let evs = all(&mut d, b"W FIND \"a\0b\"\r\n");
        assert_eq!(evs, vec![err(Some("W"), SyntaxError::BadQuotedByte(0))]);
    }

    #[test]
    fn nul_in_literal_is_bad_after_the_command() {
        let mut d = dec();
        let evs = all(&mut d, b"X FIND {3+}\r\na\0b\r\nN NOOP\r\n");
        assert_eq!(
            evs,
            vec![
                err(Some("X"), SyntaxError::NulInLiteral),
                cmd("N", "NOOP", vec![])
            ]
        );
    }

    #[test]
    fn blank_line_tag_only_and_empty_tag() {
        let mut d = dec();
        let evs = all(&mut d, b"\r\nX\r\n NOOP\r\nX  NOOP\r\nX NOOP \r\n");
        assert_eq!(
            evs,
            vec![
                err(None, SyntaxError::MissingTag),
                err(Some("X"), SyntaxError::MissingCommand),
                err(None, SyntaxError::MissingTag),
                err(Some("X"), SyntaxError::MissingCommand),
                err(Some("X"), SyntaxError::ExtraSpace),
            ]
        );
    }

    #[test]
    fn bare_lf_is_bad_with_tag() {
        let mut d = dec();
        let evs = all(&mut d, b"N NOOP\nM NOOP\r\n");
        assert_eq!(
            evs,
            vec![
                err(Some("N"), SyntaxError::BareLf),
                cmd("M", "NOOP", vec![])
            ]
        );
    }

    #[test]
    fn long_tag_and_long_line() {
        let mut d = dec();
        let mut line = vec![b'a'; 65];
        line.extend_from_slice(b" NOOP\r\nN NOOP\r\n");
        assert_eq!(
            all(&mut d, &line),
            vec![err(None, SyntaxError::TagTooLong), cmd("N", "NOOP", vec![])]
        );
        let mut buf = BytesMut::from(&vec![b'a'; 200 * 1024][..]);
        assert_eq!(d.decode(&mut buf), Err(Fatal::LineTooLong));
    }

    #[test]
    fn line_of_1024_octets_is_fine() {
        let mut d = dec();
        let mut line = b"X FIND \"".to_vec();
        line.extend(std::iter::repeat_n(b'n', 1024 - line.len() - 3));
        line.extend_from_slice(b"\"\r\n");
        assert_eq!(line.len(), 1024);
        assert_eq!(all(&mut d, &line).len(), 1);
    }

    #[test]
    fn literal_limits() {
        let mut d = dec();
        // Sync over the limit: BAD, no request.
        let evs = all(&mut d, b"X FIND {10485760}\r\nN NOOP\r\n");
        assert_eq!(
            evs,
            vec![
                err(Some("X"), SyntaxError::LiteralTooLarge(Some(10485760))),
                cmd("N", "NOOP", vec![])
            ]
        );
        // Non-sync over the limit but drainable: drained, BAD.
        let mut input = b"X FIND {70000+}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 70000));
        input.extend_from_slice(b"\r\nN NOOP\r\n");
        assert_eq!(
            all(&mut d, &input),
            vec![
                err(Some("X"), SyntaxError::LiteralTooLarge(Some(70000))),
                cmd("N", "NOOP", vec![])
            ]
        );
        // Beyond the drain limit or beyond 64 bits: fatal.
        let mut buf = BytesMut::from(&b"X FIND {99999999999+}\r\n"[..]);
        assert_eq!(d.decode(&mut buf), Err(Fatal::LiteralTooLarge));
        let mut d = dec();
        let mut buf = BytesMut::from(&b"X FIND {999999999999999999999999999+}\r\n"[..]);
        assert_eq!(d.decode(&mut buf), Err(Fatal::LiteralTooLarge));
        let mut d = dec();
        let evs = all(&mut d, b"X FIND {999999999999999999999999999}\r\n");
        assert_eq!(
            evs,
            vec![err(Some("X"), SyntaxError::LiteralTooLarge(None))]
        );
        let evs = all(&mut d, b"X FIND {-5}\r\nY FIND {}\r\nZ FIND {1x}\r\n");
        assert_eq!(evs.len(), 3);
        assert!(evs.iter().all(|e| matches!(e, Event::Error(_))));
    }

    #[test]
    fn literal_4096_works() {
        let mut d = dec();
        let mut input = b"X FIND {4096+}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'n', 4096));
        input.extend_from_slice(b"\r\n");
        assert_eq!(
            all(&mut d, &input),
            vec![cmd("X", "FIND", vec![Token::String(vec![b'n'; 4096])])]
        );
    }

    #[test]
    fn broken_command_with_nonsync_literal_is_skipped_whole() {
        let mut d = dec();
        let evs = all(
            &mut d,
            b"X FIND \"a\"\"b\" {3+}\r\nabc {2+}\r\nzz\r\nN NOOP\r\n",
        );
        assert_eq!(
            evs,
            vec![
                err(Some("X"), SyntaxError::UnexpectedByte(b'"')),
                cmd("N", "NOOP", vec![])
            ]
        );
    }

    #[test]
    fn too_many_arguments() {
        let mut d = dec();
        let evs = all(&mut d, b"X FIND a b c d e f g h i\r\n");
        assert_eq!(evs, vec![err(Some("X"), SyntaxError::TooManyArguments)]);
    }

    #[test]
    fn sasl_lines() {
        let mut d = dec();
        d.expect_sasl_line();
        let mut buf = BytesMut::from(&b"AGEAYg==\r\nN NOOP\r\n"[..]);
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(Event::SaslLine(b"AGEAYg==".to_vec()))
        );
        assert_eq!(d.decode(&mut buf).unwrap(), Some(cmd("N", "NOOP", vec![])));
    }

    #[test]
    fn atoms_are_tokens() {
        let mut d = dec();
        assert_eq!(
            all(&mut d, b"A AUTHENTICATE PLAIN =\r\n"),
            vec![cmd(
                "A",
                "AUTHENTICATE",
                vec![Token::Atom("PLAIN".into()), Token::Atom("=".into())]
            )]
        );
    }

    mod props {
        use super::*;
        use crate::mupdate::response::put_string;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8), accept in any::<bool>()) {
                let limits = Limits { max_line: 1024, max_literal: 4096, literal_drain_limit: 8192, ..Limits::default() };
                let mut d = Decoder::new(limits);
                let mut buf = BytesMut::new();
                for c in chunks {
                    buf.extend_from_slice(&c);
                    for _ in 0..1000 {
                        match d.decode(&mut buf) {
                            Ok(Some(Event::LiteralRequest { .. })) => if accept { d.accept_literal() } else { d.refuse_literal() },
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
            }

            #[test]
            fn any_split_of_the_input_gives_the_same_events(cuts in proptest::collection::vec(0usize..200, 0..10)) {
                let input: &[u8] = b"A1 ACTIVATE {3+}\r\nabc \"h!p\" \"\"\r\nN NOOP\nX FIND {2}\r\nzz\r\n\r\nL LIST \"h\"\r\n";
                let whole = all(&mut dec(), input);
                let mut d = dec();
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                let mut cuts = cuts;
                cuts.push(input.len());
                cuts.sort_unstable();
                let mut at = 0;
                for cut in cuts {
                    let cut = cut.min(input.len());
                    if cut <= at {
                        continue;
                    }
                    buf.extend_from_slice(&input[at..cut]);
                    at = cut;
                    while let Some(ev) = d.decode(&mut buf).unwrap() {
                        let accept = matches!(ev, Event::LiteralRequest { .. });
                        got.push(ev);
                        if accept {
                            d.accept_literal();
                        }
                    }
                }
                prop_assert_eq!(got, whole);
            }

            #[test]
            fn encoded_strings_decode_back(s in proptest::collection::vec(1u8..=255, 0..3000)) {
                let mut line = b"X FIND ".to_vec();
                put_string(&mut line, &s);
                line.extend_from_slice(b"\r\n");
                let mut d = dec();
                let mut buf = BytesMut::from(&line[..]);
                let ev = d.decode(&mut buf).unwrap();
                prop_assert_eq!(ev, Some(Event::Command(RawCommand { tag: b"X".to_vec(), word: b"FIND".to_vec(), args: vec![Token::String(s)] })));
                prop_assert!(buf.is_empty());
            }
        }
    }
}

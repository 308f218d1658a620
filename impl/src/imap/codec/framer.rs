//! The framing layer of the IMAP command stream: lines and literals.
//!
//! IMAP commands are a sequence of lines, each of which may end with a literal announcement
//! `{n}` (synchronizing: the client waits for a `+` continuation) or `{n+}` (LITERAL+, RFC 2088:
//! the bytes follow at once). The framer knows nothing of command grammar: it only decides which
//! bytes are line text and which are literal data. That separation is what keeps the stream in
//! sync when a command is rejected halfway: the octets of an announced non-synchronizing literal
//! are always consumed as literal data and can never be mistaken for a command.
//!
//! Sans-IO: the caller appends received bytes to a `BytesMut` and calls [`Framer::next_frame`]
//! until it returns `Ok(None)` (need more input).

use bytes::{Bytes, BytesMut};

/// A literal announcement at the end of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiteralSpec {
    /// Announced length in octets.
    pub len: u64,
    /// `true` for `{n}` (client waits for `+`), `false` for `{n+}` (LITERAL+).
    pub sync: bool,
}

/// One unit of the command stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A line without its CRLF and without its trailing literal announcement.
    Line {
        /// The text before the literal announcement (or the whole line).
        text: Bytes,
        /// The literal announced at the end of the line, if any.
        literal: Option<LiteralSpec>,
    },
    /// A chunk of literal data (never empty).
    LiteralData(Bytes),
    /// The announced literal has been received completely.
    LiteralEnd,
}

/// Why the input cannot be framed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A line exceeded the line length limit; framing is lost.
    #[error("line longer than {0} octets")]
    LineTooLong(usize),
    /// A line ended with a bare LF instead of CRLF (the line was consumed; framing is intact).
    #[error("line terminated by bare LF, CRLF required")]
    BareLf,
    /// A literal announcement whose length does not fit in 64 bits (framing is lost).
    #[error("literal length out of range")]
    LiteralLengthOverflow,
}

impl FrameError {
    /// Whether the stream can continue after this error (the offending line was consumed).
    pub fn recoverable(&self) -> bool {
        matches!(self, FrameError::BareLf)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a line.
    Line,
    /// A synchronizing literal was announced; the session must accept or reject it.
    AwaitDecision(u64),
    /// Inside literal data, this many octets to go.
    Literal(u64),
}

/// The incremental line/literal splitter.
#[derive(Debug)]
pub struct Framer {
    state: State,
    max_line: usize,
}

impl Framer {
    /// A framer enforcing `max_line` octets per line (CRLF included).
    pub fn new(max_line: usize) -> Self {
        Framer {
            state: State::Line,
            max_line,
        }
    }

    /// Whether the framer is between lines (not inside or before a literal).
    pub fn at_line_start(&self) -> bool {
        self.state == State::Line
    }

    /// After a `{n}` announcement: the session sent `+`, the client will send the bytes.
    pub fn accept_literal(&mut self) {
        if let State::AwaitDecision(n) = self.state {
            self.state = if n == 0 {
                State::Literal(0)
            } else {
                State::Literal(n)
            };
        }
    }

    /// After a `{n}` announcement: the session answered with a tagged response instead of `+`,
    /// so the client will not send the bytes.
    pub fn reject_literal(&mut self) {
        if let State::AwaitDecision(_) = self.state {
            self.state = State::Line;
        }
    }

    /// Forget a pending literal, so that its bytes are read as lines. Only fault injection uses
    /// this (it breaks the stream's framing on purpose).
    pub fn abandon_literal(&mut self) {
        self.state = State::Line;
    }

    /// The next frame, `Ok(None)` when more input is needed.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.state {
            State::AwaitDecision(_) => {
                // The session did not decide: treat as rejected (the client waits for `+`).
                self.state = State::Line;
                self.next_line(buf)
            }
            State::Literal(0) => {
                self.state = State::Line;
                Ok(Some(Frame::LiteralEnd))
            }
            State::Literal(remaining) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let chunk = buf.split_to(take).freeze();
                self.state = State::Literal(remaining - take as u64);
                Ok(Some(Frame::LiteralData(chunk)))
            }
            State::Line => self.next_line(buf),
        }
    }

    fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() >= self.max_line {
                return Err(FrameError::LineTooLong(self.max_line));
            }
            return Ok(None);
        };
        if lf + 1 > self.max_line {
            return Err(FrameError::LineTooLong(self.max_line));
        }
        let mut line = buf.split_to(lf + 1);
        line.truncate(lf);
        if line.last() != Some(&b'\r') {
            return Err(FrameError::BareLf);
        }
        line.truncate(lf - 1);
        let literal = literal_suffix(&line)?;
        if let Some((spec, start)) = literal {
            line.truncate(start);
            self.state = if spec.sync {
                State::AwaitDecision(spec.len)
            } else {
                State::Literal(spec.len)
            };
            return Ok(Some(Frame::Line {
                text: line.freeze(),
                literal: Some(spec),
            }));
        }
        Ok(Some(Frame::Line {
            text: line.freeze(),
            literal: None,
        }))
    }
}

/// Parse a trailing `{digits}` / `{digits+}`: the spec and the offset of `{`.
fn literal_suffix(line: &[u8]) -> Result<Option<(LiteralSpec, usize)>, FrameError> {
    let Some(inner) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let (digits_end, sync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    let digit_count = digits_end
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digit_count == 0 {
        return Ok(None);
    }
    let open = digits_end.len() - digit_count;
    if open == 0 || digits_end.get(open - 1) != Some(&b'{') {
        return Ok(None);
    }
    let digits = digits_end.get(open..).unwrap_or_default();
    let mut len: u64 = 0;
    for &d in digits {
        len = len
            .checked_mul(10)
            .and_then(|l| l.checked_add(u64::from(d - b'0')))
            .ok_or(FrameError::LiteralLengthOverflow)?;
    }
    Ok(Some((LiteralSpec { len, sync }, open - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], accept: bool) -> Vec<Frame> {
        let mut f = Framer::new(100);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(fr) = f.next_frame(&mut buf).unwrap() {
            if let Frame::Line {
                literal: Some(LiteralSpec { sync: true, .. }),
                ..
            } = fr
            {
                if accept {
                    f.accept_literal();
                } else {
                    f.reject_literal();
                }
            }
            out.push(fr);
        }
        out
    }

    #[test]
    fn lines_and_literals() {
        let out = frames(b"a1 LOGIN {3}\r\nbob {2+}\r\npw\r\n", true);
        assert_eq!(
            out,
            vec![
                Frame::Line {
                    text: Bytes::from_static(b"a1 LOGIN "),
                    literal: Some(LiteralSpec { len: 3, sync: true })
                },
                Frame::LiteralData(Bytes::from_static(b"bob")),
                Frame::LiteralEnd,
                Frame::Line {
                    text: Bytes::from_static(b" "),
                    literal: Some(LiteralSpec {
                        len: 2,
                        sync: false
                    })
                },
                Frame::LiteralData(Bytes::from_static(b"pw")),
                Frame::LiteralEnd,
                Frame::Line {
                    text: Bytes::new(),
                    literal: None
                },
            ]
        );
    }

    #[test]
    fn nonsync_literal_bytes_are_never_lines() {
        // Even unaccepted, a {n+} literal's bytes are data.
        let out = frames(b"a APPEND x {10+}\r\nb LOGOUT\r\n\r\n", false);
        assert_eq!(
            out.get(1),
            Some(&Frame::LiteralData(Bytes::from_static(b"b LOGOUT\r\n")))
        );
    }

    #[test]
    fn rejected_sync_literal_returns_to_lines() {
        let out = frames(b"a APPEND x {5}\r\nb NOOP\r\n", false);
        assert_eq!(
            out.get(1),
            Some(&Frame::Line {
                text: Bytes::from_static(b"b NOOP"),
                literal: None
            })
        );
    }

    #[test]
    fn limits_and_errors() {
        let mut f = Framer::new(8);
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        assert_eq!(f.next_frame(&mut buf), Err(FrameError::LineTooLong(8)));
        let mut f = Framer::new(100);
        let mut buf = BytesMut::from(&b"a NOOP\n"[..]);
        assert_eq!(f.next_frame(&mut buf), Err(FrameError::BareLf));
        let mut buf = BytesMut::from(&b"a {99999999999999999999999}\r\n"[..]);
        assert_eq!(
            f.next_frame(&mut buf),
            Err(FrameError::LiteralLengthOverflow)
        );
        let mut buf = BytesMut::from(&b"a {x}\r\n"[..]);
        assert!(matches!(
            f.next_frame(&mut buf),
            Ok(Some(Frame::Line { literal: None, .. }))
        ));
        let mut buf = BytesMut::from(&b"a NO"[..]);
        assert_eq!(f.next_frame(&mut buf), Ok(None));
    }
}

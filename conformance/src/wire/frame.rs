//! Logical server lines: a line ends at LF, except that a line ending in `{n}` or `{n+}` continues
//! after n more bytes (a literal). Sans-IO: push bytes, pull lines, `None` means "need more".

use thiserror::Error;

/// Default largest literal the framer accepts from a server (64 MiB).
pub const DEFAULT_MAX_LITERAL: usize = 64 * 1024 * 1024;
/// Default largest logical line, literals included (80 MiB).
pub const DEFAULT_MAX_LINE: usize = 80 * 1024 * 1024;

/// One logical line from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The line without its final line ending; literal markers and data are included.
    pub bytes: Vec<u8>,
    /// The line ended with a bare LF instead of CRLF (a protocol violation).
    pub bare_lf: bool,
}

/// Why the server's byte stream cannot be framed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// A literal larger than the configured maximum.
    #[error("server literal of {0} bytes exceeds the runner's limit")]
    LiteralTooLarge(u64),
    /// A line longer than the configured maximum.
    #[error("server line longer than {0} bytes")]
    LineTooLong(usize),
}

/// Splits a byte stream into [`Line`]s.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the scan for the end of the current line resumes.
    scan: usize,
    max_literal: usize,
    max_line: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(DEFAULT_MAX_LITERAL, DEFAULT_MAX_LINE)
    }
}

/// If `seg` ends with `{digits}` or `{digits+}`, the literal's length.
pub fn trailing_literal(seg: &[u8]) -> Option<u64> {
    let seg = seg.strip_suffix(b"}")?;
    let seg = seg.strip_suffix(b"+").unwrap_or(seg);
    let open = seg.iter().rposition(|&b| b == b'{')?;
    let digits = seg.get(open + 1..)?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Framer {
    /// A framer with explicit limits.
    pub fn new(max_literal: usize, max_line: usize) -> Self {
        Framer {
            buf: Vec::new(),
            scan: 0,
            max_literal,
            max_line,
        }
    }

    /// Add bytes read from the server.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet part of a complete line.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The next complete line, `Ok(None)` when more bytes are needed.
    pub fn next_line(&mut self) -> Result<Option<Line>, FrameError> {
        loop {
            let Some(rel) = self
                .buf
                .get(self.scan..)
                .and_then(|t| t.iter().position(|&b| b == b'\n'))
            else {
                if self.buf.len() > self.max_line {
                    return Err(FrameError::LineTooLong(self.max_line));
                }
                return Ok(None);
            };
            let lf = self.scan + rel;
            // The same limit whether the line came in one read or several (found by fuzzing).
            if lf > self.max_line {
                return Err(FrameError::LineTooLong(self.max_line));
            }
            let seg_end = if lf > 0 && self.buf.get(lf - 1) == Some(&b'\r') {
                lf - 1
            } else {
                lf
            };
            let seg = self.buf.get(self.scan..seg_end).unwrap_or_default();
            if let Some(n) = trailing_literal(seg) {
                if n > self.max_literal as u64 {
                    return Err(FrameError::LiteralTooLarge(n));
                }
                let need = lf + 1 + n as usize;
                if self.buf.len() < need {
                    return Ok(None);
                }
                self.scan = need;
                continue;
            }
            let bare_lf = seg_end == lf;
            let bytes = self.buf.get(..seg_end).unwrap_or_default().to_vec();
            self.buf.drain(..=lf);
            self.scan = 0;
            return Ok(Some(Line { bytes, bare_lf }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Vec<u8>> {
        let mut f = Framer::default();
        f.push(input);
        let mut out = Vec::new();
        while let Some(l) = f.next_line().unwrap() {
            out.push(l.bytes);
        }
        out
    }

    #[test]
    fn splits_plain_lines() {
        assert_eq!(lines(b"a\r\nb\r\n"), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn literal_with_crlf_inside_is_one_line() {
        let got = lines(b"F1 MAILBOX {4+}\r\na\r\nb {3}\r\nh!p {0+}\r\n\r\nF1 OK \"x\"\r\n");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            b"F1 MAILBOX {4+}\r\na\r\nb {3}\r\nh!p {0+}\r\n".to_vec()
        );
    }

    #[test]
    fn partial_input_needs_more() {
        let mut f = Framer::default();
        f.push(b"F1 MAILBOX {10+}\r\nabc");
        assert_eq!(f.next_line().unwrap(), None);
        f.push(b"defghij \"x\" \"y\"\r");
        assert_eq!(f.next_line().unwrap(), None);
        f.push(b"\n");
        let l = f.next_line().unwrap().unwrap();
        assert_eq!(
            l.bytes,
            b"F1 MAILBOX {10+}\r\nabcdefghij \"x\" \"y\"".to_vec()
        );
        assert!(!l.bare_lf);
    }

    #[test]
    fn bare_lf_is_flagged() {
        let mut f = Framer::default();
        f.push(b"* OK x\n");
        assert!(f.next_line().unwrap().unwrap().bare_lf);
    }

    #[test]
    fn oversized_literal_is_an_error() {
        let mut f = Framer::new(10, 100);
        f.push(b"* X {11}\r\n");
        assert_eq!(f.next_line(), Err(FrameError::LiteralTooLarge(11)));
    }
}

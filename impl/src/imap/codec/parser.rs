//! A strict cursor over the pieces of one command (line text and literal contents).
//!
//! The session collects the frames of a command into [`Piece`]s; the [`Cursor`] offers the
//! IMAP4rev1 formal-syntax building blocks (RFC 3501 section 9) on top of them, each failing with
//! a [`SyntaxError`] that names the rule broken.

use bytes::Bytes;

/// Part of a command: text of a line or the contents of a literal that followed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Line text (without CRLF and without the literal announcement).
    Text(Bytes),
    /// The octets of a literal.
    Literal(Bytes),
}

/// A syntax error: which rule of RFC 3501 section 9 was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("syntax error: expected {expected}")]
pub struct SyntaxError {
    /// The rule that did not match.
    pub expected: &'static str,
}

/// Shorthand.
pub type PResult<T> = Result<T, SyntaxError>;

fn err<T>(expected: &'static str) -> PResult<T> {
    Err(SyntaxError { expected })
}

/// Whether `b` is an ATOM-CHAR.
pub fn is_atom_char(b: u8) -> bool {
    b > 0x20
        && b < 0x7f
        && !matches!(
            b,
            b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']'
        )
}

/// Whether `b` is an ASTRING-CHAR (ATOM-CHAR or "]").
pub fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// A position in a command's pieces.
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    pieces: &'a [Piece],
    piece: usize,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `pieces`.
    pub fn new(pieces: &'a [Piece]) -> Self {
        Cursor {
            pieces,
            piece: 0,
            pos: 0,
        }
    }

    fn text(&self) -> Option<&'a [u8]> {
        match self.pieces.get(self.piece) {
            Some(Piece::Text(t)) => t.get(self.pos..),
            _ => None,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text().and_then(|t| t.first().copied())
    }

    /// Whether the next thing is the given byte.
    pub fn peek_is(&self, b: u8) -> bool {
        self.peek() == Some(b)
    }

    /// Whether the cursor is at a literal.
    fn at_literal(&self) -> bool {
        // A literal follows the end of a text piece.
        matches!(self.text(), Some([]))
            && matches!(self.pieces.get(self.piece + 1), Some(Piece::Literal(_)))
    }

    fn take_literal(&mut self) -> Option<&'a Bytes> {
        if !self.at_literal() {
            return None;
        }
        match self.pieces.get(self.piece + 1) {
            Some(Piece::Literal(l)) => {
                self.piece += 2;
                self.pos = 0;
                Some(l)
            }
            _ => None,
        }
    }

    /// Consume one byte if it is `b`.
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `SP`.
    pub fn sp(&mut self) -> PResult<()> {
        if self.eat(b' ') { Ok(()) } else { err("SP") }
    }

    /// The end of the command (CRLF).
    pub fn end(&self) -> PResult<()> {
        match self.text() {
            Some([]) if self.piece + 1 >= self.pieces.len() => Ok(()),
            _ => err("CRLF (end of command)"),
        }
    }

    /// Whether the cursor is at the end of the command.
    pub fn at_end(&self) -> bool {
        self.end().is_ok()
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let t = self.text().unwrap_or_default();
        let n = t.iter().take_while(|&&b| f(b)).count();
        self.pos += n;
        t.get(..n).unwrap_or_default()
    }

    /// `atom` (returned as a String; ASCII only by construction).
    pub fn atom(&mut self) -> PResult<String> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return err("atom");
        }
        Ok(String::from_utf8_lossy(a).into_owned())
    }

    /// A run of the given chars (used for tags, sequence sets, fetch attributes).
    pub fn chars(&mut self, f: impl Fn(u8) -> bool, expected: &'static str) -> PResult<String> {
        let a = self.take_while(f);
        if a.is_empty() {
            return err(expected);
        }
        Ok(String::from_utf8_lossy(a).into_owned())
    }

    /// `number` (u32).
    pub fn number(&mut self) -> PResult<u32> {
        let d = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .map_or_else(|| err("number"), Ok)
    }

    /// `quoted`.
    pub fn quoted(&mut self) -> PResult<Vec<u8>> {
        if !self.eat(b'"') {
            return err("quoted");
        }
        let t = self.text().unwrap_or_default();
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match t.get(i) {
                None => return err("closing DQUOTE"),
                Some(b'"') => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                Some(b'\\') => match t.get(i + 1) {
                    Some(&c @ (b'"' | b'\\')) => {
                        out.push(c);
                        i += 2;
                    }
                    _ => return err("quoted-specials after backslash"),
                },
                Some(&c) if c == b'\r' || c == b'\n' || c == 0 || c >= 0x80 => {
                    return err("TEXT-CHAR in quoted");
                }
                Some(&c) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
    }

    /// `string` = quoted / literal.
    pub fn string(&mut self) -> PResult<Vec<u8>> {
        if let Some(l) = self.take_literal() {
            return Ok(l.to_vec());
        }
        self.quoted()
    }

    /// `astring`.
    pub fn astring(&mut self) -> PResult<Vec<u8>> {
        if self.peek_is(b'"') || self.at_literal() {
            return self.string();
        }
        let a = self.take_while(is_astring_char);
        if a.is_empty() {
            return err("astring");
        }
        Ok(a.to_vec())
    }

    /// `list-mailbox` (atom-like with wildcards, or a string).
    pub fn list_mailbox(&mut self) -> PResult<Vec<u8>> {
        if self.peek_is(b'"') || self.at_literal() {
            return self.string();
        }
        let a = self.take_while(|b| is_astring_char(b) || b == b'%' || b == b'*');
        if a.is_empty() {
            return err("list-mailbox");
        }
        Ok(a.to_vec())
    }

    /// `mailbox` (astring; "INBOX" case-insensitively normalised).
    pub fn mailbox(&mut self) -> PResult<String> {
        let raw = self.astring()?;
        let s = String::from_utf8(raw).map_err(|_| SyntaxError {
            expected: "mailbox name in 7-bit or UTF-8",
        })?;
        Ok(normalize_mailbox(&s))
    }

    /// `flag-list` = "(" [flag *(SP flag)] ")": the raw flag words.
    pub fn flag_list(&mut self) -> PResult<Vec<String>> {
        if !self.eat(b'(') {
            return err("flag-list");
        }
        let mut out = Vec::new();
        if self.eat(b')') {
            return Ok(out);
        }
        loop {
            out.push(self.flag()?);
            if self.eat(b')') {
                return Ok(out);
            }
            if !self.eat(b' ') {
                return err("SP or \")\" in flag-list");
            }
        }
    }

    /// One `flag` (`\Word` or keyword atom).
    pub fn flag(&mut self) -> PResult<String> {
        if self.eat(b'\\') {
            let a = self.atom().map_err(|_| SyntaxError { expected: "flag" })?;
            return Ok(format!("\\{a}"));
        }
        self.atom().map_err(|_| SyntaxError { expected: "flag" })
    }

    /// Offset in the current text piece.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Remaining raw text of the current piece (for diagnostics).
    pub fn rest(&self) -> &'a [u8] {
        self.text().unwrap_or_default()
    }
}

/// `INBOX` is case-insensitive (RFC 3501 5.1); other names are kept as given.
pub fn normalize_mailbox(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &'static [u8]) -> Piece {
        Piece::Text(Bytes::from_static(s))
    }

    #[test]
    fn strings_and_literals() {
        let p = [
            t(b"\"a\\\"b\" "),
            Piece::Literal(Bytes::from_static(b"lit")),
            t(b" x"),
        ];
        let mut c = Cursor::new(&p);
        assert_eq!(c.astring().unwrap(), b"a\"b");
        c.sp().unwrap();
        assert_eq!(c.astring().unwrap(), b"lit");
        c.sp().unwrap();
        assert_eq!(c.astring().unwrap(), b"x");
        c.end().unwrap();
    }

    #[test]
    fn flag_lists() {
        let p = [t(b"(\\Seen $Junk)")];
        let mut c = Cursor::new(&p);
        assert_eq!(c.flag_list().unwrap(), vec!["\\Seen", "$Junk"]);
        let p = [t(b"(\\Seen")];
        assert!(Cursor::new(&p).flag_list().is_err());
        let p = [t(b"\"unterminated")];
        assert!(Cursor::new(&p).quoted().is_err());
    }
}

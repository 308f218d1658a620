//! MUPDATE responses read by a client (RFC 3656 3), sans-IO: bytes in, [`Reply`]s out.
//!
//! A tagged response has the shape of a command (tag, keyword, strings), so this reuses the
//! server's own [`Decoder`] with client-side [`ReplyLimits`]: quoted strings and literals
//! (`{n}` and `{n+}`, CRLF, `n` octets) are read the same way, incomplete input is `Ok(None)`
//! (nothing consumed), and every size is bounded before anything is allocated. Untagged lines
//! (the banner, `* BYE`) are read with [`take_line`].
//!
//! Used by the slave's link to its master and by `imapd`'s backend link
//! ([`crate::imap::mupdate_link`]).

use bytes::BytesMut;
use murder_model::{Change, MailboxEntry, Record};

use super::codec::{Decoder, Event, Fatal, Token};
use super::config::Limits;
use super::response::Status;

/// Size limits of what a client accepts from a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest response line outside literals, CRLF included.
    pub max_line: usize,
    /// Largest literal (a name, location or ACL).
    pub max_literal: usize,
}

impl Default for ReplyLimits {
    /// 64 KiB lines and literals: far above any real name, location or ACL.
    fn default() -> Self {
        ReplyLimits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024,
        }
    }
}

/// One tagged response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `tag OK|NO|BAD|BYE "text"`: the command is finished.
    Status {
        /// The command's tag.
        tag: Vec<u8>,
        /// Which one.
        status: Status,
        /// The human-readable text (empty when absent).
        text: Vec<u8>,
    },
    /// `tag MAILBOX ...`, `tag RESERVE ...` or `tag DELETE name` (FIND, LIST, UPDATE data).
    Data {
        /// The command's tag.
        tag: Vec<u8>,
        /// The record (or the deletion) it carries.
        change: Change,
    },
}

/// Why the response stream cannot be read any further.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The framing is lost (line or literal over the limits).
    #[error("{0}")]
    Fatal(#[from] Fatal),
    /// A line that is no response a client can act on (an untagged `* BYE`, an unknown keyword,
    /// missing arguments); the text says which.
    #[error("unexpected response: {0}")]
    Unexpected(String),
}

/// The incremental response decoder of one client connection.
#[derive(Debug)]
pub struct ReplyDecoder {
    decoder: Decoder,
}

impl ReplyDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: ReplyLimits) -> Self {
        let limits = Limits {
            max_line: limits.max_line,
            max_literal: limits.max_literal,
            // An over-limit literal from the server ends the connection: nothing is drained.
            literal_drain_limit: 0,
            max_tag: 1024,
            max_args: 8,
            ..Limits::default()
        };
        ReplyDecoder {
            decoder: Decoder::new(limits),
        }
    }

    /// The next response in `buf` (consuming it), `Ok(None)` when more input is needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, ReplyError> {
        loop {
            match self.decoder.decode(buf)? {
                None => return Ok(None),
                // A server should not send synchronizing literals; read them anyway.
                Some(Event::LiteralRequest { .. }) => self.decoder.accept_literal(),
                Some(Event::SaslLine(_)) => {}
                Some(Event::Error(e)) => {
                    return Err(ReplyError::Unexpected(format!(
                        "{} (tag {:?})",
                        e.error,
                        e.tag.map(|t| String::from_utf8_lossy(&t).into_owned())
                    )));
                }
                Some(Event::Command(raw)) => {
                    let word = raw.word.to_ascii_uppercase();
                    let args: Vec<Vec<u8>> = raw
                        .args
                        .into_iter()
                        .map(|t| match t {
                            Token::String(s) | Token::Atom(s) => s,
                        })
                        .collect();
                    let status = match word.as_slice() {
                        b"OK" => Some(Status::Ok),
                        b"NO" => Some(Status::No),
                        b"BAD" => Some(Status::Bad),
                        b"BYE" => Some(Status::Bye),
                        _ => None,
                    };
                    if let Some(status) = status {
                        let text = args.into_iter().next().unwrap_or_default();
                        return Ok(Some(Reply::Status {
                            tag: raw.tag,
                            status,
                            text,
                        }));
                    }
                    let what = String::from_utf8_lossy(&word).into_owned();
                    return match parse_change(&word, args) {
                        Some(change) => Ok(Some(Reply::Data {
                            tag: raw.tag,
                            change,
                        })),
                        None => Err(ReplyError::Unexpected(what)),
                    };
                }
            }
        }
    }
}

/// The record of a MAILBOX or RESERVE response, or a DELETE change; `word` upper case.
pub fn parse_change(word: &[u8], args: Vec<Vec<u8>>) -> Option<Change> {
    let mut a = args.into_iter();
    match word {
        b"MAILBOX" => {
            let (name, location, acl) = (a.next()?, a.next()?, a.next()?);
            Some(Change::Upsert(Record {
                name,
                entry: MailboxEntry::Active { location, acl },
            }))
        }
        b"RESERVE" => {
            let (name, location) = (a.next()?, a.next()?);
            Some(Change::Upsert(Record {
                name,
                entry: MailboxEntry::Reserved { location },
            }))
        }
        b"DELETE" => Some(Change::Delete { name: a.next()? }),
        _ => None,
    }
}

/// One raw line (banner lines, an AUTHENTICATE answer) without its line end, consumed from
/// `buf`; `Ok(None)` when no LF has arrived yet; an error when `max` octets hold no LF.
pub fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<Vec<u8>>, Fatal> {
    match buf.iter().take(max).position(|&b| b == b'\n') {
        Some(i) => {
            let mut line = buf.split_to(i + 1).to_vec();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            Ok(Some(line))
        }
        None if buf.len() >= max => Err(Fatal::LineTooLong),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mupdate::response::{self, Tag};
    use proptest::prelude::*;

    fn all(dec: &mut ReplyDecoder, bytes: &[u8]) -> Vec<Result<Reply, ReplyError>> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        for _ in 0..100 {
            match dec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(r)) => out.push(Ok(r)),
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn list_answer_with_quoted_strings_and_literals() {
        let mut dec = ReplyDecoder::new(ReplyLimits::default());
        let got = all(
            &mut dec,
            b"C01 RESERVE \"user.a\" {9+}\r\nb1!defaul\r\n\
              C01 MAILBOX {3}\r\nx\"y \"b1!default\" \"a\\\\\tlrs\t\"\r\n\
              C01 OK \"List complete\"\r\n",
        );
        assert_eq!(
            got,
            vec![
                Ok(Reply::Data {
                    tag: b"C01".to_vec(),
                    change: Change::Upsert(Record {
                        name: b"user.a".to_vec(),
                        entry: MailboxEntry::Reserved {
                            location: b"b1!defaul".to_vec()
                        },
                    }),
                }),
                Ok(Reply::Data {
                    tag: b"C01".to_vec(),
                    change: Change::Upsert(Record {
                        name: b"x\"y".to_vec(),
                        entry: MailboxEntry::Active {
                            location: b"b1!default".to_vec(),
                            acl: b"a\\\tlrs\t".to_vec(),
                        },
                    }),
                }),
                Ok(Reply::Status {
                    tag: b"C01".to_vec(),
                    status: Status::Ok,
                    text: b"List complete".to_vec(),
                }),
            ]
        );
    }

    #[test]
    fn incomplete_input_consumes_nothing() {
        let mut dec = ReplyDecoder::new(ReplyLimits::default());
        let full = b"C01 MAILBOX {6+}\r\nuser.a \"l\" \"acl\"\r\n";
        let mut buf = BytesMut::new();
        let mut answers = Vec::new();
        for &b in full {
            buf.extend_from_slice(&[b]);
            if let Some(r) = dec.decode(&mut buf).unwrap() {
                answers.push(r);
            }
        }
        assert_eq!(answers.len(), 1);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_literal_and_line_are_fatal() {
        let limits = ReplyLimits {
            max_line: 64,
            max_literal: 16,
        };
        let mut dec = ReplyDecoder::new(limits);
        let got = all(&mut dec, b"C01 MAILBOX {17+}\r\n");
        assert_eq!(got, vec![Err(ReplyError::Fatal(Fatal::LiteralTooLarge))]);
        let mut dec = ReplyDecoder::new(limits);
        let got = all(&mut dec, &[b'a'; 100]);
        assert_eq!(got, vec![Err(ReplyError::Fatal(Fatal::LineTooLong))]);
    }

    #[test]
    fn untagged_bye_and_unknown_words_are_unexpected() {
        let mut dec = ReplyDecoder::new(ReplyLimits::default());
        let got = all(&mut dec, b"* BYE \"shutting down\"\r\n");
        assert!(matches!(got.as_slice(), [Err(ReplyError::Unexpected(_))]));
        let mut dec = ReplyDecoder::new(ReplyLimits::default());
        let got = all(&mut dec, b"C01 MAILBOX \"only-a-name\"\r\n");
        assert!(matches!(got.as_slice(), [Err(ReplyError::Unexpected(_))]));
    }

    #[test]
    fn raw_lines() {
        let mut buf = BytesMut::from(&b"* OK MUPDATE \"m\"\r\nrest"[..]);
        assert_eq!(
            take_line(&mut buf, 1024).unwrap(),
            Some(b"* OK MUPDATE \"m\"".to_vec())
        );
        assert_eq!(take_line(&mut buf, 1024).unwrap(), None);
        assert_eq!(take_line(&mut buf, 4), Err(Fatal::LineTooLong));
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..64)
    }

    proptest! {
        /// What the server's encoder writes, the client decoder reads back unchanged.
        #[test]
        fn server_records_round_trip(
            name in bytes(), location in bytes(), acl in proptest::option::of(bytes())
        ) {
            // NUL is not allowed in MUPDATE strings.
            let clean = |v: Vec<u8>| v.into_iter().map(|b| b.max(1)).collect::<Vec<u8>>();
            let entry = match acl {
                Some(acl) => MailboxEntry::Active { location: clean(location), acl: clean(acl) },
                None => MailboxEntry::Reserved { location: clean(location) },
            };
            let record = Record { name: clean(name), entry };
            let mut out = Vec::new();
            response::record(&mut out, Tag::Tagged(b"T1"), &record);
            let mut dec = ReplyDecoder::new(ReplyLimits::default());
            let got = all(&mut dec, &out);
            prop_assert_eq!(got, vec![Ok(Reply::Data {
                tag: b"T1".to_vec(),
                change: Change::Upsert(record),
            })]);
        }

        /// Arbitrary input, in arbitrary pieces, never panics and never loops.
        #[test]
        fn arbitrary_input_is_safe(input in proptest::collection::vec(any::<u8>(), 0..512),
                                   cut in 1usize..64) {
            let limits = ReplyLimits { max_line: 128, max_literal: 64 };
            let mut dec = ReplyDecoder::new(limits);
            let mut buf = BytesMut::new();
            for piece in input.chunks(cut) {
                buf.extend_from_slice(piece);
                let mut stop = false;
                for _ in 0..1000 {
                    match dec.decode(&mut buf) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => { stop = true; break; }
                    }
                }
                if stop { break; }
                prop_assert!(buf.len() <= 128 + 64 + 64);
            }
        }
    }
}

//! MUPDATE responses to bytes (RFC 3656 section 3).
//!
//! * Data strings (names, locations, ACLs) go out quoted when they are short 7-bit text, else as
//!   non-synchronizing literals `{n+}` (a server never sends synchronizing literals, 2.2).
//! * Response texts are always quoted strings with `"` and `\` escaped; bytes that cannot appear
//!   in a quoted string are replaced by `?`.
//! * Data lines carry the tag of the command that asked (FIND, LIST, UPDATE); only the banner,
//!   BAD without a tag, and BYE are untagged.

use murder_model::mailbox_db::{Change, MailboxEntry, Record};

/// Longest data string sent quoted; longer ones go out as literals.
const MAX_QUOTED: usize = 1024;

/// The tag a response line starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag<'a> {
    /// The command's tag.
    Tagged(&'a [u8]),
    /// `*`.
    Untagged,
}

/// The status responses (RFC 3656 3.1-3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok,
    /// Refused.
    No,
    /// Not understood.
    Bad,
    /// Closing the connection.
    Bye,
}

impl Status {
    fn word(self) -> &'static [u8] {
        match self {
            Status::Ok => b"OK",
            Status::No => b"NO",
            Status::Bad => b"BAD",
            Status::Bye => b"BYE",
        }
    }
}

fn put_tag(out: &mut Vec<u8>, tag: Tag<'_>) {
    match tag {
        Tag::Tagged(t) => out.extend_from_slice(t),
        Tag::Untagged => out.push(b'*'),
    }
    out.push(b' ');
}

/// Append a data string: quoted if possible, else a `{n+}` literal.
pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= MAX_QUOTED
        && s.iter()
            .all(|&b| (1..0x80).contains(&b) && b != b'\r' && b != b'\n');
    if quotable {
        put_quoted(out, s);
    } else {
        out.extend_from_slice(format!("{{{}+}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// Append a quoted string, escaping `"` and `\`. Callers pass only quotable bytes.
fn put_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Append a response text as a quoted string (non-quotable bytes become `?`).
fn put_text(out: &mut Vec<u8>, text: &str) {
    let clean: Vec<u8> = text
        .bytes()
        .map(|b| if (0x20..0x7f).contains(&b) { b } else { b'?' })
        .collect();
    put_quoted(out, &clean);
}

/// `<tag> OK|NO|BAD|BYE "<text>"\r\n`.
pub fn status(out: &mut Vec<u8>, tag: Tag<'_>, status: Status, text: &str) {
    put_tag(out, tag);
    out.extend_from_slice(status.word());
    out.push(b' ');
    put_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// `<tag> MAILBOX name location acl` or `<tag> RESERVE name location` (RFC 3656 3.5, 3.6).
pub fn record(out: &mut Vec<u8>, tag: Tag<'_>, record: &Record) {
    put_tag(out, tag);
    match &record.entry {
        MailboxEntry::Active { location, acl } => {
            out.extend_from_slice(b"MAILBOX ");
            put_string(out, &record.name);
            out.push(b' ');
            put_string(out, location);
            out.push(b' ');
            put_string(out, acl);
        }
        MailboxEntry::Reserved { location } => {
            out.extend_from_slice(b"RESERVE ");
            put_string(out, &record.name);
            out.push(b' ');
            put_string(out, location);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A streamed change: MAILBOX/RESERVE, or `<tag> DELETE name` (RFC 3656 3.7).
pub fn change(out: &mut Vec<u8>, tag: Tag<'_>, change: &Change) {
    match change {
        Change::Upsert(r) => record(out, tag, r),
        Change::Delete { name } => {
            put_tag(out, tag);
            out.extend_from_slice(b"DELETE ");
            put_string(out, name);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// `+ go ahead\r\n`: the continuation for a synchronizing literal (RFC 3656 2.2).
pub const GO_AHEAD: &[u8] = b"+ go ahead\r\n";

/// What the capability banner says (RFC 3656 3.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Banner<'a> {
    /// SASL mechanisms offered, sent as atoms on the `* AUTH` line.
    pub mechanisms: &'a [&'a str],
    /// Offer STARTTLS (TLS configured and not yet active).
    pub starttls: bool,
    /// The server's host name.
    pub host: &'a str,
    /// `(master)`, or the master's `mupdate://host:port/` URL on a slave.
    pub role: &'a str,
}

/// Implementation name in the banner.
pub const IMPLEMENTATION: &str = "murder";

/// Append the whole banner.
pub fn banner(out: &mut Vec<u8>, b: &Banner<'_>) {
    out.extend_from_slice(b"* AUTH");
    for m in b.mechanisms {
        out.push(b' ');
        out.extend_from_slice(m.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if b.starttls {
        out.extend_from_slice(b"* STARTTLS\r\n");
    }
    out.extend_from_slice(b"* OK MUPDATE ");
    put_text(out, b.host);
    out.push(b' ');
    put_text(out, IMPLEMENTATION);
    out.push(b' ');
    put_text(out, env!("CARGO_PKG_VERSION"));
    out.push(b' ');
    put_text(out, b.role);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: &str, e: MailboxEntry) -> Record {
        Record {
            name: n.into(),
            entry: e,
        }
    }

    #[test]
    fn encoded_responses() {
        let mut out = Vec::new();
        status(
            &mut out,
            Tag::Tagged(b"N1"),
            Status::Ok,
            "NOOP \"done\" \\ \u{e9}\r\n",
        );
        record(
            &mut out,
            Tag::Tagged(b"F1"),
            &rec(
                "user.a",
                MailboxEntry::Active {
                    location: b"h!p".to_vec(),
                    acl: b"a\tlrs\t".to_vec(),
                },
            ),
        );
        record(
            &mut out,
            Tag::Tagged(b"F2"),
            &rec(
                "a\r\nb",
                MailboxEntry::Reserved {
                    location: b"q\"x".to_vec(),
                },
            ),
        );
        change(
            &mut out,
            Tag::Tagged(b"U1"),
            &Change::Delete {
                name: "caf\u{e9}".into(),
            },
        );
        status(&mut out, Tag::Untagged, Status::Bad, "Need command");
        insta::assert_snapshot!(String::from_utf8_lossy(&out), @r#"
        N1 OK "NOOP \"done\" \\ ????"
        F1 MAILBOX "user.a" "h!p" "a	lrs	"
        F2 RESERVE {4+}
        a
        b "q\"x"
        U1 DELETE {5+}
        café
        * BAD "Need command"
        "#);
    }

    #[test]
    fn banner_shape() {
        let mut out = Vec::new();
        banner(
            &mut out,
            &Banner {
                mechanisms: &["PLAIN", "LOGIN"],
                starttls: true,
                host: "m.test",
                role: "(master)",
            },
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with(
            "* AUTH PLAIN LOGIN\r\n* STARTTLS\r\n* OK MUPDATE \"m.test\" \"murder\" \""
        ));
        assert!(s.ends_with("\" \"(master)\"\r\n"));
    }
}

//! What a stress run records: every operation with its invocation and completion instants and
//! its parsed outcome, and every line of every UPDATE stream. The checkers ([`super::linear`],
//! [`super::streams`]) work on these values only, so they can be unit-tested on hand-written
//! histories.

use std::fmt::Write as _;

use murder_model::{Command, MailboxEntry, Record, Reply};

pub use crate::bench::client::Status;
use crate::run::exec::parse_record;
use crate::run::session::first_two;
use crate::wire::token::tokenize;
use crate::wire::visible::visible_capped;

/// A completed command as the client saw it: its status and the records (MAILBOX/RESERVE lines
/// carrying its tag) before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Tagged status.
    pub status: Status,
    /// Data lines of the command, parsed.
    pub data: Vec<Record>,
}

impl Outcome {
    /// Whether the oracle's `reply` is this outcome (OK ⇔ `Ok`, NO ⇔ any refusal, same data).
    pub fn matches(&self, reply: &Reply) -> bool {
        let status_ok = match self.status {
            Status::Ok => reply.result.is_ok(),
            Status::No => reply.result.is_err(),
            Status::Bad => false,
        };
        status_ok && self.data == reply.data
    }

    /// Parse the lines a command received before its tagged `status` (lines carrying `tag` and a
    /// MAILBOX/RESERVE word become records; `None` when such a line does not parse).
    pub fn parse(tag: &[u8], status: Status, lines: &[Vec<u8>]) -> Option<Outcome> {
        let mut data = Vec::new();
        for l in lines {
            let toks = tokenize(l);
            let (t, word) = first_two(&toks);
            if t != Some(tag) {
                continue;
            }
            let is_data = word.is_some_and(|w| {
                w.eq_ignore_ascii_case(b"MAILBOX") || w.eq_ignore_ascii_case(b"RESERVE")
            });
            if is_data {
                data.push(parse_record(&toks)?);
            }
        }
        Some(Outcome { status, data })
    }
}

/// One operation of the history.
#[derive(Clone, Debug)]
pub struct Op {
    /// Index in the history (stable, used in reports).
    pub id: usize,
    /// Client (connection) number; the final FINDs use [`FINAL_CLIENT`].
    pub client: usize,
    /// The command.
    pub command: Command,
    /// Microseconds since the run started, just before the command was sent.
    pub invoke_us: u64,
    /// Microseconds since the run started when its tagged status arrived; `None` when it never
    /// did (timeout, connection cut): it may or may not have taken effect.
    pub complete_us: Option<u64>,
    /// Parsed outcome; `None` for a pending op or one whose reply does not parse.
    pub outcome: Option<Outcome>,
    /// Bytes sent.
    pub sent: Vec<u8>,
    /// Lines received for it (its data lines and status), or the error that ended it.
    pub received: Vec<Vec<u8>>,
}

/// Bytes of one line shown in a report (the rest is counted, not printed).
pub const SHOWN_BYTES: usize = 300;

/// Client number of the FINDs issued after every writer stopped.
pub const FINAL_CLIENT: usize = usize::MAX;

impl Op {
    /// The state its name has right after it took effect, when it is a write that did (OK) or
    /// may have (pending): `Some(None)` for a DELETE, `None` for reads and refused writes.
    pub fn post_state(&self) -> Option<Option<MailboxEntry>> {
        let effective = match &self.outcome {
            Some(o) => o.status == Status::Ok,
            None => true,
        };
        if !effective {
            return None;
        }
        match &self.command {
            Command::Activate { location, acl, .. } => Some(Some(MailboxEntry::Active {
                location: location.clone(),
                acl: acl.clone(),
            })),
            Command::Reserve { location, .. } | Command::Deactivate { location, .. } => {
                Some(Some(MailboxEntry::Reserved {
                    location: location.clone(),
                }))
            }
            Command::Delete { .. } => Some(None),
            Command::Find { .. } | Command::List { .. } => None,
        }
    }

    /// True when the op completed and, whatever the state, changed nothing (a read, or a
    /// refused write): dropping it from a history cannot make a linearizable history fail.
    pub fn is_inert(&self) -> bool {
        match &self.outcome {
            Some(o) => o.status == Status::No || !self.command.is_write(),
            None => false,
        }
    }

    /// Human-readable block: client, times, bytes sent and received.
    pub fn describe(&self) -> String {
        let client = if self.client == FINAL_CLIENT {
            "final".to_string()
        } else {
            format!("c{}", self.client)
        };
        let done = match (self.complete_us, &self.outcome) {
            (None, _) => "never (pending: may or may not have taken effect)".into(),
            (Some(c), Some(_)) => ms(c),
            (Some(c), None) => format!(
                "{} (reply after the cut or not understood: treated as pending)",
                ms(c)
            ),
        };
        let mut s = format!(
            "  #{:<5} {client:<6} invoked {} completed {}\n",
            self.id,
            ms(self.invoke_us),
            done
        );
        let _ = writeln!(s, "         C: {}", visible_capped(&self.sent, SHOWN_BYTES));
        for l in &self.received {
            let _ = writeln!(s, "         S: {}", visible_capped(l, SHOWN_BYTES));
        }
        s
    }
}

/// Microseconds since `start` (the run's clock for every recorded instant).
pub fn us_since(start: tokio::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `12.345ms`.
pub fn ms(us: u64) -> String {
    format!("{:.3}ms", us as f64 / 1000.0)
}

/// One line of an UPDATE stream about a name of the run's pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamLine {
    /// Microseconds since the run started when it arrived.
    pub at_us: u64,
    /// The mailbox name.
    pub name: Vec<u8>,
    /// The state it shows (`None` for DELETE).
    pub state: Option<MailboxEntry>,
    /// The raw line.
    pub raw: Vec<u8>,
}

/// Everything one UPDATE stream showed.
#[derive(Clone, Debug, Default)]
pub struct StreamLog {
    /// Stream number.
    pub id: usize,
    /// Lines about the pool's names, in arrival order.
    pub lines: Vec<StreamLine>,
    /// Whether the NOOP barrier sent after every writer stopped was answered OK.
    pub barrier_ok: bool,
    /// Why the stream ended early, if it did.
    pub error: Option<String>,
}

/// Parse one streamed line (`tag MAILBOX ...`, `tag RESERVE ...`, `tag DELETE name`) into a
/// name and the state it shows; `None` for anything else.
pub fn parse_stream_line(tag: &[u8], line: &[u8]) -> Option<(Vec<u8>, Option<MailboxEntry>)> {
    let toks = tokenize(line);
    let (t, word) = first_two(&toks);
    if t != Some(tag) {
        return None;
    }
    let word = word?;
    if word.eq_ignore_ascii_case(b"DELETE") && toks.len() == 3 {
        let name = toks.get(2)?.token.string_value()?.to_vec();
        return Some((name, None));
    }
    let r = parse_record(&toks)?;
    Some((r.name, Some(r.entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stream_lines_and_outcomes() {
        let (n, s) = parse_stream_line(b"U1", b"U1 MAILBOX \"a\" \"h!p\" \"x\"").unwrap();
        assert_eq!(n, b"a");
        assert!(s.unwrap().is_active());
        assert_eq!(
            parse_stream_line(b"U1", b"U1 DELETE \"a\""),
            Some((b"a".to_vec(), None))
        );
        assert_eq!(parse_stream_line(b"U1", b"U2 DELETE \"a\""), None);
        let o = Outcome::parse(b"B3", Status::Ok, &[b"B3 RESERVE \"a\" \"h!p\"".to_vec()]).unwrap();
        assert_eq!(o.data.len(), 1);
        assert!(Outcome::parse(b"B3", Status::Ok, &[b"B3 MAILBOX \"a\"".to_vec()]).is_none());
    }
}

//! A mailbox under MULTIAPPEND (RFC 3502, with UIDPLUS RFC 4315) as a pure state machine.
//!
//! The model knows nothing of IMAP syntax: a server (or the conformance runner) parses an APPEND
//! into a list of [`AppendMessage`]s, each either acceptable or carrying the [`MessageFault`] that
//! makes the command fail, and asks [`MailStore::append`] what must happen:
//!
//! * any fault anywhere → NO (or BAD for syntax), and the mailbox is exactly as before: no message,
//!   no UID consumed (RFC 3502 6.3.11 "MUST be restored to its state before the APPEND attempt");
//! * a missing mailbox → NO with `[TRYCREATE]`, never auto-created;
//! * otherwise every message is appended at once with consecutive fresh UIDs, and the reply is
//!   `OK [APPENDUID uidvalidity uid-set]` listing exactly those UIDs in order (RFC 3502, UIDPLUS).
//!
//! Observers see EXISTS jump from N to N+k in one step: [`MailStore::append`] changes the count once.

use std::collections::BTreeMap;
use std::fmt;

/// One message argument of an APPEND command, as the parser understood it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppendMessage {
    /// Flags to set (already validated: system flags or keywords; `\Recent` excluded).
    pub flags: Vec<String>,
    /// Size of the message literal in octets.
    pub size: u64,
    /// Content fingerprint (a hash, or the bytes in small models) to check what FETCH returns.
    pub content: u64,
    /// What is wrong with this message argument, if anything.
    pub fault: Option<MessageFault>,
}

/// What makes one message argument unacceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageFault {
    /// A zero-length literal: "an error, and MUST return a NO" (RFC 3502 6.3.11); it cancels.
    ZeroLength,
    /// Larger than the server's literal limit.
    TooLarge,
    /// A flag the server cannot set (e.g. `\Recent`, an unknown system flag).
    BadFlag,
    /// An unparseable date-time.
    BadDateTime,
    /// The client broke off mid-command (connection closed, bad continuation).
    Aborted,
}

impl MessageFault {
    /// Whether the fault is a syntax error (BAD) rather than a refusal (NO). Servers may answer
    /// either for bad flags and dates (RFC 3502 lists "error in flags or date/time" under NO);
    /// a zero-length literal MUST be NO.
    pub fn allows_bad(self) -> bool {
        matches!(self, MessageFault::BadFlag | MessageFault::BadDateTime)
    }
}

/// The answer to an APPEND.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AppendOutcome {
    /// `OK [APPENDUID uid_validity uids]`.
    Ok {
        /// UIDVALIDITY of the mailbox.
        uid_validity: u32,
        /// The UIDs assigned, in message order.
        uids: Vec<u32>,
    },
    /// `NO [TRYCREATE]`: the mailbox does not exist.
    TryCreate,
    /// NO (or BAD where [`MessageFault::allows_bad`]) because of a faulty message.
    Refused(MessageFault),
}

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoredMessage {
    /// Its UID.
    pub uid: u32,
    /// Its flags.
    pub flags: Vec<String>,
    /// Its size.
    pub size: u64,
    /// Its content fingerprint.
    pub content: u64,
}

/// One mailbox: UIDVALIDITY, UIDNEXT and the messages in UID order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox {
    /// UIDVALIDITY; stable for the life of the mailbox.
    pub uid_validity: u32,
    /// The next UID to assign; never decreases.
    pub uid_next: u32,
    /// Messages in ascending UID order.
    pub messages: Vec<StoredMessage>,
}

/// The mailboxes of one IMAP server, as far as MULTIAPPEND is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MailStore {
    mailboxes: BTreeMap<String, Mailbox>,
    next_uid_validity: u32,
}

impl MailStore {
    /// An empty store.
    pub fn new() -> Self {
        MailStore {
            mailboxes: BTreeMap::new(),
            next_uid_validity: 1,
        }
    }

    /// CREATE: false when the mailbox exists already.
    pub fn create(&mut self, name: &str) -> bool {
        if self.mailboxes.contains_key(name) {
            return false;
        }
        let uid_validity = self.next_uid_validity;
        self.next_uid_validity = self.next_uid_validity.wrapping_add(1).max(1);
        self.mailboxes.insert(
            name.to_string(),
            Mailbox {
                uid_validity,
                uid_next: 1,
                messages: Vec::new(),
            },
        );
        true
    }

    /// DELETE: false when the mailbox does not exist.
    pub fn delete(&mut self, name: &str) -> bool {
        self.mailboxes.remove(name).is_some()
    }

    /// The mailbox called `name`, if any.
    pub fn mailbox(&self, name: &str) -> Option<&Mailbox> {
        self.mailboxes.get(name)
    }

    /// Put a mailbox back as recovered from disk after a restart (used by the crash models and
    /// by stores that rebuild the oracle from their files). Replaces any mailbox of that name.
    pub fn restore(&mut self, name: &str, mailbox: Mailbox) {
        self.next_uid_validity = self
            .next_uid_validity
            .max(mailbox.uid_validity.wrapping_add(1).max(1));
        self.mailboxes.insert(name.to_string(), mailbox);
    }

    /// APPEND (single or multiple): all or nothing.
    pub fn append(&mut self, name: &str, messages: &[AppendMessage]) -> AppendOutcome {
        let Some(mailbox) = self.mailboxes.get_mut(name) else {
            return AppendOutcome::TryCreate;
        };
        if let Some(fault) = messages.iter().find_map(|m| m.fault) {
            return AppendOutcome::Refused(fault);
        }
        if messages.is_empty() {
            // The grammar needs 1*append-message; a parser never produces this.
            return AppendOutcome::Refused(MessageFault::Aborted);
        }
        let mut uids = Vec::with_capacity(messages.len());
        for m in messages {
            let uid = mailbox.uid_next;
            mailbox.uid_next = mailbox.uid_next.saturating_add(1);
            mailbox.messages.push(StoredMessage {
                uid,
                flags: m.flags.clone(),
                size: m.size,
                content: m.content,
            });
            uids.push(uid);
        }
        AppendOutcome::Ok {
            uid_validity: mailbox.uid_validity,
            uids,
        }
    }

    /// EXPUNGE of the given UIDs (those flagged `\Deleted`); UIDNEXT is unchanged.
    pub fn expunge(&mut self, name: &str, uids: &[u32]) -> Vec<u32> {
        let Some(mailbox) = self.mailboxes.get_mut(name) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        mailbox.messages.retain(|m| {
            let gone = uids.contains(&m.uid);
            if gone {
                removed.push(m.uid);
            }
            !gone
        });
        removed
    }
}

/// A UIDPLUS uid-set as sent in APPENDUID: ascending runs compressed to `a:b`, joined by `,`.
/// `[3955, 3956, 3957]` → `3955:3957`; `[1, 3, 4]` → `1,3:4`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while let Some(&start) = uids.get(i) {
        let mut end = start;
        let mut j = i + 1;
        while let Some(&next) = uids.get(j) {
            if Some(next) != end.checked_add(1) {
                break;
            }
            end = next;
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end == start {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i = j;
    }
    out
}

/// Expand a uid-set (`1,3:5`, also `5:3`) into its UIDs in the order written; None if malformed
/// or containing `*` (RFC 3502: "may not contain extraneous UIDs or the symbol *").
pub fn parse_uid_set(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let parse = |x: &str| -> Option<u32> {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) || x.starts_with('0') {
                return None;
            }
            x.parse::<u32>().ok()
        };
        match part.split_once(':') {
            None => out.push(parse(part)?),
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                if hi - lo > 10_000_000 {
                    return None;
                }
                out.extend(lo..=hi);
            }
        }
    }
    Some(out)
}

impl fmt::Display for AppendOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendOutcome::Ok { uid_validity, uids } => {
                write!(f, "OK [APPENDUID {uid_validity} {}]", uid_set(uids))
            }
            AppendOutcome::TryCreate => f.write_str("NO [TRYCREATE]"),
            AppendOutcome::Refused(fault) => write!(f, "NO ({fault:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(size: u64) -> AppendMessage {
        AppendMessage {
            flags: vec![],
            size,
            content: size,
            fault: (size == 0).then_some(MessageFault::ZeroLength),
        }
    }

    #[test]
    fn append_is_all_or_nothing() {
        let mut s = MailStore::new();
        assert!(s.create("INBOX"));
        let before = s.clone();
        assert_eq!(
            s.append("INBOX", &[msg(10), msg(0), msg(5)]),
            AppendOutcome::Refused(MessageFault::ZeroLength)
        );
        assert_eq!(s, before);
        let out = s.append("INBOX", &[msg(10), msg(5), msg(7)]);
        assert_eq!(
            out,
            AppendOutcome::Ok {
                uid_validity: 1,
                uids: vec![1, 2, 3]
            }
        );
        assert_eq!(out.to_string(), "OK [APPENDUID 1 1:3]");
    }

    #[test]
    fn missing_mailbox_is_trycreate_and_not_created() {
        let mut s = MailStore::new();
        assert_eq!(s.append("nope", &[msg(3)]), AppendOutcome::TryCreate);
        assert!(s.mailbox("nope").is_none());
    }

    #[test]
    fn uids_are_never_reused_after_expunge() {
        let mut s = MailStore::new();
        s.create("m");
        s.append("m", &[msg(1), msg(2)]);
        assert_eq!(s.expunge("m", &[2]), vec![2]);
        assert_eq!(
            s.append("m", &[msg(3)]),
            AppendOutcome::Ok {
                uid_validity: 1,
                uids: vec![3]
            }
        );
    }

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[3955, 3956, 3957]), "3955:3957");
        assert_eq!(uid_set(&[1, 3, 4]), "1,3:4");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(parse_uid_set("1,3:4"), Some(vec![1, 3, 4]));
        assert_eq!(parse_uid_set("5:3"), Some(vec![3, 4, 5]));
        assert_eq!(parse_uid_set("1,*"), None);
        assert_eq!(parse_uid_set("0"), None);
        assert_eq!(parse_uid_set(""), None);
    }
}

//! `conformance verify-copy`: is a mailbox on one IMAP server a byte-for-byte copy of a mailbox
//! on another (or the same) server? Made for checking what a real MULTIAPPEND client (`mailutil
//! copy`) stored: both mailboxes are EXAMINEd and FETCHed in sequence order
//! (`UID FLAGS INTERNALDATE BODY.PEEK[]`, nothing is marked \Seen), and the first message whose
//! bytes, flags or internal date differ is reported with the byte offset and both sides made
//! visible. Uses the runner's own wire code ([`crate::wire`], [`crate::bench::client`]), never the
//! reference server's parsers. Plaintext connections (loopback CI use).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use clap::Args;

use crate::bench::BenchError;
use crate::bench::client::{Client, Status, quote};
use crate::cli::Options;
use crate::report::{EXIT_FAIL, EXIT_OK, EXIT_USAGE};
use crate::wire::token::{Spanned, Token, tokenize};
use crate::wire::visible::visible;

/// Default number of messages asked for in one FETCH (bounds the memory a batch takes).
pub const DEFAULT_BATCH: u32 = 100;
/// Bytes of context shown on each side of the first differing byte.
pub const CONTEXT: usize = 24;

/// Arguments of `conformance verify-copy`; the copy is on `--target` (logged in with `--user` /
/// `--password`).
#[derive(Debug, Clone, Args)]
pub struct VerifyCopyArgs {
    /// Server holding the original mailbox, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub source: String,
    /// User on --source.
    #[arg(long, value_name = "USER")]
    pub source_user: String,
    /// Password of --source-user.
    #[arg(long, value_name = "PASSWORD")]
    pub source_password: String,
    /// The original mailbox.
    #[arg(long, value_name = "MAILBOX")]
    pub source_mailbox: String,
    /// The copy on --target (default: the --source-mailbox name).
    #[arg(long, value_name = "MAILBOX")]
    pub target_mailbox: Option<String>,
    /// Do not compare flags (for a copier that does not preserve them).
    #[arg(long)]
    pub ignore_flags: bool,
    /// Do not compare internal dates (for a copier that does not preserve them).
    #[arg(long)]
    pub ignore_internaldate: bool,
    /// Fewer messages than this in the source fail the check (guards against comparing two
    /// empty mailboxes).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub min_messages: u32,
    /// Messages per FETCH.
    #[arg(long, default_value_t = DEFAULT_BATCH, value_name = "N")]
    pub batch: u32,
}

/// One side of the comparison: where, who, which mailbox.
#[derive(Clone, Debug)]
pub struct MailboxRef {
    /// HOST:PORT.
    pub addr: String,
    /// Login name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Mailbox name (sent as a quoted string).
    pub mailbox: String,
}

/// What to compare besides the message bytes.
#[derive(Clone, Copy, Debug)]
pub struct Compare {
    /// Compare FLAGS (without `\Recent`, case-insensitively).
    pub flags: bool,
    /// Compare INTERNALDATE (as instants: the zone may be written differently).
    pub internaldate: bool,
    /// Messages per FETCH (at least 1).
    pub batch: u32,
    /// How long any read may wait.
    pub timeout: Duration,
}

/// Why the comparison could not be made (as opposed to finding a difference).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A connection or protocol failure on one side.
    #[error("{side} {addr}: {source}")]
    Session {
        /// `source` or `target`.
        side: &'static str,
        /// The server's address.
        addr: String,
        /// What failed.
        source: BenchError,
    },
    /// A FETCH reply lacked an item or was not readable.
    #[error("{side}: {what}")]
    Unreadable {
        /// `source` or `target`.
        side: &'static str,
        /// What was wrong.
        what: String,
    },
}

/// One message as FETCHed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Its UID.
    pub uid: u32,
    /// Flags, upper-cased, sorted, `\Recent` left out.
    pub flags: Vec<String>,
    /// INTERNALDATE as written by the server.
    pub internaldate: String,
    /// BODY[].
    pub body: Vec<u8>,
}

/// The first difference between the two mailboxes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// The mailboxes hold different numbers of messages (the common prefix is identical).
    Count {
        /// Messages in the source.
        source: u32,
        /// Messages in the copy.
        target: u32,
    },
    /// Message `seq` has other bytes.
    Body {
        /// Sequence number (1-based).
        seq: u32,
        /// UID in the source.
        source_uid: u32,
        /// UID in the copy.
        target_uid: u32,
        /// Offset of the first differing byte (or of the end of the shorter one).
        offset: usize,
        /// Sizes of the source and the copy.
        sizes: (usize, usize),
        /// Source bytes around `offset`, made visible.
        source_context: String,
        /// Copy bytes around `offset`, made visible.
        target_context: String,
    },
    /// Message `seq` has other flags.
    Flags {
        /// Sequence number.
        seq: u32,
        /// Source flags.
        source: Vec<String>,
        /// Copy flags.
        target: Vec<String>,
    },
    /// Message `seq` has another internal date.
    InternalDate {
        /// Sequence number.
        seq: u32,
        /// Source INTERNALDATE.
        source: String,
        /// Copy INTERNALDATE.
        target: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Count { source, target } => write!(
                f,
                "the source has {source} messages, the copy {target} (the first {} are identical)",
                source.min(target)
            ),
            Difference::Body {
                seq,
                source_uid,
                target_uid,
                offset,
                sizes,
                source_context,
                target_context,
            } => write!(
                f,
                "message {seq} (source UID {source_uid}, copy UID {target_uid}) differs at byte \
                 {offset} (sizes {} and {}):\n  source: {source_context}\n  copy:   {target_context}",
                sizes.0, sizes.1
            ),
            Difference::Flags {
                seq,
                source,
                target,
            } => write!(
                f,
                "message {seq}: flags ({}) in the source, ({}) in the copy",
                source.join(" "),
                target.join(" ")
            ),
            Difference::InternalDate {
                seq,
                source,
                target,
            } => write!(
                f,
                "message {seq}: INTERNALDATE \"{source}\" in the source, \"{target}\" in the copy"
            ),
        }
    }
}

/// The outcome of a comparison that could be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// Messages in the source.
    pub messages: u32,
    /// Bytes of the source messages compared.
    pub bytes: u64,
    /// The first difference, `None` when the copy is exact.
    pub difference: Option<Difference>,
}

/// The first differing byte of `a` and `b` (or the length of the shorter one), `None` if equal.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

fn context(bytes: &[u8], offset: usize) -> String {
    let start = offset.saturating_sub(CONTEXT);
    let end = offset.saturating_add(CONTEXT).min(bytes.len());
    let before = visible(
        bytes
            .get(start..offset.min(bytes.len()))
            .unwrap_or_default(),
    );
    let after = visible(bytes.get(offset.min(bytes.len())..end).unwrap_or_default());
    let tail = if end < bytes.len() { "..." } else { "<end>" };
    let head = if start > 0 { "..." } else { "" };
    format!("{head}{before}>>{after}{tail}")
}

/// Seconds since the epoch of an IMAP date-time `dd-Mon-yyyy hh:mm:ss +zzzz` (day may be
/// space-padded), `None` when it is not one.
pub fn date_time_seconds(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let date = parts.next()?;
    let time = parts.next()?;
    let zone = parts.next()?;
    let day: i64 = date.split('-').next()?.parse().ok()?;
    let month = month_of(date)?;
    let year: i64 = date.rsplit('-').next()?.parse().ok()?;
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    let sign = match zone.get(..1)? {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let zh: i64 = zone.get(1..3)?.parse().ok()?;
    let zm: i64 = zone.get(3..5)?.parse().ok()?;
    // Days from 1970-01-01 (proleptic Gregorian), Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - sign * (zh * 3600 + zm * 60))
}

fn month_of(date: &str) -> Option<i64> {
    let name = date.split('-').nth(1)?.to_ascii_uppercase();
    [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ]
    .iter()
    .position(|m| *m == name)
    .map(|i| i as i64 + 1)
}

/// Compare two fetched messages (sequence number `seq`).
pub fn compare_message(seq: u32, s: &Fetched, t: &Fetched, what: Compare) -> Option<Difference> {
    if let Some(offset) = first_difference(&s.body, &t.body) {
        return Some(Difference::Body {
            seq,
            source_uid: s.uid,
            target_uid: t.uid,
            offset,
            sizes: (s.body.len(), t.body.len()),
            source_context: context(&s.body, offset),
            target_context: context(&t.body, offset),
        });
    }
    if what.flags && s.flags != t.flags {
        return Some(Difference::Flags {
            seq,
            source: s.flags.clone(),
            target: t.flags.clone(),
        });
    }
    let same_date = match (
        date_time_seconds(&s.internaldate),
        date_time_seconds(&t.internaldate),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => s.internaldate == t.internaldate,
    };
    if what.internaldate && !same_date {
        return Some(Difference::InternalDate {
            seq,
            source: s.internaldate.clone(),
            target: t.internaldate.clone(),
        });
    }
    None
}

/// A logged-in connection with a mailbox EXAMINEd.
struct Side {
    name: &'static str,
    addr: String,
    client: Client,
    exists: u32,
}

impl Side {
    async fn open(
        name: &'static str,
        m: &MailboxRef,
        timeout: Duration,
    ) -> Result<Side, VerifyError> {
        let wrap = |source| VerifyError::Session {
            side: name,
            addr: m.addr.clone(),
            source,
        };
        let mut client = Client::connect(&m.addr, timeout).await.map_err(wrap)?;
        client
            .imap_login(&m.user, &m.password)
            .await
            .map_err(wrap)?;
        let (status, lines) = client
            .command(&format!("EXAMINE {}", quote(&m.mailbox)))
            .await
            .map_err(wrap)?;
        if status != Status::Ok {
            return Err(wrap(BenchError::Protocol(format!(
                "EXAMINE {} answered {status:?}",
                quote(&m.mailbox)
            ))));
        }
        let exists = lines
            .iter()
            .filter_map(|l| {
                let toks = tokenize(&l.bytes);
                match (toks.get(1).map(|t| &t.token), toks.get(2).map(|t| &t.token)) {
                    (Some(Token::Atom(n)), Some(Token::Atom(w)))
                        if w.eq_ignore_ascii_case(b"EXISTS") =>
                    {
                        std::str::from_utf8(n).ok()?.parse::<u32>().ok()
                    }
                    _ => None,
                }
            })
            .next_back()
            .unwrap_or(0);
        Ok(Side {
            name,
            addr: m.addr.clone(),
            client,
            exists,
        })
    }

    /// FETCH messages `from..=to`.
    async fn fetch(&mut self, from: u32, to: u32) -> Result<BTreeMap<u32, Fetched>, VerifyError> {
        let (status, lines) = self
            .client
            .command(&format!(
                "FETCH {from}:{to} (UID FLAGS INTERNALDATE BODY.PEEK[])"
            ))
            .await
            .map_err(|source| VerifyError::Session {
                side: self.name,
                addr: self.addr.clone(),
                source,
            })?;
        if status != Status::Ok {
            return Err(VerifyError::Unreadable {
                side: self.name,
                what: format!("FETCH {from}:{to} answered {status:?}"),
            });
        }
        let mut out: BTreeMap<u32, Fetched> = BTreeMap::new();
        for l in lines {
            let toks = tokenize(&l.bytes);
            let (Some(Token::Atom(n)), Some(Token::Atom(w)), Some(Token::List(items))) = (
                toks.get(1).map(|t| &t.token),
                toks.get(2).map(|t| &t.token),
                toks.get(3).map(|t| &t.token),
            ) else {
                continue;
            };
            if !w.eq_ignore_ascii_case(b"FETCH") {
                continue;
            }
            let Some(seq) = std::str::from_utf8(n)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            merge_items(out.entry(seq).or_default(), items);
        }
        Ok(out)
    }
}

fn atom_text(t: &Token) -> Option<String> {
    match t {
        Token::Atom(a) => Some(String::from_utf8_lossy(a).into_owned()),
        _ => None,
    }
}

/// Fold the `name value` pairs of one FETCH response into `m`.
fn merge_items(m: &mut Fetched, items: &[Spanned]) {
    let mut it = items.iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        let Some(name) = atom_text(&name.token) else {
            continue;
        };
        match name.to_ascii_uppercase().as_str() {
            "UID" => {
                if let Some(u) = atom_text(&value.token).and_then(|s| s.parse().ok()) {
                    m.uid = u;
                }
            }
            "FLAGS" => {
                if let Token::List(flags) = &value.token {
                    let mut f: Vec<String> = flags
                        .iter()
                        .filter_map(|t| atom_text(&t.token))
                        .map(|s| s.to_ascii_uppercase())
                        .filter(|s| s != "\\RECENT")
                        .collect();
                    f.sort();
                    m.flags = f;
                }
            }
            "INTERNALDATE" => {
                if let Some(v) = value.token.string_value() {
                    m.internaldate = String::from_utf8_lossy(v).trim().to_string();
                }
            }
            "BODY[]" => {
                if let Some(v) = value.token.string_value() {
                    m.body = v.to_vec();
                }
            }
            _ => {}
        }
    }
}

/// Compare `source` with its copy `target`: the report of the first difference, or an error
/// when a side cannot be read.
pub async fn verify_copy(
    source: &MailboxRef,
    target: &MailboxRef,
    what: Compare,
) -> Result<CopyReport, VerifyError> {
    let mut s = Side::open("source", source, what.timeout).await?;
    let mut t = Side::open("target", target, what.timeout).await?;
    let common = s.exists.min(t.exists);
    let batch = what.batch.max(1);
    let mut bytes = 0u64;
    let mut from = 1;
    while from <= common {
        let to = from.saturating_add(batch - 1).min(common);
        let sm = s.fetch(from, to).await?;
        let tm = t.fetch(from, to).await?;
        for seq in from..=to {
            let (Some(a), Some(b)) = (sm.get(&seq), tm.get(&seq)) else {
                let side = if sm.contains_key(&seq) {
                    "target"
                } else {
                    "source"
                };
                return Err(VerifyError::Unreadable {
                    side,
                    what: format!("no FETCH response for message {seq}"),
                });
            };
            bytes += a.body.len() as u64;
            if let Some(d) = compare_message(seq, a, b, what) {
                return Ok(CopyReport {
                    messages: s.exists,
                    bytes,
                    difference: Some(d),
                });
            }
        }
        from = to.saturating_add(1);
        if to == u32::MAX {
            break;
        }
    }
    for side in [&mut s, &mut t] {
        let _ = side.client.command("LOGOUT").await;
    }
    let difference = (s.exists != t.exists).then_some(Difference::Count {
        source: s.exists,
        target: t.exists,
    });
    Ok(CopyReport {
        messages: s.exists,
        bytes,
        difference,
    })
}

/// `conformance verify-copy`: prints `VERIFY-COPY ok ...` or the first difference; exit 0 when
/// the copy is exact, 1 when it differs (or the source has fewer than --min-messages), 2 when a
/// side cannot be reached or read.
pub async fn main(o: &Options, a: &VerifyCopyArgs) -> i32 {
    let (Some(addr), Some(user)) = (o.target.as_deref(), o.user.as_deref()) else {
        eprintln!("conformance verify-copy: --target HOST:PORT and --user are required (the copy)");
        return EXIT_USAGE;
    };
    let source = MailboxRef {
        addr: a.source.clone(),
        user: a.source_user.clone(),
        password: a.source_password.clone(),
        mailbox: a.source_mailbox.clone(),
    };
    let copy = MailboxRef {
        addr: addr.to_string(),
        user: user.to_string(),
        password: o.password.clone().unwrap_or_default(),
        mailbox: a
            .target_mailbox
            .clone()
            .unwrap_or_else(|| a.source_mailbox.clone()),
    };
    let what = Compare {
        flags: !a.ignore_flags,
        internaldate: !a.ignore_internaldate,
        batch: a.batch,
        timeout: Duration::from_secs(o.timeout),
    };
    let compared = |on: bool| if on { "compared" } else { "ignored" };
    match verify_copy(&source, &copy, what).await {
        Err(e) => {
            eprintln!("conformance verify-copy: {e}");
            EXIT_USAGE
        }
        Ok(r) => match r.difference {
            Some(d) => {
                println!(
                    "VERIFY-COPY differs {}/{} -> {}/{}: {d}",
                    source.addr, source.mailbox, copy.addr, copy.mailbox
                );
                EXIT_FAIL
            }
            None if r.messages < a.min_messages => {
                println!(
                    "VERIFY-COPY differs {}/{} -> {}/{}: only {} messages in the source, \
                     --min-messages is {}",
                    source.addr,
                    source.mailbox,
                    copy.addr,
                    copy.mailbox,
                    r.messages,
                    a.min_messages
                );
                EXIT_FAIL
            }
            None => {
                println!(
                    "VERIFY-COPY ok {}/{} -> {}/{} messages={} bytes={} flags={} internaldate={}",
                    source.addr,
                    source.mailbox,
                    copy.addr,
                    copy.mailbox,
                    r.messages,
                    r.bytes,
                    compared(what.flags),
                    compared(what.internaldate)
                );
                EXIT_OK
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_compare_as_instants() {
        let a = date_time_seconds("25-Nov-2026 15:30:00 +0000").unwrap();
        let b = date_time_seconds("25-Nov-2026 16:30:00 +0100").unwrap();
        let c = date_time_seconds(" 5-Jan-1970 00:00:00 +0000").unwrap();
        assert_eq!(a, b);
        assert_eq!(c, 4 * 86_400);
        assert_eq!(
            date_time_seconds("01-Mar-2000 00:00:00 +0000"),
            Some(951_868_800)
        );
        assert_eq!(date_time_seconds("garbage"), None);
    }

    #[test]
    fn first_difference_and_context() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"abc", b"ab"), Some(2));
        assert_eq!(context(b"a\r\nb", 1), "a>>\\r\\nb<end>");
    }
}

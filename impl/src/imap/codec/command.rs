//! Typed IMAP commands and their parser (everything but APPEND's message literals, which the
//! session streams; see [`parse_append_message`] for the per-message part of APPEND).

use super::datetime::{InternalDate, parse_search_date};
use super::parser::{Cursor, PResult, Piece, SyntaxError, is_astring_char, is_atom_char};

/// A sequence-set range bound: a number or `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqBound {
    /// A number.
    Num(u32),
    /// `*`: the largest number in use.
    Star,
}

/// `sequence-set` (RFC 3501 9): ranges of message numbers or UIDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceSet(pub Vec<(SeqBound, SeqBound)>);

impl SequenceSet {
    /// Whether `n` is in the set, given the value of `*`.
    pub fn contains(&self, n: u32, star: u32) -> bool {
        let v = |b: SeqBound| match b {
            SeqBound::Num(x) => x,
            SeqBound::Star => star,
        };
        self.0.iter().any(|&(a, b)| {
            let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
            lo <= n && n <= hi
        })
    }

    fn parse(s: &str) -> PResult<SequenceSet> {
        let bound = |x: &str| -> PResult<SeqBound> {
            if x == "*" {
                return Ok(SeqBound::Star);
            }
            match x.parse::<u32>() {
                Ok(n) if n > 0 && !x.starts_with('+') => Ok(SeqBound::Num(n)),
                _ => Err(SyntaxError {
                    expected: "seq-number (nz-number or \"*\")",
                }),
            }
        };
        let mut out = Vec::new();
        for part in s.split(',') {
            match part.split_once(':') {
                Some((a, b)) => out.push((bound(a)?, bound(b)?)),
                None => {
                    let b = bound(part)?;
                    out.push((b, b));
                }
            }
        }
        Ok(SequenceSet(out))
    }
}

/// A body section specifier `BODY[...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Section {
    /// `[]`: the whole message.
    Full,
    /// `[HEADER]`.
    Header,
    /// `[HEADER.FIELDS (..)]` or `[HEADER.FIELDS.NOT (..)]`.
    HeaderFields {
        /// Whether `.NOT`.
        not: bool,
        /// Field names (upper-cased).
        fields: Vec<String>,
    },
    /// `[TEXT]`.
    Text,
    /// `[1]` of a single-part message: its body; `[1.MIME]` unsupported.
    Part1,
}

/// A FETCH data item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAttr {
    /// FLAGS.
    Flags,
    /// INTERNALDATE.
    InternalDate,
    /// RFC822.SIZE.
    Rfc822Size,
    /// UID.
    Uid,
    /// ENVELOPE.
    Envelope,
    /// BODY (non-extensible structure).
    Body,
    /// BODYSTRUCTURE.
    BodyStructure,
    /// RFC822 (= BODY[]).
    Rfc822,
    /// `RFC822.HEADER` (= `BODY.PEEK[HEADER]`).
    Rfc822Header,
    /// `RFC822.TEXT` (= `BODY[TEXT]`).
    Rfc822Text,
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`.
    BodySection {
        /// The section.
        section: Section,
        /// `<origin.count>`.
        partial: Option<(u32, u32)>,
        /// BODY.PEEK (does not set \Seen).
        peek: bool,
        /// The section text as the client wrote it (echoed in the response).
        label: String,
    },
}

/// How STORE changes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// FLAGS: replace.
    Replace,
    /// +FLAGS: add.
    Add,
    /// -FLAGS: remove.
    Remove,
}

/// A SEARCH key (the subset supported).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    /// ALL.
    All,
    /// A flag that must be set (`SEEN` → `\Seen`, `KEYWORD k` → `k`).
    Flag(String),
    /// A flag that must not be set.
    NotFlag(String),
    /// NEW = RECENT UNSEEN.
    New,
    /// RECENT.
    Recent,
    /// OLD.
    Old,
    /// A sequence set.
    Seq(SequenceSet),
    /// UID set.
    Uid(SequenceSet),
    /// LARGER n.
    Larger(u32),
    /// SMALLER n.
    Smaller(u32),
    /// NOT key.
    Not(Box<SearchKey>),
    /// OR a b.
    Or(Box<SearchKey>, Box<SearchKey>),
    /// A parenthesized list (AND).
    And(Vec<SearchKey>),
    /// BEFORE/ON/SINCE: the INTERNALDATE's date (days since 1970-01-01) compared to this one.
    InternalDate(DateCmp, i64),
    /// SENTBEFORE/SENTON/SENTSINCE: the `Date:` header's date compared to this one.
    SentDate(DateCmp, i64),
    /// HEADER name string (also SUBJECT, FROM, TO, CC, BCC): the field's unfolded value
    /// contains the string, case-insensitively (ASCII). `name` is upper-case.
    Header(String, Vec<u8>),
    /// BODY string: the body (after the header) contains the string.
    Body(Vec<u8>),
    /// TEXT string: the header or body contains the string.
    Text(Vec<u8>),
}

/// How a SEARCH date key compares a message's date with the given one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateCmp {
    /// Earlier than the date.
    Before,
    /// On the date.
    On,
    /// On or later than the date.
    Since,
}

impl DateCmp {
    /// Whether a message dated `day` matches a key for `key_day`.
    pub fn matches(self, day: i64, key_day: i64) -> bool {
        match self {
            DateCmp::Before => day < key_day,
            DateCmp::On => day == key_day,
            DateCmp::Since => day >= key_day,
        }
    }
}

/// STATUS data items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusItem {
    /// MESSAGES.
    Messages,
    /// RECENT.
    Recent,
    /// UIDNEXT.
    UidNext,
    /// UIDVALIDITY.
    UidValidity,
    /// UNSEEN.
    Unseen,
}

/// A parsed command (APPEND excluded: it is streamed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// CAPABILITY.
    Capability,
    /// NOOP.
    Noop,
    /// LOGOUT.
    Logout,
    /// STARTTLS.
    StartTls,
    /// LOGIN user password.
    Login {
        /// User name.
        user: Vec<u8>,
        /// Password.
        password: Vec<u8>,
    },
    /// AUTHENTICATE mechanism [initial-response] (SASL-IR).
    Authenticate {
        /// Mechanism name, upper-cased.
        mechanism: String,
        /// The initial response as sent (base64 or `=`).
        initial: Option<Vec<u8>>,
    },
    /// SELECT.
    Select(String),
    /// EXAMINE.
    Examine(String),
    /// CREATE.
    Create(String),
    /// DELETE.
    Delete(String),
    /// RENAME from to.
    Rename(String, String),
    /// SUBSCRIBE.
    Subscribe(String),
    /// UNSUBSCRIBE.
    Unsubscribe(String),
    /// LIST reference pattern.
    List(Vec<u8>, Vec<u8>),
    /// LSUB reference pattern.
    Lsub(Vec<u8>, Vec<u8>),
    /// STATUS mailbox (items).
    Status(String, Vec<StatusItem>),
    /// CHECK.
    Check,
    /// CLOSE.
    Close,
    /// EXPUNGE.
    Expunge,
    /// `[UID] SEARCH`.
    Search {
        /// UID SEARCH.
        uid: bool,
        /// The `CHARSET` given, if any (only US-ASCII and UTF-8 are supported; the session
        /// answers `NO [BADCHARSET]` for others).
        charset: Option<String>,
        /// The keys (AND).
        keys: Vec<SearchKey>,
    },
    /// `[UID] FETCH`.
    Fetch {
        /// UID FETCH.
        uid: bool,
        /// Messages.
        set: SequenceSet,
        /// Items.
        attrs: Vec<FetchAttr>,
    },
    /// `[UID] STORE`.
    Store {
        /// UID STORE.
        uid: bool,
        /// Messages.
        set: SequenceSet,
        /// How.
        op: StoreOp,
        /// .SILENT.
        silent: bool,
        /// The flags.
        flags: Vec<String>,
    },
    /// `[UID] COPY set mailbox`.
    Copy {
        /// UID COPY.
        uid: bool,
        /// Messages.
        set: SequenceSet,
        /// Destination.
        mailbox: String,
    },
}

/// Why a command could not be parsed: the tag (if one was read) and the error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    /// The tag, when it could be read.
    pub tag: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// `tag SP command-name` at the start of a command: the tag and the upper-cased name.
pub fn parse_tag_and_name(c: &mut Cursor<'_>) -> Result<(String, String), CommandError> {
    let tag = c
        .chars(|b| is_astring_char(b) && b != b'+', "tag")
        .map_err(|e| CommandError {
            tag: None,
            message: e.to_string(),
        })?;
    let with_tag = |e: SyntaxError| CommandError {
        tag: Some(tag.clone()),
        message: e.to_string(),
    };
    c.sp().map_err(with_tag)?;
    let name = c.atom().map_err(with_tag)?.to_ascii_uppercase();
    Ok((tag, name))
}

/// Parse the arguments of command `name` (upper-case) up to the end of the command.
pub fn parse_command(name: &str, c: &mut Cursor<'_>) -> PResult<Command> {
    let cmd = match name {
        "CAPABILITY" => Command::Capability,
        "NOOP" => Command::Noop,
        "LOGOUT" => Command::Logout,
        "STARTTLS" => Command::StartTls,
        "CHECK" => Command::Check,
        "CLOSE" => Command::Close,
        "EXPUNGE" => Command::Expunge,
        "LOGIN" => {
            c.sp()?;
            let user = c.astring()?;
            c.sp()?;
            let password = c.astring()?;
            Command::Login { user, password }
        }
        "AUTHENTICATE" => {
            c.sp()?;
            let mechanism = c.atom()?.to_ascii_uppercase();
            let initial = if c.eat(b' ') {
                Some(
                    c.chars(
                        |b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
                        "initial response (base64 or \"=\")",
                    )?
                    .into_bytes(),
                )
            } else {
                None
            };
            Command::Authenticate { mechanism, initial }
        }
        "SELECT" | "EXAMINE" | "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" => {
            c.sp()?;
            let m = c.mailbox()?;
            match name {
                "SELECT" => Command::Select(m),
                "EXAMINE" => Command::Examine(m),
                "CREATE" => Command::Create(m),
                "DELETE" => Command::Delete(m),
                "SUBSCRIBE" => Command::Subscribe(m),
                _ => Command::Unsubscribe(m),
            }
        }
        "RENAME" => {
            c.sp()?;
            let from = c.mailbox()?;
            c.sp()?;
            let to = c.mailbox()?;
            Command::Rename(from, to)
        }
        "LIST" | "LSUB" => {
            c.sp()?;
            let reference = c.astring()?;
            c.sp()?;
            let pattern = c.list_mailbox()?;
            if name == "LIST" {
                Command::List(reference, pattern)
            } else {
                Command::Lsub(reference, pattern)
            }
        }
        "STATUS" => {
            c.sp()?;
            let m = c.mailbox()?;
            c.sp()?;
            if !c.eat(b'(') {
                return Err(SyntaxError {
                    expected: "\"(\" status-att list",
                });
            }
            let mut items = Vec::new();
            loop {
                let a = c.atom()?.to_ascii_uppercase();
                items.push(match a.as_str() {
                    "MESSAGES" => StatusItem::Messages,
                    "RECENT" => StatusItem::Recent,
                    "UIDNEXT" => StatusItem::UidNext,
                    "UIDVALIDITY" => StatusItem::UidValidity,
                    "UNSEEN" => StatusItem::Unseen,
                    _ => {
                        return Err(SyntaxError {
                            expected: "status-att",
                        });
                    }
                });
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
            Command::Status(m, items)
        }
        "UID" => {
            c.sp()?;
            let sub = c.atom()?.to_ascii_uppercase();
            return match sub.as_str() {
                "FETCH" | "STORE" | "SEARCH" | "COPY" => parse_uid_able(&sub, true, c),
                _ => Err(SyntaxError {
                    expected: "FETCH, STORE, SEARCH or COPY after UID",
                }),
            };
        }
        "FETCH" | "STORE" | "SEARCH" | "COPY" => return parse_uid_able(name, false, c),
        _ => {
            return Err(SyntaxError {
                expected: "a known command",
            });
        }
    };
    c.end()?;
    Ok(cmd)
}

fn sequence_set(c: &mut Cursor<'_>) -> PResult<SequenceSet> {
    let s = c.chars(
        |b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*'),
        "sequence-set",
    )?;
    SequenceSet::parse(&s)
}

fn parse_uid_able(name: &str, uid: bool, c: &mut Cursor<'_>) -> PResult<Command> {
    c.sp()?;
    let cmd = match name {
        "FETCH" => {
            let set = sequence_set(c)?;
            c.sp()?;
            let attrs = fetch_attrs(c)?;
            Command::Fetch { uid, set, attrs }
        }
        "STORE" => {
            let set = sequence_set(c)?;
            c.sp()?;
            let item = c
                .chars(|b| is_atom_char(b) || b == b'+', "store-att-flags")?
                .to_ascii_uppercase();
            let (op, rest) = match item.strip_prefix('+') {
                Some(r) => (StoreOp::Add, r),
                None => match item.strip_prefix('-') {
                    Some(r) => (StoreOp::Remove, r),
                    None => (StoreOp::Replace, item.as_str()),
                },
            };
            let silent = match rest {
                "FLAGS" => false,
                "FLAGS.SILENT" => true,
                _ => {
                    return Err(SyntaxError {
                        expected: "[+|-]FLAGS[.SILENT]",
                    });
                }
            };
            c.sp()?;
            let flags = if c.peek_is(b'(') {
                c.flag_list()?
            } else {
                let mut v = vec![c.flag()?];
                while c.eat(b' ') {
                    v.push(c.flag()?);
                }
                v
            };
            Command::Store {
                uid,
                set,
                op,
                silent,
                flags,
            }
        }
        "COPY" => {
            let set = sequence_set(c)?;
            c.sp()?;
            let mailbox = c.mailbox()?;
            Command::Copy { uid, set, mailbox }
        }
        _ => {
            // SEARCH [CHARSET astring SP] keys
            let mut keys = Vec::new();
            let mut charset = None;
            let first = c.clone();
            if let Ok(a) = c.atom()
                && a.eq_ignore_ascii_case("CHARSET")
            {
                c.sp()?;
                charset = Some(String::from_utf8_lossy(&c.astring()?).into_owned());
                c.sp()?;
            } else {
                *c = first;
            }
            loop {
                keys.push(search_key(c, 0)?);
                if !c.eat(b' ') {
                    break;
                }
            }
            Command::Search { uid, charset, keys }
        }
    };
    c.end()?;
    Ok(cmd)
}

fn search_key(c: &mut Cursor<'_>, depth: u32) -> PResult<SearchKey> {
    if depth > 32 {
        return Err(SyntaxError {
            expected: "search keys nested at most 32 deep",
        });
    }
    if c.eat(b'(') {
        let mut v = Vec::new();
        loop {
            v.push(search_key(c, depth + 1)?);
            if c.eat(b')') {
                return Ok(SearchKey::And(v));
            }
            c.sp()?;
        }
    }
    if c.peek_is(b'*') || c.rest().first().is_some_and(u8::is_ascii_digit) {
        return Ok(SearchKey::Seq(sequence_set(c)?));
    }
    let word = c.atom()?.to_ascii_uppercase();
    let flag = |f: &str| Ok(SearchKey::Flag(f.to_string()));
    let not_flag = |f: &str| Ok(SearchKey::NotFlag(f.to_string()));
    match word.as_str() {
        "ALL" => Ok(SearchKey::All),
        "ANSWERED" => flag("\\Answered"),
        "DELETED" => flag("\\Deleted"),
        "DRAFT" => flag("\\Draft"),
        "FLAGGED" => flag("\\Flagged"),
        "SEEN" => flag("\\Seen"),
        "UNANSWERED" => not_flag("\\Answered"),
        "UNDELETED" => not_flag("\\Deleted"),
        "UNDRAFT" => not_flag("\\Draft"),
        "UNFLAGGED" => not_flag("\\Flagged"),
        "UNSEEN" => not_flag("\\Seen"),
        "NEW" => Ok(SearchKey::New),
        "OLD" => Ok(SearchKey::Old),
        "RECENT" => Ok(SearchKey::Recent),
        "KEYWORD" | "UNKEYWORD" => {
            c.sp()?;
            let k = c.atom()?;
            if word == "KEYWORD" {
                Ok(SearchKey::Flag(k))
            } else {
                Ok(SearchKey::NotFlag(k))
            }
        }
        "UID" => {
            c.sp()?;
            Ok(SearchKey::Uid(sequence_set(c)?))
        }
        "LARGER" | "SMALLER" => {
            c.sp()?;
            let n = c.number()?;
            Ok(if word == "LARGER" {
                SearchKey::Larger(n)
            } else {
                SearchKey::Smaller(n)
            })
        }
        "NOT" => {
            c.sp()?;
            Ok(SearchKey::Not(Box::new(search_key(c, depth + 1)?)))
        }
        "OR" => {
            c.sp()?;
            let a = search_key(c, depth + 1)?;
            c.sp()?;
            let b = search_key(c, depth + 1)?;
            Ok(SearchKey::Or(Box::new(a), Box::new(b)))
        }
        "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
            c.sp()?;
            let day = parse_search_date(&c.astring()?).ok_or(SyntaxError {
                expected: "a date (d-Mon-yyyy)",
            })?;
            let cmp = match word.trim_start_matches("SENT") {
                "BEFORE" => DateCmp::Before,
                "ON" => DateCmp::On,
                _ => DateCmp::Since,
            };
            Ok(if word.starts_with("SENT") {
                SearchKey::SentDate(cmp, day)
            } else {
                SearchKey::InternalDate(cmp, day)
            })
        }
        "SUBJECT" | "FROM" | "TO" | "CC" | "BCC" => {
            c.sp()?;
            Ok(SearchKey::Header(word, c.astring()?))
        }
        "HEADER" => {
            c.sp()?;
            let name = String::from_utf8_lossy(&c.astring()?).to_ascii_uppercase();
            c.sp()?;
            Ok(SearchKey::Header(name, c.astring()?))
        }
        "BODY" => {
            c.sp()?;
            Ok(SearchKey::Body(c.astring()?))
        }
        "TEXT" => {
            c.sp()?;
            Ok(SearchKey::Text(c.astring()?))
        }
        _ => Err(SyntaxError {
            expected: "a supported search key (see RFC 3501 6.4.4)",
        }),
    }
}

fn fetch_attrs(c: &mut Cursor<'_>) -> PResult<Vec<FetchAttr>> {
    if c.eat(b'(') {
        let mut v = Vec::new();
        loop {
            v.push(fetch_att(c)?);
            if c.eat(b')') {
                return Ok(v);
            }
            c.sp()?;
        }
    }
    let save = c.clone();
    let word = c.atom()?.to_ascii_uppercase();
    use FetchAttr::*;
    match word.as_str() {
        "ALL" => Ok(vec![Flags, InternalDate, Rfc822Size, Envelope]),
        "FAST" => Ok(vec![Flags, InternalDate, Rfc822Size]),
        "FULL" => Ok(vec![Flags, InternalDate, Rfc822Size, Envelope, Body]),
        _ => {
            *c = save;
            Ok(vec![fetch_att(c)?])
        }
    }
}

fn fetch_att(c: &mut Cursor<'_>) -> PResult<FetchAttr> {
    let word = c
        .chars(|b| is_atom_char(b) && b != b'[', "fetch-att")?
        .to_ascii_uppercase();
    let simple = match word.as_str() {
        "FLAGS" => Some(FetchAttr::Flags),
        "INTERNALDATE" => Some(FetchAttr::InternalDate),
        "RFC822.SIZE" => Some(FetchAttr::Rfc822Size),
        "UID" => Some(FetchAttr::Uid),
        "ENVELOPE" => Some(FetchAttr::Envelope),
        "BODYSTRUCTURE" => Some(FetchAttr::BodyStructure),
        "RFC822" => Some(FetchAttr::Rfc822),
        "RFC822.HEADER" => Some(FetchAttr::Rfc822Header),
        "RFC822.TEXT" => Some(FetchAttr::Rfc822Text),
        _ => None,
    };
    if let Some(a) = simple {
        return Ok(a);
    }
    let peek = match word.as_str() {
        "BODY" if !c.peek_is(b'[') => return Ok(FetchAttr::Body),
        "BODY" => false,
        "BODY.PEEK" => true,
        _ => {
            return Err(SyntaxError {
                expected: "a supported fetch-att",
            });
        }
    };
    if !c.eat(b'[') {
        return Err(SyntaxError { expected: "\"[\"" });
    }
    let (section, label) = section(c)?;
    if !c.eat(b']') {
        return Err(SyntaxError { expected: "\"]\"" });
    }
    let partial = if c.eat(b'<') {
        let a = c.number()?;
        if !c.eat(b'.') {
            return Err(SyntaxError {
                expected: "\".\" in partial",
            });
        }
        let b = c.number()?;
        if b == 0 || !c.eat(b'>') {
            return Err(SyntaxError {
                expected: "nz-number \">\" in partial",
            });
        }
        Some((a, b))
    } else {
        None
    };
    Ok(FetchAttr::BodySection {
        section,
        partial,
        peek,
        label,
    })
}

fn section(c: &mut Cursor<'_>) -> PResult<(Section, String)> {
    if c.peek_is(b']') {
        return Ok((Section::Full, String::new()));
    }
    let word = c
        .chars(|b| is_atom_char(b) && b != b'[', "section-spec")?
        .to_ascii_uppercase();
    match word.as_str() {
        "HEADER" => Ok((Section::Header, word)),
        "TEXT" => Ok((Section::Text, word)),
        "1" => Ok((Section::Part1, word)),
        "1.TEXT" => Ok((Section::Text, word)),
        "1.HEADER" => Ok((Section::Header, word)),
        "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
            c.sp()?;
            if !c.eat(b'(') {
                return Err(SyntaxError {
                    expected: "\"(\" header-list",
                });
            }
            let mut fields = Vec::new();
            loop {
                let f = c.astring()?;
                fields.push(String::from_utf8_lossy(&f).to_ascii_uppercase());
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
            let label = format!("{word} ({})", fields.join(" "));
            Ok((
                Section::HeaderFields {
                    not: word.ends_with(".NOT"),
                    fields,
                },
                label,
            ))
        }
        _ => Err(SyntaxError {
            expected: "a supported section (HEADER, HEADER.FIELDS, TEXT, 1)",
        }),
    }
}

/// The arguments of one message of an APPEND, read from the text before its literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendMessageHead {
    /// Flags as written.
    pub flags: Vec<String>,
    /// The date-time, if given.
    pub date: Option<InternalDate>,
}

/// What is wrong with the text before an APPEND message literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendHeadError {
    /// A flag list or separator is malformed (BAD).
    Syntax(SyntaxError),
    /// A syntactically quoted date-time that is not a valid date (NO or BAD).
    BadDateTime,
}

/// Parse ` [flag-list SP] [date-time SP]` which must make up all of `text` (the part between
/// the mailbox or the previous literal and the next literal announcement).
pub fn parse_append_message(text: &[u8]) -> Result<AppendMessageHead, AppendHeadError> {
    let pieces = [Piece::Text(bytes::Bytes::copy_from_slice(text))];
    let mut c = Cursor::new(&pieces);
    c.sp().map_err(AppendHeadError::Syntax)?;
    let mut head = AppendMessageHead {
        flags: Vec::new(),
        date: None,
    };
    if c.peek_is(b'(') {
        head.flags = c.flag_list().map_err(AppendHeadError::Syntax)?;
        c.sp().map_err(AppendHeadError::Syntax)?;
    }
    if c.peek_is(b'"') {
        let q = c.quoted().map_err(|_| AppendHeadError::BadDateTime)?;
        head.date = Some(InternalDate::parse(&q).ok_or(AppendHeadError::BadDateTime)?);
        c.sp().map_err(AppendHeadError::Syntax)?;
    }
    c.end().map_err(|_| {
        AppendHeadError::Syntax(SyntaxError {
            expected: "[flag-list SP] [date-time SP] literal",
        })
    })?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parse(line: &'static [u8]) -> PResult<Command> {
        let p = [Piece::Text(Bytes::from_static(line))];
        let mut c = Cursor::new(&p);
        let (_, name) = parse_tag_and_name(&mut c).unwrap();
        parse_command(&name, &mut c)
    }

    #[test]
    fn commands() {
        assert_eq!(parse(b"a NOOP").unwrap(), Command::Noop);
        assert!(parse(b"a NOOP x").is_err());
        assert_eq!(
            parse(b"a login bob \"pw\"").unwrap(),
            Command::Login {
                user: b"bob".to_vec(),
                password: b"pw".to_vec()
            }
        );
        assert_eq!(
            parse(b"a select inbox").unwrap(),
            Command::Select("INBOX".into())
        );
        let f = parse(b"a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.10>)").unwrap();
        let Command::Fetch { uid, attrs, .. } = f else {
            panic!()
        };
        assert!(uid);
        assert_eq!(attrs.len(), 2);
        assert!(parse(b"a FETCH 1 BODY[").is_err());
        assert!(parse(b"a STORE 1 +FLAGS.SILENT (\\Seen)").is_ok());
        assert!(parse(b"a SEARCH NOT DELETED UID 1:3").is_ok());
        assert!(parse(b"a SEARCH CHARSET UTF-8 ALL").is_ok());
        assert!(matches!(
            parse(b"a SEARCH CHARSET KOI8-R ALL"),
            Ok(Command::Search { charset: Some(cs), .. }) if cs == "KOI8-R"
        ));
        assert!(matches!(
            parse(b"a SEARCH ON 7-Feb-1994 SENTSINCE \"1-Jan-2000\""),
            Ok(Command::Search { keys, .. }) if keys.len() == 2
                && matches!(keys[1], SearchKey::SentDate(DateCmp::Since, _))
        ));
        assert!(parse(b"a SEARCH ON 30-Feb-1994").is_err());
        assert!(matches!(
            parse(b"a SEARCH HEADER x-Foo \"bar baz\" SUBJECT hi BODY x TEXT y"),
            Ok(Command::Search { keys, .. }) if keys[0] == SearchKey::Header("X-FOO".into(), b"bar baz".to_vec())
                && keys[1] == SearchKey::Header("SUBJECT".into(), b"hi".to_vec())
                && keys[2] == SearchKey::Body(b"x".to_vec())
                && keys[3] == SearchKey::Text(b"y".to_vec())
        ));
        assert!(parse(b"a FROB").is_err());
        assert!(parse(b"a FETCH 0 FLAGS").is_err());
    }

    #[test]
    fn append_heads() {
        assert_eq!(
            parse_append_message(b" (\\Seen) \"17-Jul-1996 02:44:25 -0700\" ")
                .unwrap()
                .flags,
            vec!["\\Seen"]
        );
        assert!(parse_append_message(b" ").is_ok());
        assert!(matches!(
            parse_append_message(b" (\\Seen "),
            Err(AppendHeadError::Syntax(_))
        ));
        assert_eq!(
            parse_append_message(b" \"99-Jul-1996 02:44:25 -0700\" "),
            Err(AppendHeadError::BadDateTime)
        );
        assert!(parse_append_message(b"x ").is_err());
    }
}

//! The MUPDATE mailbox database (RFC 3656) as a pure state machine: the oracle.
//!
//! State is an ordered map from mailbox name to [`MailboxEntry`]. [`MailboxDb::apply`] takes a
//! [`Command`] and returns the [`Reply`] the server must give and the [`Change`] (if any) that
//! every UPDATE stream must carry. The strict choices where RFC 3656 leaves room (see section 7 of
//! the implementer's note) are:
//!
//! * RESERVE of any existing name, reserved or active, at any location → NO (RFC 4.9).
//! * ACTIVATE always succeeds: create or overwrite (RFC 4.1 MUST).
//! * DEACTIVATE: NO unless the name is active; then it becomes reserved at the location given in
//!   the command and the ACL is dropped (RFC 4.3).
//! * DELETE of a missing name → NO (RFC 4.4 SHOULD).
//! * Names that cannot round-trip (empty, or containing NUL, CR or LF) → NO.
//! * LIST and UPDATE's initial dump come in Cyrus mailboxes.db order ([`cyrus_order`]), because a
//!   real Cyrus slave's resync merge drops live records under any other order.
//!
//! Everything here is I/O free and deterministic so the servers, the scenario validator, the
//! conformance runner's stress mode and the stateright models all share one definition.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

/// The state of one name in the database: a reservation or an active mailbox (RFC 3656 3.5, 3.6).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MailboxEntry {
    /// Reserved at `location` (RESERVE response: name and location, no ACL).
    Reserved {
        /// Opaque location, usually `server!partition`.
        location: Vec<u8>,
    },
    /// Active at `location` with `acl` (MAILBOX response).
    Active {
        /// Opaque location, usually `server!partition`.
        location: Vec<u8>,
        /// Opaque ACL string (Cyrus backends send `id<TAB>rights<TAB>...`).
        acl: Vec<u8>,
    },
}

impl MailboxEntry {
    /// The location of the record, whatever its state.
    pub fn location(&self) -> &[u8] {
        match self {
            MailboxEntry::Reserved { location } | MailboxEntry::Active { location, .. } => location,
        }
    }

    /// True for an active mailbox.
    pub fn is_active(&self) -> bool {
        matches!(self, MailboxEntry::Active { .. })
    }
}

/// A command that reads or changes the database. Session-level commands (AUTHENTICATE, NOOP,
/// LOGOUT, STARTTLS, UPDATE's registration) belong to [`crate::session`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    /// `ACTIVATE name location acl` (RFC 3656 4.1).
    Activate {
        /// Mailbox name.
        name: Vec<u8>,
        /// New location.
        location: Vec<u8>,
        /// New ACL.
        acl: Vec<u8>,
    },
    /// `RESERVE name location` (RFC 3656 4.9).
    Reserve {
        /// Mailbox name.
        name: Vec<u8>,
        /// Location being reserved.
        location: Vec<u8>,
    },
    /// `DEACTIVATE name location` (RFC 3656 4.3).
    Deactivate {
        /// Mailbox name.
        name: Vec<u8>,
        /// Location the reservation takes.
        location: Vec<u8>,
    },
    /// `DELETE name` (RFC 3656 4.4).
    Delete {
        /// Mailbox name.
        name: Vec<u8>,
    },
    /// `FIND name` (RFC 3656 4.5).
    Find {
        /// Mailbox name.
        name: Vec<u8>,
    },
    /// `LIST [prefix]` (RFC 3656 4.6): records whose location starts with `prefix`.
    List {
        /// Location prefix; `None` lists everything.
        prefix: Option<Vec<u8>>,
    },
}

impl Command {
    /// True for the four commands that change the database (and are refused on a slave).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Command::Activate { .. }
                | Command::Reserve { .. }
                | Command::Deactivate { .. }
                | Command::Delete { .. }
        )
    }

    /// The mailbox name the command is about, if any.
    pub fn name(&self) -> Option<&[u8]> {
        match self {
            Command::Activate { name, .. }
            | Command::Reserve { name, .. }
            | Command::Deactivate { name, .. }
            | Command::Delete { name }
            | Command::Find { name } => Some(name),
            Command::List { .. } => None,
        }
    }
}

/// Why the database answers NO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// The name is empty or contains NUL, CR or LF.
    InvalidName,
    /// RESERVE of a name that already exists (RFC 3656 4.9).
    AlreadyExists,
    /// DEACTIVATE of a name that is not active (RFC 3656 4.3).
    NotActive,
    /// DEACTIVATE or DELETE of a name that does not exist (RFC 3656 4.3, 4.4).
    NoSuchMailbox,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::InvalidName => "invalid mailbox name",
            Refusal::AlreadyExists => "mailbox already exists",
            Refusal::NotActive => "mailbox not currently active",
            Refusal::NoSuchMailbox => "mailbox does not exist",
        })
    }
}

/// One data response line of FIND, LIST or UPDATE (RFC 3656 3.5, 3.6): a name and its record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    /// Mailbox name.
    pub name: Vec<u8>,
    /// Its record.
    pub entry: MailboxEntry,
}

/// What the server must answer to a [`Command`]: zero or more data lines, then OK or NO.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reply {
    /// MAILBOX/RESERVE lines, in order, each tagged with the command's tag.
    pub data: Vec<Record>,
    /// `Ok(())` for a tagged OK, `Err` for a tagged NO.
    pub result: Result<(), Refusal>,
}

impl Reply {
    fn ok() -> Self {
        Reply {
            data: Vec::new(),
            result: Ok(()),
        }
    }

    fn no(refusal: Refusal) -> Self {
        Reply {
            data: Vec::new(),
            result: Err(refusal),
        }
    }
}

/// A committed change, as every UPDATE stream must carry it (RFC 3656 3.5-3.7, 4.11).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    /// The name now has this record: a MAILBOX or RESERVE line.
    Upsert(Record),
    /// The name is gone: a DELETE line.
    Delete {
        /// Mailbox name.
        name: Vec<u8>,
    },
}

impl Change {
    /// The mailbox name the change is about.
    pub fn name(&self) -> &[u8] {
        match self {
            Change::Upsert(r) => &r.name,
            Change::Delete { name } => name,
        }
    }
}

/// True when a name can be stored and round-trip through quoted strings or literals.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.iter().any(|b| matches!(b, 0 | b'\r' | b'\n'))
}

/// Cyrus mailboxes.db order: bytewise, with the hierarchy separator `.` counted as 0x1f (just
/// below every printable byte, so children sort right after their parent). A real byte 0x1f
/// sorts right after `.`, keeping the order total.
pub fn cyrus_order(a: &[u8], b: &[u8]) -> Ordering {
    fn key(b: u8) -> u16 {
        if b == b'.' {
            0x1f * 2
        } else {
            u16::from(b) * 2 + 1
        }
    }
    a.iter().map(|&x| key(x)).cmp(b.iter().map(|&x| key(x)))
}

/// A mailbox name wrapped so that `Ord` is [`cyrus_order`]: the key of [`MailboxDb`]'s map.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CyrusKey(pub Vec<u8>);

impl Ord for CyrusKey {
    fn cmp(&self, other: &Self) -> Ordering {
        cyrus_order(&self.0, &other.0)
    }
}

impl PartialOrd for CyrusKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The whole mailbox database: the state of the oracle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MailboxDb {
    entries: BTreeMap<CyrusKey, MailboxEntry>,
}

impl MailboxDb {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record of `name`, if any.
    pub fn get(&self, name: &[u8]) -> Option<&MailboxEntry> {
        self.entries.get(&CyrusKey(name.to_vec()))
    }

    /// Every record in [`cyrus_order`].
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        self.entries.iter().map(|(k, e)| Record {
            name: k.0.clone(),
            entry: e.clone(),
        })
    }

    /// LIST: records whose location starts with `prefix` (all when `None`), in [`cyrus_order`].
    pub fn list(&self, prefix: Option<&[u8]>) -> Vec<Record> {
        self.list_records(prefix).collect()
    }

    /// [`list`](Self::list) as an iterator, for servers that stream a large answer instead of
    /// collecting it.
    pub fn list_records<'a>(
        &'a self,
        prefix: Option<&'a [u8]>,
    ) -> impl Iterator<Item = Record> + 'a {
        self.records()
            .filter(move |r| prefix.is_none_or(|p| r.entry.location().starts_with(p)))
    }

    /// Apply a command: the reply the server must give, and the change every UPDATE stream must
    /// see (None when nothing changed). The state changes only when the reply is OK.
    pub fn apply(&mut self, command: &Command) -> (Reply, Option<Change>) {
        if let Some(name) = command.name()
            && !is_valid_name(name)
        {
            // FIND of an unstorable name simply finds nothing; writes are refused.
            return if command.is_write() {
                (Reply::no(Refusal::InvalidName), None)
            } else {
                (Reply::ok(), None)
            };
        }
        match command {
            Command::Activate {
                name,
                location,
                acl,
            } => {
                let entry = MailboxEntry::Active {
                    location: location.clone(),
                    acl: acl.clone(),
                };
                (Reply::ok(), Some(self.upsert(name, entry)))
            }
            Command::Reserve { name, location } => {
                if self.get(name).is_some() {
                    return (Reply::no(Refusal::AlreadyExists), None);
                }
                let entry = MailboxEntry::Reserved {
                    location: location.clone(),
                };
                (Reply::ok(), Some(self.upsert(name, entry)))
            }
            Command::Deactivate { name, location } => match self.get(name) {
                None => (Reply::no(Refusal::NoSuchMailbox), None),
                Some(MailboxEntry::Reserved { .. }) => (Reply::no(Refusal::NotActive), None),
                Some(MailboxEntry::Active { .. }) => {
                    let entry = MailboxEntry::Reserved {
                        location: location.clone(),
                    };
                    (Reply::ok(), Some(self.upsert(name, entry)))
                }
            },
            Command::Delete { name } => match self.entries.remove(&CyrusKey(name.clone())) {
                None => (Reply::no(Refusal::NoSuchMailbox), None),
                Some(_) => (Reply::ok(), Some(Change::Delete { name: name.clone() })),
            },
            Command::Find { name } => {
                let data = self
                    .get(name)
                    .map(|e| Record {
                        name: name.clone(),
                        entry: e.clone(),
                    })
                    .into_iter()
                    .collect();
                (
                    Reply {
                        data,
                        result: Ok(()),
                    },
                    None,
                )
            }
            Command::List { prefix } => (
                Reply {
                    data: self.list(prefix.as_deref()),
                    result: Ok(()),
                },
                None,
            ),
        }
    }

    /// Apply a streamed change, as a slave does with each line of its UPDATE stream. A DELETE of
    /// an unknown name is ignored (as Cyrus's slave does).
    pub fn apply_change(&mut self, change: &Change) {
        match change {
            Change::Upsert(r) => {
                self.entries
                    .insert(CyrusKey(r.name.clone()), r.entry.clone());
            }
            Change::Delete { name } => {
                self.entries.remove(&CyrusKey(name.clone()));
            }
        }
    }

    /// Replace the whole state with an UPDATE dump (a slave's resynchronisation).
    pub fn replace_all(&mut self, records: impl IntoIterator<Item = Record>) {
        self.entries = records
            .into_iter()
            .map(|r| (CyrusKey(r.name), r.entry))
            .collect();
    }

    fn upsert(&mut self, name: &[u8], entry: MailboxEntry) -> Change {
        self.entries.insert(CyrusKey(name.to_vec()), entry.clone());
        Change::Upsert(Record {
            name: name.to_vec(),
            entry,
        })
    }
}

impl FromIterator<Record> for MailboxDb {
    fn from_iter<I: IntoIterator<Item = Record>>(iter: I) -> Self {
        let mut db = MailboxDb::new();
        db.replace_all(iter);
        db
    }
}

/// The outcomes a set of commands sent concurrently on different connections may have: for every
/// order in which a linearizable server could have executed them, the replies (indexed like
/// `commands`) and the final state. A conformance race is judged against this set, never against
/// a hand-written wildcard. Exponential in `commands.len()`; meant for a handful of commands.
pub fn concurrent_outcomes(db: &MailboxDb, commands: &[Command]) -> Vec<(Vec<Reply>, MailboxDb)> {
    let mut out: Vec<(Vec<Reply>, MailboxDb)> = Vec::new();
    let mut order: Vec<usize> = Vec::with_capacity(commands.len());
    let mut used = vec![false; commands.len()];
    permute(db, commands, &mut order, &mut used, &mut out);
    out
}

fn permute(
    db: &MailboxDb,
    commands: &[Command],
    order: &mut Vec<usize>,
    used: &mut [bool],
    out: &mut Vec<(Vec<Reply>, MailboxDb)>,
) {
    if order.len() == commands.len() {
        let mut state = db.clone();
        let mut replies: Vec<Option<Reply>> = vec![None; commands.len()];
        for &i in order.iter() {
            if let (Some(slot), Some(cmd)) = (replies.get_mut(i), commands.get(i)) {
                *slot = Some(state.apply(cmd).0);
            }
        }
        let replies: Vec<Reply> = replies.into_iter().flatten().collect();
        if !out.iter().any(|(r, s)| *r == replies && *s == state) {
            out.push((replies, state));
        }
        return;
    }
    for i in 0..commands.len() {
        if used.get(i).copied().unwrap_or(true) {
            continue;
        }
        if let Some(u) = used.get_mut(i) {
            *u = true;
        }
        order.push(i);
        permute(db, commands, order, used, out);
        order.pop();
        if let Some(u) = used.get_mut(i) {
            *u = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }
    fn activate(n: &str, l: &str, a: &str) -> Command {
        Command::Activate {
            name: b(n),
            location: b(l),
            acl: b(a),
        }
    }
    fn reserve(n: &str, l: &str) -> Command {
        Command::Reserve {
            name: b(n),
            location: b(l),
        }
    }

    #[test]
    fn reserve_then_activate_is_the_typical_create() {
        let mut db = MailboxDb::new();
        assert_eq!(db.apply(&reserve("user.a", "h!p")).0.result, Ok(()));
        let (reply, change) = db.apply(&activate("user.a", "h!p", "a\tlrs\t"));
        assert_eq!(reply.result, Ok(()));
        assert!(matches!(change, Some(Change::Upsert(_))));
        assert!(db.get(b"user.a").is_some_and(MailboxEntry::is_active));
    }

    #[test]
    fn reserve_of_any_existing_name_is_refused() {
        let mut db = MailboxDb::new();
        db.apply(&activate("x", "h!p", ""));
        for loc in ["h!p", "other!p"] {
            let (reply, change) = db.apply(&reserve("x", loc));
            assert_eq!(reply.result, Err(Refusal::AlreadyExists));
            assert_eq!(change, None);
        }
        assert!(db.get(b"x").is_some_and(MailboxEntry::is_active));
    }

    #[test]
    fn deactivate_rules() {
        let mut db = MailboxDb::new();
        let d = |n: &str, l: &str| Command::Deactivate {
            name: b(n),
            location: b(l),
        };
        assert_eq!(db.apply(&d("x", "h")).0.result, Err(Refusal::NoSuchMailbox));
        db.apply(&reserve("x", "h"));
        assert_eq!(db.apply(&d("x", "h")).0.result, Err(Refusal::NotActive));
        db.apply(&activate("y", "h1!p", "acl"));
        assert_eq!(db.apply(&d("y", "h2!q")).0.result, Ok(()));
        assert_eq!(
            db.get(b"y"),
            Some(&MailboxEntry::Reserved {
                location: b("h2!q")
            })
        );
    }

    #[test]
    fn delete_missing_is_no_and_changes_nothing() {
        let mut db = MailboxDb::new();
        let (r, c) = db.apply(&Command::Delete { name: b("nope") });
        assert_eq!(r.result, Err(Refusal::NoSuchMailbox));
        assert_eq!(c, None);
    }

    #[test]
    fn invalid_names_are_refused_for_writes_and_found_nowhere() {
        let mut db = MailboxDb::new();
        for n in [b(""), b"a\0b".to_vec(), b"a\r\nb".to_vec()] {
            let (r, _) = db.apply(&Command::Activate {
                name: n.clone(),
                location: b("h"),
                acl: b(""),
            });
            assert_eq!(r.result, Err(Refusal::InvalidName));
            let (r, _) = db.apply(&Command::Find { name: n });
            assert_eq!(r, Reply::ok());
        }
        assert!(db.is_empty());
    }

    #[test]
    fn list_is_in_cyrus_order_and_filters_by_location_prefix() {
        let mut db = MailboxDb::new();
        for n in ["ord.a0", "ord.a-b", "ord.a b", "ord.a.b", "ord.a", "ord.A"] {
            db.apply(&activate(n, "be1!x", ""));
        }
        db.apply(&reserve("other", "be2!y"));
        let names: Vec<Vec<u8>> = db.list(Some(b"be1")).into_iter().map(|r| r.name).collect();
        let expect: Vec<Vec<u8>> = ["ord.A", "ord.a", "ord.a.b", "ord.a b", "ord.a-b", "ord.a0"]
            .iter()
            .map(|s| b(s))
            .collect();
        assert_eq!(names, expect);
        assert_eq!(db.list(Some(b"be")).len(), 7);
        assert_eq!(db.list(Some(b"be2!")).len(), 1);
        assert_eq!(db.list(None).len(), 7);
    }

    #[test]
    fn reserve_race_has_exactly_one_winner_in_every_order() {
        let db = MailboxDb::new();
        let cmds: Vec<Command> = (0..3).map(|i| reserve("r", &format!("h{i}"))).collect();
        let outcomes = concurrent_outcomes(&db, &cmds);
        assert_eq!(outcomes.len(), 3);
        for (replies, _) in outcomes {
            assert_eq!(replies.iter().filter(|r| r.result.is_ok()).count(), 1);
        }
    }
}

//! The scenario's view of the MUPDATE database through the model (`murder_model`): which reply
//! each command sent so far must get. Used by the validator (statically, over every file) and by
//! the runner (for `>!` and `race`).
//!
//! Races make the outcome non-deterministic, so the simulation keeps a set of *candidates*: one
//! per serial order that leads to a different result. Every observed (or, in the validator,
//! expected) reply removes the candidates it contradicts.

use std::collections::HashMap;

use murder_model::mailbox_db::concurrent_outcomes;
use murder_model::session::{CommandKind, SessionState, Verdict, verdict};
use murder_model::{Command, MailboxDb, Record, Refusal, Reply};

use crate::wire::command::{CommandReader, Parsed, SentCommand};

/// What the model says one command must get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The database reply: data lines and OK, or NO.
    Db(Reply),
    /// The command may not run here (before login, while streaming, on a slave, bad syntax): any
    /// NO or BAD, never OK.
    Refused(&'static str),
    /// A session command that must succeed (NOOP, UPDATE registration).
    Ok,
    /// Not judged (AUTHENTICATE, LOGOUT, STARTTLS, unknown words).
    Unknown,
}

/// The status word of a command's completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// OK.
    Ok,
    /// NO.
    No,
    /// BAD.
    Bad,
    /// BYE.
    Bye,
}

impl Status {
    /// Read a status word, case-insensitively.
    pub fn from_word(w: &[u8]) -> Option<Status> {
        [
            (&b"OK"[..], Status::Ok),
            (b"NO", Status::No),
            (b"BAD", Status::Bad),
            (b"BYE", Status::Bye),
        ]
        .into_iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(w))
        .map(|(_, st)| st)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
        })
    }
}

impl Expected {
    /// Whether a completion with `status` is allowed.
    pub fn allows(&self, status: Status) -> bool {
        match self {
            Expected::Db(r) => match r.result {
                Ok(()) => status == Status::Ok,
                // A name that cannot be stored may be refused as a syntax error too.
                Err(Refusal::InvalidName) => matches!(status, Status::No | Status::Bad),
                // A well-formed command refused by the database: the RFC's answer is NO.
                Err(_) => status == Status::No,
            },
            Expected::Refused(_) => matches!(status, Status::No | Status::Bad | Status::Bye),
            Expected::Ok => status == Status::Ok,
            Expected::Unknown => true,
        }
    }

    /// A description for messages.
    pub fn describe(&self) -> String {
        match self {
            Expected::Db(r) => match &r.result {
                Ok(()) => format!("OK with {} data line(s)", r.data.len()),
                Err(refusal) => format!("NO ({refusal})"),
            },
            Expected::Refused(why) => format!("NO or BAD ({why})"),
            Expected::Ok => "OK".into(),
            Expected::Unknown => "anything".into(),
        }
    }
}

#[derive(Clone, Debug)]
struct Candidate {
    db: MailboxDb,
    replies: HashMap<(String, Vec<u8>), Expected>,
}

#[derive(Clone, Debug)]
struct ConnSim {
    state: SessionState,
    /// Writes are refused (a connection to the slave under test).
    read_only: bool,
    reader: CommandReader,
    pending_auth: Vec<Vec<u8>>,
}

/// The simulation of one MUPDATE scenario.
#[derive(Clone, Debug)]
pub struct Sim {
    slave: bool,
    /// The target is known not to offer PARTIAL-UPDATE (`needs: nocap:PARTIAL-UPDATE`), so
    /// `UPDATE "host"` is malformed rather than possibly a stream.
    no_partial_update: bool,
    conns: HashMap<String, ConnSim>,
    cands: Vec<Candidate>,
}

/// One command sent on a connection, with the key its reply is filed under.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Connection.
    pub conn: String,
    /// The command as read back.
    pub command: SentCommand,
}

impl Sim {
    /// A fresh simulation: empty database, no connection. `slave` makes writes refused.
    pub fn new(slave: bool) -> Self {
        Sim {
            slave,
            no_partial_update: false,
            conns: HashMap::new(),
            cands: vec![Candidate {
                db: MailboxDb::new(),
                replies: HashMap::new(),
            }],
        }
    }

    /// The simulation for a case whose target does not advertise PARTIAL-UPDATE
    /// (`needs: nocap:PARTIAL-UPDATE`): `UPDATE` with arguments is malformed there.
    pub fn without_partial_update(mut self) -> Self {
        self.no_partial_update = true;
        self
    }

    /// A connection was opened, logged in or not.
    pub fn open(&mut self, conn: &str, logged_in: bool) {
        self.open_on(conn, logged_in, false);
    }

    /// A connection was opened to the target, or (`on_master`) to the master of the slave under
    /// test, which writes to the same database (the slave replicates it).
    pub fn open_on(&mut self, conn: &str, logged_in: bool, on_master: bool) {
        let read_only = self.slave && !on_master;
        self.conns.insert(
            conn.to_string(),
            ConnSim {
                read_only,
                state: if logged_in {
                    SessionState::Authenticated
                } else {
                    SessionState::NotAuthenticated
                },
                reader: CommandReader::default(),
                pending_auth: Vec::new(),
            },
        );
    }

    /// The runner logged the connection in.
    pub fn logged_in(&mut self, conn: &str) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.state = SessionState::Authenticated;
        }
    }

    /// The connection is gone.
    pub fn close(&mut self, conn: &str) {
        self.conns.remove(conn);
    }

    /// Bytes written on `conn`: every complete command is applied to every candidate. Returns the
    /// commands completed by these bytes.
    pub fn sent(&mut self, conn: &str, bytes: &[u8]) -> Vec<SentCommand> {
        let Some(c) = self.conns.get_mut(conn) else {
            return Vec::new();
        };
        let slave = c.read_only;
        c.reader.push(bytes);
        let mut done = Vec::new();
        while let Some(cmd) = c.reader.next_command() {
            let (expected_fn, new_state) =
                if self.no_partial_update && matches!(cmd.parsed, Parsed::PartialUpdate) {
                    (
                        Classified::Fixed(Expected::Refused("malformed arguments")),
                        None,
                    )
                } else {
                    classify(&cmd, c.state, slave)
                };
            if let Some(s) = new_state {
                c.state = s;
            }
            if matches!(cmd.parsed, Parsed::Session(CommandKind::Authenticate))
                && c.state == SessionState::NotAuthenticated
            {
                c.pending_auth.push(cmd.tag.clone());
            }
            for cand in &mut self.cands {
                let e = match &expected_fn {
                    Classified::Db(command) => Expected::Db(cand.db.apply(command).0),
                    Classified::Fixed(e) => e.clone(),
                };
                cand.replies.insert((conn.to_string(), cmd.tag.clone()), e);
            }
            done.push(cmd);
        }
        done
    }

    /// What the candidates say the command `tag` on `conn` must get (deduplicated).
    pub fn expected(&self, conn: &str, tag: &[u8]) -> Vec<Expected> {
        let mut out: Vec<Expected> = Vec::new();
        for c in &self.cands {
            if let Some(e) = c.replies.get(&(conn.to_string(), tag.to_vec()))
                && !out.contains(e)
            {
                out.push(e.clone());
            }
        }
        out
    }

    /// True when a reply for `tag` on `conn` is still expected.
    pub fn is_pending(&self, conn: &str, tag: &[u8]) -> bool {
        self.cands
            .iter()
            .any(|c| c.replies.contains_key(&(conn.to_string(), tag.to_vec())))
    }

    /// A completion of `tag` on `conn` with one of `statuses` was seen (or is what the scenario
    /// expects). Keeps the candidates that allow it; `Err` when none does.
    pub fn completed(&mut self, conn: &str, tag: &[u8], statuses: &[Status]) -> Result<(), String> {
        let key = (conn.to_string(), tag.to_vec());
        if !self.cands.iter().any(|c| c.replies.contains_key(&key)) {
            return Ok(());
        }
        self.narrow(conn, tag, |e| statuses.iter().any(|s| e.allows(*s)))?;
        if let Some(cs) = self.conns.get_mut(conn)
            && let Some(pos) = cs.pending_auth.iter().position(|t| t == tag)
        {
            cs.pending_auth.remove(pos);
            if statuses == [Status::Ok] {
                cs.state = SessionState::Authenticated;
            }
        }
        Ok(())
    }

    /// Keep the candidates whose expectation for `tag` on `conn` satisfies `fits`, and settle
    /// that expectation. `Err` (nothing changed) when no candidate does.
    fn narrow(
        &mut self,
        conn: &str,
        tag: &[u8],
        fits: impl Fn(&Expected) -> bool,
    ) -> Result<(), String> {
        let key = (conn.to_string(), tag.to_vec());
        let keep: Vec<Candidate> = self
            .cands
            .iter()
            .filter(|c| c.replies.get(&key).is_none_or(&fits))
            .cloned()
            .collect();
        if keep.is_empty() {
            let exp: Vec<String> = self
                .expected(conn, tag)
                .iter()
                .map(Expected::describe)
                .collect();
            return Err(format!("the model requires {}", exp.join(" or ")));
        }
        self.cands = keep;
        for c in &mut self.cands {
            c.replies.remove(&key);
        }
        Ok(())
    }

    /// The whole reply (data records, restricted by `owned`, and status) of `tag` on `conn` was
    /// observed. Keeps the candidates that produce exactly this reply.
    pub fn observed_reply(
        &mut self,
        conn: &str,
        tag: &[u8],
        data: &[Record],
        status: Status,
        owned: &dyn Fn(&[u8]) -> bool,
    ) -> Result<(), String> {
        let mut sorted_obs: Vec<Record> = data.iter().filter(|r| owned(&r.name)).cloned().collect();
        sorted_obs.sort();
        let fits = |e: &Expected| {
            if !e.allows(status) {
                return false;
            }
            match e {
                Expected::Db(r) if r.result.is_ok() => {
                    let mut want: Vec<Record> =
                        r.data.iter().filter(|x| owned(&x.name)).cloned().collect();
                    want.sort();
                    want == sorted_obs
                }
                _ => sorted_obs.is_empty(),
            }
        };
        self.narrow(conn, tag, fits)
    }

    /// A data line (`MAILBOX`/`RESERVE`) of the reply to `tag` on `conn` is expected with these
    /// values (`None` = not fixed by the scenario). `Err` when no candidate has such a record.
    pub fn data_line(
        &self,
        conn: &str,
        tag: &[u8],
        active: bool,
        fields: [Option<&[u8]>; 3],
    ) -> Result<(), String> {
        let key = (conn.to_string(), tag.to_vec());
        let mut judged = false;
        for c in &self.cands {
            match c.replies.get(&key) {
                Some(Expected::Db(r)) => {
                    judged = true;
                    if r.data.iter().any(|rec| record_fits(rec, active, fields)) {
                        return Ok(());
                    }
                }
                Some(_) | None => return Ok(()),
            }
        }
        if !judged {
            return Ok(());
        }
        let word = if active { "MAILBOX" } else { "RESERVE" };
        Err(format!(
            "the model's reply has no {word} line with these values"
        ))
    }

    /// A race: each `(conn, command bytes)` is sent at once. Every candidate forks into every
    /// serial order's outcome. `Err` if a race command is not a database command the connection
    /// may run.
    pub fn race(&mut self, sends: &[(String, Vec<u8>)]) -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut cmds: Vec<Command> = Vec::new();
        let mut keys = Vec::new();
        for (conn, bytes) in sends {
            let c = self
                .conns
                .get_mut(conn)
                .ok_or_else(|| format!("{conn} is not open"))?;
            c.reader.push(bytes);
            let sent = c
                .reader
                .next_command()
                .ok_or_else(|| format!("{conn}: the race line is not a complete command"))?;
            let Parsed::Db(cmd) = sent.parsed else {
                return Err(format!(
                    "{conn}: a race line must be ACTIVATE, RESERVE, DEACTIVATE, DELETE, FIND or LIST"
                ));
            };
            if verdict(c.state, kind_of(&cmd), c.read_only) != Verdict::Run {
                return Err(format!(
                    "{conn}: the connection may not run this command here"
                ));
            }
            cmds.push(cmd);
            keys.push((conn.clone(), sent.tag));
        }
        let mut next = Vec::new();
        for cand in &self.cands {
            for (replies, db) in concurrent_outcomes(&cand.db, &cmds) {
                let mut c = Candidate {
                    db,
                    replies: cand.replies.clone(),
                };
                for (k, r) in keys.iter().zip(replies) {
                    c.replies.insert(k.clone(), Expected::Db(r));
                }
                next.push(c);
            }
        }
        self.cands = next;
        Ok(keys)
    }

    /// Drop the expectation for `tag` on `conn` without judging (the scenario judged it).
    pub fn forget(&mut self, conn: &str, tag: &[u8]) {
        let key = (conn.to_string(), tag.to_vec());
        for c in &mut self.cands {
            c.replies.remove(&key);
        }
    }

    /// Number of candidate states (1 unless a race left several possible).
    pub fn candidates(&self) -> usize {
        self.cands.len()
    }
}

fn record_fits(rec: &Record, active: bool, fields: [Option<&[u8]>; 3]) -> bool {
    use murder_model::MailboxEntry as E;
    let [name, location, acl] = fields;
    let (is_active, loc, a) = match &rec.entry {
        E::Active { location, acl } => (true, location.as_slice(), Some(acl.as_slice())),
        E::Reserved { location } => (false, location.as_slice(), None),
    };
    is_active == active
        && name.is_none_or(|n| n == rec.name.as_slice())
        && location.is_none_or(|l| l == loc)
        && (acl.is_none() || acl == a)
}

enum Classified {
    Db(Command),
    Fixed(Expected),
}

fn kind_of(c: &Command) -> CommandKind {
    match c {
        Command::Activate { .. } => CommandKind::Activate,
        Command::Reserve { .. } => CommandKind::Reserve,
        Command::Deactivate { .. } => CommandKind::Deactivate,
        Command::Delete { .. } => CommandKind::Delete,
        Command::Find { .. } => CommandKind::Find,
        Command::List { .. } => CommandKind::List,
    }
}

fn refusal(state: SessionState, kind: CommandKind, slave: bool) -> &'static str {
    match state {
        SessionState::NotAuthenticated => "not authenticated (RFC 3656 4)",
        SessionState::Streaming => "streaming after UPDATE (RFC 3656 4.11)",
        SessionState::Authenticated if slave && kind.is_write() => {
            "writes must not be issued to a slave"
        }
        SessionState::Authenticated => "not allowed after authentication",
    }
}

fn classify(
    cmd: &SentCommand,
    state: SessionState,
    slave: bool,
) -> (Classified, Option<SessionState>) {
    use Classified::Fixed;
    match &cmd.parsed {
        Parsed::Db(c) => {
            let kind = kind_of(c);
            match verdict(state, kind, slave) {
                Verdict::Run => (Classified::Db(c.clone()), None),
                _ => (Fixed(Expected::Refused(refusal(state, kind, slave))), None),
            }
        }
        Parsed::Session(kind) => match (verdict(state, *kind, slave), kind) {
            (Verdict::Run, CommandKind::Noop) => (Fixed(Expected::Ok), None),
            (Verdict::Run, CommandKind::Update) => {
                (Fixed(Expected::Ok), Some(SessionState::Streaming))
            }
            (Verdict::Run, _) => (Fixed(Expected::Unknown), None),
            (_, k) => (Fixed(Expected::Refused(refusal(state, *k, slave))), None),
        },
        Parsed::PartialUpdate => {
            let st = (state == SessionState::Authenticated).then_some(SessionState::Streaming);
            (Fixed(Expected::Unknown), st)
        }
        Parsed::Syntax(_) => (Fixed(Expected::Refused("malformed arguments")), None),
        Parsed::Unknown => (Fixed(Expected::Unknown), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_twice_second_must_be_no() {
        let mut s = Sim::new(false);
        s.open("c", true);
        s.sent("c", b"R1 RESERVE \"x\" \"h\"\r\nR2 RESERVE \"x\" \"h\"\r\n");
        assert!(s.completed("c", b"R1", &[Status::Ok]).is_ok());
        let e = s.completed("c", b"R2", &[Status::Ok]).unwrap_err();
        assert!(e.contains("mailbox already exists"), "{e}");
        assert!(s.completed("c", b"R2", &[Status::Bad]).is_err());
        assert!(s.completed("c", b"R2", &[Status::No]).is_ok());
    }

    #[test]
    fn unauthenticated_and_streaming_refusals() {
        let mut s = Sim::new(false);
        s.open("c", false);
        s.sent("c", b"F1 FIND \"x\"\r\n");
        assert!(s.completed("c", b"F1", &[Status::Ok]).is_err());
        s.open("d", true);
        s.sent(
            "d",
            b"U1 UPDATE\r\nA1 ACTIVATE \"x\" \"h\" \"\"\r\nN1 NOOP\r\n",
        );
        assert!(s.completed("d", b"U1", &[Status::Ok]).is_ok());
        assert!(s.completed("d", b"A1", &[Status::Ok]).is_err());
        assert!(s.completed("d", b"N1", &[Status::Ok]).is_ok());
    }

    #[test]
    fn race_forks_and_observation_narrows() {
        let mut s = Sim::new(false);
        s.open("a", true);
        s.open("b", true);
        s.race(&[
            ("a".into(), b"R1 RESERVE \"x\" \"h1\"\r\n".to_vec()),
            ("b".into(), b"R2 RESERVE \"x\" \"h2\"\r\n".to_vec()),
        ])
        .unwrap();
        assert_eq!(s.candidates(), 2);
        s.observed_reply("a", b"R1", &[], Status::No, &|_| true)
            .unwrap();
        assert_eq!(s.candidates(), 1);
        assert!(
            s.observed_reply("b", b"R2", &[], Status::No, &|_| true)
                .is_err()
        );
        s.observed_reply("b", b"R2", &[], Status::Ok, &|_| true)
            .unwrap();
        s.sent("a", b"F1 FIND \"x\"\r\n");
        assert!(
            s.data_line("a", b"F1", false, [Some(b"x"), Some(b"h2"), None])
                .is_ok()
        );
        assert!(
            s.data_line("a", b"F1", false, [Some(b"x"), Some(b"h1"), None])
                .is_err()
        );
    }

    #[test]
    fn slave_refuses_writes() {
        let mut s = Sim::new(true);
        s.open("c", true);
        s.sent("c", b"A1 ACTIVATE \"x\" \"h\" \"\"\r\n");
        assert!(s.completed("c", b"A1", &[Status::Ok]).is_err());
    }
}

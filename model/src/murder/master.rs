//! The MUPDATE master actor: the oracle's database plus durable commit, subscribers and a
//! flush queue.

use std::collections::BTreeMap;

use stateright::actor::{Id, Out};

use super::{Bugs, Durable, Msg, MurderActor, Timer};
use crate::mailbox_db::{Change, Command, MailboxDb, Record};

/// The master's state. `db` and `history` are saved before any OK leaves (durable commit); the
/// rest is volatile.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MasterState {
    /// The database (the oracle).
    pub db: MailboxDb,
    /// Every committed change in order; `history.len()` is the change sequence number.
    pub history: Vec<Change>,
    /// How much of `history` has been flushed to subscribers.
    pub streamed: u8,
    /// UPDATE subscribers: slave id → (connection, sequence number of its dump).
    pub subs: BTreeMap<Id, (u8, u8)>,
    /// Restarts so far.
    pub restarts: u8,
    /// `history.len()` as saved (differs from it only under [`Bugs::ok_before_commit`]).
    pub durable_len: u8,
}

impl MasterState {
    /// The change sequence number.
    pub fn seq(&self) -> u8 {
        u8::try_from(self.history.len()).unwrap_or(u8::MAX)
    }

    fn durable(&self) -> Durable {
        Durable::Master {
            db: self.db.clone(),
            history: self.history.clone(),
            restarts: self.restarts,
        }
    }
}

/// Start or restart: reload the durable database; on restart reset every peer connection.
pub fn on_start(
    _bugs: Bugs,
    peers: &[Id],
    storage: &Option<Durable>,
    o: &mut Out<MurderActor>,
) -> MasterState {
    let (db, history, restarts) = match storage {
        Some(Durable::Master {
            db,
            history,
            restarts,
        }) => (db.clone(), history.clone(), restarts.saturating_add(1)),
        _ => (MailboxDb::new(), Vec::new(), 0),
    };
    let mut s = MasterState {
        db,
        history,
        streamed: 0,
        subs: BTreeMap::new(),
        restarts,
        durable_len: 0,
    };
    s.streamed = s.seq();
    s.durable_len = s.seq();
    o.save(s.durable());
    if restarts > 0 {
        o.broadcast(peers, &Msg::Reset);
    }
    s
}

/// Handle one message; true when the state changed (or messages were sent).
pub fn on_msg(
    bugs: Bugs,
    s: &mut MasterState,
    src: Id,
    msg: Msg,
    o: &mut Out<MurderActor>,
) -> bool {
    match msg {
        Msg::Request { conn, cmd } => {
            let (reply, change) = apply(bugs, &mut s.db, &cmd);
            if let Some(change) = change {
                s.history.push(change);
                if !bugs.ok_before_commit {
                    o.save(s.durable());
                    s.durable_len = s.seq();
                }
                o.set_timer(Timer::Flush, stateright::actor::model_timeout());
            }
            o.send(src, Msg::Response { conn, reply });
            true
        }
        Msg::Update { conn } => {
            let records: Vec<Record> = s.db.list(None);
            let seq = s.seq();
            o.send(src, Msg::Dump { conn, seq, records });
            s.subs.insert(src, (conn, seq));
            true
        }
        Msg::Noop { conn } => {
            let streaming = s.subs.get(&src).is_some_and(|(c, _)| *c == conn);
            if streaming && !bugs.noop_before_flush {
                flush(bugs, s, o);
            }
            let floor = if streaming { s.seq() } else { 0 };
            o.send(src, Msg::NoopOk { conn, floor });
            true
        }
        _ => false,
    }
}

/// Handle a timer: only [`Timer::Flush`].
pub fn on_timeout(
    bugs: Bugs,
    s: &mut MasterState,
    timer: &Timer,
    o: &mut Out<MurderActor>,
) -> bool {
    match timer {
        Timer::Flush if s.streamed < s.seq() || s.durable_len < s.seq() => {
            flush(bugs, s, o);
            true
        }
        _ => false,
    }
}

/// The oracle, or under [`Bugs::reserve_over_existing`] a master that lets RESERVE overwrite.
fn apply(
    bugs: Bugs,
    db: &mut MailboxDb,
    cmd: &Command,
) -> (crate::mailbox_db::Reply, Option<Change>) {
    if bugs.reserve_over_existing
        && let Command::Reserve { name, .. } = cmd
        && db.get(name).is_some()
    {
        db.apply(&Command::Delete { name: name.clone() });
    }
    db.apply(cmd)
}

/// Send every pending change to every subscriber that has not got it in its dump.
fn flush(bugs: Bugs, s: &mut MasterState, o: &mut Out<MurderActor>) {
    let len = s.seq();
    if bugs.coalesce_stream {
        // A name-only queue: per changed name, its record as it is now.
        let mut names: Vec<Vec<u8>> = Vec::new();
        for c in s.history.iter().skip(usize::from(s.streamed)) {
            if !names.iter().any(|n| n.as_slice() == c.name()) {
                names.push(c.name().to_vec());
            }
        }
        for (&sub, &(conn, from)) in &s.subs {
            if from >= len {
                continue;
            }
            for n in &names {
                let change = match s.db.get(n) {
                    Some(e) => Change::Upsert(Record {
                        name: n.clone(),
                        entry: e.clone(),
                    }),
                    None => Change::Delete { name: n.clone() },
                };
                o.send(
                    sub,
                    Msg::Stream {
                        conn,
                        seq: len,
                        change,
                    },
                );
            }
        }
    } else {
        for (&sub, &(conn, from)) in &s.subs {
            let start = from.max(s.streamed);
            for (i, change) in s.history.iter().enumerate().skip(usize::from(start)) {
                let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
                o.send(
                    sub,
                    Msg::Stream {
                        conn,
                        seq,
                        change: change.clone(),
                    },
                );
            }
        }
    }
    s.streamed = len;
    if s.durable_len < len {
        o.save(s.durable());
        s.durable_len = len;
    }
}

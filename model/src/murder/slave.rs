//! The MUPDATE slave actor: UPDATE, dump, stream, NOOP barrier, reconnect and resync.

use stateright::actor::{Out, model_timeout};

use super::{Bugs, Durable, Msg, MurderActor, Timer, master_id};
use crate::mailbox_db::{Change, MailboxDb};

/// Where a slave is with its master link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlaveStatus {
    /// UPDATE sent, dump not yet received: serving stale data.
    Syncing,
    /// Dump applied; following the stream.
    Streaming,
}

/// A slave's state. `db` is what its FIND/LIST clients see.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SlaveState {
    /// The local database (durable).
    pub db: MailboxDb,
    /// The current connection number (durable, bumped at every reconnect).
    pub conn: u8,
    /// Link state.
    pub status: SlaveStatus,
    /// A NOOP is outstanding.
    pub noop_pending: bool,
    /// NOOPs left in this incarnation.
    pub noops_left: u8,
    /// Link drops left (durable).
    pub drops_left: u8,
    /// Ghost: the master's sequence number when it answered this connection's last NOOP.
    pub noop_floor: Option<u8>,
    /// Restarts so far.
    pub restarts: u8,
}

impl SlaveState {
    fn durable(&self) -> Durable {
        Durable::Slave {
            db: self.db.clone(),
            conn: self.conn,
            drops: self.drops_left,
            restarts: self.restarts,
        }
    }

    /// Drop the link and send UPDATE on a fresh connection.
    fn reconnect(&mut self, o: &mut Out<MurderActor>) {
        self.conn = self.conn.saturating_add(1);
        self.status = SlaveStatus::Syncing;
        self.noop_pending = false;
        self.noop_floor = None;
        o.save(self.durable());
        o.send(master_id(), Msg::Update { conn: self.conn });
    }
}

/// Start or restart: keep the durable database, connect and UPDATE.
pub fn on_start(
    _bugs: Bugs,
    link_drops: u8,
    noops: u8,
    storage: &Option<Durable>,
    o: &mut Out<MurderActor>,
) -> SlaveState {
    let (db, conn, drops_left, restarts) = match storage {
        Some(Durable::Slave {
            db,
            conn,
            drops,
            restarts,
        }) => (db.clone(), *conn, *drops, restarts.saturating_add(1)),
        _ => (MailboxDb::new(), 0, link_drops, 0),
    };
    let mut s = SlaveState {
        db,
        conn,
        status: SlaveStatus::Syncing,
        noop_pending: false,
        noops_left: noops,
        drops_left,
        noop_floor: None,
        restarts,
    };
    s.reconnect(o);
    if s.noops_left > 0 {
        o.set_timer(Timer::Noop, model_timeout());
    }
    if s.drops_left > 0 {
        o.set_timer(Timer::DropLink, model_timeout());
    }
    s
}

/// Handle one message; true when the state changed (or messages were sent).
pub fn on_msg(bugs: Bugs, s: &mut SlaveState, msg: Msg, o: &mut Out<MurderActor>) -> bool {
    match msg {
        Msg::Dump { conn, records, .. } if conn == s.conn => {
            if bugs.merge_resync {
                for r in records {
                    s.db.apply_change(&Change::Upsert(r));
                }
            } else {
                s.db.replace_all(records);
            }
            s.status = SlaveStatus::Streaming;
            o.save(s.durable());
            true
        }
        Msg::Stream { conn, change, .. }
            if conn == s.conn && s.status == SlaveStatus::Streaming =>
        {
            s.db.apply_change(&change);
            o.save(s.durable());
            true
        }
        Msg::NoopOk { conn, floor } if conn == s.conn => {
            s.noop_pending = false;
            s.noop_floor = Some(floor);
            true
        }
        Msg::Reset if !bugs.ignore_reset => {
            s.reconnect(o);
            true
        }
        _ => false,
    }
}

/// Handle a timer: send NOOP, or lose the link.
pub fn on_timeout(s: &mut SlaveState, timer: &Timer, o: &mut Out<MurderActor>) -> bool {
    match timer {
        Timer::Noop
            if s.status == SlaveStatus::Streaming && !s.noop_pending && s.noops_left > 0 =>
        {
            s.noops_left -= 1;
            s.noop_pending = true;
            o.send(master_id(), Msg::Noop { conn: s.conn });
            if s.noops_left > 0 {
                o.set_timer(Timer::Noop, model_timeout());
            }
            true
        }
        Timer::DropLink if s.drops_left > 0 => {
            s.drops_left -= 1;
            s.reconnect(o);
            if s.drops_left > 0 {
                o.set_timer(Timer::DropLink, model_timeout());
            }
            true
        }
        Timer::Noop if s.noops_left > 0 => {
            // Not streaming yet (or a NOOP is outstanding): keep the timer; a stateright no-op.
            o.set_timer(Timer::Noop, model_timeout());
            false
        }
        _ => false,
    }
}

//! A stateright model of a whole Murder: one MUPDATE master, K slaves and B backends.
//!
//! * The master ([`master`]) keeps its database in the oracle, [`crate::MailboxDb`], and answers
//!   every command with [`crate::MailboxDb::apply`]. Its durable state is the database and the
//!   committed change history (the change sequence number is the history's length); subscribers
//!   and the not-yet-streamed tail are volatile. Streams are flushed by a timer (Cyrus flushes
//!   every 5 s; RFC 3656 4.11 allows 30 s), and a NOOP from a streaming slave flushes first.
//! * A slave ([`slave`]) runs UPDATE, replaces its database with the dump, applies streamed
//!   changes, sends NOOP (the RFC 4.8 barrier) and resyncs from scratch after a lost link or a
//!   master restart. Its database is durable (Cyrus keeps it in mailboxes.db).
//! * A backend ([`backend`]) works through a plan of creates and deletes the RFC 4.9 way:
//!   RESERVE → local create → ACTIVATE; deletes are DELETE on the master, then local delete
//!   (Cyrus HEAD's order). Its local mailboxes are durable. With [`MurderConfig::repair`] it
//!   reconciles with the master at start-up and after a lost master connection in mid-operation,
//!   like Cyrus `ctl_mboxlist -m` (see [`backend`]).
//!
//! Every message travels on a per-pair FIFO channel (`Network::new_ordered`: TCP). A crash loses
//! volatile state; when the master restarts it resets every connection ([`Msg::Reset`]), which
//! is how its peers learn that their TCP connections are gone. Requests a backend sent before a
//! master crash are still served by the restarted master (the model keeps the per-pair FIFO, so
//! it is the conservative case: the effect happens although the client saw the connection die).
//!
//! [`Bugs`] turns on deliberately broken variants; each property has a test that the checker
//! finds its counterexample in at least one of them (`tests/murder_model.rs`).

pub mod backend;
pub mod master;
pub mod multiappend_model;
pub mod properties;
pub mod scenario;
pub mod slave;
pub mod symmetry;
pub mod transcript;

use std::borrow::Cow;

use stateright::actor::{Actor, ActorModel, Id, Network, Out};

use crate::mailbox_db::{Change, Command, MailboxDb, Record, Reply};

pub use backend::{BackendState, Op, Phase, RepairStep};
pub use master::MasterState;
pub use slave::{SlaveState, SlaveStatus};

/// Deliberately broken variants: each one breaks at least one property, so that a green check
/// is known to be able to fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs {
    /// The master grants RESERVE over an existing name (Cyrus's replicated mode).
    pub reserve_over_existing: bool,
    /// The master streams per name the state at flush time (Cyrus's name-only queue, 7.16),
    /// skipping intermediate states.
    pub coalesce_stream: bool,
    /// The master answers a streaming NOOP before flushing pending changes.
    pub noop_before_flush: bool,
    /// The master answers OK before the change is durable (saved only at the next flush).
    pub ok_before_commit: bool,
    /// The slave resyncs by merging the dump into its database instead of replacing it, so names
    /// deleted while it was away stay (the class of the Cyrus merge bug, 6.2).
    pub merge_resync: bool,
    /// The slave ignores a master restart (no reconnect, no resync).
    pub ignore_reset: bool,
    /// The backend deletes locally before DELETE on the master.
    pub local_delete_first: bool,
    /// Repair ACTIVATEs every held mailbox without looking at the master's list (the naive
    /// "re-ACTIVATE what it holds").
    pub blind_reactivate: bool,
    /// Cyrus HEAD's create order (spec 6.3): local create first, then RESERVE and ACTIVATE;
    /// on a failure the local mailbox is removed and no DELETE is sent.
    pub cyrus_create_order: bool,
}

/// The size and behaviour of one model instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MurderConfig {
    /// One plan per backend; backend `b` lives at location `be<b>!p`.
    pub plans: Vec<Vec<Op>>,
    /// Number of slaves.
    pub slaves: usize,
    /// Total crash budget for the whole run (each crash is followed by a restart).
    pub crashes: u8,
    /// The master may crash.
    pub crash_master: bool,
    /// Slaves may crash.
    pub crash_slaves: bool,
    /// Backends may crash.
    pub crash_backends: bool,
    /// Link losses each slave may suffer (it reconnects and resyncs).
    pub link_drops: u8,
    /// NOOPs each slave may send while streaming.
    pub noops: u8,
    /// Backends reconcile their location at start-up and after a lost connection.
    pub repair: bool,
    /// Broken variants.
    pub bugs: Bugs,
}

impl MurderConfig {
    /// The default small instance: backends 0 and 1 race to create `a`, backend 0 then deletes
    /// it; 1 slave; no crash.
    pub fn small() -> Self {
        MurderConfig {
            plans: vec![vec![Op::Create(0), Op::Delete(0)], vec![Op::Create(0)]],
            slaves: 1,
            crashes: 0,
            crash_master: false,
            crash_slaves: false,
            crash_backends: false,
            link_drops: 0,
            noops: 0,
            repair: true,
            bugs: Bugs::default(),
        }
    }

    /// `backends` backends with a create/delete/create mix over 2 names.
    pub fn sized(backends: usize, slaves: usize) -> Self {
        let plans = (0..backends)
            .map(|b| match b % 3 {
                0 => vec![Op::Create(0), Op::Delete(0)],
                1 => vec![Op::Create(0)],
                _ => vec![Op::Create(1)],
            })
            .collect();
        MurderConfig {
            plans,
            slaves,
            ..MurderConfig::small()
        }
    }

    /// Number of backends.
    pub fn backends(&self) -> usize {
        self.plans.len()
    }

    /// The actor id of slave `s` (0-based).
    pub fn slave_id(&self, s: usize) -> Id {
        Id::from(1 + s)
    }

    /// The actor id of backend `b` (0-based).
    pub fn backend_id(&self, b: usize) -> Id {
        Id::from(1 + self.slaves + b)
    }

    /// Every actor id except the master's.
    pub fn peers(&self) -> Vec<Id> {
        (1..1 + self.slaves + self.backends())
            .map(Id::from)
            .collect()
    }

    /// Build the stateright model.
    pub fn into_model(self) -> ActorModel<MurderActor, MurderConfig> {
        let peers = self.peers();
        let mut model = ActorModel::new(self.clone(), ())
            .actor(MurderActor::Master {
                bugs: self.bugs,
                peers,
            })
            .actors((0..self.slaves).map(|_| MurderActor::Slave {
                bugs: self.bugs,
                link_drops: self.link_drops,
                noops: self.noops,
            }))
            .actors(
                self.plans
                    .iter()
                    .enumerate()
                    .map(|(b, plan)| MurderActor::Backend {
                        index: b as u8,
                        plan: plan.clone(),
                        repair: self.repair,
                        bugs: self.bugs,
                    }),
            )
            .init_network(Network::new_ordered([]))
            .max_crashes(1)
            .within_boundary(properties::within_crash_budget);
        for p in properties::murder_properties(&self) {
            model = model.property(p.0, p.1, p.2);
        }
        model
    }
}

/// The mailbox name of name index `n` (`a`, `b`, ...).
pub fn name_of(n: u8) -> Vec<u8> {
    vec![b'a'.wrapping_add(n)]
}

/// The name index of a mailbox name, if it is one of the model's.
pub fn index_of(name: &[u8]) -> Option<u8> {
    match name {
        [c] if c.is_ascii_lowercase() => Some(c - b'a'),
        _ => None,
    }
}

/// The location of backend `b`: `be<b>!p`.
pub fn location_of(b: u8) -> Vec<u8> {
    format!("be{b}!p").into_bytes()
}

/// The ACL every backend activates with.
pub const ACL: &[u8] = b"anyone\tlrs\t";

/// Messages on the wire, one per MUPDATE line group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// A backend's command (ACTIVATE, RESERVE, DELETE, LIST) on connection `conn`.
    Request {
        /// The backend's connection number (echoed in the response).
        conn: u8,
        /// The command.
        cmd: Command,
    },
    /// The master's answer: data lines and OK/NO.
    Response {
        /// Echo of the request's connection number.
        conn: u8,
        /// The oracle's reply.
        reply: Reply,
    },
    /// A slave's `UPDATE` on connection `conn`.
    Update {
        /// The slave's connection number.
        conn: u8,
    },
    /// The UPDATE dump and `OK "streaming starts"`.
    Dump {
        /// Echo of the UPDATE's connection.
        conn: u8,
        /// Ghost: the master's change sequence number at the dump.
        seq: u8,
        /// Every record, in Cyrus order.
        records: Vec<Record>,
    },
    /// A streamed MAILBOX/RESERVE/DELETE line.
    Stream {
        /// The subscriber's connection.
        conn: u8,
        /// Ghost: the sequence number of the change.
        seq: u8,
        /// The change.
        change: Change,
    },
    /// A streaming slave's `NOOP`.
    Noop {
        /// The slave's connection.
        conn: u8,
    },
    /// The NOOP's OK.
    NoopOk {
        /// Echo of the NOOP's connection.
        conn: u8,
        /// Ghost: the master's sequence number when it read the NOOP.
        floor: u8,
    },
    /// The master restarted: every connection to it is gone (a TCP reset).
    Reset,
}

/// Timers: the master's stream flush, a backend's local step, a slave's NOOP and link loss.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The master flushes pending changes to its subscribers.
    Flush,
    /// A backend finishes its local create or delete.
    LocalStep,
    /// A slave sends NOOP.
    Noop,
    /// A slave's link to the master drops.
    DropLink,
}

/// Durable state (survives a crash).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Durable {
    /// The master's database and committed history.
    Master {
        /// The database.
        db: MailboxDb,
        /// Every committed change, in order (its length is the change sequence number).
        history: Vec<Change>,
        /// Restarts so far.
        restarts: u8,
    },
    /// A slave's local mailboxes.db.
    Slave {
        /// The database.
        db: MailboxDb,
        /// Last connection number used.
        conn: u8,
        /// Link drops left.
        drops: u8,
        /// Restarts so far.
        restarts: u8,
    },
    /// A backend's local mailboxes (bit `n` = name `n`).
    Backend {
        /// Held mailboxes.
        held: u8,
        /// Restarts so far.
        restarts: u8,
    },
}

impl Durable {
    /// How often this actor restarted.
    pub fn restarts(&self) -> u8 {
        match self {
            Durable::Master { restarts, .. }
            | Durable::Slave { restarts, .. }
            | Durable::Backend { restarts, .. } => *restarts,
        }
    }
}

/// The state of one actor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MurderState {
    /// The master.
    Master(MasterState),
    /// A slave.
    Slave(SlaveState),
    /// A backend.
    Backend(BackendState),
}

/// The actors of the Murder.
#[derive(Clone, Debug)]
pub enum MurderActor {
    /// The MUPDATE master (actor 0).
    Master {
        /// Broken variants.
        bugs: Bugs,
        /// Everybody it resets on restart.
        peers: Vec<Id>,
    },
    /// A MUPDATE slave.
    Slave {
        /// Broken variants.
        bugs: Bugs,
        /// Link losses allowed.
        link_drops: u8,
        /// NOOPs allowed per incarnation.
        noops: u8,
    },
    /// A backend IMAP server.
    Backend {
        /// Its index (location `be<index>!p`).
        index: u8,
        /// What it does.
        plan: Vec<Op>,
        /// Reconcile at start-up and after a lost connection.
        repair: bool,
        /// Broken variants.
        bugs: Bugs,
    },
}

/// What an actor reacts to.
enum Event<'a> {
    /// A message from an actor.
    Msg(Id, Msg),
    /// A timer fired.
    Timer(&'a Timer),
}

impl MurderActor {
    /// Dispatch an event to the role's handler; the state is replaced only when the handler
    /// reports a change (an untouched `Cow` is how stateright recognises a no-op).
    fn handle(&self, state: &mut Cow<MurderState>, ev: Event, o: &mut Out<Self>) {
        let mut next = (**state).clone();
        let changed = match (self, &mut next) {
            (MurderActor::Master { bugs, .. }, MurderState::Master(s)) => match ev {
                Event::Msg(src, msg) => master::on_msg(*bugs, s, src, msg, o),
                Event::Timer(t) => master::on_timeout(*bugs, s, t, o),
            },
            (MurderActor::Slave { bugs, .. }, MurderState::Slave(s)) => match ev {
                Event::Msg(_, msg) => slave::on_msg(*bugs, s, msg, o),
                Event::Timer(t) => slave::on_timeout(s, t, o),
            },
            (
                MurderActor::Backend {
                    index,
                    plan,
                    repair,
                    bugs,
                },
                MurderState::Backend(s),
            ) => {
                let ctx = backend::Ctx {
                    index: *index,
                    plan,
                    repair: *repair,
                    bugs: *bugs,
                };
                match ev {
                    Event::Msg(_, msg) => backend::on_msg(&ctx, s, msg, o),
                    Event::Timer(t) => backend::on_timeout(&ctx, s, t, o),
                }
            }
            _ => false,
        };
        if changed {
            *state = Cow::Owned(next);
        }
    }
}

/// The master's id (actor 0).
pub fn master_id() -> Id {
    Id::from(0)
}

impl Actor for MurderActor {
    type Msg = Msg;
    type State = MurderState;
    type Timer = Timer;
    type Storage = Durable;
    type Random = ();

    fn on_start(&self, _id: Id, storage: &Option<Durable>, o: &mut Out<Self>) -> MurderState {
        match self {
            MurderActor::Master { bugs, peers } => {
                MurderState::Master(master::on_start(*bugs, peers, storage, o))
            }
            MurderActor::Slave {
                bugs,
                link_drops,
                noops,
            } => MurderState::Slave(slave::on_start(*bugs, *link_drops, *noops, storage, o)),
            MurderActor::Backend {
                index,
                plan,
                repair,
                bugs,
            } => MurderState::Backend(backend::on_start(*index, plan, *repair, *bugs, storage, o)),
        }
    }

    fn on_msg(&self, _id: Id, state: &mut Cow<MurderState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        self.handle(state, Event::Msg(src, msg), o);
    }

    fn on_timeout(&self, _id: Id, state: &mut Cow<MurderState>, timer: &Timer, o: &mut Out<Self>) {
        self.handle(state, Event::Timer(timer), o);
    }

    fn name(&self) -> String {
        match self {
            MurderActor::Master { .. } => "master".into(),
            MurderActor::Slave { .. } => "slave".into(),
            MurderActor::Backend { index, .. } => format!("be{index}"),
        }
    }
}

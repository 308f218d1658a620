//! The properties checked on the Murder model, and the crash budget boundary.

use stateright::Expectation;
use stateright::actor::{ActorModel, ActorModelState};

use super::{
    BackendState, Durable, MasterState, MurderActor, MurderConfig, MurderState, Phase, SlaveState,
    SlaveStatus, location_of,
};
use crate::mailbox_db::{MailboxDb, MailboxEntry};

/// The model type.
pub type MurderModel = ActorModel<MurderActor, MurderConfig>;
/// A state of the whole system.
pub type SystemState = ActorModelState<MurderActor>;
/// A property condition.
pub type Condition = fn(&MurderModel, &SystemState) -> bool;

/// No two backends serve the same mailbox (no double CREATE). A backend serves a mailbox it
/// holds unless it is crashed, reconciling, or deleting that mailbox (DELETE sent or local
/// delete under way).
pub const ONE_HOLDER: &str = "no two backends serve the same mailbox";
/// An ACTIVE record at `be<b>!p` names a mailbox backend `b` holds.
pub const ACTIVE_IS_HELD: &str = "an active record is held by the backend at its location";
/// At rest: no reservation is left and every held mailbox is active at its holder.
pub const REST_CONSISTENT: &str = "at rest no reservation is left and every held mailbox is active";
/// Every database a slave shows is one the master had (a prefix of its history).
pub const SLAVE_SHOWS_MASTER_STATE: &str = "a slave only shows states the master had";
/// After a NOOP's OK a slave holds every change committed before the master read the NOOP.
pub const NOOP_BARRIER: &str = "after NOOP OK the slave has every earlier change";
/// At rest every slave equals the master (deleted names gone).
pub const REST_SLAVES_CONVERGE: &str = "at rest every slave equals the master";
/// Eventually every backend finishes its plan and every slave equals the master.
pub const EVENTUALLY_DONE: &str = "eventually backends finish and slaves converge";
/// Sometimes: a mailbox is active.
pub const SOME_ACTIVE: &str = "sometimes a mailbox is active";
/// Sometimes: a RESERVE is refused.
pub const SOME_REFUSED: &str = "sometimes a RESERVE is refused";
/// Sometimes: the system is at rest (so the at-rest properties are not vacuous).
pub const SOME_REST: &str = "sometimes the system is at rest";
/// Sometimes: a slave is streaming again after a reconnect.
pub const SOME_RESYNC: &str = "sometimes a slave resyncs after reconnecting";
/// Sometimes: an actor restarted after a crash.
pub const SOME_CRASH: &str = "sometimes a crash happens";
/// Sometimes: a slave's NOOP returned.
pub const SOME_NOOP: &str = "sometimes a NOOP returns";

/// The properties for a configuration (Sometimes-properties only where the configuration can
/// reach them).
pub fn murder_properties(cfg: &MurderConfig) -> Vec<(Expectation, &'static str, Condition)> {
    let mut v: Vec<(Expectation, &'static str, Condition)> = vec![
        (Expectation::Always, ONE_HOLDER, one_holder),
        (Expectation::Always, ACTIVE_IS_HELD, active_is_held),
        (Expectation::Always, REST_CONSISTENT, rest_consistent),
        (
            Expectation::Always,
            SLAVE_SHOWS_MASTER_STATE,
            slave_shows_master_state,
        ),
        (Expectation::Always, NOOP_BARRIER, noop_barrier),
        (
            Expectation::Always,
            REST_SLAVES_CONVERGE,
            rest_slaves_converge,
        ),
        (Expectation::Eventually, EVENTUALLY_DONE, done_and_converged),
        (Expectation::Sometimes, SOME_ACTIVE, some_active),
        (Expectation::Sometimes, SOME_REST, quiescent),
    ];
    let racers = cfg
        .plans
        .iter()
        .filter(|p| p.iter().any(|op| matches!(op, super::Op::Create(0))))
        .count();
    if racers > 1 {
        v.push((Expectation::Sometimes, SOME_REFUSED, some_refused));
    }
    if cfg.slaves > 0
        && (cfg.link_drops > 0 || (cfg.crashes > 0 && (cfg.crash_master || cfg.crash_slaves)))
    {
        v.push((Expectation::Sometimes, SOME_RESYNC, some_resync));
    }
    if cfg.crashes > 0 {
        v.push((Expectation::Sometimes, SOME_CRASH, some_crash));
    }
    if cfg.slaves > 0 && cfg.noops > 0 {
        v.push((Expectation::Sometimes, SOME_NOOP, some_noop));
    }
    v
}

/// The master's state.
pub fn master(s: &SystemState) -> Option<&MasterState> {
    match s.actor_states.first().map(|a| &**a) {
        Some(MurderState::Master(m)) => Some(m),
        _ => None,
    }
}

/// Live (not crashed) slaves.
pub fn live_slaves(s: &SystemState) -> impl Iterator<Item = &SlaveState> {
    s.actor_states
        .iter()
        .zip(&s.crashed)
        .filter(|(_, c)| !**c)
        .filter_map(|(a, _)| match &**a {
            MurderState::Slave(x) => Some(x),
            _ => None,
        })
}

/// Backends with their index.
pub fn backends(s: &SystemState) -> impl Iterator<Item = (u8, &BackendState)> {
    s.actor_states
        .iter()
        .filter_map(|a| match &**a {
            MurderState::Backend(x) => Some(x),
            _ => None,
        })
        .enumerate()
        .map(|(i, b)| (u8::try_from(i).unwrap_or(u8::MAX), b))
}

/// Durable local mailboxes of each backend.
fn held(s: &SystemState) -> impl Iterator<Item = (u8, u8)> + '_ {
    s.actor_storages
        .iter()
        .filter_map(|d| match d {
            Some(Durable::Backend { held, .. }) => Some(*held),
            _ => None,
        })
        .enumerate()
        .map(|(i, h)| (u8::try_from(i).unwrap_or(u8::MAX), h))
}

/// The database after each prefix of the master's history (index = sequence number).
pub fn prefixes(m: &MasterState) -> Vec<MailboxDb> {
    let mut out = Vec::with_capacity(m.history.len() + 1);
    let mut db = MailboxDb::new();
    out.push(db.clone());
    for c in &m.history {
        db.apply_change(c);
        out.push(db.clone());
    }
    out
}

/// Crash budget: at most `crashes` crashes in all, and only of the roles allowed to crash.
pub fn within_crash_budget(cfg: &MurderConfig, s: &SystemState) -> bool {
    let restarts: usize = s
        .actor_storages
        .iter()
        .flatten()
        .map(|d| usize::from(d.restarts()))
        .sum();
    let crashed = s.crashed.iter().filter(|c| **c).count();
    if restarts + crashed > usize::from(cfg.crashes) {
        return false;
    }
    s.crashed.iter().enumerate().all(|(i, c)| {
        !*c || if i == 0 {
            cfg.crash_master
        } else if i <= cfg.slaves {
            cfg.crash_slaves
        } else {
            cfg.crash_backends
        }
    })
}

/// At rest: nobody crashed, nothing in flight, nothing left to stream, every backend done,
/// every slave streaming.
pub fn quiescent(_: &MurderModel, s: &SystemState) -> bool {
    !s.crashed.iter().any(|c| *c)
        && s.network.len() == 0
        && master(s).is_some_and(|m| m.streamed == m.seq())
        && backends(s).all(|(_, b)| b.phase == Phase::Done)
        && live_slaves(s).all(|x| x.status == SlaveStatus::Streaming)
}

/// The mailboxes a backend serves (bit `n` for name `n`).
pub fn serves(b: &BackendState, crashed: bool) -> u8 {
    if crashed {
        return 0;
    }
    match b.phase {
        Phase::AwaitList | Phase::Repairing(_) => 0,
        // A mailbox under deletion (DELETE sent, local files not yet gone) is locked, not served.
        Phase::AwaitDelete(n) | Phase::LocalDelete(n) => b.held & !(1 << n),
        // A mailbox created locally before its RESERVE (Cyrus order) is not served yet.
        Phase::AwaitReserve(n) => b.held & !(1 << n),
        _ => b.held,
    }
}

fn one_holder(_: &MurderModel, s: &SystemState) -> bool {
    let mut seen = 0u8;
    for (a, c) in s.actor_states.iter().zip(&s.crashed) {
        if let MurderState::Backend(b) = &**a {
            let h = serves(b, *c);
            if seen & h != 0 {
                return false;
            }
            seen |= h;
        }
    }
    true
}

fn active_is_held(_: &MurderModel, s: &SystemState) -> bool {
    let Some(m) = master(s) else { return false };
    let holders: Vec<(u8, u8)> = held(s).collect();
    m.db.records().all(|r| match &r.entry {
        MailboxEntry::Active { location, .. } => holders.iter().any(|&(b, h)| {
            location_of(b) == *location
                && super::index_of(&r.name).is_some_and(|n| h & (1 << n) != 0)
        }),
        MailboxEntry::Reserved { .. } => true,
    })
}

fn rest_consistent(model: &MurderModel, s: &SystemState) -> bool {
    if !quiescent(model, s) {
        return true;
    }
    let Some(m) = master(s) else { return false };
    if m.db.records().any(|r| !r.entry.is_active()) {
        return false;
    }
    held(s).all(|(b, h)| {
        (0..8u8).filter(|n| h & (1 << n) != 0).all(|n| {
            matches!(m.db.get(&super::name_of(n)),
                Some(MailboxEntry::Active { location, .. }) if *location == location_of(b))
        })
    })
}

fn slave_shows_master_state(_: &MurderModel, s: &SystemState) -> bool {
    let Some(m) = master(s) else { return false };
    let p = prefixes(m);
    live_slaves(s).all(|x| p.contains(&x.db))
}

fn noop_barrier(_: &MurderModel, s: &SystemState) -> bool {
    let Some(m) = master(s) else { return false };
    let p = prefixes(m);
    live_slaves(s).all(|x| match x.noop_floor {
        None => true,
        Some(f) => p.iter().skip(usize::from(f)).any(|db| *db == x.db),
    })
}

fn rest_slaves_converge(model: &MurderModel, s: &SystemState) -> bool {
    if !quiescent(model, s) {
        return true;
    }
    let Some(m) = master(s) else { return false };
    live_slaves(s).all(|x| x.db == m.db)
}

fn done_and_converged(_: &MurderModel, s: &SystemState) -> bool {
    let Some(m) = master(s) else { return false };
    !s.crashed.iter().any(|c| *c)
        && backends(s).all(|(_, b)| b.phase == Phase::Done)
        && live_slaves(s).all(|x| x.db == m.db)
}

fn some_active(_: &MurderModel, s: &SystemState) -> bool {
    master(s).is_some_and(|m| m.db.records().any(|r| r.entry.is_active()))
}

fn some_refused(_: &MurderModel, s: &SystemState) -> bool {
    backends(s).any(|(_, b)| b.refused > 0)
}

fn some_resync(_: &MurderModel, s: &SystemState) -> bool {
    live_slaves(s).any(|x| x.conn >= 2 && x.status == SlaveStatus::Streaming)
}

fn some_crash(_: &MurderModel, s: &SystemState) -> bool {
    s.actor_storages.iter().flatten().any(|d| d.restarts() > 0)
}

fn some_noop(_: &MurderModel, s: &SystemState) -> bool {
    live_slaves(s).any(|x| x.noop_floor.is_some())
}

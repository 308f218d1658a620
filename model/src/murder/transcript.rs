//! Counterexamples as transcripts: a checker path rendered as the MUPDATE lines each connection
//! carried, so a bug the model finds can become a conformance scenario. Also the BFS shrinker.
//!
//! Format (one event per line; see `model/README.md`):
//!
//! ```text
//! # property violated: <name>
//! # actors: master slave0 be0 be1
//! be0 C: X0 RESERVE "a" "be0!p"       <- a client line, as the master reads it
//! be0 S: X0 OK                        <- the master's answer, as the client reads it
//! slave0 S: U1 MAILBOX "a" "be0!p" "anyone\tlrs\t"
//! ! crash be0                         <- a fault or internal step
//! ```

use std::fmt::Write as _;

use stateright::actor::{ActorModelAction, Id};
use stateright::{Checker, HasDiscoveries, Model, Path};

use super::properties::{MurderModel, SystemState};
use super::{Msg, MurderConfig, Timer};
use crate::mailbox_db::{Change, Command, MailboxEntry, Record, Reply};

/// A counterexample path of the Murder model.
pub type MurderPath = Path<SystemState, ActorModelAction<Msg, Timer, ()>>;

/// The display name of an actor.
pub fn actor_name(cfg: &MurderConfig, id: Id) -> String {
    let i = usize::from(id);
    if i == 0 {
        "master".into()
    } else if i <= cfg.slaves {
        format!("slave{}", i - 1)
    } else {
        format!("be{}", i - 1 - cfg.slaves)
    }
}

/// Quote a MUPDATE string (tabs and other bytes escaped as `\t`, `\xNN` for readability).
fn q(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(char::from(c)),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push('"');
    s
}

fn command_line(tag: &str, cmd: &Command) -> String {
    match cmd {
        Command::Activate {
            name,
            location,
            acl,
        } => format!("{tag} ACTIVATE {} {} {}", q(name), q(location), q(acl)),
        Command::Reserve { name, location } => format!("{tag} RESERVE {} {}", q(name), q(location)),
        Command::Deactivate { name, location } => {
            format!("{tag} DEACTIVATE {} {}", q(name), q(location))
        }
        Command::Delete { name } => format!("{tag} DELETE {}", q(name)),
        Command::Find { name } => format!("{tag} FIND {}", q(name)),
        Command::List { prefix: None } => format!("{tag} LIST"),
        Command::List { prefix: Some(p) } => format!("{tag} LIST {}", q(p)),
    }
}

fn record_line(tag: &str, r: &Record) -> String {
    match &r.entry {
        MailboxEntry::Active { location, acl } => {
            format!("{tag} MAILBOX {} {} {}", q(&r.name), q(location), q(acl))
        }
        MailboxEntry::Reserved { location } => {
            format!("{tag} RESERVE {} {}", q(&r.name), q(location))
        }
    }
}

fn reply_lines(tag: &str, reply: &Reply) -> Vec<String> {
    let mut v: Vec<String> = reply.data.iter().map(|r| record_line(tag, r)).collect();
    v.push(match reply.result {
        Ok(()) => format!("{tag} OK"),
        Err(e) => format!("{tag} NO {}", q(e.to_string().as_bytes())),
    });
    v
}

/// Render one action as transcript lines.
pub fn action_lines(cfg: &MurderConfig, action: &ActorModelAction<Msg, Timer, ()>) -> Vec<String> {
    match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            let client = if usize::from(*dst) == 0 { *src } else { *dst };
            let who = actor_name(cfg, client);
            match msg {
                Msg::Request { conn, cmd } => vec![format!(
                    "{who} C: {}",
                    command_line(&format!("X{conn}"), cmd)
                )],
                Msg::Response { conn, reply } => reply_lines(&format!("X{conn}"), reply)
                    .into_iter()
                    .map(|l| format!("{who} S: {l}"))
                    .collect(),
                Msg::Update { conn } => vec![format!("{who} C: U{conn} UPDATE")],
                Msg::Dump { conn, records, .. } => {
                    let tag = format!("U{conn}");
                    let mut v: Vec<String> = records
                        .iter()
                        .map(|r| format!("{who} S: {}", record_line(&tag, r)))
                        .collect();
                    v.push(format!("{who} S: {tag} OK \"streaming starts\""));
                    v
                }
                Msg::Stream { conn, change, .. } => {
                    let tag = format!("U{conn}");
                    vec![match change {
                        Change::Upsert(r) => format!("{who} S: {}", record_line(&tag, r)),
                        Change::Delete { name } => format!("{who} S: {tag} DELETE {}", q(name)),
                    }]
                }
                Msg::Noop { conn } => vec![format!("{who} C: N{conn} NOOP")],
                Msg::NoopOk { conn, .. } => vec![format!("{who} S: N{conn} OK")],
                Msg::Reset => vec![format!("! {who} connection reset by master restart")],
            }
        }
        ActorModelAction::Drop(env) => {
            vec![format!("! message to {} lost", actor_name(cfg, env.dst))]
        }
        ActorModelAction::Timeout(id, timer) => {
            let who = actor_name(cfg, *id);
            vec![match timer {
                Timer::Flush => format!("! {who} flushes its update queue"),
                Timer::LocalStep => format!("! {who} completes its local mailbox operation"),
                Timer::Noop => format!("! {who} decides to send NOOP"),
                Timer::DropLink => format!("! {who} link to master drops; reconnect"),
            }]
        }
        ActorModelAction::Crash(id) => vec![format!("! crash {}", actor_name(cfg, *id))],
        ActorModelAction::Recover(id) => vec![format!("! restart {}", actor_name(cfg, *id))],
        ActorModelAction::SelectRandom { actor, .. } => {
            vec![format!("! {} random choice", actor_name(cfg, *actor))]
        }
    }
}

/// Render a whole counterexample, with the final state's databases as a trailer.
pub fn render(model: &MurderModel, property: &str, path: &MurderPath) -> String {
    let cfg = &model.cfg;
    let mut out = String::new();
    let _ = writeln!(out, "# property violated: {property}");
    let names: Vec<String> = (0..model.actors.len())
        .map(|i| actor_name(cfg, Id::from(i)))
        .collect();
    let _ = writeln!(out, "# actors: {}", names.join(" "));
    let steps: Vec<_> = path.clone().into_vec();
    let _ = writeln!(out, "# {} steps", steps.len().saturating_sub(1));
    for (_, action) in &steps {
        if let Some(a) = action {
            for l in action_lines(cfg, a) {
                let _ = writeln!(out, "{l}");
            }
        }
    }
    let last = path.last_state();
    if let Some(m) = super::properties::master(last) {
        let _ = writeln!(out, "# final master: {}", db_line(&m.db));
    }
    for (i, a) in last.actor_states.iter().enumerate() {
        match &**a {
            super::MurderState::Slave(x) => {
                let _ = writeln!(
                    out,
                    "# final {}: {}",
                    actor_name(cfg, Id::from(i)),
                    db_line(&x.db)
                );
            }
            super::MurderState::Backend(b) => {
                let held: Vec<String> = (0..8u8)
                    .filter(|n| b.holds(*n))
                    .map(|n| q(&super::name_of(n)))
                    .collect();
                let _ = writeln!(
                    out,
                    "# final {} holds: {}",
                    actor_name(cfg, Id::from(i)),
                    held.join(" ")
                );
            }
            super::MurderState::Master(_) => {}
        }
    }
    out
}

fn db_line(db: &crate::mailbox_db::MailboxDb) -> String {
    let v: Vec<String> = db.records().map(|r| record_line("*", &r)).collect();
    if v.is_empty() {
        "(empty)".into()
    } else {
        v.join(" | ")
    }
}

/// The shortest counterexample of `property`: BFS re-checks with a bounded depth, binary search
/// between 1 and the depth of any counterexample. None when the property holds.
pub fn shortest_discovery(cfg: &MurderConfig, property: &'static str) -> Option<MurderPath> {
    let any = cfg
        .clone()
        .into_model()
        .checker()
        .finish_when(HasDiscoveries::AnyOf([property].into_iter().collect()))
        .spawn_bfs()
        .join()
        .discovery(property)?;
    let mut best = any;
    let (mut lo, mut hi) = (1usize, best.clone().into_actions().len() + 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let found = cfg
            .clone()
            .into_model()
            .checker()
            .target_max_depth(mid)
            .finish_when(HasDiscoveries::AnyOf([property].into_iter().collect()))
            .spawn_bfs()
            .join()
            .discovery(property);
        match found {
            Some(p) => {
                hi = (p.clone().into_actions().len() + 1).min(mid);
                best = p;
            }
            None => lo = mid + 1,
        }
    }
    Some(best)
}

/// True when `model` has this property (for callers that get names from the command line).
pub fn has_property(model: &MurderModel, name: &str) -> bool {
    model.properties().iter().any(|p| p.name == name)
}

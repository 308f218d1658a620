//! A counterexample as a conformance scenario (`scenarios/README.md`, the `.scn` format), so a
//! bug the model finds becomes a black-box case.
//!
//! The runner cannot crash a server, so the scenario keeps the client-visible part of the path:
//! every command a backend sent, in the order the master processed it, as a `>!` step (the
//! runner judges the whole reply with the oracle, never with the model's possibly broken
//! master); every slave UPDATE with its dump collected and checked; every slave NOOP with the
//! committed changes that must arrive before its OK (`<<`), and a final NOOP barrier on every
//! streaming connection. Crashes, restarts and timers stay as comments. Each model connection
//! (actor and connection number) becomes its own scenario connection. Names map to `$box`,
//! `$box2`; backend `b`'s location `be<b>!p` maps to `$host!p`, `$host<b+1>!p`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use stateright::actor::{ActorModelAction, Id};

use super::properties::{self, MurderModel};
use super::transcript::{MurderPath, action_lines, actor_name};
use super::{Msg, index_of};
use crate::mailbox_db::{Change, Command, MailboxEntry, Record};

/// The scenario spelling of a mailbox name.
fn sname(name: &[u8]) -> String {
    match index_of(name) {
        Some(0) => "\"$box\"".into(),
        Some(n) => format!("\"$box{}\"", n + 1),
        None => format!("\"{}\"", String::from_utf8_lossy(name)),
    }
}

/// The scenario spelling of a location `be<b>!p`.
fn sloc(loc: &[u8]) -> String {
    let s = String::from_utf8_lossy(loc);
    let host = s
        .strip_prefix("be")
        .and_then(|r| r.split_once('!'))
        .and_then(|(b, part)| b.parse::<u32>().ok().map(|b| (b, part.to_string())));
    match host {
        Some((0, part)) => format!("\"$host!{part}\""),
        Some((b, part)) => format!("\"$host{}!{part}\"", b + 1),
        None => format!("\"{s}\""),
    }
}

fn sacl(acl: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in acl {
        match c {
            b'\t' => s.push_str("\\t"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\\\\\"),
            b'$' => s.push_str("\\$"),
            0x20..=0x7e => s.push(char::from(c)),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push('"');
    s
}

fn command(tag: &str, cmd: &Command) -> String {
    match cmd {
        Command::Activate {
            name,
            location,
            acl,
        } => format!(
            "{tag} ACTIVATE {} {} {}",
            sname(name),
            sloc(location),
            sacl(acl)
        ),
        Command::Reserve { name, location } => {
            format!("{tag} RESERVE {} {}", sname(name), sloc(location))
        }
        Command::Deactivate { name, location } => {
            format!("{tag} DEACTIVATE {} {}", sname(name), sloc(location))
        }
        Command::Delete { name } => format!("{tag} DELETE {}", sname(name)),
        Command::Find { name } => format!("{tag} FIND {}", sname(name)),
        Command::List { prefix: None } => format!("{tag} LIST"),
        Command::List { prefix: Some(p) } => format!("{tag} LIST {}", sloc(p)),
    }
}

fn record(tag: &str, r: &Record) -> String {
    match &r.entry {
        MailboxEntry::Active { location, acl } => {
            format!(
                "{tag} MAILBOX {} {} {}",
                sname(&r.name),
                sloc(location),
                sacl(acl)
            )
        }
        MailboxEntry::Reserved { location } => {
            format!("{tag} RESERVE {} {}", sname(&r.name), sloc(location))
        }
    }
}

fn change(tag: &str, c: &Change) -> String {
    match c {
        Change::Upsert(r) => record(tag, r),
        Change::Delete { name } => format!("{tag} DELETE {}", sname(name)),
    }
}

/// Where a slave connection is in the scenario.
struct Subscriber {
    /// The scenario connection name.
    conn: String,
    /// The UPDATE tag.
    tag: String,
    /// Changes up to this sequence number are accounted for (dump or earlier NOOP).
    next: usize,
}

/// The RFC section a property is about.
fn rfc_of(property: &str) -> &'static str {
    if property == properties::NOOP_BARRIER {
        "RFC3656 4.8, RFC3656 4.11"
    } else if property == properties::SLAVE_SHOWS_MASTER_STATE
        || property == properties::REST_SLAVES_CONVERGE
        || property == properties::EVENTUALLY_DONE
    {
        "RFC3656 4.11"
    } else if property == properties::ACTIVE_IS_HELD {
        "RFC3656 4.1, RFC3656 4.4"
    } else {
        "RFC3656 4.9, RFC3656 4.1"
    }
}

/// Render `path`, a counterexample to `property`, as a `.scn` file with id `mupdate/<id>`.
pub fn to_scenario(model: &MurderModel, property: &str, id: &str, path: &MurderPath) -> String {
    let cfg = &model.cfg;
    let steps = path.clone().into_vec();
    let history: Vec<Change> = properties::master(path.last_state())
        .map(|m| m.history.clone())
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Found by murder-check (model/src/murder): the property"
    );
    let _ = writeln!(out, "#   \"{property}\"");
    let _ = writeln!(
        out,
        "# fails on this path of the model (bugs: {:?}, repair: {}).",
        cfg.bugs, cfg.repair
    );
    let _ = writeln!(
        out,
        "# Crashes, restarts and timers cannot be driven black-box; they are comments."
    );
    let _ = writeln!(
        out,
        "# Every command is judged by the oracle (>!), every stream by the committed changes."
    );
    let _ = writeln!(out, "id: mupdate/{id}");
    let _ = writeln!(out, "title: model path for \"{property}\"");
    let _ = writeln!(out, "protocol: mupdate");
    let _ = writeln!(out, "rfc: {}", rfc_of(property));
    let _ = writeln!(out, "level: MUST");
    let _ = writeln!(out, "needs: master admin");
    let _ = writeln!(out);
    let _ = writeln!(out, "[test]");
    let mut opened: Vec<String> = Vec::new();
    let mut tags: BTreeMap<(String, char), usize> = BTreeMap::new();
    let mut subs: BTreeMap<(Id, u8), Subscriber> = BTreeMap::new();
    let mut open = |out: &mut String, c: &str| {
        if !opened.iter().any(|o| o == c) {
            let _ = writeln!(out, "open {c}");
            opened.push(c.to_string());
        }
    };
    let mut next_tag = |c: &str, letter: char| {
        let k = tags.entry((c.to_string(), letter)).or_insert(0);
        *k += 1;
        format!("{letter}{k}")
    };
    for (_, action) in &steps {
        let Some(action) = action else { continue };
        match action {
            ActorModelAction::Deliver { src, dst, msg } if usize::from(*dst) == 0 => {
                let who = actor_name(cfg, *src);
                match msg {
                    Msg::Request { conn, cmd } => {
                        let c = format!("{who}c{conn}");
                        open(&mut out, &c);
                        let tag = next_tag(&c, 'X');
                        let _ = writeln!(out, "{c} >! {}", command(&tag, cmd));
                    }
                    Msg::Update { conn } => {
                        let c = format!("{who}c{conn}");
                        open(&mut out, &c);
                        let tag = next_tag(&c, 'U');
                        let _ = writeln!(out, "{c} > {tag} UPDATE");
                        let dump = format!("d{c}");
                        let _ = writeln!(out, "{c} collect {dump} mine until $tag OK ...");
                        // The dump the master sent is in the network of the state after this step.
                        subs.insert(
                            (*src, *conn),
                            Subscriber {
                                conn: c,
                                tag,
                                next: usize::MAX,
                            },
                        );
                    }
                    Msg::Noop { conn } => {
                        if let Some(s) = subs.get(&(*src, *conn)) {
                            let tag = next_tag(&s.conn, 'N');
                            let _ = writeln!(out, "{} > {tag} NOOP", s.conn);
                        }
                    }
                    _ => {}
                }
            }
            ActorModelAction::Deliver { dst, msg, .. } => match msg {
                Msg::Dump { conn, seq, records } => {
                    if let Some(s) = subs.get_mut(&(*dst, *conn)) {
                        let dump_name = format!("d{}", s.conn);
                        let _ = writeln!(out, "count {dump_name} {}", records.len());
                        for r in records {
                            let _ = writeln!(out, "has {dump_name} {}", record("$any", r));
                        }
                        s.next = usize::from(*seq);
                    }
                }
                Msg::NoopOk { conn, floor } => {
                    if let Some(s) = subs.get_mut(&(*dst, *conn)) {
                        let upto = usize::from(*floor).min(history.len());
                        for c in history.iter().take(upto).skip(s.next) {
                            let _ = writeln!(out, "{} << {}", s.conn, change(&s.tag, c));
                        }
                        s.next = s.next.max(upto);
                        let _ = writeln!(out, "{} << $tag OK ...", s.conn);
                    }
                }
                Msg::Response { .. } | Msg::Stream { .. } => {}
                _ => {
                    for l in action_lines(cfg, action) {
                        let _ = writeln!(out, "# model: {l}");
                    }
                }
            },
            _ => {
                for l in action_lines(cfg, action) {
                    let _ = writeln!(out, "# model: {l}");
                }
            }
        }
    }
    // A final barrier on every subscriber whose dump arrived: all committed changes since.
    for s in subs.values() {
        if s.next == usize::MAX {
            continue;
        }
        let tag = next_tag(&s.conn, 'N');
        let _ = writeln!(out, "{} > {tag} NOOP", s.conn);
        for c in history.iter().skip(s.next) {
            let _ = writeln!(out, "{} << {}", s.conn, change(&s.tag, c));
        }
        let _ = writeln!(out, "{} << $tag OK ...", s.conn);
    }
    let _ = writeln!(out, "open check");
    let _ = writeln!(out, "check >! L1 LIST");
    let _ = writeln!(out);
    let _ = writeln!(out, "[cleanup]");
    let _ = writeln!(out, "open z");
    // Remove every name any command of the path touched (the final history may have lost some).
    let mut touched: Vec<Vec<u8>> = history.iter().map(|c| c.name().to_vec()).collect();
    for (_, action) in &steps {
        if let Some(ActorModelAction::Deliver {
            msg: Msg::Request { cmd, .. },
            ..
        }) = action
            && let Some(n) = cmd.name()
        {
            touched.push(n.to_vec());
        }
    }
    touched.sort();
    touched.dedup();
    for (k, name) in touched.iter().enumerate() {
        let _ = writeln!(out, "z > D{} DELETE {}", k + 1, sname(name));
        let _ = writeln!(out, "z < $tag OK|NO ...");
    }
    out
}

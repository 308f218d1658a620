//! Consistency of the UPDATE streams with the recorded history.
//!
//! Sound checks only (each can fail only if no linearization explains the stream):
//! * nothing invented: every state a stream shows for a name is the state some write on that
//!   name (OK, or pending) produces, and that write was sent before the line arrived;
//! * order: for two consecutive states of a name on one stream there are two distinct such
//!   writes, the second not completed before the first was invoked;
//! * barrier: after every writer stopped, a NOOP on the stream is answered OK, and by then the
//!   last state the stream showed for each name is the database's final state (FIND).

use std::collections::{BTreeMap, HashMap};

use murder_model::MailboxEntry;

use super::Violation;
use super::history::{Op, StreamLine, StreamLog, ms};
use crate::wire::visible::visible;

/// A state as reports show it.
pub fn show_state(s: &Option<MailboxEntry>) -> String {
    match s {
        None => "absent (DELETE)".into(),
        Some(MailboxEntry::Reserved { location }) => format!("RESERVE {}", visible(location)),
        Some(MailboxEntry::Active { location, acl }) => {
            format!("MAILBOX {} {}", visible(location), visible(acl))
        }
    }
}

/// The writes of a history by (name, state they produce), each list in invocation order.
type Producers<'a> = HashMap<&'a [u8], HashMap<Option<MailboxEntry>, Vec<&'a Op>>>;

fn index(ops: &[Op]) -> Producers<'_> {
    let mut map: Producers<'_> = HashMap::new();
    for o in ops {
        if let (Some(name), Some(state)) = (o.command.name(), o.post_state()) {
            map.entry(name)
                .or_default()
                .entry(state)
                .or_default()
                .push(o);
        }
    }
    for v in map.values_mut().flat_map(HashMap::values_mut) {
        v.sort_by_key(|o| (o.invoke_us, o.id));
    }
    map
}

/// Writes that could have produced `line`: on its name, producing its state, sent before it
/// arrived (in invocation order).
fn producers<'i, 'a>(index: &'i Producers<'a>, line: &StreamLine) -> &'i [&'a Op] {
    match index
        .get(line.name.as_slice())
        .and_then(|m| m.get(&line.state))
    {
        Some(v) => {
            let n = v.partition_point(|o| o.invoke_us <= line.at_us);
            v.get(..n).unwrap_or_default()
        }
        None => &[],
    }
}

/// The two ops of `ops` that completed last (pending ones count as never completing).
fn latest_two<'a>(ops: &[&'a Op]) -> Vec<&'a Op> {
    let key = |o: &Op| (o.complete_us.unwrap_or(u64::MAX), o.id);
    let mut best: Vec<&Op> = Vec::with_capacity(2);
    for &o in ops {
        best.push(o);
        best.sort_by_key(|b| std::cmp::Reverse(key(b)));
        best.truncate(2);
    }
    best
}

/// Whether some `a` in `first` and distinct `b` in `second` can be in that order: `b` did not
/// complete before `a` was invoked. (`first` is in invocation order: its first two are the
/// earliest.)
fn can_follow(first: &[&Op], second: &[&Op]) -> bool {
    let earliest = first.get(..2).unwrap_or(first);
    let latest = latest_two(second);
    earliest.iter().any(|a| {
        latest
            .iter()
            .any(|b| a.id != b.id && b.complete_us.is_none_or(|c| c >= a.invoke_us))
    })
}

/// Check every stream against the history `ops`. `final_states` is the database's state of each
/// pool name after every writer stopped (None when it could not be established; the barrier
/// comparison is then skipped).
pub fn check_streams(
    ops: &[Op],
    streams: &[StreamLog],
    final_states: Option<&BTreeMap<Vec<u8>, Option<MailboxEntry>>>,
) -> Vec<Violation> {
    let writes = index(ops);
    let mut out = Vec::new();
    for s in streams {
        let mut last: BTreeMap<&[u8], (&StreamLine, &[&Op])> = BTreeMap::new();
        for line in &s.lines {
            let cands = producers(&writes, line);
            let name = String::from_utf8_lossy(&line.name).to_string();
            if cands.is_empty() {
                out.push(Violation {
                    kind: "stream-invented-state".into(),
                    summary: format!(
                        "stream {} showed {name} as {} at {}, a state no write sent before then \
                         produces (RFC 3656 4.11)",
                        s.id,
                        show_state(&line.state),
                        ms(line.at_us)
                    ),
                    detail: format!("  S: {}\n", visible(&line.raw)),
                });
            } else if let Some((prev, prev_cands)) = last.get(line.name.as_slice())
                && !can_follow(prev_cands, cands)
            {
                let mut detail = format!(
                    "  S: {} (at {})\n  S: {} (at {})\n  writes that produce the first:\n",
                    visible(&prev.raw),
                    ms(prev.at_us),
                    visible(&line.raw),
                    ms(line.at_us)
                );
                for o in prev_cands.iter().take(5) {
                    detail.push_str(&o.describe());
                }
                detail.push_str("  writes that produce the second:\n");
                for o in cands.iter().take(5) {
                    detail.push_str(&o.describe());
                }
                out.push(Violation {
                    kind: "stream-order".into(),
                    summary: format!(
                        "stream {} showed {name} as {} then {}, but every write producing the \
                         second completed before any producing the first began",
                        s.id,
                        show_state(&prev.state),
                        show_state(&line.state)
                    ),
                    detail,
                });
            }
            if !cands.is_empty() {
                last.insert(line.name.as_slice(), (line, cands));
            }
        }
        if !s.barrier_ok {
            out.push(Violation {
                kind: "stream-barrier".into(),
                summary: format!(
                    "stream {}: the NOOP barrier after the writers stopped was not answered OK \
                     (RFC 3656 4.8): {}",
                    s.id,
                    s.error.as_deref().unwrap_or("no OK")
                ),
                detail: String::new(),
            });
            continue;
        }
        let Some(finals) = final_states else {
            continue;
        };
        for (name, want) in finals {
            let shown = s
                .lines
                .iter()
                .rev()
                .find(|l| &l.name == name)
                .map(|l| l.state.clone())
                .unwrap_or(None);
            if &shown != want {
                out.push(Violation {
                    kind: "stream-missed-change".into(),
                    summary: format!(
                        "stream {}: after the NOOP barrier it shows {} as {}, but FIND after \
                         every writer stopped gives {} (RFC 3656 4.8, 4.11)",
                        s.id,
                        String::from_utf8_lossy(name),
                        show_state(&shown),
                        show_state(want)
                    ),
                    detail: String::new(),
                });
            }
        }
    }
    out
}

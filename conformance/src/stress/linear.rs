//! Linearizability of a recorded history against the oracle
//! ([`murder_model::MailboxDb::apply`]).
//!
//! Every command of the MUPDATE workload is about one name, and the oracle's behaviour on a name
//! depends only on that name's record, so the history is checked one name at a time
//! (P-compositionality: a history is linearizable iff each per-name sub-history is). For one name
//! the search walks the invocations and completions in real time keeping every configuration
//! (set of open ops already linearized, record) still possible, deduplicated: Wing & Gong's
//! search with Lowe's memoisation of (linearized set, state), done breadth-first between
//! events, so a wrong early choice never costs a deep backtrack. Pending ops (no reply) may take
//! effect at any point after their invocation or never. The search is bounded by a step count:
//! past it the verdict is [`Verdict::Inconclusive`], never a hang and never a false failure.

use std::collections::HashSet;

use murder_model::{Command, MailboxDb, MailboxEntry, Record, Refusal, Reply};

use super::history::{Op, Outcome, Status};

/// Default search steps per name before giving up as inconclusive.
pub const DEFAULT_MAX_STEPS: u64 = 2_000_000;
/// Search steps each shrinking attempt may take.
pub const SHRINK_STEPS: u64 = 200_000;
/// Checks the shrinker may run in total.
pub const SHRINK_CHECKS: usize = 400;
/// Quiescent instants the shrinker tries, latest first, below the last linearizable prefix.
pub const QUIESCENT_TRIES: usize = 8;

/// Result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order consistent with real time explains every reply.
    Linearizable,
    /// No order does.
    NotLinearizable,
    /// The step budget ran out first.
    Inconclusive,
}

/// The oracle on one name: the record after `op` and whether the reply matches (always for a
/// pending op).
fn step(state: &Option<MailboxEntry>, op: &Op) -> (Option<MailboxEntry>, bool) {
    let mut db: MailboxDb = state
        .iter()
        .filter_map(|e| {
            op.command.name().map(|n| Record {
                name: n.to_vec(),
                entry: e.clone(),
            })
        })
        .collect();
    let (reply, _) = db.apply(&op.command);
    let after = op.command.name().and_then(|n| db.get(n).cloned());
    let ok = op
        .outcome
        .as_ref()
        .is_none_or(|o| o.matches(&reply) || should_level_ok(op, o, &reply));
    (after, ok)
}

/// RFC 3656 4.4 only says a DELETE of a missing name SHOULD be answered NO: an OK there (which
/// changes nothing) is a SHOULD deviation for the transcript corpus to grade, not a violation.
fn should_level_ok(op: &Op, got: &Outcome, model: &Reply) -> bool {
    matches!(op.command, Command::Delete { .. })
        && model.result == Err(Refusal::NoSuchMailbox)
        && got.status == Status::Ok
        && got.data.is_empty()
}

/// Check the ops of one name (any order; all must be about the same name), starting from
/// `initial`, within `max_steps` search steps.
pub fn check_name(ops: &[&Op], initial: Option<MailboxEntry>, max_steps: u64) -> Verdict {
    match search(ops, initial, max_steps) {
        Search::Done(_) => Verdict::Linearizable,
        Search::Failed => Verdict::NotLinearizable,
        Search::OutOfSteps => Verdict::Inconclusive,
    }
}

/// Every state a linearization of `ops` from `initial` can end in, all pending ops taken or
/// dropped (empty when none exists); `None` when the step budget ran out. Exact when no op is
/// pending.
pub fn end_states(
    ops: &[&Op],
    initial: Option<MailboxEntry>,
    max_steps: u64,
) -> Option<Vec<Option<MailboxEntry>>> {
    match search(ops, initial, max_steps) {
        Search::Done(mut configs) => {
            let mut ends: Vec<Option<MailboxEntry>> = Vec::new();
            for (_, state) in configs.drain() {
                if !ends.contains(&state) {
                    ends.push(state);
                }
            }
            Some(ends)
        }
        Search::Failed => Some(Vec::new()),
        Search::OutOfSteps => None,
    }
}

fn insert_sorted(set: &mut Vec<usize>, o: usize) {
    if let Err(at) = set.binary_search(&o) {
        set.insert(at, o);
    }
}

/// Linearize, right now, every open inert op (a read, or a refused write: it changes nothing)
/// whose reply the current state gives. Never loses a linearization: moving such an op to the
/// earliest point where it fits keeps every state and every real-time constraint (the ops that
/// must precede it completed before it was invoked, so they are no longer open). Without this the
/// configurations would multiply by every subset of concurrent reads.
fn absorb(ops: &[&Op], open: &[usize], c: &mut Config, steps: &mut u64) {
    for &o in open {
        if let Some(op) = ops.get(o)
            && op.is_inert()
            && c.0.binary_search(&o).is_err()
        {
            *steps += 1;
            if step(&c.1, op).1 {
                insert_sorted(&mut c.0, o);
            }
        }
    }
}

/// A configuration between two events: which of the open (invoked, not yet completed) ops are
/// already linearized, and the record then.
type Config = (Vec<usize>, Option<MailboxEntry>);

enum Search {
    Done(HashSet<Config>),
    Failed,
    OutOfSteps,
}

/// The search, event by event in real time. Between events the set of possible configurations is
/// kept. An invocation opens an op. A completion of op `x` closes it: from every configuration,
/// open ops are linearized (in any order) until `x` is; the configurations with `x` linearized
/// survive. An op whose reply does not match the oracle cannot be linearized there; a pending op
/// (no reply) never completes, so it may be linearized at any point or never. No configuration
/// left: not linearizable.
fn search(ops: &[&Op], initial: Option<MailboxEntry>, max_steps: u64) -> Search {
    // (time, completion?, op): at equal times invocations come first, so such ops count as
    // concurrent (the lenient reading).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke_us, false, i));
        if op.outcome.is_some()
            && let Some(c) = op.complete_us
        {
            events.push((c.max(op.invoke_us), true, i));
        }
    }
    events.sort_unstable();
    let mut configs: HashSet<Config> = HashSet::from([(Vec::new(), initial)]);
    let mut open: Vec<usize> = Vec::new();
    let mut steps = 0u64;
    for &(_, completion, x) in &events {
        if !completion {
            open.push(x);
            continue;
        }
        let mut survivors: HashSet<Config> = HashSet::new();
        let mut seen: HashSet<Config> = HashSet::new();
        let mut frontier: Vec<Config> = Vec::new();
        for mut c in configs.drain() {
            absorb(ops, &open, &mut c, &mut steps);
            if seen.insert(c.clone()) {
                frontier.push(c);
            }
        }
        while let Some((set, state)) = frontier.pop() {
            if steps > max_steps {
                return Search::OutOfSteps;
            }
            if set.contains(&x) {
                survivors.insert((set.into_iter().filter(|&j| j != x).collect(), state));
                continue;
            }
            for &o in &open {
                let Some(op) = ops.get(o) else {
                    continue;
                };
                // Inert ops are only ever absorbed (see `absorb`).
                if set.contains(&o) || op.is_inert() {
                    continue;
                }
                steps += 1;
                let (after, ok) = step(&state, op);
                // A pending op that would change nothing is the same as not taking it.
                if !ok || (op.outcome.is_none() && after == state) {
                    continue;
                }
                let mut c = (set.clone(), after);
                insert_sorted(&mut c.0, o);
                absorb(ops, &open, &mut c, &mut steps);
                if seen.insert(c.clone()) {
                    frontier.push(c);
                }
            }
        }
        open.retain(|&j| j != x);
        if survivors.is_empty() {
            return Search::Failed;
        }
        configs = survivors;
    }
    Search::Done(configs)
}

/// The ops of `ops` cut at `at_us`: those invoked before it, and those among them that had not
/// completed by then turned pending. A cut of a linearizable history is linearizable, so a
/// failing cut proves the whole history fails.
fn cut(ops: &[Op], at_us: u64) -> Vec<Op> {
    ops.iter()
        .filter(|o| o.invoke_us < at_us)
        .map(|o| {
            let mut o = o.clone();
            // Pending: no reply to respect (the completion instant stays, for the report).
            if o.complete_us.is_none_or(|c| c >= at_us) {
                o.outcome = None;
            }
            o
        })
        .collect()
}

/// Whether `ops` fail from every state of `starts` (a proof within the step budget).
fn fails_from(ops: &[Op], starts: &[Option<MailboxEntry>]) -> bool {
    let refs: Vec<&Op> = ops.iter().collect();
    starts
        .iter()
        .all(|s| check_name(&refs, s.clone(), SHRINK_STEPS) == Verdict::NotLinearizable)
}

/// A failing sub-history, as [`shrink`] finds it.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// Ops before a quiescent instant (none in flight) that were replaced by their end states.
    pub skipped: usize,
    /// The states those ops can leave the name in (every linearization of them); the ops below
    /// fail from each. `[None]` when nothing was skipped (the name starts absent).
    pub starts: Vec<Option<MailboxEntry>>,
    /// The ops.
    pub ops: Vec<Op>,
    /// Ids of ops among them whose replies are not needed for the contradiction (it remains
    /// with them taken as pending): the others' replies are the ones that conflict.
    pub relaxed: Vec<usize>,
}

/// A small failing sub-history of one name's failing history `ops` (which starts from an absent
/// record), each step keeping it a proof that the whole history fails:
/// 1. the latest quiescent instant (every op before it completed before it) such that the ops
///    after it fail from every state the ops before it can end in: those are skipped;
/// 2. the earliest real-time cut that still fails (ops in flight at the cut become pending);
/// 3. ops that completed without changing anything (reads, refusals) dropped one by one while
///    it still fails;
/// 4. the replies that are not needed (the history still fails with the op pending) marked.
///
/// Bounded by [`SHRINK_CHECKS`] checks of [`SHRINK_STEPS`] steps.
pub fn shrink(ops: &[Op]) -> Shrunk {
    let mut ops: Vec<Op> = ops.to_vec();
    ops.sort_by_key(|o| (o.invoke_us, o.id));
    let mut checks = 0usize;
    let mut starts: Vec<Option<MailboxEntry>> = vec![None];
    let mut skipped = 0;
    // 1. Quiescent instants, latest first.
    let mut quiescent = Vec::new();
    let mut max_complete = 0u64;
    for (k, o) in ops.iter().enumerate() {
        if k > 0 && max_complete < o.invoke_us {
            quiescent.push(k);
        }
        max_complete = max_complete.max(o.complete_us.unwrap_or(u64::MAX));
    }
    // The prefixes before quiescent instants that are linearizable form an initial run (a
    // prefix at a quiescent instant of a linearizable history is linearizable): binary search
    // for the last one, then try it and a few earlier ones.
    let prefix_ends = |k: usize| {
        let before: Vec<&Op> = ops.iter().take(k).collect();
        end_states(&before, None, SHRINK_STEPS).filter(|e| !e.is_empty())
    };
    let (mut lo, mut hi) = (0usize, quiescent.len());
    while lo < hi && checks < SHRINK_CHECKS / 4 {
        let mid = lo + (hi - lo) / 2;
        checks += 1;
        if quiescent.get(mid).and_then(|&k| prefix_ends(k)).is_some() {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for &k in quiescent.iter().take(lo).rev().take(QUIESCENT_TRIES) {
        checks += 1;
        let Some(ends) = prefix_ends(k) else {
            continue;
        };
        let after: Vec<Op> = ops.iter().skip(k).cloned().collect();
        if fails_from(&after, &ends) {
            skipped = k;
            starts = ends;
            ops = after;
            break;
        }
    }
    // 2. Binary search over the cut instants (each op's invocation, and the end).
    let instants: Vec<u64> = ops
        .iter()
        .map(|o| o.invoke_us)
        .chain(std::iter::once(u64::MAX))
        .collect();
    let (mut lo, mut hi) = (0usize, instants.len().saturating_sub(1));
    while lo < hi && checks < SHRINK_CHECKS {
        let mid = lo + (hi - lo) / 2;
        checks += 1;
        if instants
            .get(mid)
            .is_some_and(|&t| fails_from(&cut(&ops, t), &starts))
        {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut best = match instants.get(hi) {
        Some(&t) if t != u64::MAX => {
            let c = cut(&ops, t);
            if fails_from(&c, &starts) { c } else { ops }
        }
        _ => ops,
    };
    // 3. Inert ops.
    let mut i = 0;
    while i < best.len() && checks < SHRINK_CHECKS {
        if best.get(i).is_some_and(Op::is_inert) {
            let mut fewer = best.clone();
            fewer.remove(i);
            checks += 1;
            if fails_from(&fewer, &starts) {
                best = fewer;
                continue;
            }
        }
        i += 1;
    }
    // 4. Replies not needed: an op turned pending (its reply forgotten) is a relaxation, so if
    //    the history still fails, that reply is not part of the contradiction.
    let mut relaxed = Vec::new();
    let mut trial = best.clone();
    for i in 0..trial.len() {
        if checks >= SHRINK_CHECKS {
            break;
        }
        let Some(o) = trial.get(i).cloned() else {
            continue;
        };
        if o.outcome.is_none() {
            continue;
        }
        if let Some(t) = trial.get_mut(i) {
            t.outcome = None;
            t.complete_us = None;
        }
        checks += 1;
        if fails_from(&trial, &starts) {
            relaxed.push(o.id);
        } else if let Some(t) = trial.get_mut(i) {
            *t = o;
        }
    }
    Shrunk {
        skipped,
        starts,
        ops: best,
        relaxed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: usize, cmd: Command, t: (u64, Option<u64>), status: Option<Status>) -> Op {
        Op {
            id,
            client: id,
            command: cmd,
            invoke_us: t.0,
            complete_us: t.1,
            outcome: status.map(|status| Outcome {
                status,
                data: Vec::new(),
            }),
            sent: Vec::new(),
            received: Vec::new(),
        }
    }

    fn reserve(loc: &str) -> Command {
        Command::Reserve {
            name: b"n".to_vec(),
            location: loc.as_bytes().to_vec(),
        }
    }

    fn check(ops: &[Op]) -> Verdict {
        check_name(&ops.iter().collect::<Vec<_>>(), None, 10_000)
    }

    #[test]
    fn one_winner_of_a_concurrent_reserve_is_linearizable() {
        let ops = [
            op(0, reserve("a"), (0, Some(10)), Some(Status::No)),
            op(1, reserve("b"), (1, Some(9)), Some(Status::Ok)),
        ];
        assert_eq!(check(&ops), Verdict::Linearizable);
    }

    #[test]
    fn two_winners_are_not() {
        let ops = [
            op(0, reserve("a"), (0, Some(10)), Some(Status::Ok)),
            op(1, reserve("b"), (1, Some(9)), Some(Status::Ok)),
        ];
        assert_eq!(check(&ops), Verdict::NotLinearizable);
    }

    #[test]
    fn real_time_order_is_respected() {
        // RESERVE completed before DELETE began: the DELETE must see it.
        let del = Command::Delete {
            name: b"n".to_vec(),
        };
        let ops = [
            op(0, reserve("a"), (0, Some(5)), Some(Status::Ok)),
            op(1, del.clone(), (6, Some(9)), Some(Status::No)),
        ];
        assert_eq!(check(&ops), Verdict::NotLinearizable);
        let overlapping = [
            op(0, reserve("a"), (0, Some(7)), Some(Status::Ok)),
            op(1, del, (6, Some(9)), Some(Status::No)),
        ];
        assert_eq!(check(&overlapping), Verdict::Linearizable);
    }

    #[test]
    fn pending_ops_may_or_may_not_have_taken_effect() {
        let ops = [
            op(0, reserve("a"), (0, None), None),
            op(1, reserve("b"), (10, Some(20)), Some(Status::No)),
        ];
        assert_eq!(check(&ops), Verdict::Linearizable);
        let ops = [
            op(0, reserve("a"), (0, None), None),
            op(1, reserve("b"), (10, Some(20)), Some(Status::Ok)),
        ];
        assert_eq!(check(&ops), Verdict::Linearizable);
    }

    #[test]
    fn find_data_must_match_the_state() {
        let find = Command::Find {
            name: b"n".to_vec(),
        };
        let mut f = op(1, find, (10, Some(20)), Some(Status::Ok));
        let ops = [
            op(0, reserve("a"), (0, Some(5)), Some(Status::Ok)),
            f.clone(),
        ];
        assert_eq!(check(&ops), Verdict::NotLinearizable);
        if let Some(o) = &mut f.outcome {
            o.data.push(Record {
                name: b"n".to_vec(),
                entry: MailboxEntry::Reserved {
                    location: b"a".to_vec(),
                },
            });
        }
        let ops = [op(0, reserve("a"), (0, Some(5)), Some(Status::Ok)), f];
        assert_eq!(check(&ops), Verdict::Linearizable);
    }

    #[test]
    fn delete_of_a_missing_name_may_be_ok() {
        let del = Command::Delete {
            name: b"n".to_vec(),
        };
        let ops = [
            op(0, del.clone(), (0, Some(5)), Some(Status::Ok)),
            op(1, reserve("a"), (6, Some(9)), Some(Status::Ok)),
            op(2, del, (10, Some(15)), Some(Status::Ok)),
            op(3, reserve("b"), (16, Some(19)), Some(Status::Ok)),
        ];
        assert_eq!(check(&ops), Verdict::Linearizable);
    }

    #[test]
    fn many_concurrent_reads_stay_cheap() {
        // 40 FINDs concurrent with one RESERVE: the even ones saw nothing, the odd ones saw it.
        let mut ops = vec![op(0, reserve("a"), (0, Some(1000)), Some(Status::Ok))];
        for i in 1..=40u64 {
            let mut f = op(
                i as usize,
                Command::Find {
                    name: b"n".to_vec(),
                },
                (i, Some(900 + i)),
                Some(Status::Ok),
            );
            if i % 2 == 1
                && let Some(o) = &mut f.outcome
            {
                o.data.push(Record {
                    name: b"n".to_vec(),
                    entry: MailboxEntry::Reserved {
                        location: b"a".to_vec(),
                    },
                });
            }
            ops.push(f);
        }
        let refs: Vec<&Op> = ops.iter().collect();
        assert_eq!(check_name(&refs, None, 5_000), Verdict::Linearizable);
        // A read that saw it completed before one that did not began: impossible.
        ops[1].complete_us = Some(10);
        ops[2].invoke_us = 20;
        let refs: Vec<&Op> = ops.iter().collect();
        assert_eq!(check_name(&refs, None, 5_000), Verdict::NotLinearizable);
    }

    #[test]
    fn the_step_bound_gives_inconclusive() {
        let ops: Vec<Op> = (0..12)
            .map(|i| op(i, reserve("a"), (0, Some(100)), Some(Status::Ok)))
            .collect();
        let refs: Vec<&Op> = ops.iter().collect();
        assert_eq!(check_name(&refs, None, 50), Verdict::Inconclusive);
    }

    #[test]
    fn shrinking_keeps_a_failing_core() {
        let find = Command::Find {
            name: b"n".to_vec(),
        };
        let mut ops = Vec::new();
        for i in 0..20u64 {
            ops.push(op(
                ops.len(),
                find.clone(),
                (i * 10, Some(i * 10 + 5)),
                Some(Status::Ok),
            ));
        }
        ops.push(op(20, reserve("a"), (300, Some(310)), Some(Status::Ok)));
        ops.push(op(21, reserve("b"), (320, Some(330)), Some(Status::Ok)));
        ops.push(op(22, find, (400, Some(410)), Some(Status::Ok)));
        let small = shrink(&ops);
        assert!(fails_from(&small.ops, &small.starts));
        let ids: Vec<usize> = small.ops.iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![21]);
        assert!(
            small.relaxed.is_empty(),
            "the one reply is the contradiction"
        );
        assert_eq!(small.skipped, 21);
        assert_eq!(
            small.starts,
            vec![Some(MailboxEntry::Reserved {
                location: b"a".to_vec()
            })]
        );
    }
}

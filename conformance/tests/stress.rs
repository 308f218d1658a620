//! `conformance stress`: the reference servers pass under several seeds; the concurrency bugs
//! of the fault switches that single-connection transcripts cannot see (`ReserveRace`,
//! `AppendNotAtomic`) are found within a bounded number of ops; and the checkers are tested on
//! hand-written histories. Runs are bounded by op counts; nothing asserts on timing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use clap::Parser as _;
use conformance::cli::{Cli, SuiteArg, main_with};
use conformance::embedded::{Embedded, start, start_with};
use conformance::stress::history::{Op, Outcome, Status, StreamLine, StreamLog};
use conformance::stress::mupdate::{MupdateRun, OpGen, pool};
use conformance::stress::{Spec, StressReport, check_mupdate, render, run};
use murder_model::{Command, MailboxEntry, Record};

fn spec(emb: &Embedded, suite: SuiteArg, seed: u64, ops: u64) -> Spec {
    let (user, pw) = emb.creds.user.clone().unwrap();
    let addr = match suite {
        SuiteArg::Mupdate => emb.mupdate.local_addr(),
        SuiteArg::Imap => emb.imap.local_addr(),
    };
    let mut s = Spec::new(suite, &addr.to_string(), &user, &pw, seed);
    s.duration = None;
    s.ops = Some(ops);
    s
}

fn kinds(r: &StressReport) -> Vec<&str> {
    r.violations.iter().map(|v| v.kind.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_servers_pass_under_several_seeds() {
    let emb = start().await.unwrap();
    for seed in [1, 2, 3] {
        let r = run(&spec(&emb, SuiteArg::Mupdate, seed, 400), None)
            .await
            .unwrap();
        assert!(r.ok(), "{}", render(&r));
        assert!(r.inconclusive.is_empty(), "{}", render(&r));
        assert_eq!(r.ops, 400 + 4, "400 ops and the 4 final FINDs");
        assert_eq!(r.pending, 0);
    }
    for seed in [1, 2] {
        let r = run(&spec(&emb, SuiteArg::Imap, seed, 10), None)
            .await
            .unwrap();
        assert!(r.ok(), "{}", render(&r));
        assert_eq!(r.ops, 10);
    }
    emb.shutdown().await;
}

/// The reference servers with one MUPDATE fault switched on.
async fn mupdate_mutant(fault: murder_server::mupdate::Fault) -> Embedded {
    start_with(
        [fault].into_iter().collect(),
        murder_server::imap::Faults::default(),
    )
    .await
    .unwrap()
}

/// Runs of `ops` ops with seeds 0, 1, ... (at most `tries`) until one reports a violation of
/// `kind`.
async fn find(
    emb: &Embedded,
    suite: SuiteArg,
    ops: u64,
    tries: u64,
    kind: &str,
) -> Option<StressReport> {
    for seed in 0..tries {
        let r = run(&spec(emb, suite, seed, ops), None).await.unwrap();
        if kinds(&r).contains(&kind) {
            return Some(r);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_race_is_found() {
    let emb = mupdate_mutant(murder_server::mupdate::Fault::ReserveRace).await;
    let found = find(&emb, SuiteArg::Mupdate, 400, 5, "linearizability").await;
    emb.shutdown().await;
    let r = found.expect("5 runs of 400 ops never caught the RESERVE race");
    let text = render(&r);
    eprintln!("{text}");
    assert!(text.contains("RESERVE"), "{text}");
    assert!(text.contains("replay"), "{text}");
    assert!(text.contains(&format!("--seed {}", r.seed)), "{text}");
    // Some shrunk counterexample is small (two RESERVEs and what sits between them, or a read
    // after the quiescent point that the racy write spoiled).
    let smallest = r
        .violations
        .iter()
        .filter(|v| v.kind == "linearizability")
        .map(|v| v.detail.matches(" C: ").count())
        .min()
        .unwrap();
    assert!((1..=12).contains(&smallest), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_exits_1_on_a_violation_with_a_replay_line() {
    let emb = mupdate_mutant(murder_server::mupdate::Fault::ReserveRace).await;
    let (user, pw) = emb.creds.user.clone().unwrap();
    let addr = emb.mupdate.local_addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("s.json");
    let mut code = 0;
    for seed in 0..5 {
        let seed = seed.to_string();
        let cli = Cli::parse_from([
            "conformance",
            "stress",
            "--target",
            &addr,
            "--user",
            &user,
            "--password",
            &pw,
            "--ops",
            "400",
            "--seed",
            &seed,
            "--json",
            json.to_str().unwrap(),
        ]);
        code = main_with(cli).await;
        if code != 0 {
            break;
        }
    }
    emb.shutdown().await;
    assert_eq!(code, 1, "5 runs of 400 ops never caught the RESERVE race");
    let text = std::fs::read_to_string(&json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let r = &v["stress"][0];
    assert_eq!(r["suite"], "mupdate", "detected from the greeting");
    assert!(r["violations"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(
        r["replay"]
            .as_str()
            .is_some_and(|l| l.contains("--seed") && l.contains(&addr)),
        "{r}"
    );
    assert!(
        !text.contains(&pw),
        "the password never appears in a report"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_atomic_multiappend_is_found() {
    let emb = start_with(
        murder_server::mupdate::Faults::default(),
        murder_server::imap::Faults::only(murder_server::imap::Fault::AppendNotAtomic),
    )
    .await
    .unwrap();
    let found = find(&emb, SuiteArg::Imap, 4, 3, "multiappend-not-atomic").await;
    emb.shutdown().await;
    assert!(found.is_some(), "3 runs never saw a partial MULTIAPPEND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_noop_barrier_is_found() {
    let emb = mupdate_mutant(murder_server::mupdate::Fault::NoNoopBarrier).await;
    let found = find(&emb, SuiteArg::Mupdate, 100, 3, "stream-missed-change").await;
    emb.shutdown().await;
    assert!(
        found.is_some(),
        "3 runs never missed a change at the barrier"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_runs_and_refuses_other_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("s.json");
    let cli = Cli::parse_from([
        "conformance",
        "stress",
        "--suite",
        "mupdate",
        "--ops",
        "60",
        "--clients",
        "3",
        "--seed",
        "11",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(main_with(cli).await, 0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["stress"][0]["seed"], 11);
    assert_eq!(v["stress"][0]["ops"], 64);
    let cli = Cli::parse_from([
        "conformance",
        "stress",
        "--target",
        "192.0.2.1:3905",
        "--user",
        "u",
        "--ops",
        "1",
    ]);
    assert_eq!(main_with(cli).await, 2);
}

#[test]
fn the_same_seed_generates_the_same_ops() {
    let names = pool("abcdef", 4);
    let seq = |seed, client| {
        let mut g = OpGen::new(seed, client);
        (0..50).map(|_| g.next(&names)).collect::<Vec<_>>()
    };
    assert_eq!(seq(5, 2), seq(5, 2));
    assert_ne!(seq(5, 2), seq(6, 2));
    assert_ne!(seq(5, 2), seq(5, 3));
}

// ---- the checker on hand-written histories ----

fn name() -> Vec<u8> {
    b"n".to_vec()
}

fn op(
    id: usize,
    command: Command,
    t: (u64, Option<u64>),
    out: Option<(Status, Vec<Record>)>,
) -> Op {
    Op {
        id,
        client: id,
        command,
        invoke_us: t.0,
        complete_us: t.1,
        outcome: out.map(|(status, data)| Outcome { status, data }),
        sent: b"X\r\n".to_vec(),
        received: Vec::new(),
    }
}

fn reserve(loc: &str) -> Command {
    Command::Reserve {
        name: name(),
        location: loc.as_bytes().to_vec(),
    }
}

fn reserved(loc: &str) -> Option<MailboxEntry> {
    Some(MailboxEntry::Reserved {
        location: loc.as_bytes().to_vec(),
    })
}

fn line(at_us: u64, state: Option<MailboxEntry>) -> StreamLine {
    StreamLine {
        at_us,
        name: name(),
        state,
        raw: b"U1 ...".to_vec(),
    }
}

fn history(ops: Vec<Op>, lines: Vec<StreamLine>, barrier_ok: bool) -> MupdateRun {
    MupdateRun {
        ops,
        streams: vec![StreamLog {
            id: 0,
            lines,
            barrier_ok,
            error: None,
        }],
        final_states: Some(BTreeMap::from([(name(), reserved("a"))])),
        names: vec![name()],
        elapsed: std::time::Duration::ZERO,
    }
}

fn check(run: &MupdateRun) -> Vec<String> {
    let (v, inconclusive) = check_mupdate(run, 100_000);
    assert!(inconclusive.is_empty(), "{inconclusive:?}");
    v.into_iter().map(|v| v.kind).collect()
}

fn ok() -> Option<(Status, Vec<Record>)> {
    Some((Status::Ok, Vec::new()))
}

fn no() -> Option<(Status, Vec<Record>)> {
    Some((Status::No, Vec::new()))
}

#[test]
fn checker_accepts_a_linearizable_history_and_its_stream() {
    let run = history(
        vec![
            op(0, reserve("a"), (0, Some(10)), ok()),
            op(1, reserve("b"), (2, Some(12)), no()),
        ],
        vec![line(8, reserved("a"))],
        true,
    );
    assert_eq!(check(&run), Vec::<String>::new());
}

#[test]
fn checker_rejects_two_reserve_winners() {
    let run = history(
        vec![
            op(0, reserve("a"), (0, Some(10)), ok()),
            op(1, reserve("b"), (2, Some(12)), ok()),
        ],
        vec![line(8, reserved("b")), line(9, reserved("a"))],
        true,
    );
    assert_eq!(check(&run), vec!["linearizability"]);
}

#[test]
fn checker_lets_pending_ops_go_either_way() {
    // A reservation that never got its reply, seen by the stream and by the RESERVE refused
    // later: it took effect.
    let run = history(
        vec![
            op(0, reserve("a"), (0, None), None),
            op(1, reserve("b"), (20, Some(30)), no()),
        ],
        vec![line(8, reserved("a"))],
        true,
    );
    let (v, inconclusive) = check_mupdate(&run, 100_000);
    assert!(v.is_empty(), "{v:?}");
    // The final states are not compared while an op is pending.
    assert_eq!(inconclusive.len(), 1);
}

#[test]
fn checker_rejects_a_stream_inventing_a_state() {
    let run = history(
        vec![op(0, reserve("a"), (0, Some(10)), ok())],
        vec![line(5, reserved("zzz")), line(8, reserved("a"))],
        true,
    );
    assert_eq!(check(&run), vec!["stream-invented-state"]);
    // A state shown before the only write producing it was even sent is invented too.
    let run = history(
        vec![op(0, reserve("a"), (50, Some(60)), ok())],
        vec![line(5, reserved("a"))],
        true,
    );
    assert_eq!(check(&run), vec!["stream-invented-state"]);
}

#[test]
fn checker_rejects_a_stream_missing_the_barrier() {
    let ops = vec![op(0, reserve("a"), (0, Some(10)), ok())];
    // The barrier was answered, but the stream never showed the change.
    let run = history(ops.clone(), Vec::new(), true);
    assert_eq!(check(&run), vec!["stream-missed-change"]);
    // The barrier was never answered.
    let run = history(ops, vec![line(8, reserved("a"))], false);
    assert_eq!(check(&run), vec!["stream-barrier"]);
}

#[test]
fn checker_rejects_a_stream_reordering_changes() {
    let delete = Command::Delete { name: name() };
    let run = MupdateRun {
        final_states: Some(BTreeMap::from([(name(), None)])),
        ..history(
            vec![
                op(0, reserve("a"), (0, Some(10)), ok()),
                op(1, delete, (20, Some(30)), ok()),
            ],
            vec![line(25, None), line(26, reserved("a"))],
            true,
        )
    };
    let kinds = check(&run);
    assert!(kinds.contains(&"stream-order".to_string()), "{kinds:?}");
}

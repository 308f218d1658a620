//! The `murder-check` binary end to end: a passing check, a failing one that writes its
//! counterexamples as `.scn` files, and the MULTIAPPEND subcommand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

fn murder_check(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_murder-check"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run murder-check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn default_check_passes() {
    let (ok, text) = murder_check(&["check", "--backends", "2", "--slaves", "1"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("holds          Always \"no two backends serve the same mailbox\""),
        "{text}"
    );
    assert!(!text.contains("COUNTEREXAMPLE"), "{text}");
}

#[test]
fn no_repair_fails_and_writes_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, text) = murder_check(&[
        "check",
        "--crashes",
        "1",
        "--crash",
        "backends",
        "--no-repair",
        "--bfs",
        "--shrink",
        "--scenario-dir",
        d,
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("COUNTEREXAMPLE Always \"at rest no reservation is left"),
        "{text}"
    );
    let file = dir
        .path()
        .join("model-at-rest-no-reservation-is-left-and-every-held-mailbox-is-active.scn");
    let scn = std::fs::read_to_string(&file).unwrap();
    assert!(scn.contains(
        "id: mupdate/model-at-rest-no-reservation-is-left-and-every-held-mailbox-is-active"
    ));
    assert!(scn.contains(">! X1 RESERVE \"$box\" \"$host!p\""), "{scn}");
    assert!(scn.contains("# model: ! crash be0"), "{scn}");
}

#[test]
fn append_subcommand_catches_per_message_appends() {
    let (ok, text) = murder_check(&["append", "--sessions", "2", "--batches", "1"]);
    assert!(ok, "{text}");
    let (ok, text) = murder_check(&[
        "append",
        "--sessions",
        "2",
        "--batches",
        "1",
        "--bug",
        "per-message",
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("COUNTEREXAMPLE Always \"the observer never sees part of a batch\""),
        "{text}"
    );
}

#[test]
fn bfs_and_dfs_flags_are_exclusive() {
    let (ok, text) = murder_check(&["check", "--bfs", "--dfs"]);
    assert!(!ok);
    assert!(text.contains("exclusive"), "{text}");
}

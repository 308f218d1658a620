//! Exhaustive checks of the MULTIAPPEND model: the correct server holds every property (unique
//! state counts pinned); each broken server is caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use murder_model::murder::multiappend_model::*;
use stateright::Model;

fn check(label: &str, cfg: AppendConfig) -> usize {
    support::check(label, AppendModel { cfg })
}

fn discovers(label: &str, cfg: AppendConfig, property: &'static str) {
    let (_, path) = support::discovery(label, AppendModel { cfg }, property, true);
    println!("{path}");
}

fn bugged(bugs: AppendBugs) -> AppendConfig {
    AppendConfig {
        bugs,
        ..AppendConfig::small()
    }
}

#[test]
fn two_sessions_one_crash_hold() {
    assert_eq!(
        check("2 sessions x 1 batch of 2, 1 crash", AppendConfig::small()),
        139
    );
}

#[test]
fn two_sessions_two_batches_hold() {
    let cfg = AppendConfig {
        batches: 2,
        ..AppendConfig::small()
    };
    assert_eq!(check("2 sessions x 2 batches of 2, 1 crash", cfg), 2557);
}

#[test]
fn three_sessions_two_batches_two_crashes_hold() {
    let cfg = AppendConfig {
        sessions: 3,
        batches: 2,
        crashes: 2,
        ..AppendConfig::small()
    };
    assert_eq!(check("3 sessions x 2 batches of 2, 2 crashes", cfg), 206098);
}

#[test]
fn per_message_append_shows_part_of_a_batch() {
    let b = AppendBugs {
        per_message: true,
        ..AppendBugs::default()
    };
    discovers("bug: per-message append", bugged(b), OBSERVER_WHOLE_BATCHES);
}

#[test]
fn per_message_append_leaves_part_of_a_batch_after_a_crash() {
    let b = AppendBugs {
        per_message: true,
        ..AppendBugs::default()
    };
    discovers(
        "bug: per-message append, crash",
        bugged(b),
        STORE_WHOLE_BATCHES,
    );
}

#[test]
fn uidnext_not_persisted_reuses_a_uid() {
    let b = AppendBugs {
        uidnext_not_persisted: true,
        ..AppendBugs::default()
    };
    discovers("bug: UIDNEXT not persisted", bugged(b), UIDS_NEVER_REUSED);
}

#[test]
fn appenduid_from_sequence_numbers_is_caught() {
    let b = AppendBugs {
        appenduid_from_seqnums: true,
        ..AppendBugs::default()
    };
    discovers("bug: APPENDUID from seqnums", bugged(b), APPENDUID_EXACT);
}

#[test]
fn every_sometimes_property_is_reached() {
    // assert_properties in the checks above already fails on an unreached Sometimes; this
    // names them so a renamed property is noticed.
    let names: Vec<&str> = AppendModel {
        cfg: AppendConfig::small(),
    }
    .properties()
    .iter()
    .map(|p| p.name)
    .collect();
    for n in [SOME_COMMIT, SOME_CRASH, SOME_TWO_BATCHES] {
        assert!(names.contains(&n));
    }
}

//! Integration tests of `murder_server::store`: every command against the oracle, the change
//! stream, group commit under concurrency, slave operations and disk errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use murder_model::{Change, Command, MailboxDb, MailboxEntry, Record, Refusal};
use murder_server::store::{FaultInjector, MupdateStore, StoreConfig, StoreError};

/// Generous bound for waiting on an event that must happen; only fires on failure.
const PATIENCE: Duration = Duration::from_secs(30);

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn activate(n: &str, l: &str, a: &str) -> Command {
    Command::Activate {
        name: b(n),
        location: b(l),
        acl: b(a),
    }
}

fn reserve(n: &str, l: &str) -> Command {
    Command::Reserve {
        name: b(n),
        location: b(l),
    }
}

fn deactivate(n: &str, l: &str) -> Command {
    Command::Deactivate {
        name: b(n),
        location: b(l),
    }
}

fn delete(n: &str) -> Command {
    Command::Delete { name: b(n) }
}

fn find(n: &str) -> Command {
    Command::Find { name: b(n) }
}

fn list(prefix: Option<&str>) -> Command {
    Command::List {
        prefix: prefix.map(b),
    }
}

fn upsert_active(n: &str, l: &str, a: &str) -> Record {
    Record {
        name: b(n),
        entry: MailboxEntry::Active {
            location: b(l),
            acl: b(a),
        },
    }
}

async fn open(dir: &std::path::Path) -> MupdateStore {
    MupdateStore::open(StoreConfig::new(dir)).await.unwrap()
}

/// Every command kind, including refusals and invalid names, gives the oracle's reply, and the
/// state survives close and reopen.
#[tokio::test]
async fn every_command_matches_the_oracle_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let script = vec![
        reserve("user.a", "h1!p"),
        reserve("user.a", "h2!p"),
        find("user.a"),
        activate("user.a", "h1!p", "a\tlrs\t"),
        activate("user.b", "h2!q", ""),
        reserve("user.a.sub", "h1!p"),
        deactivate("user.zz", "h1!p"),
        deactivate("user.a.sub", "h1!p"),
        deactivate("user.b", "h3!r"),
        delete("nope"),
        delete("user.a.sub"),
        activate("", "h1!p", ""),
        activate("bad\r\nname", "h1!p", ""),
        find("bad\0name"),
        find("user.a"),
        find("user.b"),
        find("missing"),
        list(None),
        list(Some("h1")),
        list(Some("h3!")),
        list(Some("nothing")),
        activate("ord.a0", "h1!p", ""),
        activate("ord.a.b", "h1!p", ""),
        activate("ord.a", "h1!p", ""),
        activate("ord.A", "h1!p", ""),
        list(Some("h1!")),
    ];
    let mut oracle = MailboxDb::new();
    let mut writes = 0u64;
    for command in &script {
        let (want, change) = oracle.apply(command);
        writes += u64::from(change.is_some());
        let got = store.execute(command.clone()).await.unwrap();
        assert_eq!(got, want, "reply to {command:?}");
    }
    // Some of each refusal kind really happened.
    let refusals: Vec<Result<(), Refusal>> = {
        let mut o = MailboxDb::new();
        script.iter().map(|c| o.apply(c).0.result).collect()
    };
    for r in [
        Refusal::AlreadyExists,
        Refusal::NoSuchMailbox,
        Refusal::NotActive,
        Refusal::InvalidName,
    ] {
        assert!(refusals.contains(&Err(r)), "script exercises {r:?}");
    }
    assert_eq!(*store.snapshot(), oracle);
    assert_eq!(store.committed_seq(), writes);
    store.clone().close().await;
    assert_eq!(
        store.execute(activate("late", "h", "")).await,
        Err(StoreError::Closed)
    );
    // Reads still work on a closed store.
    assert_eq!(store.execute(find("user.a")).await.unwrap().data.len(), 1);

    let reopened = open(dir.path()).await;
    assert_eq!(*reopened.snapshot(), oracle);
    assert_eq!(reopened.committed_seq(), writes, "sequence numbers persist");
    reopened.close().await;
}

/// A subscriber gets the snapshot, then every later change once, in order, with consecutive
/// sequence numbers; applying them to the snapshot gives the final state.
#[tokio::test]
async fn subscribe_gets_snapshot_then_every_later_change_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..5 {
        store
            .execute(activate(&format!("pre.{i}"), "h!p", ""))
            .await
            .unwrap();
    }
    let (records, mut sub) = store.subscribe();
    assert_eq!(records.len(), 5);
    assert_eq!(sub.start_seq(), 5);
    assert_eq!(sub.try_recv(), Ok(None));

    let mut expected = Vec::new();
    let mut oracle: MailboxDb = records.iter().cloned().collect();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let name = format!("t{t}.m{}", i % 7);
                    let command = match i % 4 {
                        0 => reserve(&name, "h!p"),
                        1 => activate(&name, "h!p", "acl"),
                        2 => deactivate(&name, "x!y"),
                        _ => delete(&name),
                    };
                    store.execute(command).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let last = store.committed_seq();
    let mut seq = sub.start_seq();
    while seq < last {
        let (s, change) = tokio::time::timeout(PATIENCE, sub.recv())
            .await
            .expect("change arrives")
            .unwrap();
        assert_eq!(s, seq + 1, "no gap, no duplicate");
        seq = s;
        oracle.apply_change(&change);
        expected.push(change);
    }
    assert_eq!(sub.try_recv(), Ok(None), "nothing beyond committed_seq");
    assert_eq!(oracle, *store.snapshot());
    assert!(!expected.is_empty());
    store.close().await;
}

/// 8 concurrent tasks each write their own names; every write is acknowledged OK, the final
/// state has them all, and the sequence numbers count exactly the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_writers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    const PER_TASK: usize = 50;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let r = store
                        .execute(activate(&format!("user.t{t}.{i}"), "h!p", "acl"))
                        .await
                        .unwrap();
                    assert_eq!(r.result, Ok(()));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.snapshot().len(), 8 * PER_TASK);
    assert_eq!(store.committed_seq(), (8 * PER_TASK) as u64);
    store.close().await;
    let reopened = open(dir.path()).await;
    assert_eq!(reopened.snapshot().len(), 8 * PER_TASK);
    reopened.close().await;
}

/// A subscriber that does not read gets an explicit `Lagged` once the buffer overflows, and
/// keeps getting it: it is never skipped forward silently.
#[tokio::test]
async fn lagging_subscriber_gets_lagged_not_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.subscriber_buffer = 4;
    let store = MupdateStore::open(config).await.unwrap();
    let (_, mut slow) = store.subscribe();
    let (_, mut fast) = store.subscribe();
    for i in 0..10 {
        store
            .execute(activate(&format!("m{i}"), "h!p", ""))
            .await
            .unwrap();
        // The fast one keeps up.
        let (seq, _) = fast.try_recv().unwrap().expect("change is there");
        assert_eq!(seq, i + 1);
    }
    let lagged = slow.recv().await.unwrap_err();
    assert!(lagged.missed > 0);
    assert_eq!(slow.try_recv(), Err(lagged), "lagged is sticky");
    assert_eq!(slow.recv().await, Err(lagged), "lagged is sticky");
    store.close().await;
}

/// Resync replaces everything in one transaction and emits exactly the difference.
#[tokio::test]
async fn resync_emits_exactly_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for c in [
        activate("keep", "h!p", "acl"),
        activate("change", "h!p", "old"),
        reserve("vanish", "h!p"),
        activate("vanish.too", "h!p", ""),
    ] {
        store.execute(c).await.unwrap();
    }
    let (_, mut sub) = store.subscribe();
    let master = vec![
        upsert_active("new", "h2!p", ""),
        upsert_active("keep", "h!p", "acl"),
        upsert_active("change", "h!p", "new"),
    ];
    store.resync(master.clone()).await.unwrap();
    let mut got = Vec::new();
    while let Some((_, c)) = sub.try_recv().unwrap() {
        got.push(c);
    }
    let want = vec![
        Change::Upsert(upsert_active("change", "h!p", "new")),
        Change::Upsert(upsert_active("new", "h2!p", "")),
        Change::Delete { name: b("vanish") },
        Change::Delete {
            name: b("vanish.too"),
        },
    ];
    assert_eq!(got, want);
    let expect: MailboxDb = master.into_iter().collect();
    assert_eq!(*store.snapshot(), expect);
    // Resync to the same state changes nothing and emits nothing.
    let seq = store.committed_seq();
    store.resync(expect.records().collect()).await.unwrap();
    assert_eq!(store.committed_seq(), seq);
    assert_eq!(sub.try_recv(), Ok(None));
    store.close().await;
    let reopened = open(dir.path()).await;
    assert_eq!(*reopened.snapshot(), expect);
    reopened.close().await;
}

/// A slave applies its master's stream: upserts and deletes land durably and are forwarded;
/// a DELETE of an unknown name is a no-op and is not forwarded.
#[tokio::test]
async fn replicated_changes_apply_and_forward() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (_, mut sub) = store.subscribe();
    let changes = vec![
        Change::Upsert(upsert_active("a", "h!p", "")),
        Change::Delete { name: b("unknown") },
        Change::Upsert(Record {
            name: b("b"),
            entry: MailboxEntry::Reserved { location: b("h!q") },
        }),
        Change::Delete { name: b("a") },
    ];
    let mut oracle = MailboxDb::new();
    for c in &changes {
        oracle.apply_change(c);
        store.apply_replicated(c.clone()).await.unwrap();
    }
    assert_eq!(*store.snapshot(), oracle);
    let mut forwarded = Vec::new();
    while let Some((_, c)) = sub.try_recv().unwrap() {
        forwarded.push(c);
    }
    let want: Vec<Change> = changes
        .into_iter()
        .filter(|c| c.name() != b"unknown")
        .collect();
    assert_eq!(forwarded, want);
    store.close().await;
    let reopened = open(dir.path()).await;
    assert_eq!(*reopened.snapshot(), oracle);
    reopened.close().await;
}

/// Disk full: the write answers a `StoreError`, reads keep working and show only
/// acknowledged writes, nothing acknowledged is lost, and the store recovers when the disk does.
#[tokio::test]
async fn disk_error_fails_the_write_and_reads_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultInjector::new();
    let store = MupdateStore::open_with_faults(StoreConfig::new(dir.path()), fault.clone())
        .await
        .unwrap();
    store
        .execute(activate("acked", "h!p", "acl"))
        .await
        .unwrap();
    let (_, mut sub) = store.subscribe();

    fault.set_fail_writes(true);
    let err = store
        .execute(activate("refused", "h!p", ""))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Storage { .. }), "{err:?}");
    assert!(fault.failures() > 0);
    // A second write while the disk is still full fails too (the reopen fails or the commit).
    assert!(store.execute(delete("acked")).await.is_err());
    // Reads still work and show exactly the acknowledged state.
    assert_eq!(store.execute(find("acked")).await.unwrap().data.len(), 1);
    assert!(
        store
            .execute(find("refused"))
            .await
            .unwrap()
            .data
            .is_empty()
    );
    assert_eq!(store.execute(list(None)).await.unwrap().data.len(), 1);
    assert_eq!(sub.try_recv(), Ok(None), "nothing refused is streamed");

    fault.set_fail_writes(false);
    store.execute(activate("after", "h!p", "")).await.unwrap();
    let (_, change) = tokio::time::timeout(PATIENCE, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change.name(), b"after");
    // The refused write left no trace in the writer either: the name is free.
    let r = store.execute(reserve("refused", "h!p")).await.unwrap();
    assert_eq!(r.result, Ok(()));
    assert_eq!(store.stats().failed_commits, 1);
    store.close().await;

    let reopened = open(dir.path()).await;
    let names: Vec<Vec<u8>> = reopened.snapshot().records().map(|r| r.name).collect();
    assert_eq!(names, vec![b("acked"), b("after"), b("refused")]);
    reopened.close().await;
}

/// A directory the store cannot create its file in, a store already open, or a bad config
/// fails `open` with an error, not a panic.
#[tokio::test]
async fn unusable_directory_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = MupdateStore::open(StoreConfig::new(&file))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Storage { .. }), "{err:?}");
    // The same store twice: the second open is refused (redb's file lock), not shared.
    let first = open(dir.path()).await;
    let err = MupdateStore::open(StoreConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Storage { .. }), "{err:?}");
    first.close().await;
    let mut bad = StoreConfig::new(dir.path());
    bad.max_batch = 0;
    assert!(matches!(
        MupdateStore::open(bad).await,
        Err(StoreError::Config { .. })
    ));
}

/// Waits (bounded) until `cond` holds; panics after `PATIENCE`. Not a timing assumption: it only
/// waits for an event that must happen.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Group commit, deterministically: while the writer sits in one commit's fsync, 40 more
/// writes queue up; they then go to disk in batches of at most `max_batch`, one commit each,
/// and every writer is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_share_commits_bounded_by_max_batch() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultInjector::new();
    let mut config = StoreConfig::new(dir.path());
    config.max_batch = 16;
    let store = MupdateStore::open_with_faults(config, fault.clone())
        .await
        .unwrap();
    let (_, mut sub) = store.subscribe();
    fault.set_hold_syncs(true);
    let first = {
        let store = store.clone();
        tokio::spawn(async move { store.execute(activate("first", "h!p", "")).await })
    };
    wait_until("the first commit to reach fsync", || {
        fault.syncs_waiting() == 1
    })
    .await;
    let rest: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.execute(activate(&format!("m{i}"), "h!p", "")).await })
        })
        .collect();
    wait_until("40 queued writes", || store.queued() == 40).await;
    assert_eq!(
        store.stats().commits,
        0,
        "nothing acknowledged before its fsync"
    );
    assert_eq!(
        sub.try_recv(),
        Ok(None),
        "nothing streamed before its fsync"
    );
    fault.set_hold_syncs(false);
    assert_eq!(first.await.unwrap().unwrap().result, Ok(()));
    for t in rest {
        assert_eq!(t.await.unwrap().unwrap().result, Ok(()));
    }
    let stats = store.stats();
    assert_eq!(stats.committed_seq, 41);
    // 1 commit for "first", then 40 queued writes in batches of at most 16.
    assert_eq!(stats.commits, 1 + 40_u64.div_ceil(16));
    assert_eq!(stats.failed_commits, 0);
    store.close().await;
}

/// An fsync that reports an error although the data landed: the writer is told "failed"
/// (the outcome is unknown to it), memory is rolled back, and before the next write the store
/// reopens the file, finds the commit there, adopts it and streams it, so memory, file and
/// subscribers never diverge.
#[tokio::test]
async fn commit_that_landed_despite_an_error_is_adopted_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultInjector::new();
    let store = MupdateStore::open_with_faults(StoreConfig::new(dir.path()), fault.clone())
        .await
        .unwrap();
    store.execute(activate("a", "h!p", "")).await.unwrap();
    let (_, mut sub) = store.subscribe();
    fault.fail_next_sync_after_syncing();
    assert!(matches!(
        store.execute(activate("b", "h!p", "")).await,
        Err(StoreError::Storage { .. })
    ));
    assert!(store.execute(find("b")).await.unwrap().data.is_empty());
    store.execute(activate("c", "h!p", "")).await.unwrap();
    let mut streamed = Vec::new();
    while let Some((seq, change)) = sub.try_recv().unwrap() {
        streamed.push((seq, change.name().to_vec()));
    }
    assert_eq!(streamed, vec![(2, b("b")), (3, b("c"))]);
    assert_eq!(store.execute(find("b")).await.unwrap().data.len(), 1);
    let expect = store.snapshot();
    store.close().await;
    let reopened = open(dir.path()).await;
    assert_eq!(reopened.snapshot(), expect);
    reopened.close().await;
}

/// A snapshot (plain or from `subscribe_snapshot`) is isolated from later commits, while new
/// snapshots and the stream show them.
#[tokio::test]
async fn held_snapshots_are_isolated_from_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.execute(activate("a", "h!p", "")).await.unwrap();
    let plain = store.snapshot();
    let (dump, mut sub) = store.subscribe_snapshot();
    assert_eq!(sub.start_seq(), 1);
    store.execute(delete("a")).await.unwrap();
    store.execute(reserve("b", "h!p")).await.unwrap();
    for held in [&plain, &dump] {
        let names: Vec<Vec<u8>> = held.records().map(|r| r.name).collect();
        assert_eq!(names, vec![b("a")]);
    }
    let mut view: MailboxDb = (*dump).clone();
    while let Some((_, change)) = sub.try_recv().unwrap() {
        view.apply_change(&change);
    }
    assert_eq!(view, *store.snapshot());
    assert_eq!(sub.last_seq(), 3);
    let names: Vec<Vec<u8>> = store.snapshot().records().map(|r| r.name).collect();
    assert_eq!(names, vec![b("b")]);
    store.close().await;
}

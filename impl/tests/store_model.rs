//! Property test: random sequences of commands, replicated changes, resyncs, reopen cycles and
//! injected "disk full" periods applied to the store agree at every step with the oracle (`murder_model::MailboxDb`), both in
//! replies and in state; a subscriber that applies its stream to its snapshot converges to the
//! same state; sequence numbers count exactly the changes and survive reopening. While the disk
//! is full a write may fail (then nothing of it may be visible) or be refused by the oracle, but
//! no change is ever acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::sync::Arc;

use murder_model::{Change, Command, MailboxDb, MailboxEntry, Record};
use murder_server::store::{FaultInjector, MupdateStore, StoreConfig, Subscription};
use proptest::prelude::*;

/// One step of a test run.
#[derive(Clone, Debug)]
enum Step {
    Execute(Command),
    Replicated(Change),
    Resync(Vec<Record>),
    Reopen,
    /// Check the snapshot held since the last such step, then take a new one and hold it (so
    /// commits happen while a snapshot is in use).
    HoldSnapshot,
    /// Turn the injected "disk full" fault on or off.
    DiskFull(bool),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::sample::select(vec!["a", "a.b", "a.b.c", "a b", "b", "user.x", "ord.a0"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::sample::select(vec!["", "bad\r\nname", "nul\0"]).prop_map(|s| s.as_bytes().to_vec()),
    ]
}

fn location() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec!["h1!p", "h2!q", "h1!r", ""]).prop_map(|s| s.as_bytes().to_vec())
}

fn acl() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec!["", "u\tlrs\t", "anyone\tlr\t"]).prop_map(|s| s.as_bytes().to_vec())
}

fn entry() -> impl Strategy<Value = MailboxEntry> {
    prop_oneof![
        location().prop_map(|location| MailboxEntry::Reserved { location }),
        (location(), acl()).prop_map(|(location, acl)| MailboxEntry::Active { location, acl }),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (name(), entry()).prop_map(|(name, entry)| Record { name, entry })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (name(), location(), acl()).prop_map(|(name, location, acl)| Command::Activate {
            name,
            location,
            acl
        }),
        (name(), location()).prop_map(|(name, location)| Command::Reserve { name, location }),
        (name(), location()).prop_map(|(name, location)| Command::Deactivate { name, location }),
        name().prop_map(|name| Command::Delete { name }),
        name().prop_map(|name| Command::Find { name }),
        prop::option::of(location()).prop_map(|prefix| Command::List { prefix }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => command().prop_map(Step::Execute),
        2 => prop_oneof![
            record().prop_map(Change::Upsert),
            name().prop_map(|name| Change::Delete { name }),
        ]
        .prop_map(Step::Replicated),
        1 => prop::collection::vec(record(), 0..6).prop_map(Step::Resync),
        1 => Just(Step::Reopen),
        2 => Just(Step::HoldSnapshot),
        2 => any::<bool>().prop_map(Step::DiskFull),
    ]
}

/// A subscriber's view: its snapshot plus every change it received.
struct Follower {
    view: MailboxDb,
    sub: Subscription,
}

impl Follower {
    fn new(store: &MupdateStore) -> Self {
        let (records, sub) = store.subscribe();
        Follower {
            view: records.into_iter().collect(),
            sub,
        }
    }

    fn catch_up(&mut self) {
        while let Some((_, change)) = self.sub.try_recv().unwrap() {
            self.view.apply_change(&change);
        }
    }
}

/// How many changes a resync from `old` to the state of `records` must emit: names whose entry
/// differs (counted here independently of the store's diff code).
fn resync_change_count(old: &MailboxDb, records: &[Record]) -> u64 {
    let new: MailboxDb = records.iter().cloned().collect();
    let names: BTreeSet<Vec<u8>> = old.records().chain(new.records()).map(|r| r.name).collect();
    names.iter().filter(|n| old.get(n) != new.get(n)).count() as u64
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let fault = FaultInjector::new();
        let open = || MupdateStore::open_with_faults(StoreConfig::new(dir.path()), fault.clone());
        let mut store = open().await.unwrap();
        let mut follower = Follower::new(&store);
        let mut oracle = MailboxDb::new();
        let mut seq = 0u64;
        let mut held: Option<(Arc<MailboxDb>, MailboxDb)> = None;
        let mut disk_full = false;
        for step in steps {
            match step {
                Step::Execute(command) => {
                    let mut next = oracle.clone();
                    let (want, change) = next.apply(&command);
                    match store.execute(command.clone()).await {
                        Ok(got) => {
                            prop_assert_eq!(got, want, "reply to {:?}", command);
                            prop_assert!(
                                !(disk_full && change.is_some()),
                                "a change was acknowledged while the disk is full"
                            );
                            seq += u64::from(change.is_some());
                            oracle = next;
                        }
                        Err(e) => prop_assert!(disk_full, "{:?} failed: {}", command, e),
                    }
                }
                Step::Replicated(change) => {
                    let changes_state =
                        oracle.get(change.name()).is_some() || matches!(change, Change::Upsert(_));
                    match store.apply_replicated(change.clone()).await {
                        Ok(()) => {
                            prop_assert!(!(disk_full && changes_state));
                            seq += u64::from(changes_state);
                            oracle.apply_change(&change);
                        }
                        Err(e) => prop_assert!(disk_full, "replicated {:?} failed: {}", change, e),
                    }
                }
                Step::Resync(records) => {
                    let count = resync_change_count(&oracle, &records);
                    match store.resync(records.clone()).await {
                        Ok(()) => {
                            prop_assert!(!(disk_full && count > 0));
                            seq += count;
                            oracle.replace_all(records);
                        }
                        Err(e) => prop_assert!(disk_full, "resync failed: {}", e),
                    }
                }
                Step::DiskFull(full) => {
                    disk_full = full;
                    fault.set_fail_writes(full);
                }
                Step::HoldSnapshot => {
                    if let Some((snapshot, then)) = held.take() {
                        prop_assert_eq!(&*snapshot, &then, "a held snapshot never changes");
                    }
                    held = Some((store.snapshot(), oracle.clone()));
                }
                Step::Reopen => {
                    // The disk comes back for the restart (an open on a full disk may fail).
                    disk_full = false;
                    fault.set_fail_writes(false);
                    follower.catch_up();
                    prop_assert_eq!(&follower.view, &oracle);
                    store.close().await;
                    store = open().await.unwrap();
                    follower = Follower::new(&store);
                }
            }
            prop_assert_eq!(&*store.snapshot(), &oracle);
            prop_assert_eq!(store.committed_seq(), seq);
        }
        fault.set_fail_writes(false);
        follower.catch_up();
        prop_assert_eq!(&follower.view, &oracle);
        store.close().await;
        let reopened = open().await.unwrap();
        prop_assert_eq!(&*reopened.snapshot(), &oracle);
        prop_assert_eq!(reopened.committed_seq(), seq);
        reopened.close().await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Store and oracle agree on every reply and state, across reopens.
    #[test]
    fn store_agrees_with_the_oracle(steps in prop::collection::vec(step(), 1..48)) {
        run(steps)?;
    }
}

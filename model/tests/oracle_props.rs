//! Properties of the oracle itself (`MailboxDb`, `concurrent_outcomes`, `MailStore`, uid-sets):
//! proptest for the database and MULTIAPPEND laws, one quickcheck round-trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::cmp::Ordering;

use murder_model::mailbox_db::{
    Change, Command, MailboxDb, Reply, concurrent_outcomes, cyrus_order,
};
use murder_model::multiappend::{AppendMessage, AppendOutcome, MailStore, parse_uid_set, uid_set};
use proptest::prelude::*;

/// Names from a small alphabet that includes the separator `.`, a byte just below and just above
/// it, and (rarely) a forbidden byte, so orders and invalid names are exercised.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![b'a', b'b', b'.', b'-', b' ', 0x1f, b'0', b'\n']),
        0..4,
    )
}

fn location() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        b"be1!p".to_vec(),
        b"be2!p".to_vec(),
        b"be1!q".to_vec(),
        b"be10!p".to_vec(),
    ])
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            name(),
            location(),
            prop::sample::select(vec![b"".to_vec(), b"a\tlrs\t".to_vec()])
        )
            .prop_map(|(name, location, acl)| Command::Activate {
                name,
                location,
                acl
            }),
        (name(), location()).prop_map(|(name, location)| Command::Reserve { name, location }),
        (name(), location()).prop_map(|(name, location)| Command::Deactivate { name, location }),
        name().prop_map(|name| Command::Delete { name }),
        name().prop_map(|name| Command::Find { name }),
        prop::option::of(prop::sample::select(vec![
            b"be1".to_vec(),
            b"be1!".to_vec(),
            b"be2!p".to_vec(),
            b"".to_vec()
        ]))
        .prop_map(|prefix| Command::List { prefix }),
    ]
}

fn commands() -> impl Strategy<Value = Vec<Command>> {
    prop::collection::vec(command(), 0..24)
}

/// Run `cmds` on a fresh database, returning it, the replies and the changes.
fn run(cmds: &[Command]) -> (MailboxDb, Vec<Reply>, Vec<Change>) {
    let mut db = MailboxDb::new();
    let mut replies = Vec::new();
    let mut changes = Vec::new();
    for c in cmds {
        let (r, ch) = db.apply(c);
        replies.push(r);
        changes.extend(ch);
    }
    (db, replies, changes)
}

proptest! {
    #[test]
    fn state_changes_only_on_ok(cmds in commands(), last in command()) {
        let (mut db, _, _) = run(&cmds);
        let before = db.clone();
        let (reply, change) = db.apply(&last);
        if reply.result.is_err() {
            prop_assert_eq!(&db, &before);
            prop_assert_eq!(&change, &None);
        }
        if change.is_none() {
            prop_assert_eq!(&db, &before);
        }
        if !last.is_write() {
            prop_assert_eq!(&db, &before);
        }
    }

    #[test]
    fn reserve_of_existing_name_never_succeeds(cmds in commands(), loc in location(), pick in any::<prop::sample::Index>()) {
        let (mut db, _, _) = run(&cmds);
        let names: Vec<Vec<u8>> = db.records().map(|r| r.name).collect();
        prop_assume!(!names.is_empty());
        let n = pick.get(&names).clone();
        let before = db.clone();
        let (reply, change) = db.apply(&Command::Reserve { name: n, location: loc });
        prop_assert!(reply.result.is_err());
        prop_assert_eq!(change, None);
        prop_assert_eq!(db, before);
    }

    #[test]
    fn activate_always_ok_for_valid_names(cmds in commands(), n in name(), loc in location()) {
        prop_assume!(murder_model::mailbox_db::is_valid_name(&n));
        let (mut db, _, _) = run(&cmds);
        let (reply, change) = db.apply(&Command::Activate { name: n.clone(), location: loc.clone(), acl: b"x".to_vec() });
        prop_assert_eq!(reply.result, Ok(()));
        prop_assert!(change.is_some());
        prop_assert!(db.get(&n).is_some_and(|e| e.is_active() && e.location() == loc.as_slice()));
    }

    #[test]
    fn delete_then_find_finds_nothing(cmds in commands(), n in name()) {
        let (mut db, _, _) = run(&cmds);
        db.apply(&Command::Delete { name: n.clone() });
        let (reply, _) = db.apply(&Command::Find { name: n.clone() });
        prop_assert_eq!(reply.result, Ok(()));
        prop_assert!(reply.data.is_empty());
        prop_assert!(db.get(&n).is_none());
    }

    #[test]
    fn list_is_every_record_strictly_increasing(cmds in commands()) {
        let (mut db, _, _) = run(&cmds);
        let (reply, _) = db.apply(&Command::List { prefix: None });
        prop_assert_eq!(reply.result, Ok(()));
        prop_assert_eq!(reply.data.len(), db.len());
        for w in reply.data.windows(2) {
            prop_assert_eq!(cyrus_order(&w[0].name, &w[1].name), Ordering::Less);
        }
        for r in &reply.data {
            prop_assert_eq!(db.get(&r.name), Some(&r.entry));
        }
    }

    #[test]
    fn list_prefix_is_a_filtered_subset(cmds in commands(), prefix in prop::sample::select(vec![b"be1".to_vec(), b"be1!".to_vec(), b"be2!p".to_vec(), b"zz".to_vec(), Vec::new()])) {
        let (db, _, _) = run(&cmds);
        let all = db.list(None);
        let some = db.list(Some(&prefix));
        let expect: Vec<_> = all.iter().filter(|r| r.entry.location().starts_with(&prefix)).cloned().collect();
        prop_assert_eq!(&some, &expect);
        for r in &some {
            prop_assert!(all.contains(r));
            prop_assert!(r.entry.location().starts_with(&prefix));
        }
    }

    #[test]
    fn streamed_changes_replay_the_master(cmds in commands()) {
        let (master, _, changes) = run(&cmds);
        let mut slave = MailboxDb::new();
        for c in &changes {
            slave.apply_change(c);
        }
        prop_assert_eq!(slave, master);
    }

    #[test]
    fn streams_replay_from_any_dump_point(cmds in commands(), cut in any::<prop::sample::Index>()) {
        // A slave that resyncs at any point (dump) and then follows the stream ends equal.
        let at = if cmds.is_empty() { 0 } else { cut.index(cmds.len() + 1) };
        let (dumped, _, _) = run(&cmds[..at]);
        let mut slave = MailboxDb::new();
        slave.replace_all(dumped.list(None));
        let mut master = dumped.clone();
        for c in &cmds[at..] {
            if let (_, Some(ch)) = master.apply(c) {
                slave.apply_change(&ch);
            }
        }
        prop_assert_eq!(slave, master);
    }

    #[test]
    fn replace_all_of_list_reproduces_state(cmds in commands(), junk in commands()) {
        let (db, _, _) = run(&cmds);
        let (mut other, _, _) = run(&junk);
        other.replace_all(db.list(None));
        prop_assert_eq!(&other, &db);
        let collected: MailboxDb = db.list(None).into_iter().collect();
        prop_assert_eq!(collected, db);
    }

    #[test]
    fn cyrus_order_is_a_total_order_consistent_with_equality(a in name(), b in name(), c in name()) {
        prop_assert_eq!(cyrus_order(&a, &b) == Ordering::Equal, a == b);
        prop_assert_eq!(cyrus_order(&a, &b), cyrus_order(&b, &a).reverse());
        if cyrus_order(&a, &b) != Ordering::Greater && cyrus_order(&b, &c) != Ordering::Greater {
            prop_assert_ne!(cyrus_order(&a, &c), Ordering::Greater);
        }
    }

    #[test]
    fn concurrent_commands_on_distinct_names_have_one_outcome(cmds in commands(), racers in prop::collection::vec(command(), 1..4)) {
        let mut seen: Vec<Vec<u8>> = Vec::new();
        for c in &racers {
            let n = c.name().map(<[u8]>::to_vec);
            prop_assume!(n.is_some());
            let n = n.unwrap();
            prop_assume!(!seen.contains(&n));
            seen.push(n);
        }
        let (db, _, _) = run(&cmds);
        let outcomes = concurrent_outcomes(&db, &racers);
        prop_assert_eq!(outcomes.len(), 1);
        // And it is the sequential run in the order given.
        let mut seq = db.clone();
        let replies: Vec<Reply> = racers.iter().map(|c| seq.apply(c).0).collect();
        prop_assert_eq!(&outcomes[0], &(replies, seq));
    }
}

fn message(size: u64, bad: bool) -> AppendMessage {
    AppendMessage {
        flags: Vec::new(),
        size,
        content: size,
        fault: bad.then_some(murder_model::multiappend::MessageFault::TooLarge),
    }
}

fn batch() -> impl Strategy<Value = Vec<AppendMessage>> {
    prop::collection::vec((1u64..100, prop::bool::weighted(0.15)), 0..4)
        .prop_map(|v| v.into_iter().map(|(s, b)| message(s, b)).collect())
}

proptest! {
    #[test]
    fn appends_are_all_or_nothing_and_uids_ascend(batches in prop::collection::vec((batch(), prop::collection::vec(0u32..8, 0..2)), 0..10)) {
        let mut store = MailStore::new();
        prop_assert!(store.create("INBOX"));
        let mut ever: Vec<u32> = Vec::new();
        for (b, expunge) in batches {
            let before = store.clone();
            let before_next = before.mailbox("INBOX").unwrap().uid_next;
            match store.append("INBOX", &b) {
                AppendOutcome::Ok { uids, uid_validity } => {
                    prop_assert_eq!(uid_validity, before.mailbox("INBOX").unwrap().uid_validity);
                    prop_assert_eq!(uids.len(), b.len());
                    let mb = store.mailbox("INBOX").unwrap();
                    prop_assert_eq!(mb.messages.len(), before.mailbox("INBOX").unwrap().messages.len() + b.len());
                    for w in uids.windows(2) {
                        prop_assert!(w[0] < w[1]);
                    }
                    for u in &uids {
                        prop_assert!(*u >= before_next);
                        prop_assert!(!ever.contains(u), "uid {} reused", u);
                        ever.push(*u);
                    }
                    // APPENDUID's uid-set names exactly the new messages.
                    let stored: Vec<u32> = mb.messages.iter().rev().take(uids.len()).rev().map(|m| m.uid).collect();
                    prop_assert_eq!(&stored, &uids);
                    prop_assert_eq!(parse_uid_set(&uid_set(&uids)), Some(uids.clone()));
                }
                _ => prop_assert_eq!(&store, &before),
            }
            store.expunge("INBOX", &expunge);
            let mb = store.mailbox("INBOX").unwrap();
            for w in mb.messages.windows(2) {
                prop_assert!(w[0].uid < w[1].uid);
            }
            prop_assert!(mb.messages.iter().all(|m| m.uid < mb.uid_next));
        }
    }

    #[test]
    fn uid_set_round_trips_for_ascending_uids(mut v in prop::collection::btree_set(1u32..60, 1..20)) {
        let x: Vec<u32> = std::mem::take(&mut v).into_iter().collect();
        prop_assert_eq!(parse_uid_set(&uid_set(&x)), Some(x));
    }
}

/// quickcheck: the uid-set round trip again, with quickcheck's own generator.
#[test]
fn quickcheck_uid_set_round_trip() {
    fn prop(raw: Vec<u32>) -> bool {
        let mut x: Vec<u32> = raw.into_iter().map(|u| u % 5000 + 1).collect();
        x.sort_unstable();
        x.dedup();
        if x.is_empty() {
            return uid_set(&x).is_empty() && parse_uid_set("").is_none();
        }
        parse_uid_set(&uid_set(&x)) == Some(x)
    }
    quickcheck::QuickCheck::new()
        .tests(500)
        .quickcheck(prop as fn(Vec<u32>) -> bool);
}

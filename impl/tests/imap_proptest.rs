//! Property test: random sequences of APPEND/MULTIAPPEND (valid and invalid, synchronizing and
//! LITERAL+), EXPUNGE, SELECT and NOOP from two sessions, checked step by step against the
//! oracle `murder_model::multiappend::MailStore`: the outcome of every APPEND (UIDs, TRYCREATE,
//! refusal), the UIDs each session sees, and that every EXISTS a session is told equals the
//! oracle's message count after a whole command (never an intermediate one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;

use imap_common::{Client, TestServer, appenduid};
use murder_model::multiappend::{AppendMessage, AppendOutcome, MailStore, MessageFault};
use murder_server::imap::{Fault, Faults};
use proptest::prelude::*;
use tokio::net::TcpStream;

const LIMIT: u64 = 300;

#[derive(Clone, Debug)]
struct Msg {
    size: usize,
    fault: Option<MessageFault>,
    sync: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        session: usize,
        missing: bool,
        msgs: Vec<Msg>,
    },
    Expunge {
        session: usize,
        nth: usize,
    },
    Select {
        session: usize,
    },
    Noop {
        session: usize,
    },
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        1usize..120,
        prop_oneof![
            8 => Just(None),
            1 => Just(Some(MessageFault::ZeroLength)),
            1 => Just(Some(MessageFault::BadFlag)),
            1 => Just(Some(MessageFault::BadDateTime)),
            1 => Just(Some(MessageFault::TooLarge)),
        ],
        any::<bool>(),
    )
        .prop_map(|(size, fault, sync)| Msg {
            size,
            fault,
            // An oversized {n+} closes the connection (BYE): keep those synchronizing here.
            sync: sync || fault == Some(MessageFault::TooLarge),
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..2, prop::bool::weighted(0.1), prop::collection::vec(msg(), 1..5))
            .prop_map(|(session, missing, msgs)| Op::Append { session, missing, msgs }),
        2 => (0usize..2, 0usize..10).prop_map(|(session, nth)| Op::Expunge { session, nth }),
        1 => (0usize..2).prop_map(|session| Op::Select { session }),
        1 => (0usize..2).prop_map(|session| Op::Noop { session }),
    ]
}

fn body(seed: usize, m: &Msg) -> Vec<u8> {
    let size = match m.fault {
        Some(MessageFault::ZeroLength) => 0,
        Some(MessageFault::TooLarge) => LIMIT as usize + 1 + m.size,
        _ => m.size,
    };
    (0..size).map(|i| b'a' + ((seed + i) % 26) as u8).collect()
}

fn args(m: &Msg) -> &'static str {
    match m.fault {
        Some(MessageFault::BadFlag) => "(\\Recent) ",
        Some(MessageFault::BadDateTime) => "\"31-Feb-2020 00:00:00 +0000\" ",
        _ => "(\\Seen) ",
    }
}

/// Send an APPEND literal by literal; a tagged answer may come before all are sent.
async fn append(
    c: &mut Client<TcpStream>,
    mailbox: &str,
    msgs: &[(String, Vec<u8>, bool)],
) -> (Vec<String>, String) {
    let tag = c.tag();
    let mut head = format!("{tag} APPEND {mailbox}");
    for (a, b, sync) in msgs {
        head.push_str(&format!(
            " {a}{{{}{}}}\r\n",
            b.len(),
            if *sync { "" } else { "+" }
        ));
        c.send(head.as_bytes()).await;
        head.clear();
        if *sync {
            let l = c.line().await.unwrap();
            if l.text.starts_with(&format!("{tag} ")) {
                return (Vec::new(), l.text);
            }
            assert!(l.text.starts_with('+'), "{l:?}");
        }
        c.send(b).await;
    }
    c.send(b"\r\n").await;
    let (u, t) = c.until_tagged(&tag).await;
    (u.into_iter().map(|l| l.text).collect(), t.text)
}

fn exists_values(lines: &[String]) -> Vec<usize> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .collect()
}

async fn run(ops: Vec<Op>, faults: Faults) {
    let server = TestServer::start_with(|c| {
        c.limits.max_message_size = LIMIT;
        c.faults = faults;
    })
    .await;
    let mut model = MailStore::new();
    model.create("box");
    let mut a = server.alice().await;
    a.ok("CREATE box").await;
    let b = server.alice().await;
    let mut sessions = [a, b];
    for s in sessions.iter_mut() {
        s.ok("SELECT box").await;
    }
    let model_uids = |m: &MailStore| -> Vec<u32> {
        m.mailbox("box")
            .unwrap()
            .messages
            .iter()
            .map(|x| x.uid)
            .collect()
    };
    for (step, op) in ops.into_iter().enumerate() {
        let mut untagged: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
        match &op {
            Op::Append {
                session,
                missing,
                msgs,
            } => {
                let wire: Vec<(String, Vec<u8>, bool)> = msgs
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (args(m).to_string(), body(step * 10 + i, m), m.sync))
                    .collect();
                let model_msgs: Vec<AppendMessage> = msgs
                    .iter()
                    .zip(&wire)
                    .map(|(m, w)| AppendMessage {
                        flags: vec!["\\Seen".into()],
                        size: w.1.len() as u64,
                        content: w.1.len() as u64,
                        fault: m.fault,
                    })
                    .collect();
                let name = if *missing { "missing" } else { "box" };
                let expected = model.append(name, &model_msgs);
                let (u, t) = append(&mut sessions[*session], name, &wire).await;
                untagged[*session].extend(u);
                match expected {
                    AppendOutcome::Ok { uids, .. } => {
                        assert!(t.contains("OK [APPENDUID"), "{op:?}: {t}");
                        let line = imap_common::Line {
                            text: t.clone(),
                            literals: vec![],
                        };
                        assert_eq!(appenduid(&line).1, uids, "{op:?}");
                    }
                    AppendOutcome::TryCreate => {
                        assert!(t.contains("NO [TRYCREATE]"), "{op:?}: {t}")
                    }
                    AppendOutcome::Refused(f) => {
                        let ok = t.contains(" NO ") || (f.allows_bad() && t.contains(" BAD "));
                        assert!(ok, "{op:?} expected refusal {f:?}: {t}");
                    }
                }
            }
            Op::Expunge { session, nth } => {
                let uids = model_uids(&model);
                if let Some(&uid) = uids.get(nth % uids.len().max(1)) {
                    let c = &mut sessions[*session];
                    c.ok(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
                        .await;
                    let u = c.ok("EXPUNGE").await;
                    untagged[*session].extend(u.into_iter().map(|l| l.text));
                    assert_eq!(model.expunge("box", &[uid]), vec![uid]);
                }
            }
            Op::Select { session } => {
                let u = sessions[*session].ok("SELECT box").await;
                let n = exists_values(&u.iter().map(|l| l.text.clone()).collect::<Vec<_>>());
                assert_eq!(n, vec![model_uids(&model).len()], "SELECT EXISTS");
                continue;
            }
            Op::Noop { session } => {
                let u = sessions[*session].ok("NOOP").await;
                untagged[*session].extend(u.into_iter().map(|l| l.text));
            }
        }
        // Both sessions catch up; every EXISTS they were told is a whole-command count.
        let count = model_uids(&model).len();
        for (i, s) in sessions.iter_mut().enumerate() {
            let u = s.ok("NOOP").await;
            untagged[i].extend(u.into_iter().map(|l| l.text));
            for n in exists_values(&untagged[i]) {
                assert_eq!(
                    n, count,
                    "session {i} told EXISTS {n} after {op:?}, oracle has {count}"
                );
            }
            let (u, _) = s.cmd("UID SEARCH ALL").await;
            let seen: Vec<u32> = u[0]
                .text
                .trim_start_matches("* SEARCH")
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            assert_eq!(seen, model_uids(&model), "session {i} view after {op:?}");
        }
    }
    // Nothing was ever created by APPEND.
    assert_eq!(sessions[0].status("missing").await, None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn appends_match_the_oracle(ops in prop::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(ops, Faults::default()));
    }
}

fn fixed_ops() -> Vec<Op> {
    let ok = |size| Msg {
        size,
        fault: None,
        sync: false,
    };
    vec![
        Op::Append {
            session: 0,
            missing: false,
            msgs: vec![ok(5), ok(6), ok(7)],
        },
        Op::Expunge { session: 1, nth: 0 },
        Op::Append {
            session: 1,
            missing: false,
            msgs: vec![ok(8), ok(9)],
        },
        Op::Append {
            session: 0,
            missing: true,
            msgs: vec![ok(8)],
        },
    ]
}

fn run_blocking(ops: Vec<Op>, faults: Faults) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(ops, faults));
}

#[test]
fn fixed_sequence_matches_the_oracle() {
    run_blocking(fixed_ops(), Faults::default());
}

/// The check is not vacuous: each of these faults makes it fail.
#[test]
fn oracle_check_catches_faults() {
    for fault in [
        Fault::AppendNotAtomic,
        Fault::AppendUidOffByOne,
        Fault::AutoCreateMailbox,
        Fault::NoTryCreate,
        Fault::NoExistsToOtherSessions,
    ] {
        let caught = std::panic::catch_unwind(|| run_blocking(fixed_ops(), Faults::only(fault)));
        assert!(caught.is_err(), "{fault:?} not detected");
    }
}

//! Model-based test: random command sequences from three connections against one `mupdated`,
//! every response checked against the oracle (`murder_model::MailboxDb::apply`), and every
//! change checked on a fourth connection's UPDATE stream after a NOOP barrier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use mupdate_common::*;
use murder_model::mailbox_db::{Change, Command, MailboxDb};
use murder_server::mupdate::response::{self, Tag};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

const NAMES: &[&str] = &["a", "a.b", "a-b", "b", "user.x", ""];
const LOCATIONS: &[&str] = &["h1!p", "h2!p", "h1!q", ""];
const ACLS: &[&str] = &["", "x\tlrs\t", "acl \"q\""];
const PREFIXES: &[&str] = &["", "h1", "h2!", "h1!q", "zz"];
const CONNECTIONS: usize = 3;

/// The oracle as the reference state machine.
struct Model;

fn pick(xs: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    proptest::sample::select(xs).prop_map(|s| s.as_bytes().to_vec())
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (pick(NAMES), pick(LOCATIONS), pick(ACLS)).prop_map(|(name, location, acl)| {
            Command::Activate {
                name,
                location,
                acl,
            }
        }),
        (pick(NAMES), pick(LOCATIONS))
            .prop_map(|(name, location)| Command::Reserve { name, location }),
        (pick(NAMES), pick(LOCATIONS))
            .prop_map(|(name, location)| Command::Deactivate { name, location }),
        pick(NAMES).prop_map(|name| Command::Delete { name }),
        pick(NAMES).prop_map(|name| Command::Find { name }),
        proptest::option::of(pick(PREFIXES)).prop_map(|prefix| Command::List { prefix }),
    ]
}

impl ReferenceStateMachine for Model {
    type State = MailboxDb;
    type Transition = (usize, Command);

    fn init_state() -> BoxedStrategy<MailboxDb> {
        Just(MailboxDb::new()).boxed()
    }

    fn transitions(_: &MailboxDb) -> BoxedStrategy<(usize, Command)> {
        (0..CONNECTIONS, command()).boxed()
    }

    fn apply(mut state: MailboxDb, (_, command): &(usize, Command)) -> MailboxDb {
        state.apply(command);
        state
    }
}

/// The server, its connections and a shadow oracle used to compute expected replies.
struct Sut {
    rt: tokio::runtime::Runtime,
    server: Option<TestServer>,
    clients: Vec<Client>,
    subscriber: Client,
    shadow: MailboxDb,
    step: usize,
}

fn wire(command: &Command) -> Vec<u8> {
    let mut out = Vec::new();
    let mut arg = |s: &[u8]| {
        out.push(b' ');
        response::put_string(&mut out, s);
    };
    let word: &str;
    match command {
        Command::Activate {
            name,
            location,
            acl,
        } => {
            word = "ACTIVATE";
            arg(name);
            arg(location);
            arg(acl);
        }
        Command::Reserve { name, location } => {
            word = "RESERVE";
            arg(name);
            arg(location);
        }
        Command::Deactivate { name, location } => {
            word = "DEACTIVATE";
            arg(name);
            arg(location);
        }
        Command::Delete { name } => {
            word = "DELETE";
            arg(name);
        }
        Command::Find { name } => {
            word = "FIND";
            arg(name);
        }
        Command::List { prefix } => {
            word = "LIST";
            if let Some(p) = prefix {
                arg(p);
            }
        }
    }
    let mut line = format!("T {word}").into_bytes();
    line.extend(out);
    line.extend_from_slice(b"\r\n");
    line
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Model;

    fn init_test(_: &MailboxDb) -> Sut {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (server, clients, subscriber) = rt.block_on(async {
            let s = server().await;
            let mut clients = Vec::new();
            for _ in 0..CONNECTIONS {
                clients.push(Client::admin(s.addr).await);
            }
            let mut sub = Client::admin(s.addr).await;
            assert_eq!(
                sub.cmd("U", "UPDATE").await,
                vec!["U OK \"streaming starts\""]
            );
            (s, clients, sub)
        });
        Sut {
            rt,
            server: Some(server),
            clients,
            subscriber,
            shadow: MailboxDb::new(),
            step: 0,
        }
    }

    fn apply(mut sut: Sut, _: &MailboxDb, (conn, command): (usize, Command)) -> Sut {
        let change = sut.shadow.clone().apply(&command).1;
        let want = expected(&mut sut.shadow, &command);
        let stream_want: Vec<String> = change
            .iter()
            .map(|c: &Change| {
                let mut out = Vec::new();
                response::change(&mut out, Tag::Tagged(b"U"), c);
                out.truncate(out.len() - 2);
                String::from_utf8_lossy(&out).into_owned()
            })
            .collect();
        sut.step += 1;
        let step = sut.step;
        let client = &mut sut.clients[conn];
        let subscriber = &mut sut.subscriber;
        sut.rt.block_on(async {
            client.send(wire(&command)).await;
            let mut got = client.until_done("T").await;
            let last = got.pop().unwrap();
            got.push(last[..4].to_string());
            assert_eq!(got, want, "step {step}: {command:?}");
            let mut streamed = subscriber.cmd("N", "NOOP").await;
            assert_eq!(streamed.pop().unwrap(), "N OK \"NOOP complete\"");
            assert_eq!(
                streamed, stream_want,
                "step {step}: stream after {command:?}"
            );
        });
        sut
    }

    fn check_invariants(sut: &Sut, reference: &MailboxDb) {
        assert_eq!(&sut.shadow, reference);
    }

    fn teardown(mut sut: Sut, _: MailboxDb) {
        if let Some(s) = sut.server.take() {
            drop(sut.clients);
            drop(sut.subscriber);
            sut.rt.block_on(s.handle.shutdown());
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 256, ..ProptestConfig::default() })]
    #[test]
    fn server_agrees_with_the_oracle(sequential 1..40 => Sut);
}

/// The oracle's response lines to `command` (status reduced to `T OK`/`T NO`).
fn expected(db: &mut MailboxDb, command: &Command) -> Vec<String> {
    let (reply, _) = db.apply(command);
    let mut want: Vec<String> = reply
        .data
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            response::record(&mut out, Tag::Tagged(b"T"), r);
            out.truncate(out.len() - 2);
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect();
    want.push(if reply.result.is_ok() {
        "T OK".into()
    } else {
        "T NO".into()
    });
    want
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// A whole random sequence pipelined in one write: pipelined writes are group-committed
    /// together, yet every command sees exactly the effects of the ones before it.
    #[test]
    fn pipelined_sequences_agree_with_the_oracle(commands in proptest::collection::vec(command(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let s = server().await;
            let mut c = Client::admin(s.addr).await;
            let mut bytes = Vec::new();
            for cmd in &commands {
                bytes.extend(wire(cmd));
            }
            c.send(bytes).await;
            let mut db = MailboxDb::new();
            for (i, cmd) in commands.iter().enumerate() {
                let want = expected(&mut db, cmd);
                let mut got = c.until_done("T").await;
                let last = got.pop().unwrap();
                got.push(last[..4].to_string());
                assert_eq!(got, want, "command {i}: {cmd:?}");
            }
            let mut l = Client::admin(s.addr).await;
            let mut listed = l.cmd("T", "LIST").await;
            listed.pop();
            let mut db2 = db.clone();
            let mut want = expected(&mut db2, &Command::List { prefix: None });
            want.pop();
            assert_eq!(listed, want);
            s.handle.shutdown().await;
        });
    }
}

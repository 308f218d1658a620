//! Regression tests for every input class that crashes a Cyrus mupdate (spec note 2.5, 7, case
//! 72): each is sent on its own connection while an UPDATE subscriber is connected; afterwards
//! another connection is served and the subscriber still receives changes. Also the RESERVE
//! race, judged against every linearization the oracle allows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use mupdate_common::*;
use murder_model::mailbox_db::{Command, MailboxDb, MailboxEntry, Record, concurrent_outcomes};

/// What the attack connection must see.
enum Expect {
    /// This exact first line, connection stays usable.
    Line(&'static str),
    /// A line starting with this prefix, connection stays usable.
    Prefix(&'static str),
    /// `* BYE ...` then EOF.
    ByeAndClose,
}

#[tokio::test]
async fn cyrus_crash_classes_do_not_hurt_anyone() {
    let s = server().await;
    let mut sub = Client::admin(s.addr).await;
    assert_eq!(
        sub.cmd("U", "UPDATE").await,
        vec!["U OK \"streaming starts\""]
    );
    let long_name = format!("user.{}", "a".repeat(5000));
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (
            b"X DELETE \"nope\"\r\n".to_vec(),
            Expect::Line("X NO \"mailbox does not exist\""),
        ),
        (
            b"X DEACTIVATE \"nope\" \"h\"\r\n".to_vec(),
            Expect::Line("X NO \"mailbox does not exist\""),
        ),
        (b"X FIND {99999999999+}\r\n".to_vec(), Expect::ByeAndClose),
        (
            b"X FIND {99999999999999999999999999}\r\n".to_vec(),
            Expect::Prefix("X BAD "),
        ),
        (b"X FIND {10485760}\r\n".to_vec(), Expect::Prefix("X BAD ")),
        (b"X FIND {10485760+}\r\n".to_vec(), Expect::ByeAndClose),
        (b"X FIND {4294967296+}\r\n".to_vec(), Expect::ByeAndClose),
        (b"X FIND {-1+}\r\n".to_vec(), Expect::Prefix("X BAD ")),
        (
            b"X ACTIVATE \"\" \"h!p\" \"\"\r\n".to_vec(),
            Expect::Line("X NO \"invalid mailbox name\""),
        ),
        (
            b"X ACTIVATE \"a\0b\" \"h!p\" \"\"\r\n".to_vec(),
            Expect::Prefix("X BAD "),
        ),
        (
            b"X ACTIVATE {3+}\r\na\0b \"h!p\" \"\"\r\n".to_vec(),
            Expect::Prefix("X BAD "),
        ),
        (
            [vec![b'T'; 200 * 1024], b" NOOP\r\n".to_vec()].concat(),
            Expect::ByeAndClose,
        ),
        (vec![b'x'; 2 * 1024 * 1024], Expect::ByeAndClose),
        (
            format!(
                "X ACTIVATE {{{}+}}\r\n{long_name} \"h!p\" \"\"\r\n",
                long_name.len()
            )
            .into_bytes(),
            Expect::Line("X OK \"done\""),
        ),
        (
            [
                b"X FIND {70000+}\r\n".to_vec(),
                vec![b'n'; 70000],
                b"\r\n".to_vec(),
            ]
            .concat(),
            Expect::Prefix("X BAD "),
        ),
    ];
    for (i, (input, expect)) in cases.into_iter().enumerate() {
        let mut c = Client::admin(s.addr).await;
        // A peer that stops reading is fine: write in a task.
        let (mut rd, mut wr) = c.stream.into_split();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = wr.write_all(&input).await;
            wr
        });
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        use tokio::io::AsyncReadExt;
        let closed = loop {
            match tokio::time::timeout(WAIT, rd.read(&mut byte))
                .await
                .unwrap()
            {
                Ok(0) | Err(_) => break true,
                Ok(_) => got.push(byte[0]),
            }
            if got.ends_with(b"\r\n") && !matches!(expect, Expect::ByeAndClose) {
                break false;
            }
        };
        let line = String::from_utf8_lossy(&got).into_owned();
        match expect {
            Expect::Line(l) => assert_eq!(line, format!("{l}\r\n"), "case {i}"),
            Expect::Prefix(p) => assert!(line.starts_with(p), "case {i}: {line:?}"),
            Expect::ByeAndClose => {
                assert!(line.starts_with("* BYE \""), "case {i}: {line:?}");
                assert!(closed, "case {i}");
            }
        }
        if !closed {
            // Still usable afterwards.
            let wr = writer.await.unwrap();
            c = Client::from_halves(rd, wr);
            assert_eq!(
                c.cmd("N", "NOOP").await,
                vec!["N OK \"NOOP complete\""],
                "case {i}"
            );
        } else {
            writer.abort();
        }
        // Everyone else is fine: a new connection works, the subscriber sees a new change.
        let mut other = Client::admin(s.addr).await;
        let name = format!("alive.{i}");
        assert_eq!(
            other
                .cmd("A", &format!("ACTIVATE \"{name}\" \"h!p\" \"\""))
                .await,
            vec!["A OK \"done\""]
        );
        let mut seen = sub.cmd("N", "NOOP").await;
        assert_eq!(seen.pop().unwrap(), "N OK \"NOOP complete\"");
        let want = format!("U MAILBOX \"{name}\" \"h!p\" \"\"");
        assert!(seen.contains(&want), "case {i}: {seen:?}");
    }
}

#[tokio::test]
async fn reserve_race_has_exactly_one_winner() {
    let s = server().await;
    let n = 6;
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(Client::admin(s.addr).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.cmd("R", &format!("RESERVE \"user.race\" \"h{i}!p\""))
                .await
        }));
    }
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let mut c = Client::admin(s.addr).await;
    let found = c.cmd("F", "FIND \"user.race\"").await;
    let commands: Vec<Command> = (0..n)
        .map(|i| Command::Reserve {
            name: b"user.race".to_vec(),
            location: format!("h{i}!p").into_bytes(),
        })
        .collect();
    let outcomes = concurrent_outcomes(&MailboxDb::new(), &commands);
    let matches = outcomes.iter().any(|(want, state)| {
        let replies_match = want.iter().zip(&replies).all(|(w, got)| match w.result {
            Ok(()) => got == &vec!["R OK \"done\"".to_string()],
            Err(r) => got == &vec![format!("R NO \"{r}\"")],
        });
        let winner = state.records().collect::<Vec<Record>>();
        let state_match = match winner.as_slice() {
            [
                Record {
                    entry: MailboxEntry::Reserved { location },
                    ..
                },
            ] => {
                found[0]
                    == format!(
                        "F RESERVE \"user.race\" \"{}\"",
                        String::from_utf8_lossy(location)
                    )
            }
            _ => false,
        };
        replies_match && state_match
    });
    assert!(
        matches,
        "replies {replies:?} and {found:?} are not a linearizable outcome"
    );
    assert_eq!(replies.iter().filter(|r| r[0].contains(" OK ")).count(), 1);
}

#[tokio::test]
async fn random_bytes_never_hurt_the_server() {
    use rand::{Rng, SeedableRng};
    let s = server().await;
    let mut sub = Client::admin(s.addr).await;
    sub.cmd("U", "UPDATE").await;
    let seed: u64 = rand::rng().random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pieces: &[&[u8]] = &[
        b"A AUTHENTICATE \"PLAIN\" \"AGFkbWluAHNlY3JldA==\"\r\n",
        b"X ACTIVATE ",
        b"{3}\r\n",
        b"{5+}\r\n",
        b"\"q\\\"\" ",
        b"\r\n",
        b"\n",
        b"UPDATE\r\n",
        b"NOOP\r\n",
        b"\0",
        b"*\r\n",
        b" ",
    ];
    for round in 0..40 {
        let mut input = Vec::new();
        for _ in 0..rng.random_range(1..30) {
            if rng.random_bool(0.5) {
                input.extend_from_slice(pieces[rng.random_range(0..pieces.len())]);
            } else {
                let n = rng.random_range(0..40);
                input.extend((0..n).map(|_| rng.random::<u8>()));
            }
        }
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        use tokio::io::AsyncWriteExt;
        let _ = c.write_all(&input).await;
        drop(c);
        // The server still serves, and the subscriber still gets changes.
        let mut other = Client::admin(s.addr).await;
        let r = other
            .cmd("A", &format!("ACTIVATE \"rnd.{round}\" \"h!p\" \"\""))
            .await;
        assert_eq!(r, vec!["A OK \"done\""], "seed {seed} round {round}");
        let seen = sub.cmd("N", "NOOP").await;
        assert!(
            seen.contains(&format!("U MAILBOX \"rnd.{round}\" \"h!p\" \"\"")),
            "seed {seed} round {round}: {seen:?}"
        );
    }
}

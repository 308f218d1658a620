//! Crash test with a real process: a child (this test binary re-run in a hidden helper mode)
//! opens the store and runs 8 concurrent clients, printing every acknowledged write; the parent
//! reads a random number of acknowledgements, kills the child with SIGKILL, reopens the store and
//! checks that every acknowledged write is there and that each client's names hold exactly the
//! oracle's state after some prefix of that client's commands at least as long as what was
//! acknowledged (a state the oracle can reach, nothing torn). Several rounds share one
//! directory, so recovery after recovery is exercised too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use murder_model::{Command, MailboxDb, Record};
use murder_server::store::{MupdateStore, StoreConfig};
use rand::Rng;

/// Environment variable that turns `crash_child_helper` into the child: the store directory.
const CHILD_DIR_ENV: &str = "MURDER_STORE_CRASH_CHILD_DIR";
/// Environment variable with the round number (namespaces the child's mailbox names).
const CHILD_ROUND_ENV: &str = "MURDER_STORE_CRASH_CHILD_ROUND";
/// Concurrent clients in the child.
const CLIENTS: usize = 8;
/// Commands per client; the child is killed long before it gets through them.
const OPS_PER_CLIENT: usize = 20_000;
/// Kill/reopen rounds on the same directory.
const ROUNDS: usize = 4;
/// Names per client: small, so that commands collide and get refused too.
const NAMES_PER_CLIENT: u64 = 6;
/// Bound on waiting for the child's output; only reached on failure.
const PATIENCE: Duration = Duration::from_secs(60);

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: a deterministic pseudo-random op stream both processes agree on.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn prefix(round: usize, client: usize) -> String {
    format!("r{round}.c{client}.")
}

/// Command `i` of `client` in `round`.
fn workload(round: usize, client: usize, i: usize) -> Command {
    let h = mix(((round as u64) << 48) ^ ((client as u64) << 32) ^ i as u64);
    let name = format!("{}m{}", prefix(round, client), h % NAMES_PER_CLIENT).into_bytes();
    let location = format!("h{}!p", (h >> 8) % 3).into_bytes();
    match (h >> 16) % 5 {
        0 => Command::Reserve { name, location },
        1 | 2 => Command::Activate {
            name,
            location,
            acl: format!("u{i}\tlrs\t").into_bytes(),
        },
        3 => Command::Deactivate { name, location },
        _ => Command::Delete { name },
    }
}

/// The child: run the workload until killed, printing `ACK round client i OK|NO` per reply.
#[test]
#[ignore = "helper mode: started as a child process by crash_recovery_keeps_every_acknowledged_write"]
fn crash_child_helper() {
    let (Ok(dir), Ok(round)) = (std::env::var(CHILD_DIR_ENV), std::env::var(CHILD_ROUND_ENV))
    else {
        return;
    };
    let round: usize = round.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = MupdateStore::open(StoreConfig::new(dir)).await.unwrap();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..OPS_PER_CLIENT {
                        let reply = store.execute(workload(round, client, i)).await.unwrap();
                        let verdict = if reply.result.is_ok() { "OK" } else { "NO" };
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {round} {client} {i} {verdict}").unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
    });
}

/// What the parent learnt of one client from the child's output.
#[derive(Clone, Debug, Default)]
struct Acked {
    /// Replies read before the kill, in order: `true` for OK. Each must be durable.
    before_kill: usize,
    /// Every reply the child printed (including those read after the kill).
    replies: Vec<bool>,
}

/// Checks one client: its names in `db` equal the oracle after a prefix of its commands that
/// covers every acknowledged one. The client waits for each reply before printing it and
/// sending the next command, so at the kill at most one more command than printed was
/// acknowledged-but-unprinted and one more in flight: the prefix is `printed..=printed + 2`.
/// The printed replies must be the oracle's.
fn check_client(db: &MailboxDb, round: usize, client: usize, acked: &Acked) {
    let p = prefix(round, client).into_bytes();
    let actual: MailboxDb = db
        .records()
        .filter(|r| r.name.starts_with(&p))
        .collect::<Vec<Record>>()
        .into_iter()
        .collect();
    let printed = acked.replies.len();
    assert!(acked.before_kill <= printed);
    let mut oracle = MailboxDb::new();
    let mut reachable = Vec::new();
    for i in 0..=printed + 2 {
        if i >= printed {
            if oracle == actual {
                return;
            }
            reachable.push(oracle.clone());
        }
        let (reply, _) = oracle.apply(&workload(round, client, i));
        if let Some(&ok) = acked.replies.get(i) {
            assert_eq!(
                reply.result.is_ok(),
                ok,
                "round {round} client {client} command {i}: acknowledged reply differs from the oracle"
            );
        }
    }
    panic!(
        "round {round} client {client}: recovered {actual:?} after {printed} printed acks \
         ({} read before the kill); reachable states were {reachable:?}",
        acked.before_kill
    );
}

/// Parses `ACK round client i OK|NO` (libtest may print its own text in front of the first).
fn parse_ack(line: &str) -> Option<(usize, usize, usize, bool)> {
    let rest = line.get(line.find("ACK ")? + 4..)?;
    let mut fields = rest.split(' ');
    let round = fields.next()?.parse().ok()?;
    let client = fields.next()?.parse().ok()?;
    let i = fields.next()?.parse().ok()?;
    let ok = match fields.next()? {
        "OK" => true,
        "NO" => false,
        _ => return None,
    };
    Some((round, client, i, ok))
}

/// Runs one child until it has acknowledged `target` writes, SIGKILLs it, and returns every
/// acknowledgement it printed.
fn run_child_and_kill(dir: &std::path::Path, round: usize, target: usize) -> Vec<Acked> {
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = vec![Acked::default(); CLIENTS];
    let record = |acked: &mut Vec<Acked>, line: &str| -> bool {
        // A line torn by the kill does not parse and is ignored (covered by the +2 bound).
        let Some((r, client, i, ok)) = parse_ack(line) else {
            return false;
        };
        assert_eq!(r, round);
        assert_eq!(
            i,
            acked[client].replies.len(),
            "acks of one client arrive in order"
        );
        acked[client].replies.push(ok);
        true
    };
    let mut count = 0;
    while count < target {
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("child keeps acknowledging writes (did it crash?)");
        count += usize::from(record(&mut acked, &line));
    }
    for a in &mut acked {
        a.before_kill = a.replies.len();
    }
    // Child::kill is SIGKILL on Unix: no destructor, no clean close of the database.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "child was killed, not finished");
    // The reader ends at EOF, which the dead child's pipe now gives.
    while let Ok(line) = rx.recv_timeout(PATIENCE) {
        record(&mut acked, &line);
    }
    reader.join().unwrap();
    acked
}

/// SIGKILL at a random moment never loses an acknowledged write nor leaves a torn state.
#[test]
fn crash_recovery_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = rand::rng();
    let mut history: Vec<Vec<Acked>> = Vec::new();
    for round in 0..ROUNDS {
        let target = rng.random_range(20..600);
        history.push(run_child_and_kill(dir.path(), round, target));
        let started = Instant::now();
        let store = rt
            .block_on(MupdateStore::open(StoreConfig::new(dir.path())))
            .unwrap();
        let reopen = started.elapsed();
        let db = store.snapshot();
        for (r, acked) in history.iter().enumerate() {
            for (client, a) in acked.iter().enumerate() {
                check_client(&db, r, client, a);
            }
        }
        // Nothing outside the workload's names.
        assert!(db.records().all(|rec| {
            (0..=round).any(|r| (0..CLIENTS).any(|c| rec.name.starts_with(prefix(r, c).as_bytes())))
        }));
        eprintln!(
            "round {round}: killed after {target} acks; reopened {} records in {reopen:?}",
            db.len()
        );
        drop(db);
        rt.block_on(store.close());
    }
}

//! Slave figures of issue 8, measured on real `mupdated` processes over loopback: a master
//! restarting on a database of N mailboxes (default 100,000), a fresh slave's first
//! resynchronisation, and how long after the master's return (killed, then restarted on the
//! same port and data) a slave with default settings has reconnected and resynchronised.
//!
//! Ignored by default (it populates N mailboxes); run it in release:
//! `cargo test --release -p murder-server --test mupdate_slave_bench -- --ignored --nocapture`
//! (`MUPDATE_SLAVE_BENCH_MAILBOXES=N` to change N; `MUPDATE_SLAVE_BENCH_BACKOFF_MAX_MS=M` runs
//! the slave with `--backoff-max-ms M` instead of the default; `MUPDATE_SLAVE_BENCH_AWAY_MS=A`
//! keeps the master away A ms instead of 3,000). Numbers are printed, never asserted on: the
//! test asserts only that the slave ends with exactly the master's records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use std::time::{Duration, Instant};

use mupdate_common::*;
use murder_model::{MailboxEntry, Record};
use murder_server::store::{MupdateStore, StoreConfig};

/// How long the master stays away: long enough for the slave's backoff to reach its cap, the
/// worst case for "reconnects within 1 s of the master's return". This is the scenario, not a
/// synchronisation: the test waits for events, never for time, to decide anything.
const MASTER_AWAY: Duration = Duration::from_secs(3);

fn master_away() -> Duration {
    std::env::var("MUPDATE_SLAVE_BENCH_AWAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(MASTER_AWAY, Duration::from_millis)
}

fn mailboxes() -> usize {
    std::env::var("MUPDATE_SLAVE_BENCH_MAILBOXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Reads responses on an UPDATE stream until `MAILBOX "name"` arrives.
async fn until_mailbox(c: &mut Client, name: &str) {
    let want = format!("MAILBOX \"{name}\" ");
    loop {
        let line = c.line().await;
        if line.contains(&want) {
            return;
        }
    }
}

/// The number of records a LIST returns.
async fn list_len(c: &mut Client) -> usize {
    c.cmd("L", "LIST").await.len() - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn slave_reconnect_and_resync_after_a_master_restart() {
    let n = mailboxes();
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, PASSWD).unwrap();
    let master_data = dir.path().join("master");

    // Populate the master's store directly: one transaction of N records.
    let t = Instant::now();
    let store = MupdateStore::open(StoreConfig::new(&master_data))
        .await
        .unwrap();
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            name: format!("user.bench{i:07}").into_bytes(),
            entry: MailboxEntry::Active {
                location: b"backend1.example!default".to_vec(),
                acl: b"anyone\tlrs\t".to_vec(),
            },
        })
        .collect();
    store.resync(records).await.unwrap();
    store.close().await;
    println!("populated {n} mailboxes in {:?}", t.elapsed());

    // The master on `listen` (port 0 the first time, then its old port).
    let start_master = |listen: String| {
        let (data, passwd) = (master_data.clone(), passwd.clone());
        async move {
            let admins = ["--admin", "admin", "--admin", "slave"];
            let null = std::process::Stdio::null();
            spawn_mupdated_on(&listen, &data, &passwd, &admins, "warn", null).await
        }
    };
    let t = Instant::now();
    let (mut master, addr) = start_master("127.0.0.1:0".into()).await;
    let master_start = t.elapsed();
    let master_rss = vm_rss_kib(master.id().unwrap()).unwrap_or(0);
    println!(
        "master start with {n} mailboxes (clean close): {master_start:?} to listening; VmRSS {} MiB = {:.0} bytes per mailbox",
        master_rss / 1024,
        master_rss as f64 * 1024.0 / n as f64
    );

    // A fresh slave: it answers clients only after its first resynchronisation.
    let master_addr = addr.to_string();
    let backoff_max = std::env::var("MUPDATE_SLAVE_BENCH_BACKOFF_MAX_MS").ok();
    let mut slave_args = vec![
        "--slave-of",
        &master_addr,
        "--master-user",
        "slave",
        "--master-password",
        "slavepw",
    ];
    if let Some(ms) = &backoff_max {
        slave_args.extend(["--backoff-max-ms", ms.as_str()]);
        println!("slave runs with --backoff-max-ms {ms}");
    }
    let t = Instant::now();
    let (_slave, slave_addr) = spawn_mupdated(
        &dir.path().join("slave"),
        &passwd,
        &slave_args,
        "warn",
        std::process::Stdio::null(),
    )
    .await;
    let mut probe = Client::admin(slave_addr).await;
    println!(
        "fresh slave: start + first resynchronisation of {n} mailboxes: {:?}",
        t.elapsed()
    );
    assert_eq!(list_len(&mut probe).await, n);

    // An UPDATE stream on the slave shows when the slave has caught up with the master.
    let mut stream = Client::admin(slave_addr).await;
    stream.send("U UPDATE\r\n").await;
    stream.until_done("U").await;

    // The master dies (SIGKILL) and stays away until the slave's backoff is at its cap.
    master.kill().await.unwrap();
    tokio::time::sleep(master_away()).await;
    let t = Instant::now();
    let (_master, _) = start_master(master_addr.clone()).await;
    let recovery = t.elapsed();
    let back = Instant::now();
    // A write made right after the master's return reaches the slave's subscribers through the
    // slave's resynchronisation (or its stream, if the slave was even faster).
    let mut m = Client::admin(addr).await;
    let r = m
        .cmd(
            "A",
            "ACTIVATE \"user.probe\" \"backend1.example!default\" \"\"",
        )
        .await;
    assert_eq!(r.last().unwrap(), "A OK \"done\"");
    until_mailbox(&mut stream, "user.probe").await;
    println!(
        "master restart after SIGKILL with {n} mailboxes: {recovery:?} to listening; \
         slave reconnected and resynchronised {n} mailboxes {:?} after that",
        back.elapsed()
    );
    assert_eq!(list_len(&mut probe).await, n + 1);
}

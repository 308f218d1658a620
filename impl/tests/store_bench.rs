//! Measurements of the store (ignored by default; run in release mode):
//!
//! ```text
//! cargo test --release -p murder-server --test store_bench -- --ignored --nocapture --test-threads=1
//! ```
//!
//! * `raw_fsync_rate`: overwrite 4 KiB and `fdatasync`, in a loop: what the disk allows.
//! * `durable_writes_per_second`: ACTIVATEs acknowledged per second with 1, 8 and 32
//!   concurrent clients, and how many writes share one commit (fsync).
//! * `startup_with_a_million_records`: open time after a clean close and after SIGKILL.
//!
//! Set `MURDER_BENCH_DIR` to measure on another file system than the temp dir's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use murder_model::{Command, MailboxEntry, Record};
use murder_server::store::{MupdateStore, StoreConfig};

/// Records for the start-up measurement.
const MILLION: usize = 1_000_000;
/// Environment variable that turns `bench_fill_child` into the filling child: the directory.
const FILL_DIR_ENV: &str = "MURDER_STORE_BENCH_FILL_DIR";
/// Each throughput run lasts about this long.
const RUN_FOR: Duration = Duration::from_secs(3);

fn bench_dir() -> tempfile::TempDir {
    match std::env::var("MURDER_BENCH_DIR") {
        Ok(base) => tempfile::tempdir_in(base).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Raw fsync rate of the disk under the bench directory: overwriting one of 16 pages in place,
/// and appending 128-byte records (what a hand-written log would do; the file grows).
#[test]
#[ignore = "measurement; run in release mode with --ignored --nocapture"]
fn raw_fsync_rate() {
    let dir = bench_dir();
    let file = std::fs::File::create(dir.path().join("fsync.bin")).unwrap();
    let page = vec![0x5a_u8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < RUN_FOR {
        file.write_all_at(&page, (n % 16) * 4096).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "raw fsync, 4 KiB overwrite: {n} in {:.2?} = {rate:.0}/s",
        started.elapsed()
    );
    assert!(n > 0);

    let mut log = std::fs::File::create(dir.path().join("append.bin")).unwrap();
    let record = [0xa5_u8; 128];
    let started = Instant::now();
    let mut m = 0u64;
    while started.elapsed() < RUN_FOR {
        log.write_all(&record).unwrap();
        log.sync_data().unwrap();
        m += 1;
    }
    let rate = m as f64 / started.elapsed().as_secs_f64();
    println!(
        "raw fsync, 128 B append: {m} in {:.2?} = {rate:.0}/s",
        started.elapsed()
    );
    assert!(m > 0);
}

/// Durable writes per second with several numbers of concurrent clients.
#[test]
#[ignore = "measurement; run in release mode with --ignored --nocapture"]
fn durable_writes_per_second() {
    let rt = runtime();
    for clients in [1usize, 8, 32] {
        let dir = bench_dir();
        let (writes, elapsed, stats) = rt.block_on(async {
            let store = MupdateStore::open(StoreConfig::new(dir.path()))
                .await
                .unwrap();
            let started = Instant::now();
            let tasks: Vec<_> = (0..clients)
                .map(|c| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while started.elapsed() < RUN_FOR {
                            let reply = store
                                .execute(Command::Activate {
                                    name: format!("user.c{c}.m{n}").into_bytes(),
                                    location: b"backend1!default".to_vec(),
                                    acl: b"anyone\tlrs\t".to_vec(),
                                })
                                .await
                                .unwrap();
                            assert_eq!(reply.result, Ok(()));
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut writes = 0;
            for t in tasks {
                writes += t.await.unwrap();
            }
            let elapsed = started.elapsed();
            let stats = store.stats();
            store.close().await;
            (writes, elapsed, stats)
        });
        println!(
            "{clients:>2} client(s): {writes} durable writes in {elapsed:.2?} = {:.0} writes/s; \
             {} commits = {:.0} fsyncs/s, {:.1} writes per commit",
            writes as f64 / elapsed.as_secs_f64(),
            stats.commits,
            stats.commits as f64 / elapsed.as_secs_f64(),
            writes as f64 / stats.commits.max(1) as f64,
        );
        assert_eq!(stats.committed_seq, writes);
    }
}

fn million_records() -> Vec<Record> {
    (0..MILLION)
        .map(|i| Record {
            name: format!("user.u{:07}.folder{}", i / 4, i % 4).into_bytes(),
            entry: MailboxEntry::Active {
                location: format!("backend{}!default", i % 7).into_bytes(),
                acl: format!("u{}\tlrswipkxtecda\tanyone\tlrs\t", i / 4).into_bytes(),
            },
        })
        .collect()
}

/// Child mode of `startup_with_a_million_records`: fill the store, say so, wait to be killed.
#[test]
#[ignore = "helper mode: started as a child process by startup_with_a_million_records"]
fn bench_fill_child() {
    let Ok(dir) = std::env::var(FILL_DIR_ENV) else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let store = MupdateStore::open(StoreConfig::new(dir)).await.unwrap();
        store.resync(million_records()).await.unwrap();
        // A few ordinary writes after the bulk load, as a running server would do.
        for i in 0..10 {
            store
                .execute(Command::Reserve {
                    name: format!("late.{i}").into_bytes(),
                    location: b"b!p".to_vec(),
                })
                .await
                .unwrap();
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "FILLED").unwrap();
        out.flush().unwrap();
        drop(out);
        std::future::pending::<()>().await;
    });
}

/// Start-up time with 1,000,000 records: after a clean close and after SIGKILL.
#[test]
#[ignore = "measurement; run in release mode with --ignored --nocapture"]
fn startup_with_a_million_records() {
    let rt = runtime();
    let dir = bench_dir();
    // Fill in a child and SIGKILL it: the file was not closed cleanly.
    let started = Instant::now();
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bench_fill_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FILL_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let filled = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("FILLED"));
    assert!(filled, "child filled the store");
    println!(
        "filled {MILLION} records (resync, one transaction) in {:.2?}",
        started.elapsed()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let size = std::fs::metadata(StoreConfig::new(dir.path()).db_file())
        .unwrap()
        .len();
    println!("file size {:.1} MiB", size as f64 / (1024.0 * 1024.0));

    let started = Instant::now();
    let store = rt
        .block_on(MupdateStore::open(StoreConfig::new(dir.path())))
        .unwrap();
    let after_kill = started.elapsed();
    assert_eq!(store.snapshot().len(), MILLION + 10);
    rt.block_on(store.close());
    println!("open after SIGKILL (redb repair + load): {after_kill:.2?}");

    let started = Instant::now();
    let store = rt
        .block_on(MupdateStore::open(StoreConfig::new(dir.path())))
        .unwrap();
    let clean = started.elapsed();
    assert_eq!(store.snapshot().len(), MILLION + 10);
    let started = Instant::now();
    let (records, _sub) = store.subscribe();
    println!(
        "open after clean close: {clean:.2?}; subscribe snapshot of {} records: {:.2?}",
        records.len(),
        started.elapsed()
    );
    rt.block_on(store.close());
}

//! Throughput and memory measurements of a child `imapd` (prints numbers; asserts only
//! correctness and the memory bound). Not part of the default test run:
//! `cargo test --release -p murder-server --test imap_bench -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;

use std::time::Instant;

use imap_common::{Client, appenduid};
use tokio::io::AsyncWriteExt;

/// Peak resident set size (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn message(n: usize, size: usize) -> Vec<u8> {
    let mut m = format!("Subject: bench {n}\r\n\r\n").into_bytes();
    m.resize(size - 2, b'x');
    m.extend_from_slice(b"\r\n");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn measure_append_throughput_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:{PLAIN}secret\n").unwrap();
    let (mut child, addr) = imap_common::spawn_imapd(
        env!("CARGO_BIN_EXE_imapd"),
        &dir.path().join("data"),
        &users,
    )
    .await;
    let pid = child.id().unwrap();
    let mut c = Client::connect(addr).await;
    c.ok("LOGIN alice secret").await;
    c.ok("CREATE bench").await;

    // 1. MULTIAPPEND: 100 x 2 KB per command.
    let msgs: Vec<Vec<u8>> = (0..100).map(|i| message(i, 2048)).collect();
    let commands = 30;
    let t = Instant::now();
    for _ in 0..commands {
        let parts: Vec<(&str, &[u8])> = msgs.iter().map(|m| ("", m.as_slice())).collect();
        let (_, tagged) = c.append_plus("bench", &parts).await;
        assert_eq!(appenduid(&tagged).1.len(), 100);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "MULTIAPPEND 100 x 2 KB per command: {commands} commands in {secs:.2} s = {:.0} messages/s ({:.1} ms/command)",
        (commands * 100) as f64 / secs,
        secs * 1000.0 / commands as f64
    );

    // 2. Single APPENDs of the same messages.
    let n = 500;
    let t = Instant::now();
    for i in 0..n {
        let (_, tagged) = c
            .append_plus("bench", &[("", msgs[i % 100].as_slice())])
            .await;
        assert!(tagged.text.contains("OK"));
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "single APPEND of 2 KB: {n} commands in {secs:.2} s = {:.0} messages/s",
        n as f64 / secs
    );

    // 2b. Single APPENDs from 8 concurrent sessions (group commit shares the fsyncs).
    let per = 100;
    let t = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let m = msgs[0].clone();
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                c.ok("LOGIN alice secret").await;
                for _ in 0..per {
                    let (_, tagged) = c.append_plus("bench", &[("", m.as_slice())]).await;
                    assert!(tagged.text.contains("OK"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "single APPEND of 2 KB from 8 sessions: {} commands in {secs:.2} s = {:.0} messages/s",
        8 * per,
        (8 * per) as f64 / secs
    );

    // 3. One command of 10 x 10 MB.
    let big = message(0, 10 << 20);
    let t = Instant::now();
    let parts: Vec<(&str, &[u8])> = (0..10).map(|_| ("", big.as_slice())).collect();
    let (_, tagged) = c.append_plus("bench", &parts).await;
    assert_eq!(appenduid(&tagged).1.len(), 10);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "MULTIAPPEND 10 x 10 MB: {secs:.2} s = {:.0} MB/s",
        100.0 * 1.048_576 / secs
    );
    println!("server peak RSS so far: {} MiB", peak_rss_kib(pid) / 1024);

    // 4. One 1 GB message, streamed; the server's peak RSS must stay well under 64 MB more.
    let before = peak_rss_kib(pid);
    let total: usize = 1_000_000_000;
    let chunk = vec![b'y'; 1 << 20];
    let t = Instant::now();
    c.stream
        .write_all(format!("g APPEND bench {{{}+}}\r\nSubject: big\r\n\r\n", total).as_bytes())
        .await
        .unwrap();
    let mut sent = "Subject: big\r\n\r\n".len();
    while sent < total {
        let n = chunk.len().min(total - sent);
        c.stream.write_all(&chunk[..n]).await.unwrap();
        sent += n;
    }
    c.stream.write_all(b"\r\n").await.unwrap();
    let (_, tagged) = c.until_tagged("g").await;
    assert!(tagged.text.contains("OK [APPENDUID"), "{tagged:?}");
    let secs = t.elapsed().as_secs_f64();
    let after = peak_rss_kib(pid);
    println!(
        "APPEND of 1 GB: {secs:.2} s = {:.0} MB/s; server peak RSS {} MiB before, {} MiB after",
        1000.0 / secs,
        before / 1024,
        after / 1024
    );
    assert!(
        after < before + 64 * 1024,
        "1 GB APPEND grew the server by {} KiB",
        after - before
    );
    child.start_kill().unwrap();
}

//! Inline segments: a small APPEND (within the store's `inline_segment_limit`, 256 KiB by
//! default) is committed inside the index transaction, a large one streams to a segment file,
//! and a command that crosses the limit in its middle moves what it buffered to a file. All are
//! fetchable byte-exact at once and after a SIGKILL and restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;

use imap_common::{Client, appenduid, staging_files};

/// A message of `size` octets whose bytes depend on `seed`.
fn message(seed: usize, size: usize) -> Vec<u8> {
    let mut b = format!("Subject: m{seed}\r\n\r\n").into_bytes();
    let mut x = (seed as u32).wrapping_mul(2_654_435_761);
    while b.len() < size - 2 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        b.push(b'a' + (x >> 24) as u8 % 26);
    }
    b.extend_from_slice(b"\r\n");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_inline_and_large_file_backed_appends_survive_restart_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:{PLAIN}secret\n").unwrap();
    let exe = env!("CARGO_BIN_EXE_imapd");
    let (mut child, addr) = imap_common::spawn_imapd(exe, &data, &users).await;
    let mut c = Client::connect(addr).await;
    c.ok("LOGIN alice secret").await;
    c.ok("CREATE box").await;
    // (command, bodies): 100 × 2 KB (inline), 2 × 200 KB (file-backed), and 1 KB + 300 KB
    // (buffered, then moved to a file when the second literal is announced).
    let commands: Vec<Vec<Vec<u8>>> = vec![
        (0..100).map(|i| message(i, 2048)).collect(),
        vec![message(100, 200 * 1024), message(101, 200 * 1024)],
        vec![message(102, 1024), message(103, 300 * 1024)],
        vec![message(104, 3)],
    ];
    let mut expected = Vec::new();
    for bodies in &commands {
        let msgs: Vec<(&str, &[u8])> = bodies.iter().map(|b| ("", b.as_slice())).collect();
        let (_, tagged) = c.append_plus("box", &msgs).await;
        assert!(tagged.text.contains("OK [APPENDUID"), "{tagged:?}");
        let (_, uids) = appenduid(&tagged);
        assert_eq!(uids.len(), bodies.len());
        expected.extend(uids.into_iter().zip(bodies.iter().cloned()));
    }
    // Synchronizing literals take the same path.
    let small = message(105, 500);
    let (_, tagged) = c.append_sync("box", &[&small]).await;
    let (_, uids) = appenduid(&tagged);
    expected.push((uids[0], small));
    c.ok("EXAMINE box").await;
    assert_eq!(c.fetch_all().await, expected, "before restart");
    assert_eq!(staging_files(&data), 0);
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let (_child, addr) = imap_common::spawn_imapd(exe, &data, &users).await;
    let mut c = Client::connect(addr).await;
    c.ok("LOGIN alice secret").await;
    c.ok("EXAMINE box").await;
    assert_eq!(c.fetch_all().await, expected, "after restart");
    // COPY reads inline and file-backed sources alike.
    c.ok("CREATE copy").await;
    c.ok("UID COPY 1:* copy").await;
    c.ok("EXAMINE copy").await;
    let copied: Vec<Vec<u8>> = c.fetch_all().await.into_iter().map(|(_, b)| b).collect();
    let want: Vec<Vec<u8>> = expected.into_iter().map(|(_, b)| b).collect();
    assert_eq!(copied, want);
}

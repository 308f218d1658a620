//! Crash safety: a child `imapd` under MULTIAPPEND load is killed with SIGKILL; after a restart
//! no partial command is visible, every acknowledged APPENDUID is fetchable with identical
//! bytes, UIDs are strictly ascending and UIDVALIDITY is unchanged. Repeated over several
//! kill/restart cycles on the same data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use imap_common::{Client, WAIT, appenduid, staging_files};

async fn spawn(data: &Path, users: &Path) -> (tokio::process::Child, std::net::SocketAddr) {
    imap_common::spawn_imapd(env!("CARGO_BIN_EXE_imapd"), data, users).await
}

/// Body of message `i` of `k` of command `cmd`, padded to a size that varies.
fn body(cmd: &str, i: usize, k: usize) -> Vec<u8> {
    let mut b = format!("Subject: {cmd}\r\nX-Part: {i}/{k}\r\n\r\n").into_bytes();
    let pad = (cmd.len() * 997 + i * 4099) % 30_000;
    b.extend(std::iter::repeat_n(b'x', pad));
    b.extend_from_slice(b"\r\n");
    b
}

type Acked = Arc<Mutex<Vec<(Vec<u32>, Vec<Vec<u8>>)>>>;

async fn writer(addr: std::net::SocketAddr, id: usize, round: usize, acked: Acked) {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let mut c = Client::new(stream);
    if c.line().await.is_none() {
        return;
    }
    let tag = "l";
    c.send(format!("{tag} LOGIN alice secret\r\n").as_bytes())
        .await;
    if c.line().await.is_none() {
        return;
    }
    for n in 0..10_000 {
        let cmd = format!("r{round}-w{id}-c{n}");
        let k = 1 + (n * 7 + id) % 9;
        let bodies: Vec<Vec<u8>> = (1..=k).map(|i| body(&cmd, i, k)).collect();
        let mut data = format!("{cmd} APPEND load").into_bytes();
        for b in &bodies {
            data.extend_from_slice(format!(" {{{}+}}\r\n", b.len()).as_bytes());
            data.extend_from_slice(b);
        }
        data.extend_from_slice(b"\r\n");
        use tokio::io::AsyncWriteExt;
        if c.stream.write_all(&data).await.is_err() {
            return;
        }
        loop {
            let Some(l) = c.line().await else { return };
            if l.text.starts_with(&format!("{cmd} ")) {
                assert!(l.text.contains("OK [APPENDUID"), "{l:?}");
                let (_, uids) = appenduid(&l);
                acked.lock().unwrap().push((uids, bodies));
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_multiappend_load_keeps_commands_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:{PLAIN}secret\n").unwrap();
    let acked: Acked = Arc::default();
    let mut uid_validity = None;
    for round in 0..3 {
        let (mut child, addr) = spawn(&data, &users).await;
        let mut c = Client::connect(addr).await;
        c.ok("LOGIN alice secret").await;
        if round == 0 {
            c.ok("CREATE load").await;
        }
        let u = c.ok("EXAMINE load").await;
        let v = u
            .iter()
            .find_map(|l| l.text.split("[UIDVALIDITY ").nth(1))
            .map(|s| s.split(']').next().unwrap().to_string())
            .unwrap();
        assert_eq!(
            *uid_validity.get_or_insert(v.clone()),
            v,
            "UIDVALIDITY changed"
        );
        // Verify everything so far (after the previous kill).
        let snapshot = acked.lock().unwrap().clone();
        verify(&mut c, &snapshot).await;
        assert_eq!(staging_files(&data), 0, "staging not cleaned at start");
        // Load, then kill once enough commands were acknowledged.
        let before = acked.lock().unwrap().len();
        let writers: Vec<_> = (0..3)
            .map(|id| tokio::spawn(writer(addr, id, round, acked.clone())))
            .collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        while acked.lock().unwrap().len() < before + 25 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "load made no progress"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        for w in writers {
            w.await.unwrap();
        }
    }
    let (_child, addr) = spawn(&data, &users).await;
    let mut c = Client::connect(addr).await;
    c.ok("LOGIN alice secret").await;
    c.ok("EXAMINE load").await;
    let snapshot = acked.lock().unwrap().clone();
    verify(&mut c, &snapshot).await;
}

async fn verify(c: &mut Client<tokio::net::TcpStream>, acked: &[(Vec<u32>, Vec<Vec<u8>>)]) {
    let all = c.fetch_all().await;
    let by_uid: BTreeMap<u32, Vec<u8>> = all.iter().cloned().collect();
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "UIDs strictly ascending"
    );
    for (uids, bodies) in acked {
        for (u, b) in uids.iter().zip(bodies) {
            assert_eq!(
                by_uid.get(u),
                Some(b),
                "acknowledged UID {u} lost or changed"
            );
        }
    }
    // Every command present is complete, with contiguous UIDs.
    let mut commands: BTreeMap<String, Vec<(u32, usize, usize)>> = BTreeMap::new();
    for (uid, b) in &all {
        let text = String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
        let cmd = text
            .split("Subject: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        let part = text
            .split("X-Part: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        let (i, k) = part.split_once('/').unwrap();
        commands.entry(cmd.to_string()).or_default().push((
            *uid,
            i.parse().unwrap(),
            k.parse().unwrap(),
        ));
    }
    for (cmd, parts) in commands {
        let k = parts[0].2;
        assert_eq!(parts.len(), k, "command {cmd} is partial: {parts:?}");
        for (j, (uid, i, _)) in parts.iter().enumerate() {
            assert_eq!(*i, j + 1, "{cmd} out of order");
            assert_eq!(*uid, parts[0].0 + j as u32, "{cmd} UIDs not contiguous");
        }
    }
}

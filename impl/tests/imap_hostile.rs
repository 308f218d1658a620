//! imapd against hostile clients: the failed-login limit, and (in the other tests) input no
//! honest client sends, each while a well-behaved client keeps getting answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
mod imap_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use common::{raise_nofile_limit, vm_rss_kib};
use imap_common::{Client, TestServer, WAIT, spawn_imapd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on the resident memory of an `imapd` under attack (debug build), in KiB.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// A well-behaved client (alice, INBOX selected) doing NOOP and SEARCH round trips on its own
/// connection until stopped; every round trip must succeed.
struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Prober {
    async fn start(addr: SocketAddr) -> Prober {
        let mut c = Client::connect(addr).await;
        c.ok("LOGIN alice secret").await;
        c.ok("SELECT INBOX").await;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut rounds = 0u64;
            while !flag.load(Ordering::Relaxed) {
                c.ok("NOOP").await;
                let u = c.ok("SEARCH ALL").await;
                assert!(u.iter().any(|l| l.text.starts_with("* SEARCH")), "{u:?}");
                rounds += 1;
                tokio::task::yield_now().await;
            }
            rounds
        });
        Prober { stop, task }
    }

    /// Stop; how many round trips succeeded (panics if one failed).
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("prober stuck")
            .expect("a well-behaved client's round trip failed")
    }
}

/// A real `imapd` process (alice/secret) for memory measurements: (its directory, the child,
/// its pid, its address).
async fn child_imapd() -> (tempfile::TempDir, tokio::process::Child, u32, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:{PLAIN}secret\n").unwrap();
    let (child, addr) =
        spawn_imapd(env!("CARGO_BIN_EXE_imapd"), &dir.path().join("d"), &users).await;
    let pid = child.id().unwrap();
    (dir, child, pid, addr)
}

/// How an attack ended (the texts are printed with `--nocapture`).
#[derive(Debug)]
#[allow(dead_code)]
enum End {
    /// This tagged answer; the connection still answers NOOP.
    Answered(String),
    /// `* BYE ...` then EOF.
    Closed(String),
}

/// Send `input` (from a task: the server may stop reading) on a fresh connection, logged in
/// first when `login`; answer a `+` continuation with `after_plus`. Ends at the line tagged
/// `a` (then checks that NOOP still works) or at EOF (which must follow a `* BYE`).
async fn attack(addr: SocketAddr, login: bool, input: Vec<u8>, after_plus: &[u8]) -> End {
    let mut c = Client::connect(addr).await;
    if login {
        c.ok("LOGIN alice secret").await;
    }
    let (mut rd, mut wr) = c.stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&input).await;
        wr
    });
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut wr = None;
    let mut writer = Some(writer);
    let mut plus_answered = false;
    loop {
        assert!(got.len() < 64 * 1024, "runaway answer");
        if let Some(p) = got.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = got.drain(..p + 2).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if line.starts_with("+") {
                let mut w = match wr.take() {
                    Some(w) => w,
                    None => writer.take().unwrap().await.unwrap(),
                };
                if !plus_answered {
                    w.write_all(after_plus).await.unwrap();
                    plus_answered = true;
                }
                wr = Some(w);
                continue;
            }
            if line.starts_with("* BYE") {
                // Read to EOF.
                loop {
                    let n = tokio::time::timeout(WAIT, rd.read(&mut chunk))
                        .await
                        .expect("no EOF after BYE")
                        .unwrap_or(0);
                    if n == 0 {
                        if let Some(w) = writer.take() {
                            w.abort();
                        }
                        return End::Closed(line);
                    }
                }
            }
            if line.starts_with("a ") {
                let mut w = match wr.take() {
                    Some(w) => w,
                    None => writer.take().unwrap().await.unwrap(),
                };
                w.write_all(b"n NOOP\r\n").await.unwrap();
                let mut rest = got.clone();
                loop {
                    if let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
                        let l = String::from_utf8_lossy(&rest[..p]).to_string();
                        rest.drain(..p + 2);
                        if l.starts_with("n ") {
                            assert!(l.starts_with("n OK"), "after {line:?}: {l:?}");
                            return End::Answered(line);
                        }
                        continue;
                    }
                    let n = tokio::time::timeout(WAIT, rd.read(&mut chunk))
                        .await
                        .expect("no answer to NOOP")
                        .unwrap();
                    assert!(n > 0, "closed without BYE after {line:?}");
                    rest.extend_from_slice(&chunk[..n]);
                }
            }
            continue; // untagged data
        }
        let n = tokio::time::timeout(WAIT, rd.read(&mut chunk))
            .await
            .expect("server neither answered nor closed")
            .unwrap_or(0);
        assert!(
            n > 0,
            "closed without BYE: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
}

/// (name, log in first, input, answer to `+`, accepted ending).
type Case = (&'static str, bool, Vec<u8>, Vec<u8>, fn(&End) -> bool);

fn answered(e: &End, p: &str) -> bool {
    matches!(e, End::Answered(l) if l.starts_with(p))
}

/// Literal counts at and past 2^64, negative and zero-padded; a 10 MB line without CRLF;
/// NULs in commands and in an APPEND literal; garbage base64 in AUTHENTICATE: each is answered
/// (BAD/NO, connection usable) or closed with `* BYE`, a well-behaved client keeps getting
/// answers throughout, and the `imapd` process stays under [`RSS_BOUND_KIB`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_answered_or_closed_and_memory_stays_bounded() {
    let (_dir, _child, pid, addr) = child_imapd().await;
    let prober = Prober::start(addr).await;
    let ten_mb = {
        let mut v = b"a NOOP ".to_vec();
        v.resize(10 * 1024 * 1024, b'x');
        v
    };
    let plain = base64::engine::general_purpose::STANDARD;
    let cases: Vec<Case> = vec![
        (
            "2^64",
            false,
            b"a LOGIN {18446744073709551616}\r\n".to_vec(),
            vec![],
            |e| answered(e, "a BAD") || matches!(e, End::Closed(_)),
        ),
        (
            "2^64-1",
            false,
            b"a LOGIN {18446744073709551615}\r\n".to_vec(),
            vec![],
            |e| answered(e, "a BAD") || answered(e, "a NO") || matches!(e, End::Closed(_)),
        ),
        (
            "2^64+ literal+",
            true,
            b"a APPEND INBOX {18446744073709551616+}\r\nxx\r\n".to_vec(),
            vec![],
            |e| matches!(e, End::Closed(_)) || answered(e, "a BAD"),
        ),
        (
            "huge literal+",
            true,
            b"a APPEND INBOX {99999999999999999999999999+}\r\n".to_vec(),
            vec![],
            |e| matches!(e, End::Closed(_)) || answered(e, "a BAD"),
        ),
        (
            "negative",
            false,
            b"a LOGIN {-1}\r\n".to_vec(),
            vec![],
            |e| answered(e, "a BAD"),
        ),
        (
            "zero-padded",
            false,
            b"a LOGIN {0005}\r\n".to_vec(),
            b"alice {06}\r\nsecret\r\n".to_vec(),
            |e| answered(e, "a OK") || answered(e, "a BAD"),
        ),
        ("10 MB line", false, ten_mb, vec![], |e| {
            matches!(e, End::Closed(_)) || answered(e, "a BAD")
        }),
        (
            "NUL in command",
            false,
            b"a NO\0OP\r\n".to_vec(),
            vec![],
            |e| answered(e, "a BAD"),
        ),
        (
            "NUL in tag-line arg",
            true,
            b"a SELECT IN\0BOX\r\n".to_vec(),
            vec![],
            |e| answered(e, "a BAD") || answered(e, "a NO"),
        ),
        (
            "garbage base64",
            false,
            b"a AUTHENTICATE PLAIN\r\n".to_vec(),
            b"%%%%not base64%%%%\r\n".to_vec(),
            |e| answered(e, "a BAD"),
        ),
        (
            "garbage base64 IR",
            false,
            format!("a AUTHENTICATE PLAIN {}=\r\n", plain.encode([0xffu8; 40])).into_bytes(),
            vec![],
            |e| answered(e, "a BAD") || answered(e, "a NO"),
        ),
    ];
    for (name, login, input, after, check) in cases {
        let end = attack(addr, login, input, &after).await;
        assert!(check(&end), "{name}: {end:?}");
        eprintln!("{name}: {end:?}");
    }
    // A NUL in a message literal: RFC 3501's `literal` is CHAR8 (no NUL), but imapd accepts
    // it (see SECURITY.md) and stores the octets exactly.
    let mut c = Client::connect(addr).await;
    c.ok("LOGIN alice secret").await;
    let msg: &[u8] = b"Subject: nul\r\n\r\na\0b\r\n";
    let (_, t) = c.append_plus("INBOX", &[("", msg)]).await;
    assert!(t.text.contains(" OK"), "{t:?}");
    c.ok("SELECT INBOX").await;
    let got = c.fetch_all().await;
    assert_eq!(got.last().unwrap().1, msg);
    let rss = vm_rss_kib(pid).unwrap();
    assert!(rss < RSS_BOUND_KIB, "imapd VmRSS {rss} KiB");
    assert!(prober.finish().await > 0);
    eprintln!("imapd VmRSS after hostile input: {rss} KiB");
}

/// 100,000 pipelined NOOPs whose answers are never read: the server stops reading when its
/// answers back up, so its memory stays bounded, and other clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_flood_that_is_not_read_does_not_grow_the_server() {
    let (_dir, _child, pid, addr) = child_imapd().await;
    let prober = Prober::start(addr).await;
    let before = vm_rss_kib(pid).unwrap();
    let mut flood = Vec::new();
    for i in 0..100_000u32 {
        flood.extend_from_slice(format!("f{i} NOOP\r\n").as_bytes());
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Write as much as the server accepts; it stops reading once its answers back up.
    let wrote = tokio::time::timeout(std::time::Duration::from_secs(5), s.write_all(&flood)).await;
    let rss = vm_rss_kib(pid).unwrap();
    assert!(
        rss < RSS_BOUND_KIB,
        "imapd VmRSS {rss} KiB (before {before})"
    );
    assert!(prober.finish().await > 0);
    eprintln!(
        "flood fully written: {}; VmRSS {before} -> {rss} KiB",
        wrote.is_ok()
    );
    drop(s);
}

/// 1,000 idle connections and a slowloris (a command trickled one byte per write) hold their
/// connections without starving a well-behaved client, and the server stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_and_a_slowloris_leave_others_served() {
    raise_nofile_limit();
    let (_dir, _child, pid, addr) = child_imapd().await;
    let prober = Prober::start(addr).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut slow = Client::connect(addr).await;
    for b in b"s LOGIN alice secret" {
        slow.send(&[*b]).await;
    }
    // Everyone else is still served while the slowloris line is incomplete.
    let mut c = Client::connect(addr).await;
    c.ok("LOGIN alice secret").await;
    slow.send(b"\r\n").await;
    let (_, t) = slow.until_tagged("s").await;
    assert!(t.text.starts_with("s OK"), "{t:?}");
    let rss = vm_rss_kib(pid).unwrap();
    assert!(rss < RSS_BOUND_KIB, "imapd VmRSS {rss} KiB");
    assert!(prober.finish().await > 0);
    eprintln!("1000 idle connections: imapd VmRSS {rss} KiB");
    drop(idle);
}

/// Plaintext pipelined after STARTTLS is never executed, and TLS handshake garbage closes only
/// that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_injection_and_handshake_garbage() {
    let pki = murder_server::net::TestPki::new(&["localhost"]).unwrap();
    let s = TestServer::start_with(|c| c.tls = Some(pki.server_config())).await;
    let addr = s.handle.local_addr();
    let prober = Prober::start(addr).await;
    // Injection: a LOGIN pipelined with STARTTLS must not run.
    let mut c = Client::connect(addr).await;
    c.send(b"a STARTTLS\r\nb LOGIN alice secret\r\n").await;
    let l = c.line().await.unwrap();
    assert!(l.text.starts_with("a OK"), "{l:?}");
    // A broken handshake makes the server close; everything it sent is then in `rest`.
    c.stream
        .write_all(b"\x16\x03\x01\x00\x05hello")
        .await
        .unwrap();
    let mut rest = c.pending().to_vec();
    let _ = tokio::time::timeout(WAIT, c.stream.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("b OK"),
        "pipelined plaintext executed: {rest:?}"
    );
    // Handshake garbage after STARTTLS.
    for garbage in [
        &b"\x16\x03\x01\x00\x05hello"[..],
        &[0u8; 4096][..],
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        let mut c = Client::connect(addr).await;
        let (_, t) = c.cmd("STARTTLS").await;
        assert!(t.text.contains(" OK"), "{t:?}");
        let _ = c.stream.write_all(garbage).await;
        let mut sink = Vec::new();
        let r = tokio::time::timeout(WAIT, c.stream.read_to_end(&mut sink)).await;
        assert!(r.is_ok(), "garbage handshake not closed");
    }
    assert!(prober.finish().await > 0);
}

/// LOGIN and AUTHENTICATE failures share one count: the third (default
/// `Limits::max_auth_failures`) is answered NO, then `* BYE`, then EOF. A cancelled
/// AUTHENTICATE does not count; other connections are unaffected and can log in.
#[tokio::test]
async fn the_third_failed_login_is_followed_by_bye_and_close() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let (_, t) = c.cmd("LOGIN alice wrong").await;
    assert!(t.text.contains(" NO [AUTHENTICATIONFAILED]"), "{t:?}");
    // A cancelled exchange is not a failure.
    let tag = c.tag();
    c.send(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())
        .await;
    assert!(c.line().await.unwrap().text.starts_with('+'));
    c.send(b"*\r\n").await;
    let (_, t) = c.until_tagged(&tag).await;
    assert!(t.text.contains(" BAD"), "{t:?}");
    let bad = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0nope");
    let (_, t) = c.cmd(&format!("AUTHENTICATE PLAIN {bad}")).await;
    assert!(t.text.contains(" NO [AUTHENTICATIONFAILED]"), "{t:?}");
    // Meanwhile another connection logs in fine.
    let mut other = s.alice().await;
    let (_, t) = c.cmd("LOGIN bob wrong").await;
    assert!(t.text.contains(" NO [AUTHENTICATIONFAILED]"), "{t:?}");
    let bye = c.line().await.unwrap();
    assert!(bye.text.starts_with("* BYE"), "{bye:?}");
    assert!(c.line().await.is_none(), "still open after BYE");
    other.ok("NOOP").await;

    // The limit is configurable, and garbage base64 counts as a failure.
    let s = TestServer::start_with(|c| c.limits.max_auth_failures = 1).await;
    let mut c = s.client().await;
    let (_, t) = c.cmd("AUTHENTICATE PLAIN Zm9v=Zm9v=").await;
    assert!(t.text.contains(" BAD"), "{t:?}");
    assert!(c.line().await.unwrap().text.starts_with("* BYE"));
    assert!(c.line().await.is_none());
    s.alice().await.ok("NOOP").await;
}

/// A full disk (the `DiskFault` hook): APPEND and MULTIAPPEND answer NO, the mailbox is
/// unchanged (no message, no UID used, no staging file left), reads keep working, a session
/// with the mailbox selected sees no EXISTS, and APPEND works again once space is back.
#[tokio::test]
async fn a_full_disk_fails_append_cleanly_and_reads_keep_working() {
    let disk = murder_server::imap::DiskFault::new();
    let d = disk.clone();
    let s = TestServer::start_with(move |c| c.disk_fault = Some(d)).await;
    let mut c = s.alice().await;
    let m: &[u8] = b"Subject: one\r\n\r\nbody\r\n";
    let (_, t) = c.append_plus("INBOX", &[("", m)]).await;
    let (_, first) = imap_common::appenduid(&t);
    let mut watcher = s.alice().await;
    watcher.ok("SELECT INBOX").await;
    disk.set_full(true);
    let (_, t) = c.append_plus("INBOX", &[("", m)]).await;
    assert!(t.text.contains(" NO "), "{t:?}");
    let (_, t) = c.append_plus("INBOX", &[("", m), ("(\\Seen) ", m)]).await;
    assert!(t.text.contains(" NO "), "{t:?}");
    assert_eq!(imap_common::staging_files(&s.data()), 0);
    // Reads keep working and see the mailbox unchanged.
    c.ok("SELECT INBOX").await;
    let got = c.fetch_all().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, m);
    let u = c.ok("SEARCH BODY body").await;
    assert_eq!(u[0].text, "* SEARCH 1");
    let u = watcher.ok("NOOP").await;
    assert!(!u.iter().any(|l| l.text.contains("EXISTS")), "{u:?}");
    disk.set_full(false);
    let (_, t) = c.append_plus("INBOX", &[("", m)]).await;
    let (_, uids) = imap_common::appenduid(&t);
    assert_eq!(uids, vec![first[0] + 1], "a failed APPEND used UIDs");
}

//! Hostile clients against `mupdated` (SECURITY.md): each attack is answered or its
//! connection closed, the server's memory stays bounded (VmRSS of a real `mupdated` process),
//! and a well-behaved client on another connection keeps getting its NOOP/FIND round trips
//! answered throughout ([`Prober`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use std::net::SocketAddr;
use std::time::Duration;

use mupdate_common::*;
use murder_server::net::TestPki;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound on the resident memory of a `mupdated` under attack (debug build), in KiB.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// A judgement of how an attack ended.
type Check = Box<dyn Fn(&End) -> bool>;

/// Answered with a line starting with `p`.
fn bad(p: &'static str) -> Check {
    Box::new(move |e: &End| matches!(e, End::Answered(l) if l.starts_with(p)))
}

/// `* BYE` and closed.
fn closed(e: &End) -> bool {
    matches!(e, End::Closed(_))
}

/// How an attack ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server answered with this line and the connection is still usable.
    Answered(String),
    /// `* BYE ...` then EOF.
    Closed(String),
}

/// Send `input` (from a task: the server may stop reading) on a fresh connection, logged in
/// first when `login`; answer `+ go ahead` with `after_go_ahead`. Returns how it ended.
async fn attack(addr: SocketAddr, login: bool, input: Vec<u8>, after_go_ahead: &[u8]) -> End {
    let c = if login {
        Client::admin(addr).await
    } else {
        Client::connect(addr).await
    };
    let (mut rd, mut wr) = c.stream.into_split();
    let mut writer = Some(tokio::spawn(async move {
        let _ = wr.write_all(&input).await;
        wr
    }));
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut wr_back = None;
    loop {
        // Bounded: the server's answer to one attack is a line or two.
        assert!(got.len() < 64 * 1024, "runaway answer: {:?}", &got[..200]);
        let n = tokio::time::timeout(WAIT, rd.read(&mut chunk))
            .await
            .expect("server neither answered nor closed")
            .unwrap_or(0);
        if n == 0 {
            if let Some(w) = writer.take() {
                w.abort();
            }
            let text = String::from_utf8_lossy(&got).into_owned();
            assert!(text.starts_with("* BYE \""), "closed without BYE: {text:?}");
            return End::Closed(text.trim_end().to_string());
        }
        got.extend_from_slice(&chunk[..n]);
        if got.starts_with(b"* BYE") {
            continue; // read to EOF
        }
        if got == b"+ go ahead\r\n" {
            got.clear();
            let mut wr = writer.take().unwrap().await.unwrap();
            wr.write_all(after_go_ahead).await.unwrap();
            wr_back = Some(wr);
            continue;
        }
        // An empty SASL challenge line: the answer to the response follows.
        if got.ends_with(b"\r\n") && got != b"\r\n" {
            break;
        }
    }
    let wr = match wr_back {
        Some(w) => w,
        None => writer.take().unwrap().await.unwrap(),
    };
    let mut c = Client::from_halves(rd, wr);
    let line = String::from_utf8_lossy(&got).trim_end().to_string();
    // The connection is still usable.
    let r = c.cmd("N", "NOOP").await;
    let noop = if login { "N OK " } else { "N NO " };
    assert!(r[0].starts_with(noop), "after {line:?}: {r:?}");
    End::Answered(line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_answered_or_closed_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_quiet_mupdated(dir.path(), "127.0.0.1:0").await;
    let pid = child.id().unwrap();
    let prober = Prober::start(addr).await;
    let ten_mb = vec![b'a'; 10 * 1024 * 1024];
    let cases: Vec<(&str, bool, Vec<u8>, Check)> = vec![
        (
            "literal 2^64-1",
            true,
            b"X FIND {18446744073709551615}\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "literal 2^64",
            true,
            b"X FIND {18446744073709551616}\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "literal 2^64 non-sync",
            true,
            b"X FIND {18446744073709551616+}\r\n".to_vec(),
            Box::new(closed),
        ),
        (
            "literal 2^64-1 non-sync",
            true,
            b"X FIND {18446744073709551615+}\r\n".to_vec(),
            Box::new(closed),
        ),
        (
            "literal 10^30",
            true,
            b"X FIND {1000000000000000000000000000000}\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "negative literal",
            true,
            b"X FIND {-1}\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "negative non-sync literal",
            true,
            b"X FIND {-5+}\r\nabcde\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "zero-padded literal",
            true,
            b"X FIND {00000000000000000000001}\r\n".to_vec(),
            (bad("X OK ")),
        ),
        (
            "zero-padded non-sync literal",
            true,
            b"X FIND {00000000000000000000001+}\r\na\r\n".to_vec(),
            (bad("X OK ")),
        ),
        (
            "empty literal count",
            true,
            b"X FIND {}\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "literal count before login",
            false,
            b"X FIND {18446744073709551616}\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "10 MB line without CRLF",
            true,
            ten_mb.clone(),
            Box::new(closed),
        ),
        (
            "10 MB line without CRLF before login",
            false,
            ten_mb,
            Box::new(closed),
        ),
        (
            "NUL bytes alone",
            true,
            b"\0\0\0\0\r\n".to_vec(),
            (bad("* BAD ")),
        ),
        (
            "NUL in the command word",
            true,
            b"X NO\0OP\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "NUL in the tag",
            true,
            b"X\0Y NOOP\r\n".to_vec(),
            (bad("* BAD ")),
        ),
        (
            "NUL in a quoted string",
            true,
            b"X FIND \"a\0\"\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "NUL in a literal",
            true,
            b"X FIND {2+}\r\na\0\r\n".to_vec(),
            (bad("X BAD ")),
        ),
        (
            "1 MB of NULs",
            true,
            vec![0u8; 1024 * 1024],
            Box::new(closed),
        ),
        (
            "garbage base64 initial response",
            false,
            b"A AUTHENTICATE \"PLAIN\" \"%%%not-base64%%%\"\r\n".to_vec(),
            (bad("A NO ")),
        ),
        (
            "padding-only base64",
            false,
            b"A AUTHENTICATE \"PLAIN\" \"====\"\r\n".to_vec(),
            (bad("A NO ")),
        ),
        (
            "garbage base64 in the exchange",
            false,
            b"A AUTHENTICATE \"PLAIN\"\r\n\x01\x02\xff\xfe\r\n".to_vec(),
            // The empty challenge line, then NO.
            Box::new(|e: &End| matches!(e, End::Answered(l) if l.starts_with("\r\nA NO "))),
        ),
        (
            "base64 of NULs",
            false,
            b"A AUTHENTICATE \"PLAIN\" \"AAAAAAAA\"\r\n".to_vec(),
            (bad("A NO ")),
        ),
        (
            "AUTHENTICATE with a huge literal",
            false,
            b"A AUTHENTICATE \"PLAIN\" {18446744073709551615}\r\n".to_vec(),
            (bad("A BAD ")),
        ),
    ];
    let mut peak = vm_rss_kib(pid).unwrap_or(0);
    let start_rss = peak;
    for (name, login, input, check) in cases {
        let end = attack(addr, login, input, b"a\r\n").await;
        assert!(check(&end), "{name}: {end:?}");
        if let Some(rss) = vm_rss_kib(pid) {
            peak = peak.max(rss);
        }
    }
    // The exchange case answers with an empty challenge and then waits; a full round trip for
    // it: garbage response -> NO.
    let mut c = Client::connect(addr).await;
    c.send("A AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(c.line().await, "");
    c.send("%%%\r\n").await;
    assert!(c.line().await.starts_with("A NO "));
    let rounds = prober.finish().await;
    assert!(rounds > 0);
    println!("mupdated VmRSS: {start_rss} KiB at start, peak {peak} KiB; prober rounds {rounds}");
    assert!(peak < RSS_BOUND_KIB, "VmRSS {peak} KiB over the bound");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_flood_that_is_not_read_does_not_grow_the_server() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_quiet_mupdated(dir.path(), "127.0.0.1:0").await;
    let pid = child.id().unwrap();
    let prober = Prober::start(addr).await;
    // A client with a small receive buffer, so that unread answers push back on the server
    // quickly (loopback buffers could otherwise absorb the whole flood).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (rd, mut wr) = tcp.into_split();
    let mut rd = tokio::io::BufReader::new(rd);
    let mut line = String::new();
    while !line.starts_with("* OK MUPDATE") {
        line.clear();
        rd.read_line(&mut line).await.unwrap();
    }
    let login = format!(
        "A AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
        plain("admin", "secret")
    );
    wr.write_all(login.as_bytes()).await.unwrap();
    line.clear();
    rd.read_line(&mut line).await.unwrap();
    assert_eq!(line, "A OK \"Authenticated\"\r\n");
    // Every FIND answers a ~1 KB record: about 10 MB of answers in all, more than socket
    // buffers hold, so the server must stop reading while its answers are not read.
    let acl = "a".repeat(1000);
    let mut admin = Client::admin(addr).await;
    let r = admin
        .cmd("W", &format!("ACTIVATE \"user.big\" \"h!p\" \"{acl}\""))
        .await;
    assert_eq!(r, vec!["W OK \"done\""]);
    let record = format!(" MAILBOX \"user.big\" \"h!p\" \"{acl}\"\r\n");
    let mut flood = Vec::new();
    for i in 0..N {
        if i % 10 == 0 {
            flood.extend_from_slice(format!("F{i} FIND \"user.big\"\r\n").as_bytes());
        } else {
            flood.extend_from_slice(format!("N{i} NOOP\r\n").as_bytes());
        }
    }
    let flood_len = flood.len();
    let writer = tokio::spawn(async move {
        wr.write_all(&flood).await.unwrap();
        wr
    });
    // Read nothing for a while (bounded number of samples), watching the server's memory.
    let start_rss = vm_rss_kib(pid).unwrap_or(0);
    let mut peak = start_rss;
    for _ in 0..100 {
        if writer.is_finished() {
            break;
        }
        peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wrote_all_unread = writer.is_finished();
    // Now read every answer, in order.
    for i in 0..N {
        let want = if i % 10 == 0 {
            format!("F{i} OK \"Search completed\"\r\n")
        } else {
            format!("N{i} OK \"NOOP complete\"\r\n")
        };
        line.clear();
        tokio::time::timeout(WAIT, rd.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        if i % 10 == 0 {
            assert_eq!(line, format!("F{i}{record}"));
            line.clear();
            tokio::time::timeout(WAIT, rd.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(line, want);
        if i % 5000 == 0 {
            peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
        }
    }
    let mut wr = tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
    wr.write_all(b"Z NOOP\r\n").await.unwrap();
    line.clear();
    tokio::time::timeout(WAIT, rd.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "Z OK \"NOOP complete\"\r\n");
    let rounds = prober.finish().await;
    println!(
        "flood of {N} commands ({flood_len} bytes), all written before reading: \
         {wrote_all_unread}; mupdated VmRSS {start_rss} KiB -> peak {peak} KiB; prober rounds {rounds}"
    );
    assert!(peak < RSS_BOUND_KIB, "VmRSS {peak} KiB over the bound");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_and_a_slowloris_leave_the_limit_and_others_intact() {
    const LIMIT: usize = 1000;
    let nofile = raise_nofile_limit();
    assert!(
        nofile >= 2 * LIMIT as u64 + 200,
        "RLIMIT_NOFILE hard limit {nofile} too low for this test"
    );
    let s = server_with(|c| c.limits.max_connections = LIMIT).await;
    let prober = Prober::start(s.addr).await;
    // The slowloris: one byte per 10 ms of a login and a NOOP, a bounded number of bytes.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let slow_input = format!(
        "A AUTHENTICATE \"PLAIN\" \"{}\"\r\nS NOOP\r\n",
        plain("admin", "secret")
    );
    let loris = tokio::spawn(async move {
        for b in slow_input.as_bytes() {
            slow.write_all(&[*b]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while !got.ends_with(b"S OK \"NOOP complete\"\r\n") {
            let n = tokio::time::timeout(WAIT, slow.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "slowloris closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        slow
    });
    // Fill the server up to its limit with idle connections (prober and slowloris hold two).
    let mut idle = Vec::new();
    for _ in 0..LIMIT - 2 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
        assert!(s.handle.active_connections() <= LIMIT);
    }
    // Every one of them is served (banner), in a bounded wait.
    let mut first = [0u8; 6];
    for t in idle.iter_mut() {
        tokio::time::timeout(WAIT, t.read_exact(&mut first))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&first, b"* AUTH");
    }
    // Over the limit: BYE and close, the count never exceeds the limit.
    for _ in 0..20 {
        let mut extra = TcpStream::connect(s.addr).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, extra.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"* BYE \"too many connections\"\r\n");
        assert!(s.handle.active_connections() <= LIMIT);
    }
    let _slow = tokio::time::timeout(WAIT * 3, loris)
        .await
        .unwrap()
        .unwrap();
    assert!(s.handle.active_connections() <= LIMIT);
    let rounds = prober.finish().await;
    assert!(rounds > 0);
    let rss = vm_rss_kib(std::process::id()).unwrap_or(0);
    println!(
        "{LIMIT} connections: test process (server and clients) VmRSS {rss} KiB; prober rounds {rounds}"
    );
    drop(idle);
}

#[tokio::test]
async fn starttls_injection_and_handshake_garbage() {
    let pki = TestPki::new(&["localhost"]).unwrap();
    let s = server_with(|c| {
        c.tls = Some(pki.server_config());
        c.limits.idle_timeout = Duration::from_millis(300);
    })
    .await;
    // Plaintext pipelined after STARTTLS must never run: a login and a write ride along.
    let mut c = Client::connect(s.addr).await;
    c.send(format!(
        "S STARTTLS\r\nA AUTHENTICATE \"PLAIN\" \"{}\"\r\nW ACTIVATE \"user.injected\" \"h!p\" \"\"\r\n",
        plain("admin", "secret")
    ))
    .await;
    assert_eq!(c.line().await, "S OK \"Begin TLS negotiation now\"");
    assert!(c.pending().is_empty());
    let (r, w) = c.stream.into_split();
    let tls = TlsConnector::from(pki.client_config())
        .connect(
            ServerName::try_from("localhost").unwrap(),
            r.reunite(w).unwrap(),
        )
        .await
        .unwrap();
    let (tr, mut tw) = tokio::io::split(tls);
    let mut tr = tokio::io::BufReader::new(tr);
    let mut line = String::new();
    while !line.starts_with("* OK MUPDATE") {
        line.clear();
        tr.read_line(&mut line).await.unwrap();
    }
    tw.write_all(b"N NOOP\r\n").await.unwrap();
    line.clear();
    tr.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("N NO "), "pipelined login ran: {line}");
    assert_eq!(
        Client::admin(s.addr)
            .await
            .cmd("F", "FIND \"user.injected\"")
            .await,
        vec!["F OK \"Search completed\""]
    );
    // Garbage instead of a ClientHello: that connection closes, the others are fine.
    for garbage in [
        vec![0u8; 4096],
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        [&b"\x16\x03\x01\xff\xff"[..], &[0xAB; 2000]].concat(),
    ] {
        let mut c = Client::connect(s.addr).await;
        c.send("S STARTTLS\r\n").await;
        assert_eq!(c.line().await, "S OK \"Begin TLS negotiation now\"");
        let (mut r, mut w) = c.stream.into_split();
        let _ = w.write_all(&garbage).await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(WAIT, r.read_to_end(&mut sink))
            .await
            .expect("server kept a connection with a broken handshake");
        assert!(
            sink.len() < 1024,
            "answered garbage with {} bytes",
            sink.len()
        );
        let mut other = Client::admin(s.addr).await;
        assert_eq!(other.cmd("N", "NOOP").await, vec!["N OK \"NOOP complete\""]);
    }
    // STARTTLS and then silence: dropped after the idle timeout, not held forever.
    let mut c = Client::connect(s.addr).await;
    c.send("S STARTTLS\r\n").await;
    assert_eq!(c.line().await, "S OK \"Begin TLS negotiation now\"");
    assert!(c.closed().await);
}

// Checks shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the plain-`cargo test`
// replay of seeds and regressions (`impl/tests/fuzz_regressions.rs`). Both pull this file in
// with `include!`, so it holds items only (no inner attributes) and uses only crates both have:
// murder_server, bytes, tokio, tempfile.
//
// Input layout of every target: byte 0 is a control byte, the rest is the byte stream a client
// sends. Control bits:
//   bits 0-2  chunking: 0 = the whole stream in one piece, n = pieces of 1..=2^n octets
//             (pseudo-random sizes seeded by the whole control byte)
//   bit 3     refuse synchronizing literals (codec targets; default: accept them)
//   bit 4     small limits (codec targets): short lines and literals to reach the edges fast
//   bit 5     send a valid login prefix first (session targets)
//   bit 6     after an AUTHENTICATE command the next line is a SASL response (mupdate_codec)

use bytes::BytesMut;

include!("input.rs");

// ---------------------------------------------------------------------------------------------
// mupdate_codec
// ---------------------------------------------------------------------------------------------

/// Limits for the MUPDATE decoder: the defaults, or small ones that reach every limit quickly.
pub fn mupdate_limits(ctl: u8) -> murder_server::mupdate::Limits {
    let mut l = murder_server::mupdate::Limits::default();
    if ctl & CTL_SMALL != 0 {
        l.max_line = 64;
        l.max_literal = 16;
        l.literal_drain_limit = 200;
        l.max_tag = 8;
        l.max_args = 3;
    }
    l
}

/// What a whole run of the MUPDATE decoder produced: its events and how it stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct MupdateRun {
    /// Every event in order.
    pub events: Vec<murder_server::mupdate::codec::Event>,
    /// The fatal error that ended the run, if any.
    pub fatal: Option<murder_server::mupdate::codec::Fatal>,
}

/// Feed `pieces` to a fresh decoder, deciding literals and SASL lines as the control byte says,
/// and check every invariant of a single event on the way.
pub fn mupdate_decode(
    limits: &murder_server::mupdate::Limits,
    ctl: u8,
    pieces: &[&[u8]],
) -> MupdateRun {
    use murder_server::mupdate::codec::{Decoder, Event};
    let mut dec = Decoder::new(limits.clone());
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(ev)) => {
                    check_mupdate_event(limits, &ev);
                    match &ev {
                        Event::LiteralRequest { .. } => {
                            if ctl & CTL_REFUSE != 0 {
                                dec.refuse_literal();
                            } else {
                                dec.accept_literal();
                            }
                        }
                        Event::Command(c)
                            if ctl & CTL_SASL != 0
                                && c.word.eq_ignore_ascii_case(b"AUTHENTICATE") =>
                        {
                            dec.expect_sasl_line();
                        }
                        _ => {}
                    }
                    events.push(ev);
                }
                Ok(None) => {
                    // The caller's buffer must stay bounded: whatever the decoder leaves is an
                    // incomplete line, shorter than the line limit.
                    assert!(
                        buf.len() < limits.max_line,
                        "decoder left {} octets buffered (max_line {})",
                        buf.len(),
                        limits.max_line
                    );
                    break;
                }
                Err(fatal) => {
                    return MupdateRun {
                        events,
                        fatal: Some(fatal),
                    };
                }
            }
        }
    }
    MupdateRun {
        events,
        fatal: None,
    }
}

/// Invariants of one decoded event.
pub fn check_mupdate_event(
    limits: &murder_server::mupdate::Limits,
    ev: &murder_server::mupdate::codec::Event,
) {
    use murder_server::mupdate::codec::{Event, Token, is_atom_char};
    match ev {
        Event::Command(c) => {
            assert!(
                !c.tag.is_empty() && c.tag.len() <= limits.max_tag,
                "tag {c:?}"
            );
            assert!(c.tag.iter().all(|&b| is_atom_char(b)), "tag {c:?}");
            assert!(!c.word.is_empty() && c.word.iter().all(|&b| is_atom_char(b)));
            assert!(c.args.len() <= limits.max_args, "{} args", c.args.len());
            for a in &c.args {
                match a {
                    Token::Atom(a) => {
                        assert!(!a.is_empty() && a.iter().all(|&b| is_atom_char(b)), "{a:?}");
                    }
                    Token::String(s) => {
                        assert!(s.len() <= limits.max_literal.max(limits.max_line));
                        assert!(!s.contains(&0), "NUL in a decoded string");
                    }
                }
            }
        }
        Event::LiteralRequest { tag, size, .. } => {
            assert!(*size <= limits.max_literal, "literal of {size} requested");
            assert!(tag.len() <= limits.max_tag);
        }
        Event::SaslLine(l) => assert!(l.len() < limits.max_line),
        Event::Error(e) => {
            if let Some(t) = &e.tag {
                assert!(
                    !t.is_empty() && t.len() <= limits.max_tag,
                    "error tag {t:?}"
                );
            }
        }
    }
}

/// Encode a decoded command again (strings through the server's own `put_string`), returning
/// the bytes and the longest line outside literals.
pub fn mupdate_encode(c: &murder_server::mupdate::codec::RawCommand) -> (Vec<u8>, usize) {
    use murder_server::mupdate::codec::Token;
    let mut out = Vec::new();
    out.extend_from_slice(&c.tag);
    out.push(b' ');
    out.extend_from_slice(&c.word);
    for a in &c.args {
        out.push(b' ');
        match a {
            Token::Atom(a) => out.extend_from_slice(a),
            Token::String(s) => murder_server::mupdate::response::put_string(&mut out, s),
        }
    }
    out.extend_from_slice(b"\r\n");
    // Longest line: a literal's data starts after "}\r\n"; measure the text between line ends
    // without counting literal data (an over-estimate is fine, it only skips the round trip).
    let longest = out
        .split(|&b| b == b'\n')
        .map(|l| l.len() + 1)
        .max()
        .unwrap_or(0);
    (out, longest)
}

/// The whole `mupdate_codec` check.
pub fn check_mupdate_codec(data: &[u8]) {
    use murder_server::mupdate::codec::Event;
    let (ctl, stream) = split_control(data);
    let limits = mupdate_limits(ctl);
    let chunked = mupdate_decode(&limits, ctl, &chunks(ctl, stream));
    // Chunking invariance: the events cannot depend on how TCP cut the stream.
    let whole = mupdate_decode(&limits, ctl, &[stream]);
    assert_eq!(chunked, whole, "events depend on the chunking");
    // Round trip: every decoded command, encoded again, decodes to itself.
    for ev in &whole.events {
        let Event::Command(c) = ev else { continue };
        let (bytes, longest) = mupdate_encode(c);
        if longest >= limits.max_line {
            continue;
        }
        let again = mupdate_decode(&limits, 0, &[&bytes]);
        assert_eq!(
            again.fatal,
            None,
            "re-encoded {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(
            again.events,
            vec![Event::Command(c.clone())],
            "re-encoded {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// imap_codec
// ---------------------------------------------------------------------------------------------

/// One framing result, with literal data joined so that runs with different chunkings compare.
#[derive(Debug, PartialEq, Eq)]
pub enum ImapFrame {
    /// A line and its literal announcement `(len, sync)`.
    Line(Vec<u8>, Option<(u64, bool)>),
    /// A whole literal.
    Literal(Vec<u8>),
    /// A recoverable framing error.
    Error(String),
    /// A fatal framing error (the run ends).
    Fatal(String),
}

/// Frame `pieces` with a fresh framer, parse every complete command, check the invariants.
pub fn imap_frames(max_line: usize, ctl: u8, pieces: &[&[u8]]) -> Vec<ImapFrame> {
    use bytes::Bytes;
    use murder_server::imap::codec::framer::{Frame, Framer};
    use murder_server::imap::codec::parser::Piece;
    let mut framer = Framer::new(max_line);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut literal: Option<(u64, Vec<u8>)> = None;
    let mut command: Vec<Piece> = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match framer.next_frame(&mut buf) {
                Ok(Some(Frame::Line {
                    text,
                    literal: spec,
                })) => {
                    assert!(literal.is_none(), "a line inside a literal");
                    assert!(!text.contains(&b'\n'), "LF in line text");
                    assert!(text.len() < max_line, "line of {} octets", text.len());
                    if let Some(spec) = spec {
                        if spec.sync {
                            if ctl & CTL_REFUSE != 0 {
                                framer.reject_literal();
                            } else {
                                framer.accept_literal();
                                literal = Some((spec.len, Vec::new()));
                            }
                        } else {
                            literal = Some((spec.len, Vec::new()));
                        }
                        // Text before a literal of an APPEND message: the message head parser.
                        let _ = murder_server::imap::codec::command::parse_append_message(&text);
                    }
                    out.push(ImapFrame::Line(
                        text.to_vec(),
                        spec.map(|s| (s.len, s.sync)),
                    ));
                    command.push(Piece::Text(text));
                    if literal.is_none() {
                        parse_imap_command(&command);
                        command.clear();
                    }
                }
                Ok(Some(Frame::LiteralData(d))) => {
                    assert!(!d.is_empty(), "empty LiteralData");
                    let Some((len, data)) = literal.as_mut() else {
                        panic!("literal data outside a literal");
                    };
                    data.extend_from_slice(&d);
                    assert!(
                        data.len() as u64 <= *len,
                        "more literal data than announced"
                    );
                }
                Ok(Some(Frame::LiteralEnd)) => {
                    let Some((len, data)) = literal.take() else {
                        panic!("LiteralEnd outside a literal");
                    };
                    assert_eq!(data.len() as u64, len, "literal ended early");
                    command.push(Piece::Literal(Bytes::from(data.clone())));
                    out.push(ImapFrame::Literal(data));
                }
                Ok(None) => {
                    if framer.at_line_start() {
                        assert!(buf.len() < max_line, "{} octets buffered", buf.len());
                    } else {
                        assert!(buf.is_empty(), "literal bytes left unread");
                    }
                    break;
                }
                Err(e) if e.recoverable() => {
                    out.push(ImapFrame::Error(e.to_string()));
                    command.clear();
                }
                Err(e) => {
                    out.push(ImapFrame::Fatal(e.to_string()));
                    return out;
                }
            }
        }
    }
    out
}

/// Run the command parser over one command's pieces (errors are fine, panics are not).
pub fn parse_imap_command(pieces: &[murder_server::imap::codec::parser::Piece]) {
    use murder_server::imap::codec::command::{parse_command, parse_tag_and_name};
    use murder_server::imap::codec::parser::Cursor;
    let mut c = Cursor::new(pieces);
    if let Ok((tag, name)) = parse_tag_and_name(&mut c) {
        assert!(!tag.is_empty());
        let _ = parse_command(&name, &mut c);
    }
}

/// The whole `imap_codec` check.
pub fn check_imap_codec(data: &[u8]) {
    let (ctl, stream) = split_control(data);
    let max_line = if ctl & CTL_SMALL != 0 { 64 } else { 64 * 1024 };
    let chunked = imap_frames(max_line, ctl, &chunks(ctl, stream));
    let whole = imap_frames(max_line, ctl, &[stream]);
    assert_eq!(chunked, whole, "frames depend on the chunking");
}

// ---------------------------------------------------------------------------------------------
// Session targets: a real server in-process, one loopback connection per input.
// ---------------------------------------------------------------------------------------------

/// How long to wait for the server to close after the client half-closed. Reaching it is not a
/// failure (a server may keep a half-closed connection, e.g. an UPDATE stream); it only bounds
/// the time per input.
pub const SESSION_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a fresh connection's NOOP may take before the server counts as hung.
pub const SESSION_ALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// A server running for the whole process.
pub struct Running {
    /// The runtime the server runs on.
    pub rt: tokio::runtime::Runtime,
    /// Its address.
    pub addr: std::net::SocketAddr,
    /// Its data directory and passwd-file (kept for the life of the process).
    pub dir: tempfile::TempDir,
}

static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Record panics on any thread (a panic in a server task does not reach the caller otherwise).
pub fn install_panic_flag() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn users(dir: &std::path::Path) -> std::sync::Arc<murder_server::auth::UserDb> {
    let path = dir.join("passwd");
    std::fs::write(&path, "admin:{PLAIN}secret\nbob:{PLAIN}bobpw\n").expect("passwd");
    std::sync::Arc::new(murder_server::auth::UserDb::load(&path).expect("passwd"))
}

/// Start a `mupdated` (admin `admin`, no auth failure delay) on its own runtime.
pub fn start_mupdate() -> Running {
    {
        install_panic_flag();
        let rt = runtime();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = murder_server::mupdate::Config::new(
            "127.0.0.1:0".parse().expect("addr"),
            dir.path().join("data"),
            users(dir.path()),
        );
        c.admins = vec!["admin".into()];
        c.limits.auth_failure_delay = std::time::Duration::ZERO;
        let handle = rt
            .block_on(murder_server::mupdate::start(c))
            .expect("mupdated starts");
        let addr = handle.local_addr();
        // The server lives as long as its runtime (dropping the runtime stops it).
        std::mem::forget(handle);
        Running { rt, addr, dir }
    }
}

/// Start an `imapd` (user `bob`) on its own runtime.
pub fn start_imap() -> Running {
    {
        install_panic_flag();
        let rt = runtime();
        let dir = tempfile::tempdir().expect("tempdir");
        let c = murder_server::imap::Config::new(
            "127.0.0.1:0".parse().expect("addr"),
            dir.path().join("data"),
            users(dir.path()),
        );
        let handle = rt
            .block_on(murder_server::imap::start(c))
            .expect("imapd starts");
        let addr = handle.local_addr();
        std::mem::forget(handle);
        Running { rt, addr, dir }
    }
}

/// The process-wide `mupdated` of the fuzz target.
pub fn mupdate_server() -> &'static Running {
    static SERVER: std::sync::OnceLock<Running> = std::sync::OnceLock::new();
    SERVER.get_or_init(start_mupdate)
}

/// The process-wide `imapd` of the fuzz target.
pub fn imap_server() -> &'static Running {
    static SERVER: std::sync::OnceLock<Running> = std::sync::OnceLock::new();
    SERVER.get_or_init(start_imap)
}

/// Write `prefix` and the stream (in the control byte's chunks), half-close, read until the
/// server closes (or [`SESSION_DRAIN`]). Returns what the server sent.
pub async fn session_exchange(
    addr: std::net::SocketAddr,
    ctl: u8,
    prefix: &[u8],
    stream: &[u8],
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(tcp)) =
        tokio::time::timeout(SESSION_ALIVE, tokio::net::TcpStream::connect(addr)).await
    else {
        panic!("cannot connect to the server at {addr}");
    };
    let (mut r, mut w) = tcp.into_split();
    // Read concurrently, so that a server blocked on writing its answers never dead-locks us.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(SESSION_DRAIN, async {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match r.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                }
            }
        })
        .await;
        got
    });
    let _ = tokio::time::timeout(SESSION_DRAIN, async {
        if ctl & CTL_LOGIN != 0 {
            w.write_all(prefix).await?;
        }
        for piece in chunks(ctl, stream) {
            w.write_all(piece).await?;
        }
        w.shutdown().await
    })
    .await;
    let got = reader.await.unwrap_or_default();
    drop(w);
    got
}

/// A fresh connection's `NOOP` must get a tagged answer (the server is alive, not wedged;
/// mupdated answers NO before authentication).
pub async fn assert_alive(addr: std::net::SocketAddr, greeting_end: &[u8], noop: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    let answered = tokio::time::timeout(SESSION_ALIVE, async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut chunk = [0u8; 4096];
        let mut sent = false;
        loop {
            let n = tcp.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            let (greeted, answered) = {
                let mut got = seen.lock().ok()?;
                got.extend_from_slice(chunk.get(..n).unwrap_or_default());
                (
                    got.windows(greeting_end.len()).any(|w| w == greeting_end),
                    got.windows(5).any(|w| w == b"\nZZ9 "),
                )
            };
            if sent && answered {
                return Some(());
            }
            if !sent && greeted {
                tcp.write_all(noop).await.ok()?;
                sent = true;
            }
        }
    })
    .await;
    let got = got.lock().map(|g| g.clone()).unwrap_or_default();
    assert!(
        matches!(answered, Ok(Some(()))),
        "the server no longer answers NOOP on a fresh connection (got {:?})",
        String::from_utf8_lossy(&got)
    );
}

/// Fail if any thread panicked since the last call.
pub fn assert_no_panic() {
    assert!(
        !PANICKED.swap(false, std::sync::atomic::Ordering::SeqCst),
        "a thread panicked (see the panic message above)"
    );
}

/// `AUTHENTICATE PLAIN` as `admin` (base64 of `\0admin\0secret`).
pub const MUPDATE_LOGIN: &[u8] = b"P1 AUTHENTICATE \"PLAIN\" \"AGFkbWluAHNlY3JldA==\"\r\n";
/// `LOGIN` as `bob` and `SELECT INBOX`.
pub const IMAP_LOGIN: &[u8] = b"P1 LOGIN bob bobpw\r\nP2 SELECT INBOX\r\n";

/// The whole `mupdate_session` check, on the process-wide server.
pub fn check_mupdate_session(data: &[u8]) {
    check_mupdate_session_on(mupdate_server(), data);
}

/// The `mupdate_session` check on server `s`.
pub fn check_mupdate_session_on(s: &Running, data: &[u8]) {
    check_session_on(s, data, MUPDATE_LOGIN, b"* OK MUPDATE");
}

/// The whole `imap_session` check, on the process-wide server.
pub fn check_imap_session(data: &[u8]) {
    check_imap_session_on(imap_server(), data);
}

/// The `imap_session` check on server `s`.
pub fn check_imap_session_on(s: &Running, data: &[u8]) {
    check_session_on(s, data, IMAP_LOGIN, b"\r\n");
}

/// One session input on server `s` (login `prefix` when the control byte asks), then a fresh
/// connection's NOOP once the greeting (ending in `greeting_end`) arrived; no thread panicked.
pub fn check_session_on(s: &Running, data: &[u8], prefix: &[u8], greeting_end: &[u8]) {
    let (ctl, stream) = split_control(data);
    s.rt.block_on(async {
        session_exchange(s.addr, ctl, prefix, stream).await;
        assert_alive(s.addr, greeting_end, b"ZZ9 NOOP\r\n").await;
    });
    assert_no_panic();
}

//! Replays the fuzz seed corpora (`fuzz/seeds/<target>/`) and every saved crash or regression
//! input (`fuzz/regressions/<target>/`) through the same checks the cargo-fuzz targets run
//! (`fuzz/common/checks.rs`), so that plain `cargo test` guards them without libFuzzer.
//! The conformance runner's targets are replayed by `conformance/tests/fuzz_regressions.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

#[allow(dead_code, missing_docs)]
mod checks {
    include!("../../fuzz/common/checks.rs");
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The session servers of a running test: started by [`with_servers`] and dropped when the test
/// ends, which stops them and removes their data directory (statics are never dropped).
static MUPDATE: std::sync::Mutex<Option<checks::Running>> = std::sync::Mutex::new(None);
/// See [`MUPDATE`].
static IMAP: std::sync::Mutex<Option<checks::Running>> = std::sync::Mutex::new(None);

fn on_mupdate(data: &[u8]) {
    let guard = MUPDATE.lock().unwrap_or_else(|e| e.into_inner());
    checks::check_mupdate_session_on(guard.as_ref().expect("mupdated started"), data);
}

fn on_imap(data: &[u8]) {
    let guard = IMAP.lock().unwrap_or_else(|e| e.into_inner());
    checks::check_imap_session_on(guard.as_ref().expect("imapd started"), data);
}

fn check_for(target: &str) -> fn(&[u8]) {
    match target {
        "mupdate_codec" => checks::check_mupdate_codec,
        "imap_codec" => checks::check_imap_codec,
        "mupdate_session" => on_mupdate,
        "imap_session" => on_imap,
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Run `f` with the session servers the target needs started, and stop them afterwards.
fn with_servers(target: &str, f: impl FnOnce()) {
    let slot = match target {
        "mupdate_session" => Some((&MUPDATE, checks::start_mupdate as fn() -> checks::Running)),
        "imap_session" => Some((&IMAP, checks::start_imap as fn() -> checks::Running)),
        _ => None,
    };
    if let Some((slot, start)) = slot {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(start());
    }
    f();
    if let Some((slot, _)) = slot {
        slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Replay every seed and regression of `target`. An input that still fails after its finding
/// is reported goes into the skip list (the `&[]` here) and into an `#[ignore = "reason"]` test
/// of its own, as `conformance/tests/fuzz_regressions.rs` does for `wire_tokenizer`.
fn replay(target: &str) {
    with_servers(target, || {
        checks::replay_inputs(&fuzz_dir(), target, 20, &[], check_for(target));
    });
}

#[test]
fn mupdate_codec_corpus() {
    replay("mupdate_codec");
}

#[test]
fn imap_codec_corpus() {
    replay("imap_codec");
}

#[test]
fn mupdate_session_corpus() {
    replay("mupdate_session");
}

#[test]
fn imap_session_corpus() {
    replay("imap_session");
}

/// The chunking helper covers the stream exactly, whatever the control byte.
#[test]
fn chunks_cover_the_stream() {
    let stream: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    for ctl in 0..=255u8 {
        let pieces = checks::chunks(ctl, &stream);
        assert!(pieces.iter().all(|p| !p.is_empty()));
        assert_eq!(pieces.concat(), stream, "control byte {ctl}");
        let max = if ctl & 7 == 0 { 1000 } else { 1 << (ctl & 7) };
        assert!(pieces.iter().all(|p| p.len() <= max));
    }
}

/// The session harness really talks to the servers: the login prefix succeeds and the fuzzed
/// bytes are answered (otherwise the session targets would fuzz nothing).
#[test]
fn session_harness_reaches_the_servers() {
    let m = checks::start_mupdate();
    let got = m.rt.block_on(checks::session_exchange(
        m.addr,
        checks::CTL_LOGIN,
        checks::MUPDATE_LOGIN,
        b"A1 NOOP\r\nA2 LOGOUT\r\n",
    ));
    let got = String::from_utf8_lossy(&got);
    assert!(got.contains("\r\nP1 OK "), "{got}");
    assert!(got.contains("\r\nA1 OK "), "{got}");
    let i = checks::start_imap();
    let got = i.rt.block_on(checks::session_exchange(
        i.addr,
        checks::CTL_LOGIN | 3,
        checks::IMAP_LOGIN,
        b"A1 APPEND INBOX {5+}\r\nhello\r\nA2 LOGOUT\r\n",
    ));
    let got = String::from_utf8_lossy(&got);
    assert!(got.contains("\r\nP2 OK "), "{got}");
    assert!(got.contains("\r\nA1 OK "), "{got}");
    assert!(got.contains("\r\nA2 OK "), "{got}");
}

//! Replays the fuzz seed corpora (`fuzz/seeds/<target>/`) and every saved crash or regression
//! input (`fuzz/regressions/<target>/`) through the same checks the cargo-fuzz targets run
//! (`fuzz/common/checks.rs`), so that plain `cargo test` guards them without libFuzzer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

#[allow(dead_code, missing_docs)]
mod checks {
    include!("../../fuzz/common/checks.rs");
}

/// Every regular file (not dot-files) under `fuzz/<kind>/<target>/`, sorted.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Run `check` on every seed and regression input of `target`, naming the file that fails.
fn replay(target: &str, min_seeds: usize, check: fn(&[u8])) {
    let seeds = inputs("seeds", target);
    assert!(
        seeds.len() >= min_seeds,
        "only {} seeds for {target}: the corpus is missing",
        seeds.len()
    );
    let files: Vec<PathBuf> = seeds
        .into_iter()
        .chain(inputs("regressions", target))
        .collect();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{target} check failed on {}", f.display());
    }
}

#[test]
fn mupdate_codec_corpus() {
    replay("mupdate_codec", 20, checks::check_mupdate_codec);
}

#[test]
fn imap_codec_corpus() {
    replay("imap_codec", 20, checks::check_imap_codec);
}

#[test]
fn mupdate_session_corpus() {
    replay("mupdate_session", 20, checks::check_mupdate_session);
}

#[test]
fn imap_session_corpus() {
    replay("imap_session", 20, checks::check_imap_session);
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

//! Replays the fuzz seed corpora (`fuzz/seeds/<target>/`) and every saved crash or regression
//! input (`fuzz/regressions/<target>/`) through the same checks the cargo-fuzz targets run
//! (`fuzz/common/checks.rs`), so that plain `cargo test` guards them without libFuzzer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

#[allow(dead_code, missing_docs)]
mod checks {
    include!("../../fuzz/common/checks.rs");
}

/// Saved inputs that still fail: `(target, file name, reason)`. They are skipped by the corpus
/// tests and replayed by the ignored [`unfixed_regressions`]; remove an entry with its fix.
const UNFIXED: &[(&str, &str, &str)] = &[];

fn is_unfixed(target: &str, path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    UNFIXED
        .iter()
        .any(|(t, f, _)| *t == target && name.as_deref() == Some(*f))
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
fn replay(target: &str, min_seeds: usize) {
    let check = check_for(target);
    let seeds = inputs("seeds", target);
    assert!(
        seeds.len() >= min_seeds,
        "only {} seeds for {target}: the corpus is missing",
        seeds.len()
    );
    let files: Vec<PathBuf> = seeds
        .into_iter()
        .chain(inputs("regressions", target))
        .filter(|f| !is_unfixed(target, f))
        .collect();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{target} check failed on {}", f.display());
    }
}

#[test]
fn mupdate_codec_corpus() {
    replay("mupdate_codec", 20);
}

#[test]
fn imap_codec_corpus() {
    replay("imap_codec", 20);
}

#[test]
fn mupdate_session_corpus() {
    replay("mupdate_session", 20);
}

#[test]
fn imap_session_corpus() {
    replay("imap_session", 20);
}

fn check_for(target: &str) -> fn(&[u8]) {
    match target {
        "mupdate_codec" => checks::check_mupdate_codec,
        "imap_codec" => checks::check_imap_codec,
        "mupdate_session" => checks::check_mupdate_session,
        "imap_session" => checks::check_imap_session,
        other => panic!("unknown fuzz target {other}"),
    }
}

/// The known, not yet fixed findings (see [`UNFIXED`]): run with `--ignored` to see them fail.
#[test]
#[ignore = "known unfixed fuzz findings, listed in UNFIXED with their reasons"]
fn unfixed_regressions() {
    for (target, file, reason) in UNFIXED {
        let path = inputs("regressions", target)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == *file))
            .unwrap_or_else(|| panic!("{target}/{file} is missing"));
        let data = std::fs::read(&path).unwrap();
        eprintln!("{target}/{file}: {reason}");
        check_for(target)(&data);
    }
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

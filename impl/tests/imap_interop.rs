//! Interop with UW c-client's `mailutil copy` (Debian package `uw-mailutils`): runs
//! `tests/interop/mailutil_copy.py` against this build's `imapd`, in plaintext and over
//! STARTTLS. Ignored by default because it needs the package; run it with
//! `cargo test -p murder-server --test imap_interop -- --ignored --nocapture`.
//! It fails loudly when `mailutil` is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

fn run_script(extra: &[&str]) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/mailutil_copy.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_imapd"))
        .arg("60")
        .args(extra)
        .output()
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "mailutil interop failed: {stdout}");
    assert!(stdout.contains("PASS"), "{stdout}");
}

#[test]
#[ignore = "needs the Debian package uw-mailutils (mailutil) and python3"]
fn mailutil_copy_of_60_messages_is_byte_identical() {
    run_script(&[]);
}

#[test]
#[ignore = "needs the Debian package uw-mailutils (mailutil), python3 and openssl"]
fn mailutil_copy_over_starttls_is_byte_identical() {
    run_script(&["--tls"]);
}

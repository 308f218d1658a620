//! The `mupdated` binary's command line: `hash-password` output works in a passwd-file,
//! `--help` documents the options, and values below the RFC minimums are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use std::io::Write;
use std::process::{Command, Stdio};

use mupdate_common::*;

fn mupdated() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mupdated"))
}

#[tokio::test]
async fn hashed_passwords_authenticate() {
    let mut child = mupdated()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pw\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let secret = String::from_utf8(out.stdout).unwrap();
    assert!(secret.starts_with("{ARGON2ID}$argon2id$"), "{secret}");
    assert!(!secret.contains("s3cret"));
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, format!("carol:{}", secret.trim())).unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let (mut server, addr) =
        spawn_mupdated(&dir.path().join("data"), &passwd, &[], "trace", log.into()).await;
    let mut c = Client::login(addr, "carol", "s3cret pw").await;
    // No --admin: every authenticated user may write.
    assert_eq!(
        c.cmd("A", "ACTIVATE \"x\" \"h!p\" \"\"").await,
        vec!["A OK \"done\""]
    );
    let mut bad = Client::connect(addr).await;
    let r = bad
        .cmd(
            "A",
            &format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("carol", "wrong")),
        )
        .await;
    assert!(r[0].starts_with("A NO "));
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    // Even at trace level the log never holds a password, in clear or in base64.
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("ACTIVATE"), "trace log is empty?");
    for secret in [
        "s3cret",
        &plain("carol", "s3cret pw"),
        &plain("carol", "wrong"),
    ] {
        assert!(!log.contains(secret), "log holds {secret}");
    }
}

#[test]
fn help_documents_every_limit() {
    let out = mupdated().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for opt in [
        "--listen",
        "--data",
        "--users",
        "--admin",
        "--slave-of",
        "--master-user",
        "--master-password-file",
        "--tls-cert",
        "--tls-key",
        "--server-name",
        "--max-line",
        "--max-literal",
        "--literal-drain-limit",
        "--max-args",
        "--max-tag",
        "--max-connections",
        "--idle-timeout",
        "--auth-failure-delay-ms",
        "--subscriber-buffer",
        "--max-batch",
        "--backoff-initial-ms",
        "--backoff-max-ms",
        "hash-password",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}");
    }
}

#[test]
fn limits_below_the_rfc_are_refused_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, PASSWD).unwrap();
    for bad in [
        ["--idle-timeout", "60"],
        ["--max-line", "100"],
        ["--max-literal", "10"],
    ] {
        let out = mupdated()
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .arg("--users")
            .arg(&passwd)
            .args(bad)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} accepted");
    }
}

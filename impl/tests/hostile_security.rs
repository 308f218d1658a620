//! Security features of `mupdated` (SECURITY.md): nothing touches the database before
//! authentication (RFC 3656 7), `--require-tls`, failed logins close the connection after
//! `max_auth_failures`, and passwords (clients', failed ones, a slave's master password) never
//! reach the log even at trace level.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use base64::Engine;
use mupdate_common::*;
use murder_server::mupdate::{MupdateError, start};
use murder_server::net::TestPki;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::TlsConnector;

/// LIST as seen by an admin.
async fn admin_list(addr: std::net::SocketAddr) -> Vec<String> {
    Client::admin(addr).await.cmd("L", "LIST").await
}

#[tokio::test]
async fn no_database_command_runs_before_authentication() {
    let s = server().await;
    let mut admin = Client::admin(s.addr).await;
    for cmd in [
        "ACTIVATE \"user.a\" \"h!p\" \"acl\"",
        "RESERVE \"user.r\" \"h!p\"",
        "ACTIVATE \"user.d\" \"h!p\" \"acl\"",
    ] {
        assert_eq!(admin.cmd("W", cmd).await, vec!["W OK \"done\""]);
    }
    let before = admin_list(s.addr).await;
    assert_eq!(before.len(), 4);
    let mut c = Client::connect(s.addr).await;
    // Every command kind, in line form and (where it takes arguments) with literals of both
    // kinds, some with a valid-looking but unauthenticated continuation.
    let commands = [
        "FIND \"user.a\"",
        "LIST",
        "LIST \"h\"",
        "UPDATE",
        "NOOP",
        "ACTIVATE \"user.x\" \"h!p\" \"acl\"",
        "ACTIVATE \"user.a\" \"other!p\" \"acl\"",
        "RESERVE \"user.y\" \"h!p\"",
        "DEACTIVATE \"user.d\" \"h!p\"",
        "DELETE \"user.a\"",
        "DELETE \"user.r\"",
        "FIND {6+}\r\nuser.a",
        "DELETE {6+}\r\nuser.a",
        "ACTIVATE {6+}\r\nuser.z \"h!p\" \"\"",
        "STARTTLS",
        "BOGUS",
    ];
    for (i, cmd) in commands.iter().enumerate() {
        let tag = format!("T{i}");
        let r = c.cmd(&tag, cmd).await;
        assert_eq!(r.len(), 1, "{cmd}: no data line may come back: {r:?}");
        assert!(
            r[0].starts_with(&format!("{tag} NO ")) || r[0].starts_with(&format!("{tag} BAD ")),
            "{cmd}: {r:?}"
        );
    }
    // Synchronizing literals: refused without `+ go ahead`.
    for (i, cmd) in ["FIND {6}", "DELETE {6}", "ACTIVATE {6}", "RESERVE {6}"]
        .iter()
        .enumerate()
    {
        let tag = format!("S{i}");
        c.send(format!("{tag} {cmd}\r\n")).await;
        let l = c.line().await;
        assert!(l.starts_with(&format!("{tag} NO ")), "{cmd}: {l}");
    }
    // Still unauthenticated, and the database is exactly as before.
    assert!(c.cmd("N", "NOOP").await[0].starts_with("N NO "));
    assert_eq!(admin_list(s.addr).await, before);
    // And no change was streamed to a subscriber.
    let mut sub = Client::admin(s.addr).await;
    assert_eq!(sub.cmd("U", "UPDATE").await.len(), 4);
    assert_eq!(sub.cmd("N", "NOOP").await, vec!["N OK \"NOOP complete\""]);
}

#[tokio::test]
async fn failed_logins_close_the_connection_after_the_limit() {
    let s = server().await;
    let bad = plain("admin", "wrong");
    // Default limit: 3. Two failures and a cancel leave the connection open.
    let mut c = Client::connect(s.addr).await;
    for t in ["A1", "A2"] {
        let r = c.cmd(t, &format!("AUTHENTICATE \"PLAIN\" \"{bad}\"")).await;
        assert!(r[0].starts_with(&format!("{t} NO ")), "{r:?}");
    }
    c.send("C AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(c.line().await, "");
    c.send("*\r\n").await;
    assert!(c.line().await.starts_with("C NO "));
    // The third failure: NO, then BYE and close.
    c.send(format!("A3 AUTHENTICATE \"PLAIN\" \"{bad}\"\r\n"))
        .await;
    assert!(c.line().await.starts_with("A3 NO "));
    assert_eq!(c.line().await, "* BYE \"too many authentication failures\"");
    assert!(c.closed().await);
    // Garbage base64 counts as a failure too.
    let mut c = Client::connect(s.addr).await;
    for t in ["G1", "G2", "G3"] {
        c.send(format!("{t} AUTHENTICATE \"PLAIN\" \"!!not*base64\"\r\n"))
            .await;
        assert!(c.line().await.starts_with(&format!("{t} NO ")));
    }
    assert!(c.line().await.starts_with("* BYE "));
    assert!(c.closed().await);
    // A success after failures works, and the limit is per connection.
    let mut c = Client::connect(s.addr).await;
    assert!(
        c.cmd("A1", &format!("AUTHENTICATE \"PLAIN\" \"{bad}\""))
            .await[0]
            .starts_with("A1 NO ")
    );
    let ok = plain("admin", "secret");
    assert_eq!(
        c.cmd("A2", &format!("AUTHENTICATE \"PLAIN\" \"{ok}\""))
            .await,
        vec!["A2 OK \"Authenticated\""]
    );
    assert_eq!(c.cmd("N", "NOOP").await, vec!["N OK \"NOOP complete\""]);
    // A limit of 1, and 0 refused.
    let s1 = server_with(|c| c.limits.max_auth_failures = 1).await;
    let mut c = Client::connect(s1.addr).await;
    c.send(format!("A AUTHENTICATE \"PLAIN\" \"{bad}\"\r\n"))
        .await;
    assert!(c.line().await.starts_with("A NO "));
    assert!(c.line().await.starts_with("* BYE "));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_auth_failures = 0;
    assert!(matches!(start(cfg).await, Err(MupdateError::Limit(_))));
}

#[tokio::test]
async fn require_tls_hides_mechanisms_and_refuses_authenticate_before_starttls() {
    let pki = TestPki::new(&["localhost"]).unwrap();
    // require_tls without TLS is a configuration error.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.require_tls = true;
    assert!(matches!(start(cfg).await, Err(MupdateError::Limit(_))));
    let s = server_with(|c| {
        c.tls = Some(pki.server_config());
        c.require_tls = true;
    })
    .await;
    let mut c = Client::connect(s.addr).await;
    assert_eq!(c.banner[0], "* AUTH");
    assert_eq!(c.banner[1], "* STARTTLS");
    let ir = plain("admin", "secret");
    let r = c
        .cmd("A", &format!("AUTHENTICATE \"PLAIN\" \"{ir}\""))
        .await;
    assert_eq!(r, vec!["A NO \"TLS required\""]);
    let r = c.cmd("B", "AUTHENTICATE \"PLAIN\"").await;
    assert_eq!(r, vec!["B NO \"TLS required\""]);
    // A synchronizing literal gets no `+ go ahead`.
    c.send("C AUTHENTICATE {5}\r\n").await;
    assert_eq!(c.line().await, "C NO \"TLS required\"");
    assert!(c.cmd("N", "NOOP").await[0].starts_with("N NO "));
    // After STARTTLS: mechanisms listed, AUTHENTICATE works.
    assert_eq!(
        c.cmd("S", "STARTTLS").await,
        vec!["S OK \"Begin TLS negotiation now\""]
    );
    let (r, w) = c.stream.into_split();
    let tcp = r.reunite(w).unwrap();
    let tls = TlsConnector::from(pki.client_config())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut tls = BufReader::new(tls);
    let mut line = String::new();
    tls.read_line(&mut line).await.unwrap();
    assert_eq!(line, "* AUTH PLAIN LOGIN\r\n");
    line.clear();
    tls.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("* OK MUPDATE"), "{line}");
    tls.get_mut()
        .write_all(format!("A AUTHENTICATE \"PLAIN\" \"{ir}\"\r\n").as_bytes())
        .await
        .unwrap();
    line.clear();
    tls.read_line(&mut line).await.unwrap();
    assert_eq!(line, "A OK \"Authenticated\"\r\n");
}

#[test]
fn require_tls_is_documented_and_needs_a_certificate() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mupdated"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--require-tls"), "{help}");
    assert!(help.contains("--max-auth-failures"), "{help}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mupdated"))
        .args(["--require-tls", "--data", "/nonexistent", "--users", "/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Every form in which `password` could leak: clear, and base64 of the SASL messages.
fn leaks(password: &str, users: &[&str]) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut v = vec![password.to_string(), b64(password)];
    for u in users {
        v.push(b64(&format!("\0{u}\0{password}")));
        v.push(b64(&format!("{u}\0{u}\0{password}")));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_trace_logs_of_master_and_slave() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let master_pw = "Mast3rSecretPw";
    let slave_pw = "Sl4veLinkSecret";
    let wrong_pw = "Wr0ngGuessPw";
    std::fs::write(
        &passwd,
        format!("admin:{{PLAIN}}{master_pw}\nslave:{{PLAIN}}{slave_pw}\n"),
    )
    .unwrap();
    let pwfile = dir.path().join("slave-pw");
    std::fs::write(&pwfile, format!("{slave_pw}\n")).unwrap();
    let mlog = dir.path().join("master.log");
    let slog = dir.path().join("slave.log");
    let (mut master, maddr) = spawn_mupdated(
        &dir.path().join("m"),
        &passwd,
        &["--admin", "admin", "--admin", "slave"],
        "trace",
        std::fs::File::create(&mlog).unwrap().into(),
    )
    .await;
    let maddr_s = maddr.to_string();
    let (mut slave, saddr) = spawn_mupdated(
        &dir.path().join("s"),
        &passwd,
        &[
            "--slave-of",
            &maddr_s,
            "--master-user",
            "slave",
            "--master-password-file",
            pwfile.to_str().unwrap(),
        ],
        "trace",
        std::fs::File::create(&slog).unwrap().into(),
    )
    .await;
    for addr in [maddr, saddr] {
        // Failed logins, every mechanism and form.
        let mut c = Client::connect(addr).await;
        let r = c
            .cmd(
                "A",
                &format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("admin", wrong_pw)),
            )
            .await;
        assert!(r[0].starts_with("A NO "), "{r:?}");
        c.send("B AUTHENTICATE \"LOGIN\"\r\n").await;
        c.line().await;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        c.send(format!("{}\r\n", b64("admin"))).await;
        c.line().await;
        c.send(format!("{}\r\n", b64(wrong_pw))).await;
        assert!(c.line().await.starts_with("B NO "));
        // A successful one, then a write through the master and a read on the slave.
        let mut ok = Client::login(addr, "admin", master_pw).await;
        assert_eq!(ok.cmd("N", "NOOP").await, vec!["N OK \"NOOP complete\""]);
    }
    let mut m = Client::login(maddr, "admin", master_pw).await;
    assert_eq!(
        m.cmd("W", "ACTIVATE \"user.log\" \"h!p\" \"acl\"").await,
        vec!["W OK \"done\""]
    );
    // The slave received it through its authenticated link.
    let mut sub = Client::login(saddr, "admin", master_pw).await;
    sub.cmd("U", "UPDATE").await;
    sub.cmd("N", "NOOP").await;
    let r = Client::login(saddr, "admin", master_pw)
        .await
        .cmd("F", "FIND \"user.log\"")
        .await;
    assert_eq!(r[0], "F MAILBOX \"user.log\" \"h!p\" \"acl\"");
    for c in [&mut master, &mut slave] {
        c.start_kill().unwrap();
        c.wait().await.unwrap();
    }
    for (name, log) in [("master", &mlog), ("slave", &slog)] {
        let log = std::fs::read_to_string(log).unwrap();
        assert!(log.contains("authentication failed"), "{name}: {log}");
        assert!(log.contains("TRACE"), "{name} log not at trace level");
        for pw in [master_pw, slave_pw, wrong_pw] {
            for leak in leaks(pw, &["admin", "slave"]) {
                assert!(!log.contains(&leak), "{name} log holds {leak:?} ({pw})");
            }
        }
    }
}

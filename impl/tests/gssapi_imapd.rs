//! IMAP `AUTHENTICATE GSSAPI` (Kerberos 5, RFC 4752 over RFC 3501 §6.2.2) against a real MIT
//! KDC: the `imapd` binary with `--keytab`, logged into with the sans-IO `GssapiClient`.
//!
//! Needs the cargo feature `gssapi` and a KDC from `impl/tests/kdc/kdc.sh start DIR` whose
//! `DIR/env` is sourced (`KRB5_CONFIG`, `KRB5CCNAME`, `MURDER_KDC_DIR`), so every test is
//! `#[ignore]`d; `impl/tests/kdc/ci.sh` does it all:
//!
//! ```text
//! impl/tests/kdc/kdc.sh start /tmp/kdc && . /tmp/kdc/env
//! cargo test -p murder-server --features gssapi --test gssapi_imapd -- --ignored
//! impl/tests/kdc/kdc.sh stop /tmp/kdc
//! ```
#![cfg(feature = "gssapi")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod gssapi_common;
mod imap_common;

use std::net::SocketAddr;
use std::path::Path;

use gssapi_common::{kdc_dir, principal};
use imap_common::{Client, WAIT};
use murder_server::auth::gssapi::GssapiClient;
use murder_server::auth::sasl::{decode_base64_line, encode_base64};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;

/// The service imapd accepts for (`imap/localhost@MURDER.TEST`, in `imap.keytab`).
const SERVICE: &str = "imap@localhost";

/// Runs `imapd --keytab keytab` plus `extra` arguments; the child, and its address or (when it
/// exits instead of listening) its stderr.
async fn imapd(
    dir: &Path,
    keytab: &Path,
    extra: &[&str],
) -> (tokio::process::Child, Result<SocketAddr, String>) {
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "carol:{PLAIN}secret\n").unwrap();
    let log = dir.join("log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_imapd"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--users")
        .arg(&passwd)
        .arg("--keytab")
        .arg(keytab)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let n = tokio::time::timeout(WAIT, out.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    if n == 0 {
        tokio::time::timeout(WAIT, child.wait())
            .await
            .unwrap()
            .unwrap();
        return (child, Err(std::fs::read_to_string(&log).unwrap()));
    }
    let addr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    (child, Ok(addr))
}

/// An imapd with the imap/localhost keytab.
async fn gssapi_imapd(dir: &Path) -> (tokio::process::Child, SocketAddr) {
    let (child, addr) = imapd(dir, &kdc_dir().join("imap.keytab"), &[]).await;
    (child, addr.unwrap())
}

/// `tag AUTHENTICATE GSSAPI` with `client` (SASL-IR initial response when `initial`), answering
/// every `+ base64` continuation; the tagged result line.
async fn authenticate(
    c: &mut Client<TcpStream>,
    client: &mut GssapiClient,
    tag: &str,
    initial: bool,
) -> String {
    if initial {
        let first = client.initial_response().unwrap();
        let cmd = format!("{tag} AUTHENTICATE GSSAPI {}\r\n", encode_base64(&first));
        c.send(cmd.as_bytes()).await;
    } else {
        c.send(format!("{tag} AUTHENTICATE GSSAPI\r\n").as_bytes())
            .await;
    }
    for _ in 0..10 {
        let line = c.line().await.unwrap().text;
        if line.starts_with(&format!("{tag} ")) {
            return line;
        }
        let challenge = line
            .strip_prefix("+ ")
            .or_else(|| line.strip_prefix('+'))
            .unwrap_or_else(|| panic!("not a continuation: {line:?}"));
        let challenge = decode_base64_line(challenge.as_bytes()).unwrap();
        let response = client.step(&challenge).unwrap();
        c.send(format!("{}\r\n", encode_base64(&response)).as_bytes())
            .await;
    }
    panic!("AUTHENTICATE did not end in 10 round trips");
}

/// AUTHENTICATE GSSAPI with SASL-IR as the principal `user` (acting as `authzid`, empty: as
/// itself); the tagged result line.
async fn login_as(c: &mut Client<TcpStream>, user: &str, authzid: &str, tag: &str) -> String {
    let mut gss = GssapiClient::new(SERVICE, Some(&principal(user)), authzid).unwrap();
    let done = authenticate(c, &mut gss, tag, true).await;
    assert!(gss.is_done() || !done.contains(" OK "), "{done}");
    done
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn imapd_offers_gssapi_and_logs_in_the_mapped_user() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = gssapi_imapd(dir.path()).await;
    let mut c = Client::connect(addr).await;
    let (untagged, _) = c.cmd("CAPABILITY").await;
    let caps = &untagged[0].text;
    assert!(caps.contains(" AUTH=GSSAPI"), "{caps}");
    assert!(caps.contains(" AUTH=PLAIN"), "{caps}");

    // SASL-IR: the first token on the command line.
    let done = login_as(&mut c, "alice", "", "A1").await;
    assert!(done.starts_with("A1 OK "), "{done}");
    // Logged in as `alice` (realm stripped): her INBOX exists, a mailbox is hers.
    c.ok("CREATE gss").await;
    let (list, _) = c.cmd("LIST \"\" *").await;
    assert!(
        list.iter().any(|l| l.text.ends_with("\"INBOX\"")),
        "{list:?}"
    );
    assert!(list.iter().any(|l| l.text.ends_with("\"gss\"")), "{list:?}");
    let (_, again) = c.cmd("AUTHENTICATE GSSAPI").await;
    assert!(again.text.contains(" BAD "), "{again:?}");

    // Without an initial response: an empty `+ ` challenge first; bob has no ticket but admin
    // does, and with another ccache principal the mailbox list is another user's.
    let mut c = Client::connect(addr).await;
    let mut gss = GssapiClient::new(SERVICE, Some(&principal("admin")), "").unwrap();
    c.send(b"B1 AUTHENTICATE GSSAPI\r\n").await;
    assert_eq!(c.line().await.unwrap().text, "+ ");
    let first = gss.step(&[]).unwrap();
    c.send(format!("{}\r\n", encode_base64(&first)).as_bytes())
        .await;
    let mut done = String::new();
    for _ in 0..10 {
        let line = c.line().await.unwrap().text;
        if line.starts_with("B1 ") {
            done = line;
            break;
        }
        let challenge = decode_base64_line(line.strip_prefix("+ ").unwrap().as_bytes()).unwrap();
        let response = gss.step(&challenge).unwrap();
        c.send(format!("{}\r\n", encode_base64(&response)).as_bytes())
            .await;
    }
    assert!(done.starts_with("B1 OK "), "{done}");
    let (list, _) = c.cmd("LIST \"\" *").await;
    assert!(
        !list.iter().any(|l| l.text.ends_with("\"gss\"")),
        "{list:?}"
    );

    // An authzid other than oneself is proxy authorization: imapd has no admins, so NO.
    let mut c = Client::connect(addr).await;
    let done = login_as(&mut c, "alice", "carol", "C1").await;
    assert!(done.starts_with("C1 NO "), "{done}");
    // PLAIN still works next to GSSAPI.
    c.ok("LOGIN carol secret").await;
    server.kill().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn imapd_refuses_bad_gssapi_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = gssapi_imapd(dir.path()).await;
    let mut c = Client::connect(addr).await;

    // A ticket for imap/otherhost, which imapd has no key for: NO, and the session goes on.
    let mut gss = GssapiClient::new("imap@otherhost", Some(&principal("alice")), "").unwrap();
    let done = authenticate(&mut c, &mut gss, "A1", true).await;
    assert!(done.starts_with("A1 NO "), "{done}");

    // `*` in answer to the first (empty) challenge cancels with BAD; not a failure.
    c.send(b"B1 AUTHENTICATE GSSAPI\r\n").await;
    assert_eq!(c.line().await.unwrap().text, "+ ");
    c.send(b"*\r\n").await;
    let done = c.line().await.unwrap().text;
    assert!(done.starts_with("B1 BAD "), "{done}");

    // `*` in the middle of the exchange (after the server's AP-REP) cancels too.
    let mut gss = GssapiClient::new(SERVICE, Some(&principal("alice")), "").unwrap();
    let first = gss.initial_response().unwrap();
    c.send(format!("C1 AUTHENTICATE GSSAPI {}\r\n", encode_base64(&first)).as_bytes())
        .await;
    let challenge = c.line().await.unwrap().text;
    assert!(
        challenge.starts_with("+ ") && challenge.len() > 2,
        "{challenge}"
    );
    c.send(b"*\r\n").await;
    let done = c.line().await.unwrap().text;
    assert!(done.starts_with("C1 BAD "), "{done}");

    // No ticket: the client cannot make a token; what it might send instead is refused.
    assert!(GssapiClient::new(SERVICE, Some(&principal("bob")), "").is_err());
    let cmd = format!("D1 AUTHENTICATE GSSAPI {}\r\n", encode_base64(b"no ticket"));
    c.send(cmd.as_bytes()).await;
    let done = c.line().await.unwrap().text;
    assert!(done.starts_with("D1 NO "), "{done}");
    let (_, r) = c.cmd("SELECT INBOX").await;
    assert!(r.text.contains(" BAD ") || r.text.contains(" NO "), "{r:?}");

    // Two failures so far (A1, D1; cancels do not count): a good login still succeeds.
    let done = login_as(&mut c, "alice", "", "E1").await;
    assert!(done.starts_with("E1 OK "), "{done}");
    server.kill().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn imapd_gssapi_is_allowed_before_starttls_when_passwords_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let pki = murder_server::net::tls::TestPki::new(&["localhost"]).unwrap();
    let (cert, key) = pki.write_to(dir.path()).unwrap();
    let (mut server, addr) = imapd(
        dir.path(),
        &kdc_dir().join("imap.keytab"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--require-tls",
        ],
    )
    .await;
    let addr = addr.unwrap();
    let mut c = Client::connect(addr).await;
    let (untagged, _) = c.cmd("CAPABILITY").await;
    let caps = &untagged[0].text;
    assert!(caps.contains("LOGINDISABLED"), "{caps}");
    assert!(!caps.contains("AUTH=PLAIN"), "{caps}");
    assert!(caps.contains(" AUTH=GSSAPI"), "{caps}");
    let (_, plain) = c.cmd("AUTHENTICATE PLAIN").await;
    assert!(plain.text.contains(" NO "), "{plain:?}");
    let done = login_as(&mut c, "alice", "", "A1").await;
    assert!(done.starts_with("A1 OK "), "{done}");
    server.kill().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn imapd_refuses_a_keytab_without_the_service_key() {
    let kdc = kdc_dir();
    // mupdate.keytab has mupdate/localhost only.
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = imapd(dir.path(), &kdc.join("mupdate.keytab"), &[]).await;
    let err = addr.unwrap_err();
    assert!(err.contains("GSSAPI service imap@localhost"), "{err}");
    // The key of imap/localhost, but asked to be imap/otherhost.
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = imapd(
        dir.path(),
        &kdc.join("imap.keytab"),
        &["--server-name", "otherhost"],
    )
    .await;
    let err = addr.unwrap_err();
    assert!(err.contains("GSSAPI service imap@otherhost"), "{err}");
    // No such file.
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = imapd(dir.path(), &dir.path().join("missing.keytab"), &[]).await;
    let err = addr.unwrap_err();
    assert!(err.contains("no such file"), "{err}");
}

//! SASL GSSAPI (Kerberos 5, RFC 4752) against a real MIT KDC: the sans-IO client and server
//! together, and the `mupdated` binary with `--keytab`.
//!
//! Needs the cargo feature `gssapi` and a KDC from `impl/tests/kdc/kdc.sh start DIR` whose
//! `DIR/env` is sourced (it exports `KRB5_CONFIG`, `KRB5CCNAME`, `KRB5_KTNAME`,
//! `MURDER_KDC_DIR`), so every test is `#[ignore]`d; `impl/tests/kdc/ci.sh` does it all:
//!
//! ```text
//! impl/tests/kdc/kdc.sh start /tmp/kdc && . /tmp/kdc/env
//! cargo test -p murder-server --features gssapi --test gssapi_mupdate -- --ignored
//! impl/tests/kdc/kdc.sh stop /tmp/kdc
//! ```
#![cfg(feature = "gssapi")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod gssapi_common;
mod mupdate_common;

use gssapi_common::{kdc_dir, principal};
use mupdate_common::*;
use murder_server::auth::gssapi::{GssapiAcceptor, GssapiClient, GssapiServer};
use murder_server::auth::sasl::{decode_base64_line, encode_base64};
use murder_server::auth::{AuthzPolicy, Identity, SaslFailure, SaslStep};

/// The service the server accepts for (`mupdate/localhost@MURDER.TEST`, in `mupdate.keytab`).
const SERVICE: &str = "mupdate@localhost";

fn policy() -> AuthzPolicy {
    AuthzPolicy {
        admins: vec!["admin".to_owned()],
    }
}

/// Runs a whole sans-IO exchange between a client and a server; the server's final step.
fn exchange(client: &mut GssapiClient, server: &mut GssapiServer, initial: bool) -> SaslStep {
    let mut step = if initial {
        server.start(Some(&client.initial_response().unwrap()))
    } else {
        server.start(None)
    };
    for _ in 0..10 {
        match step {
            SaslStep::Challenge(challenge) => match client.step(&challenge) {
                Ok(response) => step = server.step(&response),
                Err(e) => panic!("client failed: {e}"),
            },
            done => return done,
        }
    }
    panic!("exchange did not end in 10 round trips");
}

#[test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
fn sans_io_pair_authenticates_and_maps_the_principal() {
    let _ = kdc_dir();
    let acceptor = GssapiAcceptor::new(SERVICE).unwrap();
    assert_eq!(acceptor.service(), SERVICE);
    for initial in [true, false] {
        let mut client = GssapiClient::new(SERVICE, Some(&principal("alice")), "").unwrap();
        let mut server = GssapiServer::new(&acceptor, policy());
        assert_eq!(
            exchange(&mut client, &mut server, initial),
            SaslStep::Success(Identity {
                authcid: "alice".into(),
                authzid: "alice".into()
            })
        );
        assert!(client.is_done());
        assert!(server.is_done());
        assert_eq!(
            server.step(b"more"),
            SaslStep::Failure(SaslFailure::OutOfSequence)
        );
    }
}

#[test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
fn sans_io_authzid_only_for_admins() {
    let _ = kdc_dir();
    let acceptor = GssapiAcceptor::new(SERVICE).unwrap();
    let mut client = GssapiClient::new(SERVICE, Some(&principal("admin")), "alice").unwrap();
    let mut server = GssapiServer::new(&acceptor, policy());
    assert_eq!(
        exchange(&mut client, &mut server, true),
        SaslStep::Success(Identity {
            authcid: "admin".into(),
            authzid: "alice".into()
        })
    );
    let mut client = GssapiClient::new(SERVICE, Some(&principal("alice")), "admin").unwrap();
    let mut server = GssapiServer::new(&acceptor, policy());
    assert_eq!(
        exchange(&mut client, &mut server, true),
        SaslStep::Failure(SaslFailure::AuthzDenied)
    );
    // Naming oneself as authzid is no proxy authorization.
    let mut client = GssapiClient::new(SERVICE, Some(&principal("alice")), "alice").unwrap();
    let mut server = GssapiServer::new(&acceptor, policy());
    assert!(matches!(
        exchange(&mut client, &mut server, true),
        SaslStep::Success(_)
    ));
}

#[test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
fn sans_io_failures() {
    let _ = kdc_dir();
    let acceptor = GssapiAcceptor::new(SERVICE).unwrap();
    // A ticket for another service: the server cannot decrypt it.
    let mut client = GssapiClient::new("mupdate@otherhost", Some(&principal("alice")), "").unwrap();
    let mut server = GssapiServer::new(&acceptor, policy());
    assert_eq!(
        server.start(Some(&client.initial_response().unwrap())),
        SaslStep::Failure(SaslFailure::BadCredentials)
    );
    // Garbage instead of a context token.
    let mut server = GssapiServer::new(&acceptor, policy());
    assert_eq!(
        server.start(Some(b"not a GSSAPI token")),
        SaslStep::Failure(SaslFailure::BadCredentials)
    );
    // A client principal without a ticket cannot even start.
    let err = GssapiClient::new(SERVICE, Some(&principal("bob")), "").unwrap_err();
    assert!(
        err.to_string().contains("acquiring client credentials"),
        "{err}"
    );
    // A service the KDC does not know.
    let mut client = GssapiClient::new("mupdate@nowhere", Some(&principal("alice")), "").unwrap();
    assert!(client.initial_response().is_err());
    assert!(client.is_done());
    // A layer message that is not wrapped by the context.
    let mut client = GssapiClient::new(SERVICE, Some(&principal("alice")), "").unwrap();
    let mut server = GssapiServer::new(&acceptor, policy());
    let mut step = server.start(Some(&client.initial_response().unwrap()));
    let mut rounds = 0;
    while let SaslStep::Challenge(c) = &step {
        let response = client.step(c).unwrap();
        step = if client.is_done() {
            server.step(&[1, 0, 0, 0])
        } else {
            server.step(&response)
        };
        rounds += 1;
        assert!(rounds < 10);
    }
    assert_eq!(
        step,
        SaslStep::Failure(SaslFailure::MalformedResponse(
            "security-layer message does not unwrap"
        ))
    );
    // A service without a key in the keytab cannot be offered.
    assert!(GssapiAcceptor::new("mupdate@otherhost").is_err());
}

/// A `mupdated` with `--keytab` and `--admin admin`.
async fn gssapi_server() -> (
    tokio::process::Child,
    std::net::SocketAddr,
    tempfile::TempDir,
) {
    let kdc = kdc_dir();
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, PASSWD).unwrap();
    let keytab = kdc.join("mupdate.keytab");
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let (child, addr) = spawn_mupdated(
        &dir.path().join("data"),
        &passwd,
        &[
            "--keytab",
            keytab.to_str().unwrap(),
            "--admin",
            "admin",
            "--server-name",
            "localhost",
        ],
        "info",
        log.into(),
    )
    .await;
    (child, addr, dir)
}

/// AUTHENTICATE GSSAPI on `c` with `client` (initial response or not); the tagged result line.
async fn authenticate(c: &mut Client, client: &mut GssapiClient, initial: bool) -> String {
    if initial {
        let first = client.initial_response().unwrap();
        c.send(format!(
            "A AUTHENTICATE \"GSSAPI\" \"{}\"\r\n",
            encode_base64(&first)
        ))
        .await;
    } else {
        c.send("A AUTHENTICATE \"GSSAPI\"\r\n").await;
    }
    for _ in 0..10 {
        let line = c.line().await;
        if line.starts_with("A ") {
            return line;
        }
        let challenge = decode_base64_line(line.as_bytes()).unwrap();
        let response = client.step(&challenge).unwrap();
        c.send(format!("{}\r\n", encode_base64(&response))).await;
    }
    panic!("AUTHENTICATE did not end in 10 round trips");
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn mupdated_offers_gssapi_and_maps_identities() {
    let (mut server, addr, _dir) = gssapi_server().await;
    let mut admin = Client::connect(addr).await;
    assert!(
        admin.banner.iter().any(|l| l.starts_with("* AUTH ")
            && l.split(' ').any(|m| m == "\"GSSAPI\"" || m == "GSSAPI")),
        "{:?}",
        admin.banner
    );
    let mut gss = GssapiClient::new(SERVICE, Some(&principal("admin")), "").unwrap();
    assert_eq!(
        authenticate(&mut admin, &mut gss, true).await,
        "A OK \"Authenticated\""
    );
    let r = admin.cmd("W1", "RESERVE \"user.gss\" \"h!p\"").await;
    assert!(r[0].starts_with("W1 OK "), "{r:?}");

    // alice (no initial response this time) is authenticated but not an admin.
    let mut alice = Client::connect(addr).await;
    let mut gss = GssapiClient::new(SERVICE, Some(&principal("alice")), "").unwrap();
    assert_eq!(
        authenticate(&mut alice, &mut gss, false).await,
        "A OK \"Authenticated\""
    );
    let r = alice.cmd("W2", "RESERVE \"user.alice\" \"h!p\"").await;
    assert!(r[0].starts_with("W2 NO "), "{r:?}");
    let r = alice.cmd("F", "FIND \"user.gss\"").await;
    assert!(r.last().unwrap().starts_with("F OK "), "{r:?}");

    // alice asking to act as admin is refused; admin acting as alice may not write.
    let mut c = Client::connect(addr).await;
    let mut gss = GssapiClient::new(SERVICE, Some(&principal("alice")), "admin").unwrap();
    assert!(
        authenticate(&mut c, &mut gss, true)
            .await
            .starts_with("A NO ")
    );
    let mut c = Client::connect(addr).await;
    let mut gss = GssapiClient::new(SERVICE, Some(&principal("admin")), "alice").unwrap();
    assert_eq!(
        authenticate(&mut c, &mut gss, true).await,
        "A OK \"Authenticated\""
    );
    let r = c.cmd("W3", "RESERVE \"user.proxy\" \"h!p\"").await;
    assert!(r[0].starts_with("W3 NO "), "{r:?}");
    server.kill().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn mupdated_refuses_bad_gssapi_cleanly() {
    let (mut server, addr, _dir) = gssapi_server().await;
    let mut c = Client::connect(addr).await;

    // A ticket for mupdate/otherhost: NO, and the connection goes on.
    let mut gss = GssapiClient::new("mupdate@otherhost", Some(&principal("alice")), "").unwrap();
    let first = gss.initial_response().unwrap();
    c.send(format!(
        "A AUTHENTICATE \"GSSAPI\" \"{}\"\r\n",
        encode_base64(&first)
    ))
    .await;
    assert!(c.line().await.starts_with("A NO "));

    // Cancel after the first challenge.
    c.send("B AUTHENTICATE \"GSSAPI\"\r\n").await;
    assert_eq!(c.line().await, "");
    c.send("*\r\n").await;
    assert!(c.line().await.starts_with("B NO "));

    // Cancel in the middle of the context exchange (after the AP-REP).
    let mut gss = GssapiClient::new(SERVICE, Some(&principal("alice")), "").unwrap();
    let first = gss.initial_response().unwrap();
    c.send(format!(
        "C AUTHENTICATE \"GSSAPI\" \"{}\"\r\n",
        encode_base64(&first)
    ))
    .await;
    let challenge = c.line().await;
    assert!(
        !challenge.is_empty() && !challenge.starts_with("C "),
        "{challenge}"
    );
    c.send("*\r\n").await;
    assert!(c.line().await.starts_with("C NO "));

    // A client without a ticket cannot produce a token; what it might send instead is refused.
    assert!(GssapiClient::new(SERVICE, Some(&principal("bob")), "").is_err());
    c.send(format!(
        "D AUTHENTICATE \"GSSAPI\" \"{}\"\r\n",
        encode_base64(b"no ticket")
    ))
    .await;
    assert!(c.line().await.starts_with("D NO "));
    let r = c.cmd("N", "NOOP").await;
    assert!(r[0].starts_with("N NO "), "{r:?}");

    // Still usable: a good GSSAPI login now succeeds on the same connection.
    let mut gss = GssapiClient::new(SERVICE, Some(&principal("alice")), "").unwrap();
    assert_eq!(
        authenticate(&mut c, &mut gss, true).await,
        "A OK \"Authenticated\""
    );
    server.kill().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn mupdated_refuses_a_keytab_without_the_service_key() {
    let kdc = kdc_dir();
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, PASSWD).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mupdated"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--users")
        .arg(&passwd)
        .arg("--keytab")
        .arg(kdc.join("clients.keytab"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GSSAPI service mupdate@localhost"), "{err}");
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn slave_authenticates_to_its_master_with_gssapi() {
    let (mut master, master_addr, _master_dir) = gssapi_server().await;
    let mut admin = Client::connect(master_addr).await;
    let mut gss = GssapiClient::new(SERVICE, Some(&principal("admin")), "").unwrap();
    assert_eq!(
        authenticate(&mut admin, &mut gss, true).await,
        "A OK \"Authenticated\""
    );
    let r = admin
        .cmd(
            "W1",
            "ACTIVATE \"user.replicated\" \"h!p\" \"admin lrswipcda\"",
        )
        .await;
    assert!(r[0].starts_with("W1 OK "), "{r:?}");

    // The slave's link authenticates as admin@MURDER.TEST (mapped to the admin `admin`) from
    // the ccache collection; its own clients still log in with PLAIN.
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, PASSWD).unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let master_arg = master_addr.to_string();
    let (mut slave, slave_addr) = spawn_mupdated(
        &dir.path().join("data"),
        &passwd,
        &[
            "--slave-of",
            &master_arg,
            "--master-mech",
            "GSSAPI",
            "--master-service",
            SERVICE,
            "--master-user",
            &principal("admin"),
        ],
        "info",
        log.into(),
    )
    .await;
    let mut c = Client::admin(slave_addr).await;
    let r = c.cmd("F", "FIND \"user.replicated\"").await;
    let logged = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(
        r[0].starts_with("F MAILBOX \"user.replicated\""),
        "{r:?}\nslave log:\n{logged}"
    );
    // And it streams: a later write on the master reaches the slave (NOOP barrier).
    let r = admin
        .cmd("W2", "ACTIVATE \"user.later\" \"h!p\" \"admin lrswipcda\"")
        .await;
    assert!(r[0].starts_with("W2 OK "), "{r:?}");
    c.send("U UPDATE\r\n").await;
    let dump = c.until_done("U").await;
    assert!(
        dump.iter().any(|l| l.contains("user.replicated")),
        "{dump:?}"
    );
    c.send("N NOOP\r\n").await;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let line = c.line().await;
        let done = line.starts_with("N OK");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("user.later")), "{seen:?}");
    slave.kill().await.unwrap();
    master.kill().await.unwrap();
}

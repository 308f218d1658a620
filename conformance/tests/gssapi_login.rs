//! The runner's GSSAPI login (`--sasl-mech GSSAPI`) judges the exchange's shape: against a fake
//! MUPDATE master that accepts the runner's Kerberos context with `murder-server`'s
//! `GssapiServer` and then deviates from RFC 3656 4.2 / RFC 4752 3.1, the login fails with the
//! rule; against the same fake doing it right, it succeeds (so the failures are the deviations').
//!
//! Needs the cargo feature `gssapi` and a KDC from `impl/tests/kdc/kdc.sh start DIR` whose
//! `DIR/env` is sourced (`KRB5_KTNAME` is the mupdate/localhost keytab, `KRB5CCNAME` holds
//! alice's ticket); every test is `#[ignore]`d and run by `impl/tests/kdc/ci.sh`.
#![cfg(feature = "gssapi")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser as _;
use conformance::cli::{Cli, target_from};
use conformance::run::probe::{ProbeError, probe};
use conformance::scenario::Protocol;
use murder_server::auth::gssapi::{GssapiAcceptor, GssapiServer};
use murder_server::auth::{AuthzPolicy, SaslStep};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How the fake master deviates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fake {
    /// The whole exchange as RFC 4752 says.
    Correct,
    /// Challenges as quoted strings (RFC 3656 4.2: "MUST NOT be encoded as strings").
    QuotedChallenges,
    /// OK right after the context is established, without the security-layer negotiation.
    SkipLayerNegotiation,
}

/// A one-connection fake MUPDATE master on 127.0.0.1; its address.
async fn fake_master(fake: Fake) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(
            b"* AUTH \"GSSAPI\"\r\n* OK MUPDATE \"localhost\" \"fake\" \"0\" \"(master)\"\r\n",
        )
        .await
        .unwrap();
        let acceptor = GssapiAcceptor::new("mupdate@localhost").unwrap();
        let mut server = GssapiServer::new(&acceptor, AuthzPolicy::default());
        let Ok(Some(cmd)) = lines.next_line().await else {
            return;
        };
        let tag = cmd.split(' ').next().unwrap().to_string();
        let ir = cmd.rsplit('"').nth(1).unwrap();
        let mut step = server.start(Some(&STANDARD.decode(ir).unwrap()));
        let mut rounds = 0;
        loop {
            match step {
                SaslStep::Challenge(c) => {
                    rounds += 1;
                    if fake == Fake::SkipLayerNegotiation && rounds == 2 {
                        w.write_all(format!("{tag} OK \"Authenticated\"\r\n").as_bytes())
                            .await
                            .unwrap();
                        break;
                    }
                    let b64 = STANDARD.encode(c);
                    let line = if fake == Fake::QuotedChallenges {
                        format!("\"{b64}\"\r\n")
                    } else {
                        format!("{b64}\r\n")
                    };
                    w.write_all(line.as_bytes()).await.unwrap();
                    let Ok(Some(response)) = lines.next_line().await else {
                        return;
                    };
                    step = server.step(&STANDARD.decode(response).unwrap());
                }
                SaslStep::Success(_) => {
                    w.write_all(format!("{tag} OK \"Authenticated\"\r\n").as_bytes())
                        .await
                        .unwrap();
                    break;
                }
                SaslStep::Failure(f) => {
                    w.write_all(format!("{tag} NO \"{f}\"\r\n").as_bytes())
                        .await
                        .unwrap();
                    break;
                }
            }
        }
        // LOGOUT and whatever else: BYE, then close.
        if let Ok(Some(line)) = lines.next_line().await {
            let tag = line.split(' ').next().unwrap_or("*").to_string();
            let _ = w
                .write_all(format!("* BYE \"bye\"\r\n{tag} OK \"bye\"\r\n").as_bytes())
                .await;
        }
    });
    addr
}

/// The probe's login as alice with `--sasl-mech GSSAPI` against `fake`.
async fn login(fake: Fake) -> Result<(), String> {
    assert!(
        std::env::var_os("MURDER_KDC_DIR").is_some(),
        "run impl/tests/kdc/kdc.sh start DIR and source DIR/env first"
    );
    let addr = fake_master(fake).await;
    let cli = Cli::parse_from([
        "conformance",
        "--target",
        &addr,
        "--sasl-mech",
        "GSSAPI",
        "--sasl-service-host",
        "localhost",
        "--user",
        "alice",
    ]);
    let target = target_from(&cli.opts, &addr).unwrap();
    let creds = conformance::scenario::names::Credentials {
        user: Some(("alice".into(), String::new())),
        user2: None,
    };
    match probe(
        &target,
        Some(Protocol::Mupdate),
        &creds,
        Duration::from_secs(30),
    )
    .await
    {
        Ok(info) => {
            assert!(info.mechs.contains("GSSAPI"));
            Ok(())
        }
        Err(ProbeError::Login(why)) => Err(why),
        Err(e) => panic!("probe failed before the login: {e}"),
    }
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn a_correct_exchange_logs_in() {
    login(Fake::Correct).await.unwrap();
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn quoted_challenges_fail_with_rfc3656_4_2() {
    let why = login(Fake::QuotedChallenges).await.unwrap_err();
    assert!(why.contains("RFC 3656 4.2"), "{why}");
}

#[tokio::test]
#[ignore = "needs a KDC: impl/tests/kdc/ci.sh"]
async fn ok_without_layer_negotiation_fails_with_rfc4752() {
    let why = login(Fake::SkipLayerNegotiation).await.unwrap_err();
    assert!(
        why.contains("OK before the security-layer negotiation"),
        "{why}"
    );
}

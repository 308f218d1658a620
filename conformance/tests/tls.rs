//! `--tls` (implicit TLS) with `--ca FILE`, through a TLS-terminating proxy in front of the fake
//! MUPDATE server; and a certificate the CA file does not vouch for is refused (exit 2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;

use clap::Parser as _;
use conformance::cli::{Cli, main_with};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Accept TLS on a fresh port and pipe each connection to `backend`.
async fn tls_proxy(
    backend: std::net::SocketAddr,
    hosts: &[&str],
) -> (std::net::SocketAddr, String) {
    let cert =
        rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    let pem = cert.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![CertificateDer::from(cert.cert.der().to_vec())], key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let Ok(mut back) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
            });
        }
    });
    (addr, pem)
}

async fn run(args: &[&str]) -> i32 {
    let mut v = vec!["conformance"];
    v.extend_from_slice(args);
    main_with(Cli::parse_from(v)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_with_a_ca_file() {
    let fake = support::start(support::Fault::None).await;
    let (addr, pem) = tls_proxy(fake.addr, &["127.0.0.1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let json = dir.path().join("r.json");
    let addr = addr.to_string();
    let s = support::example_scenarios();
    let s = s.path();
    let code = run(&[
        "--target",
        &addr,
        "--tls",
        "--ca",
        ca.to_str().unwrap(),
        "--user",
        "admin",
        "--password",
        "pw",
        "--suite",
        "mupdate",
        "--scenarios",
        s.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--bundle-dir",
        dir.path().join("b").to_str().unwrap(),
    ])
    .await;
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["targets"][0]["tls"], "implicit");
    // Cases that look at the plain-text greeting are N/A under TLS, the rest pass.
    let cases = report["cases"].as_array().unwrap();
    assert!(cases.iter().any(|c| c["grade"] == "PASS"));
    assert!(
        cases
            .iter()
            .any(|c| c["id"] == "mupdate/banner-shape" && c["grade"] == "N/A")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_ca_does_not_vouch_for_is_refused() {
    let fake = support::start(support::Fault::None).await;
    let (addr, _) = tls_proxy(fake.addr, &["127.0.0.1"]).await;
    let (_, other_pem) = tls_proxy(fake.addr, &["127.0.0.1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other.pem");
    std::fs::write(&ca, other_pem).unwrap();
    let addr = addr.to_string();
    let s = support::example_scenarios();
    let s = s.path();
    assert_eq!(
        run(&[
            "--target",
            &addr,
            "--tls",
            "--ca",
            ca.to_str().unwrap(),
            "--suite",
            "mupdate",
            "--scenarios",
            s.to_str().unwrap()
        ])
        .await,
        2
    );
    // --tls without --ca or --insecure is a usage error.
    assert_eq!(
        run(&[
            "--target",
            &addr,
            "--tls",
            "--scenarios",
            s.to_str().unwrap()
        ])
        .await,
        2
    );
}

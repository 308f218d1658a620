//! STARTTLS on `mupdated` (RFC 3656 3.8, 4.10): banner before and after, pipelined plaintext
//! after STARTTLS never executed, second STARTTLS and STARTTLS after authentication refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use mupdate_common::*;
use murder_server::net::TestPki;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsConnector;

async fn read_line<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> String {
    let mut line = String::new();
    let n = tokio::time::timeout(WAIT, r.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0, "unexpected EOF");
    assert!(line.ends_with("\r\n"), "{line:?}");
    line.truncate(line.len() - 2);
    line
}

async fn banner<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = read_line(r).await;
        let last = l.starts_with("* OK MUPDATE");
        lines.push(l);
        if last {
            return lines;
        }
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(r: &mut BufReader<S>, bytes: &str) {
    r.get_mut().write_all(bytes.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn starttls_discards_pipelined_plaintext_and_resends_the_banner() {
    let pki = TestPki::new(&["localhost"]).unwrap();
    let s = server_with(|c| c.tls = Some(pki.server_config())).await;
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut plain = BufReader::new(tcp);
    let b = banner(&mut plain).await;
    assert_eq!(
        b,
        vec![
            "* AUTH PLAIN LOGIN".to_string(),
            "* STARTTLS".into(),
            b[2].clone()
        ]
    );
    // STARTTLS with a NOOP and a login pipelined behind it in the same write.
    let login = format!("A AUTHENTICATE \"PLAIN\" \"{}\"", plain_ir());
    send(
        &mut plain,
        &format!("S1 STARTTLS\r\nN1 NOOP\r\n{login}\r\n"),
    )
    .await;
    assert_eq!(
        read_line(&mut plain).await,
        "S1 OK \"Begin TLS negotiation now\""
    );
    assert!(
        plain.buffer().is_empty(),
        "nothing after the OK in plaintext"
    );
    let tcp = plain.into_inner();
    let connector = TlsConnector::from(pki.client_config());
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut tls = BufReader::new(tls);
    let b = banner(&mut tls).await;
    assert_eq!(b.len(), 2, "no STARTTLS line under TLS: {b:?}");
    assert_eq!(b[0], "* AUTH PLAIN LOGIN");
    // The pipelined login was discarded: still unauthenticated, and N1 never answered.
    send(&mut tls, "N2 NOOP\r\n").await;
    assert!(read_line(&mut tls).await.starts_with("N2 NO "));
    send(&mut tls, "S2 STARTTLS\r\n").await;
    assert!(read_line(&mut tls).await.starts_with("S2 NO "));
    send(&mut tls, &format!("{login}\r\n")).await;
    assert_eq!(read_line(&mut tls).await, "A OK \"Authenticated\"");
    send(&mut tls, "S3 STARTTLS\r\nN3 NOOP\r\n").await;
    assert!(read_line(&mut tls).await.starts_with("S3 NO "));
    assert_eq!(read_line(&mut tls).await, "N3 OK \"NOOP complete\"");
}

fn plain_ir() -> String {
    plain("admin", "secret")
}

#[tokio::test]
async fn starttls_after_authentication_is_refused() {
    let pki = TestPki::new(&["localhost"]).unwrap();
    let s = server_with(|c| c.tls = Some(pki.server_config())).await;
    let mut c = Client::admin(s.addr).await;
    let r = c.cmd("S", "STARTTLS").await;
    assert!(r[0].starts_with("S NO "), "{r:?}");
    assert_eq!(c.cmd("N", "NOOP").await, vec!["N OK \"NOOP complete\""]);
}

#[tokio::test]
async fn starttls_unsupported_is_bad() {
    let s = server().await;
    let mut c = Client::connect(s.addr).await;
    let r = c.cmd("S", "STARTTLS").await;
    assert!(r[0].starts_with("S BAD "), "{r:?}");
}

//! STARTTLS over loopback: a plaintext greeting, `Stream::upgrade` on the server, a tokio-rustls
//! client on the other side, with certificates generated at test time by `TestPki`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use murder_server::net::{
    self, ListenerConfig, ServerHandle, Stream, TestPki, client_config_with_ca,
    insecure_client_config,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Generous bound that only fires when something is broken.
const LIMIT: Duration = Duration::from_secs(30);

/// A server that greets in plaintext, answers `STARTTLS\r\n` with `OK begin\r\n`, upgrades, and
/// answers `ping\r\n` over TLS with `pong <tls?> <version>\r\n`, then tries to upgrade again
/// and reports the error kind on the returned channel.
async fn starttls_server(
    config: Arc<rustls::ServerConfig>,
) -> (ServerHandle, mpsc::UnboundedReceiver<std::io::ErrorKind>) {
    let acceptor = TlsAcceptor::from(config);
    let (report, reports) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = net::serve(
        listener,
        ListenerConfig::default(),
        move |tcp, _peer| {
            let acceptor = acceptor.clone();
            let report = report.clone();
            async move {
                let mut s = Stream::from(tcp);
                s.write_all(b"* OK plain\r\n").await.unwrap();
                let mut cmd = [0u8; 10];
                if s.read_exact(&mut cmd).await.is_err() || &cmd != b"STARTTLS\r\n" {
                    return;
                }
                let was_tls = s.is_tls();
                s.write_all(b"OK begin\r\n").await.unwrap();
                s.flush().await.unwrap();
                let Ok(mut s) = s.upgrade(&acceptor).await else {
                    return;
                };
                let mut ping = [0u8; 6];
                s.read_exact(&mut ping).await.unwrap();
                assert_eq!(&ping, b"ping\r\n");
                let reply = format!(
                    "pong was_tls={was_tls} is_tls={} {:?}\r\n",
                    s.is_tls(),
                    s.tls_version()
                );
                s.write_all(reply.as_bytes()).await.unwrap();
                s.flush().await.unwrap();
                if let Err(again) = s.upgrade(&acceptor).await {
                    let _ = report.send(again.kind());
                }
            }
        },
        |tcp| net::write_and_close(tcp, b"* BYE busy\r\n"),
    )
    .await
    .unwrap();
    (handle, reports)
}

async fn read_line<R: AsyncRead + Unpin>(r: &mut R) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if r.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        line.push(byte[0]);
        assert!(line.len() < 1000, "line too long");
    }
    String::from_utf8(line).unwrap()
}

/// Runs the client side of STARTTLS; returns the TLS handshake result and the reply to `ping`.
async fn starttls_client(
    server: &ServerHandle,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    assert_eq!(read_line(&mut tcp).await, "* OK plain\r\n");
    tcp.write_all(b"STARTTLS\r\n").await.unwrap();
    assert_eq!(read_line(&mut tcp).await, "OK begin\r\n");
    let connector = TlsConnector::from(client);
    let mut tls = connector
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await?;
    tls.write_all(b"ping\r\n").await.unwrap();
    Ok(read_line(&mut tls).await)
}

/// The reply of a session that went through STARTTLS.
fn assert_served_over_tls(reply: &str) {
    assert!(
        reply.starts_with("pong was_tls=false is_tls=true"),
        "{reply}"
    );
}

#[tokio::test]
async fn starttls_handshake_with_test_pki() {
    tokio::time::timeout(LIMIT, async {
        let pki = TestPki::new(&["localhost", "127.0.0.1"]).unwrap();
        let (server, mut upgrades_again) = starttls_server(pki.server_config()).await;
        let reply = starttls_client(&server, pki.client_config(), "localhost")
            .await
            .unwrap();
        assert_eq!(reply, "pong was_tls=false is_tls=true Some(TLSv1_3)\r\n");
        // Upgrading a stream that is already TLS is refused.
        assert_eq!(
            upgrades_again.recv().await,
            Some(std::io::ErrorKind::InvalidInput)
        );
        // The IP address SAN works too.
        let reply = starttls_client(&server, pki.client_config(), "127.0.0.1")
            .await
            .unwrap();
        assert_served_over_tls(&reply);
        server.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn server_config_from_files_and_client_trusting_the_ca_file() {
    tokio::time::timeout(LIMIT, async {
        let pki = TestPki::new(&["mupdate.test"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pki.write_to(dir.path()).unwrap();
        let (server, _) = starttls_server(net::load_server_config(&cert, &key).unwrap()).await;
        let client = client_config_with_ca(&cert).unwrap();
        let reply = starttls_client(&server, client, "mupdate.test")
            .await
            .unwrap();
        assert_served_over_tls(&reply);
        server.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn untrusted_certificate_is_rejected_unless_insecure() {
    tokio::time::timeout(LIMIT, async {
        let server_pki = TestPki::new(&["localhost"]).unwrap();
        let other_pki = TestPki::new(&["localhost"]).unwrap();
        let (server, _) = starttls_server(server_pki.server_config()).await;
        // A client trusting another certificate refuses the handshake.
        let err = starttls_client(&server, other_pki.client_config(), "localhost")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        // A name the certificate does not cover is refused by the verifying client...
        let err = starttls_client(&server, server_pki.client_config(), "other.example")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        // ...and accepted by the insecure one.
        let reply = starttls_client(&server, insecure_client_config().unwrap(), "other.example")
            .await
            .unwrap();
        assert_served_over_tls(&reply);
        server.shutdown().await;
    })
    .await
    .unwrap();
}

/// A client that pipelines a plaintext command behind STARTTLS (the CVE-2011-0411 attack shape):
/// the server reads through a buffer, and `upgrade_discarding` drops the injected bytes.
#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    tokio::time::timeout(LIMIT, async {
        let pki = TestPki::new(&["localhost"]).unwrap();
        let acceptor = TlsAcceptor::from(pki.server_config());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (report, mut reports) = mpsc::unbounded_channel();
        let server = net::serve(
            listener,
            ListenerConfig::default(),
            move |tcp, _| {
                let acceptor = acceptor.clone();
                let report = report.clone();
                async move {
                    let mut s = Stream::from(tcp);
                    let mut buf = BytesMut::new();
                    // Read until the STARTTLS line is complete; the injected line comes with it.
                    while !buf.windows(2).any(|w| w == b"\r\n") {
                        if s.read_buf(&mut buf).await.unwrap() == 0 {
                            return;
                        }
                    }
                    let end = buf.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
                    let line = buf.split_to(end);
                    assert_eq!(&line[..], b"STARTTLS\r\n");
                    let pending = buf.len();
                    s.write_all(b"OK begin\r\n").await.unwrap();
                    let mut s = s.upgrade_discarding(&acceptor, &mut buf).await.unwrap();
                    let mut first = [0u8; 6];
                    s.read_exact(&mut first).await.unwrap();
                    let _ = report.send((pending, buf.len(), first));
                    s.write_all(b"bye\r\n").await.unwrap();
                    s.flush().await.unwrap();
                }
            },
            |tcp| net::write_and_close(tcp, b"* BYE busy\r\n"),
        )
        .await
        .unwrap();
        let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        // One segment: the STARTTLS line and an injected plaintext command.
        tcp.write_all(b"STARTTLS\r\nA1 DELETE INBOX\r\n")
            .await
            .unwrap();
        assert_eq!(read_line(&mut tcp).await, "OK begin\r\n");
        let connector = TlsConnector::from(pki.client_config());
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"ping\r\n").await.unwrap();
        assert_eq!(read_line(&mut tls).await, "bye\r\n");
        let (pending, left, first) = reports.recv().await.unwrap();
        // The injected line had been buffered (same segment) and was thrown away; the first
        // bytes read over TLS are the client's real first TLS-protected bytes.
        assert_eq!(pending, b"A1 DELETE INBOX\r\n".len());
        assert_eq!(left, 0);
        assert_eq!(&first, b"ping\r\n");
        server.shutdown().await;
    })
    .await
    .unwrap();
}

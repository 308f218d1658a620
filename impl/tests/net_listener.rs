//! The shared accept loop: the connection limit and its refuse hook, the shutdown signal, and
//! shutdown closing the listener and the sessions. Loopback only; every wait is bounded by a
//! generous timeout that fires only on failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use murder_server::net::{self, ListenerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Generous bound that only fires when something is broken.
const LIMIT: Duration = Duration::from_secs(30);

const REFUSAL: &[u8] = b"* BYE \"too many connections\"\r\n";

/// A server whose sessions say `hello\r\n`, then echo one byte per byte read until EOF.
async fn hello_server(config: ListenerConfig) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    net::serve(
        listener,
        config,
        |mut tcp, _peer| async move {
            if tcp.write_all(b"hello\r\n").await.is_err() {
                return;
            }
            let mut buf = [0u8; 64];
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 || tcp.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        },
        |tcp| net::write_and_close(tcp, REFUSAL),
    )
    .await
    .unwrap()
}

/// A config whose short grace period keeps shutdown quick with sessions that ignore the signal.
fn quick(max_connections: usize) -> ListenerConfig {
    ListenerConfig {
        max_connections,
        shutdown_grace: Duration::from_millis(50),
        ..ListenerConfig::default()
    }
}

/// Connects and reads the greeting.
async fn greeted(server: &ServerHandle) -> TcpStream {
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut hello = [0u8; 7];
    tcp.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hello\r\n");
    tcp
}

async fn echo(tcp: &mut TcpStream, bytes: &[u8]) {
    tcp.write_all(bytes).await.unwrap();
    let mut back = vec![0u8; bytes.len()];
    tcp.read_exact(&mut back).await.unwrap();
    assert_eq!(back, bytes);
}

/// Waits (bounded by the caller's timeout) until the server counts `n` active connections.
async fn until_active(server: &ServerHandle, n: usize) {
    while server.active_connections() != n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn listener_config_defaults() {
    let c = ListenerConfig::default();
    assert_eq!(c.max_connections, 1024);
    assert_eq!(c.shutdown_grace, Duration::from_secs(2));
}

#[tokio::test]
async fn connection_over_the_limit_gets_the_refuse_hook() {
    tokio::time::timeout(LIMIT, async {
        let server = hello_server(quick(2)).await;
        let mut a = greeted(&server).await;
        let mut b = greeted(&server).await;
        assert_eq!(server.active_connections(), 2);

        // The third connection is refused with the hook's bytes, then closed.
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut refused = Vec::new();
        c.read_to_end(&mut refused).await.unwrap();
        assert_eq!(refused, REFUSAL);

        // The two served connections still work.
        echo(&mut a, b"still here").await;
        echo(&mut b, b"me too").await;
        assert_eq!(server.active_connections(), 2);

        // Closing one frees its slot for a new connection.
        drop(a);
        until_active(&server, 1).await;
        let mut d = greeted(&server).await;
        echo(&mut d, b"new").await;
        assert_eq!(server.active_connections(), 2);
        server.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_refused_client_that_talks_first_still_reads_the_refusal() {
    tokio::time::timeout(LIMIT, async {
        let server = hello_server(quick(1)).await;
        let _a = greeted(&server).await;
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        c.write_all(b"A1 LOGIN x y\r\n").await.unwrap();
        c.shutdown().await.unwrap();
        let mut refused = Vec::new();
        c.read_to_end(&mut refused).await.unwrap();
        assert_eq!(refused, REFUSAL);
        server.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_aborts_sessions_after_the_grace() {
    tokio::time::timeout(LIMIT, async {
        // The sessions here ignore the shutdown signal, so they are aborted after the grace.
        let server = hello_server(quick(1024)).await;
        let addr = server.local_addr();
        let mut a = greeted(&server).await;
        server.shutdown().await;
        // The session's socket was dropped: end of stream (or a reset).
        let mut rest = Vec::new();
        let end = a.read_to_end(&mut rest).await;
        assert!(end.is_err() || rest.is_empty(), "{end:?} {rest:?}");
        // Nobody listens any more.
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn sessions_see_the_shutdown_signal_and_say_goodbye() {
    tokio::time::timeout(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ListenerConfig {
            // Long grace: the test passes only if sessions end by themselves.
            shutdown_grace: Duration::from_secs(600),
            ..ListenerConfig::default()
        };
        let server = net::serve_with_shutdown(
            listener,
            config,
            |mut tcp, _peer, shutdown| async move {
                tcp.write_all(b"hello\r\n").await.unwrap();
                assert!(!shutdown.is_shutdown());
                let mut buf = [0u8; 16];
                tokio::select! {
                    () = shutdown.wait() => {
                        assert!(shutdown.is_shutdown());
                        let _ = tcp.write_all(b"* BYE shutting down\r\n").await;
                    }
                    _ = tcp.read(&mut buf) => {}
                }
            },
            |tcp| net::write_and_close(tcp, REFUSAL),
        )
        .await
        .unwrap();
        let signal = server.shutdown_signal();
        assert!(!signal.is_shutdown());
        let mut a = greeted(&server).await;
        let mut b = greeted(&server).await;
        until_active(&server, 2).await;
        server.shutdown().await;
        assert!(signal.is_shutdown());
        for tcp in [&mut a, &mut b] {
            let mut rest = Vec::new();
            tcp.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"* BYE shutting down\r\n");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    tokio::time::timeout(LIMIT, async {
        let server = hello_server(quick(1024)).await;
        let signal = server.shutdown_signal();
        let mut a = greeted(&server).await;
        drop(server);
        signal.wait().await;
        assert!(signal.is_shutdown());
        // The session is aborted after the grace period, closing the socket.
        let mut rest = Vec::new();
        let end = a.read_to_end(&mut rest).await;
        assert!(end.is_err() || rest.is_empty(), "{end:?} {rest:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn beyond_pending_refusals_the_connection_is_just_closed() {
    tokio::time::timeout(LIMIT, async {
        let config = ListenerConfig {
            max_pending_refusals: 0,
            ..quick(1)
        };
        let server = hello_server(config).await;
        let _a = greeted(&server).await;
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut got = Vec::new();
        let end = c.read_to_end(&mut got).await;
        assert!(end.is_err() || got.is_empty(), "{end:?} {got:?}");
        server.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn accepted_sockets_get_tcp_nodelay_as_configured() {
    tokio::time::timeout(LIMIT, async {
        for nodelay in [true, false] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let config = ListenerConfig {
                nodelay,
                ..quick(4)
            };
            let server = net::serve(
                listener,
                config,
                |mut tcp, _| async move {
                    let line = format!("nodelay={}\r\n", tcp.nodelay().unwrap());
                    let _ = tcp.write_all(line.as_bytes()).await;
                },
                |tcp| net::write_and_close(tcp, REFUSAL),
            )
            .await
            .unwrap();
            let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, format!("nodelay={nodelay}\r\n"));
            server.shutdown().await;
        }
    })
    .await
    .unwrap();
}

//! One host opening connection after connection (SECURITY.md, per-address limit): with
//! `max_connections_per_ip = 2`, a third connection from the same address gets `* BYE` and is
//! closed by both `mupdated` and `imapd`, while another address (127.0.0.1, exempt by default)
//! is still served, and closing one connection frees its address's slot. The limited clients
//! bind to 127.0.0.2, a loopback address that is not exempt. Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;
mod mupdate_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// Generous bound that only fires when something is broken.
const LIMIT: Duration = Duration::from_secs(30);

/// The counted client address.
const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Connects to `server` from `from` (any free port).
async fn connect_from(from: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// Connects from `from` and reads the first line: a served connection's greeting.
async fn served(from: IpAddr, server: SocketAddr) -> BufReader<TcpStream> {
    let mut c = BufReader::new(connect_from(from, server).await);
    let mut line = String::new();
    c.read_line(&mut line).await.unwrap();
    assert!(
        line.starts_with("* ") && !line.starts_with("* BYE"),
        "expected a greeting from {from}, got {line:?}"
    );
    c
}

/// Connects from `from` and reads to EOF: the refusal.
async fn refused(from: IpAddr, server: SocketAddr) -> String {
    let mut c = connect_from(from, server).await;
    let mut all = Vec::new();
    c.read_to_end(&mut all).await.unwrap();
    String::from_utf8(all).unwrap()
}

/// The common scenario against a server on `addr` whose active connection count is `active`.
async fn two_per_address(addr: SocketAddr, active: impl Fn() -> usize) {
    let a = served(HOST, addr).await;
    let _b = served(HOST, addr).await;
    let bye = refused(HOST, addr).await;
    assert!(
        bye.starts_with("* BYE") && bye.to_ascii_lowercase().contains("too many connections"),
        "third connection from {HOST}: {bye:?}"
    );
    // Another address (127.0.0.1: exempt) is served meanwhile.
    let _local = served(IpAddr::V4(Ipv4Addr::LOCALHOST), addr).await;
    // Closing one of the two frees its slot.
    drop(a);
    while active() != 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _c = served(HOST, addr).await;
}

#[tokio::test]
async fn mupdated_refuses_a_third_connection_from_one_address() {
    tokio::time::timeout(LIMIT, async {
        let server = mupdate_common::server_with(|c| c.limits.max_connections_per_ip = 2).await;
        let handle = &server.handle;
        two_per_address(server.addr, || handle.active_connections()).await;
        server.handle.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn imapd_refuses_a_third_connection_from_one_address() {
    tokio::time::timeout(LIMIT, async {
        let server =
            imap_common::TestServer::start_with(|c| c.limits.max_connections_per_ip = 2).await;
        let handle = &server.handle;
        two_per_address(handle.local_addr(), || handle.active_connections()).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_default_limit_leaves_localhost_alone() {
    tokio::time::timeout(LIMIT, async {
        let server = mupdate_common::server_with(|c| c.limits.max_connections_per_ip = 1).await;
        // Five connections from 127.0.0.1 with a limit of one: localhost is exempt by default.
        let mut kept = Vec::new();
        for _ in 0..5 {
            kept.push(served(IpAddr::V4(Ipv4Addr::LOCALHOST), server.addr).await);
        }
        assert_eq!(server.handle.active_connections(), 5);
        // While one other address is limited to one.
        let _one = served(HOST, server.addr).await;
        assert!(refused(HOST, server.addr).await.starts_with("* BYE"));
        server.handle.shutdown().await;
    })
    .await
    .unwrap();
}

//! Limits of `mupdated` that end a connection: the idle timeout (`* BYE` then close) and an
//! UPDATE subscriber that falls further behind than the subscriber buffer (`* BYE` then close,
//! other connections unaffected); and limits refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use std::time::Duration;

use mupdate_common::*;
use murder_server::mupdate::{MupdateError, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn idle_connections_get_bye() {
    let s = server_with(|c| c.limits.idle_timeout = Duration::from_millis(200)).await;
    let mut c = Client::admin(s.addr).await;
    assert_eq!(c.line().await, "* BYE \"idle for too long\"");
    assert!(c.closed().await);
    // Before login too.
    let mut c = Client::connect(s.addr).await;
    assert_eq!(c.line().await, "* BYE \"idle for too long\"");
}

#[tokio::test]
async fn a_lagging_subscriber_is_dropped_and_nobody_else_is() {
    let s = server_with(|c| c.limits.subscriber_buffer = 4).await;
    // A subscriber with a tiny receive buffer that stops reading after the dump.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut sub = socket.connect(s.addr).await.unwrap();
    let login = format!(
        "A AUTHENTICATE \"PLAIN\" \"{}\"\r\nU UPDATE\r\n",
        plain("admin", "secret")
    );
    sub.write_all(login.as_bytes()).await.unwrap();
    // Another, well-behaved subscriber.
    let mut good = Client::admin(s.addr).await;
    good.cmd("U", "UPDATE").await;
    // 200 changes of ~60 KB each: far more than the socket buffers hold.
    let acl = "a".repeat(60_000);
    let mut w = Client::admin(s.addr).await;
    for i in 0..200 {
        let r = w
            .cmd(
                "W",
                &format!("ACTIVATE \"user.l{i}\" \"h!p\" {{{}+}}\r\n{acl}", acl.len()),
            )
            .await;
        assert_eq!(r, vec!["W OK \"done\""]);
        // The good subscriber keeps up.
        let seen = good.cmd("N", "NOOP").await;
        assert_eq!(seen.len(), 2, "{i}");
    }
    // Now the slow subscriber reads: its stream ends with * BYE and EOF.
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, sub.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("\r\nA OK \"Authenticated\"\r\nU OK \"streaming starts\"\r\n"));
    assert!(
        text.ends_with("\r\n* BYE \"too far behind, resynchronise with UPDATE\"\r\n"),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    assert_eq!(good.cmd("N", "NOOP").await, vec!["N OK \"NOOP complete\""]);
}

#[tokio::test]
async fn limits_below_the_rfc_minimums_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        (|c: &mut murder_server::mupdate::Config| c.limits.max_line = 1000) as fn(&mut _),
        |c| c.limits.max_literal = 4095,
        |c| c.limits.max_args = 2,
        |c| c.limits.idle_timeout = Duration::ZERO,
    ] {
        let mut c = config(dir.path());
        f(&mut c);
        assert!(matches!(start(c).await, Err(MupdateError::Limit(_))));
    }
}

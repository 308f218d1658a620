//! imapd against hostile clients: the failed-login limit, and (in the other tests) input no
//! honest client sends, each while a well-behaved client keeps getting answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;

use base64::Engine;
use imap_common::TestServer;

/// LOGIN and AUTHENTICATE failures share one count: the third (default
/// `Limits::max_auth_failures`) is answered NO, then `* BYE`, then EOF. A cancelled
/// AUTHENTICATE does not count; other connections are unaffected and can log in.
#[tokio::test]
async fn the_third_failed_login_is_followed_by_bye_and_close() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let (_, t) = c.cmd("LOGIN alice wrong").await;
    assert!(t.text.contains(" NO [AUTHENTICATIONFAILED]"), "{t:?}");
    // A cancelled exchange is not a failure.
    let tag = c.tag();
    c.send(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())
        .await;
    assert!(c.line().await.unwrap().text.starts_with('+'));
    c.send(b"*\r\n").await;
    let (_, t) = c.until_tagged(&tag).await;
    assert!(t.text.contains(" BAD"), "{t:?}");
    let bad = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0nope");
    let (_, t) = c.cmd(&format!("AUTHENTICATE PLAIN {bad}")).await;
    assert!(t.text.contains(" NO [AUTHENTICATIONFAILED]"), "{t:?}");
    // Meanwhile another connection logs in fine.
    let mut other = s.alice().await;
    let (_, t) = c.cmd("LOGIN bob wrong").await;
    assert!(t.text.contains(" NO [AUTHENTICATIONFAILED]"), "{t:?}");
    let bye = c.line().await.unwrap();
    assert!(bye.text.starts_with("* BYE"), "{bye:?}");
    assert!(c.line().await.is_none(), "still open after BYE");
    other.ok("NOOP").await;

    // The limit is configurable, and garbage base64 counts as a failure.
    let s = TestServer::start_with(|c| c.limits.max_auth_failures = 1).await;
    let mut c = s.client().await;
    let (_, t) = c.cmd("AUTHENTICATE PLAIN Zm9v=Zm9v=").await;
    assert!(t.text.contains(" BAD"), "{t:?}");
    assert!(c.line().await.unwrap().text.starts_with("* BYE"));
    assert!(c.line().await.is_none());
    s.alice().await.ok("NOOP").await;
}

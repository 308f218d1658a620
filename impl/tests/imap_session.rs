//! imapd session behaviour over TCP: capabilities and login policy, STARTTLS (and the
//! plaintext-injection defence), AUTHENTICATE PLAIN, FETCH/STORE/SEARCH/EXPUNGE, mailbox
//! commands, bad input, limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;

use std::sync::Arc;

use base64::Engine;
use imap_common::{Client, TestServer, appenduid};
use murder_server::imap::{Fault, Faults};
use murder_server::net::TestPki;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

fn pki() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let pki = TestPki::new(&["localhost"]).unwrap();
    (pki.server_config(), pki.client_config())
}

async fn tls_client(
    c: Client<TcpStream>,
    cfg: Arc<rustls::ClientConfig>,
) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
    assert!(
        c.pending().is_empty(),
        "server sent plaintext after STARTTLS OK"
    );
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), c.stream)
        .await
        .unwrap();
    Client::new(tls)
}

/// SEARCH's date and text keys (RFC 3501 6.4.4): INTERNALDATE dates ignore time and zone,
/// SENT* read the Date: field, HEADER/SUBJECT/FROM/TO/CC/BCC/BODY/TEXT are case-insensitive
/// substrings, a body larger than the scan chunk is searched across chunk boundaries, and an
/// unsupported CHARSET is answered NO [BADCHARSET].
#[tokio::test]
async fn search_dates_headers_and_text() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    let m1: &[u8] = b"From: Alice <alice@x.org>\r\nTo: bob@y.org\r\nCc: carol@z.org\r\nSubject: Quarterly Report\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\nX-Tracker: abc-42\r\n\r\nThe numbers are up.\r\n";
    let m2: &[u8] = b"From: Bob <bob@y.org>\r\nTo: alice@x.org\r\nBcc: dave@w.org\r\nSubject: lunch?\r\n  folded tail\r\nDate: 1 Jan 2001 00:00:00 +0000\r\n\r\nNumbers later.\r\n";
    let mut m3 = b"From: Eve <eve@v.org>\r\nSubject: big\r\n\r\n".to_vec();
    m3.resize(200_000, b'x');
    m3.extend_from_slice(b"Deep-Needle\r\n");
    c.append_plus(
        "INBOX",
        &[
            ("\"07-Feb-1994 23:30:00 -0800\" ", m1),
            ("\"08-Feb-1994 00:30:00 +0200\" ", m2),
            ("\"01-Jan-2001 12:00:00 +0000\" ", &m3),
        ],
    )
    .await;
    c.ok("SELECT INBOX").await;
    for (q, want) in [
        ("ON 7-Feb-1994", "* SEARCH 1"),
        ("ON 8-Feb-1994", "* SEARCH 2"),
        ("BEFORE 8-Feb-1994", "* SEARCH 1"),
        ("SINCE 8-Feb-1994", "* SEARCH 2 3"),
        ("SINCE \"1-Jan-2001\"", "* SEARCH 3"),
        ("SENTON 7-Feb-1994", "* SEARCH 1"),
        ("SENTBEFORE 1-Jan-2001", "* SEARCH 1"),
        ("SENTSINCE 1-Jan-2001", "* SEARCH 2"),
        ("NOT SENTSINCE 1-Jan-1900", "* SEARCH 3"),
        ("SUBJECT report", "* SEARCH 1"),
        ("SUBJECT \"FOLDED TAIL\"", "* SEARCH 2"),
        ("FROM ALICE", "* SEARCH 1"),
        ("TO alice", "* SEARCH 2"),
        ("CC carol", "* SEARCH 1"),
        ("BCC dave", "* SEARCH 2"),
        ("HEADER X-Tracker ABC-4", "* SEARCH 1"),
        ("HEADER x-tracker \"\"", "* SEARCH 1"),
        ("HEADER Subject \"\"", "* SEARCH 1 2 3"),
        ("BODY numbers", "* SEARCH 1 2"),
        ("BODY alice", "* SEARCH"),
        ("TEXT alice", "* SEARCH 1 2"),
        ("BODY deep-needle", "* SEARCH 3"),
        ("OR SUBJECT lunch BODY deep-needle", "* SEARCH 2 3"),
        ("CHARSET UTF-8 BODY Numbers SINCE 8-Feb-1994", "* SEARCH 2"),
    ] {
        let u = c.ok(&format!("SEARCH {q}")).await;
        assert_eq!(u[0].text, want, "SEARCH {q}");
    }
    let (u, t) = c.cmd("SEARCH CHARSET ISO-2022-JP BODY x").await;
    assert!(u.is_empty(), "{u:?}");
    assert!(t.text.contains(" NO [BADCHARSET"), "{t:?}");
    let (_, t) = c.cmd("SEARCH ON 31-Feb-1994").await;
    assert!(t.text.contains(" BAD"), "{t:?}");
}

#[tokio::test]
async fn capability_lists_the_extensions() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let u = c.ok("CAPABILITY").await;
    let caps = &u[0].text;
    for cap in [
        "IMAP4rev1",
        "MULTIAPPEND",
        "LITERAL+",
        "UIDPLUS",
        "AUTH=PLAIN",
    ] {
        assert!(caps.split(' ').any(|w| w == cap), "{cap} missing: {caps}");
    }
    assert!(!caps.contains("STARTTLS"), "no TLS configured: {caps}");
}

#[tokio::test]
async fn starttls_discards_pipelined_plaintext() {
    let (server_cfg, client_cfg) = pki();
    let s = TestServer::start_with(|c| c.tls = Some(server_cfg)).await;
    let mut c = s.client().await;
    let u = c.ok("CAPABILITY").await;
    assert!(u[0].text.contains("STARTTLS"));
    // Injected commands in the same packet as STARTTLS.
    c.send(b"s STARTTLS\r\ni1 LOGIN alice secret\r\ni2 CREATE injected\r\n")
        .await;
    let (_, t) = c.until_tagged("s").await;
    assert!(t.text.starts_with("s OK"), "{t:?}");
    let mut c = tls_client(c, client_cfg).await;
    let u = c.ok("CAPABILITY").await;
    assert!(!u[0].text.contains("STARTTLS"), "{u:?}");
    // Not logged in: the injected LOGIN did not run.
    let (_, t) = c.cmd("LIST \"\" *").await;
    assert!(!t.text.contains(" OK"), "{t:?}");
    c.ok("LOGIN alice secret").await;
    let (u, _) = c.cmd("LIST \"\" *").await;
    assert!(u.iter().all(|l| !l.text.contains("injected")), "{u:?}");
}

#[tokio::test]
async fn starttls_pipelining_fault_is_observable() {
    let (server_cfg, client_cfg) = pki();
    let s = TestServer::start_with(|c| {
        c.tls = Some(server_cfg);
        c.faults = Faults::only(Fault::StarttlsExecutesPipelined);
    })
    .await;
    let mut c = s.client().await;
    c.send(b"s STARTTLS\r\ni1 LOGIN alice secret\r\n").await;
    let (_, t) = c.until_tagged("s").await;
    assert!(t.text.starts_with("s OK"));
    let mut c = tls_client(c, client_cfg).await;
    let (_, t) = c.until_tagged("i1").await;
    assert!(
        t.text.contains("OK"),
        "fault executes the injected LOGIN: {t:?}"
    );
}

#[tokio::test]
async fn require_tls_disables_login_until_starttls() {
    let (server_cfg, client_cfg) = pki();
    let s = TestServer::start_with(|c| {
        c.tls = Some(server_cfg);
        c.require_tls = true;
    })
    .await;
    let mut c = s.client().await;
    let u = c.ok("CAPABILITY").await;
    assert!(u[0].text.contains("LOGINDISABLED") && !u[0].text.contains("AUTH=PLAIN"));
    let (_, t) = c.cmd("LOGIN alice secret").await;
    assert!(t.text.contains(" NO"), "{t:?}");
    c.ok("STARTTLS").await;
    let mut c = tls_client(c, client_cfg).await;
    let u = c.ok("CAPABILITY").await;
    assert!(u[0].text.contains("AUTH=PLAIN") && !u[0].text.contains("LOGINDISABLED"));
    c.ok("LOGIN alice secret").await;
}

#[tokio::test]
async fn authenticate_plain_with_and_without_initial_response() {
    let s = TestServer::start().await;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let mut c = s.client().await;
    let (_, t) = c
        .cmd(&format!("AUTHENTICATE PLAIN {}", b64(b"\0alice\0wrong")))
        .await;
    assert!(t.text.contains("NO [AUTHENTICATIONFAILED]"), "{t:?}");
    c.ok(&format!("AUTHENTICATE PLAIN {}", b64(b"\0alice\0secret")))
        .await;
    let mut c = s.client().await;
    c.send(b"a AUTHENTICATE PLAIN\r\n").await;
    let l = c.line().await.unwrap();
    assert!(l.text.starts_with('+'), "{l:?}");
    c.send(format!("{}\r\n", b64(b"bob\0bob\0pw")).as_bytes())
        .await;
    let (_, t) = c.until_tagged("a").await;
    assert!(t.text.contains("OK"), "{t:?}");
    let mut c = s.client().await;
    c.send(b"a AUTHENTICATE PLAIN\r\n").await;
    c.line().await.unwrap();
    c.send(b"*\r\n").await;
    let (_, t) = c.until_tagged("a").await;
    assert!(t.text.contains("BAD"), "cancel: {t:?}");
    let (_, t) = c
        .cmd(&format!(
            "AUTHENTICATE PLAIN {}",
            b64(b"bob\0alice\0secret")
        ))
        .await;
    assert!(
        t.text.contains("NO"),
        "authorization identity other than the user: {t:?}"
    );
}

#[tokio::test]
async fn fetch_store_search_expunge() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    let m1: &[u8] = b"From: A <a@x.org>\r\nSubject: s1\r\nTo: b@y.org\r\n\r\nbody one\r\n";
    let m2: &[u8] = b"From: B <b@y.org>\r\nSubject: s2\r\n\r\nbody two\r\n";
    let (_, t) = c
        .append_plus("INBOX", &[("", m1), ("(\\Flagged) ", m2), ("", m1)])
        .await;
    let (_, uids) = appenduid(&t);
    c.ok("SELECT INBOX").await;
    let (u, _) = c.cmd("FETCH 1 (ENVELOPE RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[]<0.4> BODYSTRUCTURE)").await;
    let l = &u[0];
    assert!(
        l.text
            .contains("ENVELOPE (NIL \"s1\" ((\"A\" NIL \"a\" \"x.org\"))"),
        "{l:?}"
    );
    assert!(l.text.contains(&format!("RFC822.SIZE {}", m1.len())));
    assert_eq!(
        l.literals[0],
        b"From: A <a@x.org>\r\nSubject: s1\r\nTo: b@y.org\r\n\r\n"
    );
    assert_eq!(l.literals[1], b"body one\r\n");
    assert_eq!(l.literals[2], b"Subject: s1\r\n\r\n");
    assert_eq!(l.literals[3], b"From");
    assert!(l.text.contains("BODY[]<0>"), "{l:?}");
    // BODY.PEEK does not set \Seen, BODY[] does.
    let (u, _) = c.cmd("FETCH 1 FLAGS").await;
    assert!(!u[0].text.contains("\\Seen"), "{u:?}");
    let (u, _) = c.cmd("FETCH 1 BODY[]").await;
    assert!(u[0].text.contains("\\Seen"), "{u:?}");
    let (u, _) = c.cmd("SEARCH FLAGGED").await;
    assert_eq!(u[0].text, "* SEARCH 2");
    let (u, _) = c.cmd("UID SEARCH UNSEEN").await;
    assert_eq!(u[0].text, format!("* SEARCH {} {}", uids[1], uids[2]));
    let (u, _) = c.cmd("SEARCH NOT SEEN NOT FLAGGED").await;
    assert_eq!(u[0].text, "* SEARCH 3");
    let (u, _) = c.cmd("UID STORE 2 +FLAGS (\\Deleted)").await;
    assert!(
        u[0].text.contains("UID 2") && u[0].text.contains("\\Deleted"),
        "{u:?}"
    );
    let u = c.ok("STORE 1 +FLAGS.SILENT (\\Answered)").await;
    assert!(u.is_empty(), "{u:?}");
    let (u, _) = c.cmd("STORE 1 -FLAGS (\\Answered)").await;
    assert!(!u[0].text.contains("Answered"));
    let u = c.ok("EXPUNGE").await;
    assert_eq!(u[0].text, "* 2 EXPUNGE");
    let got = c.fetch_all().await;
    assert_eq!(
        got.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![uids[0], uids[2]]
    );
    c.ok("CLOSE").await;
    let (_, t) = c.cmd("FETCH 1 FLAGS").await;
    assert!(t.text.contains("BAD"), "{t:?}");
}

#[tokio::test]
async fn other_sessions_see_expunge_only_at_command_end() {
    let s = TestServer::start().await;
    let mut a = s.alice().await;
    a.append_plus("INBOX", &[("(\\Deleted) ", b"x\r\n"), ("", b"y\r\n")])
        .await;
    a.ok("SELECT INBOX").await;
    let mut b = s.alice().await;
    b.ok("SELECT INBOX").await;
    a.ok("EXPUNGE").await;
    let u = b.ok("NOOP").await;
    assert!(u.iter().any(|l| l.text == "* 1 EXPUNGE"), "{u:?}");
}

#[tokio::test]
async fn mailbox_management() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    c.ok("CREATE a/b").await;
    let (_, t) = c.cmd("CREATE a/b").await;
    assert!(t.text.contains(" NO"));
    c.ok("RENAME a/b a/c").await;
    let (u, _) = c.cmd("LIST \"\" a/%").await;
    assert_eq!(u.len(), 1);
    assert!(u[0].text.ends_with("\"a/c\""), "{u:?}");
    c.ok("SUBSCRIBE a/c").await;
    let (u, _) = c.cmd("LSUB \"\" *").await;
    assert_eq!(u.len(), 1);
    c.ok("UNSUBSCRIBE a/c").await;
    let (u, _) = c.cmd("LSUB \"\" *").await;
    assert!(u.is_empty());
    let u = c.ok("LIST \"\" \"\"").await;
    assert!(u[0].text.contains("\\Noselect"));
    c.ok("DELETE a/c").await;
    let (_, t) = c.cmd("DELETE a/c").await;
    assert!(t.text.contains(" NO"));
    let u = c.ok("EXAMINE INBOX").await;
    assert!(u.iter().any(|l| l.text.contains("UIDVALIDITY")));
    // Users are separate.
    let mut b = s.client().await;
    b.ok("LOGIN bob pw").await;
    let (u, _) = b.cmd("LIST \"\" *").await;
    assert_eq!(u.len(), 1, "only bob's INBOX: {u:?}");
}

#[tokio::test]
async fn bad_input_gets_bad_never_a_crash() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    for junk in [
        "FROB",
        "FETCH",
        "FETCH x FLAGS",
        "FETCH 1 (FLAGS",
        "STORE 1 FLAGS",
        "SELECT",
        "LOGIN",
        "UID FOO",
        "SEARCH BOGUS",
        "LIST",
        "STATUS INBOX (BOGUS)",
        "APPEND",
        "APPEND INBOX",
        "APPEND INBOX (\\Seen",
    ] {
        let (_, t) = c.cmd(junk).await;
        assert!(
            t.text.contains(" BAD") || t.text.contains(" NO"),
            "{junk}: {t:?}"
        );
    }
    c.send(b"\r\n").await;
    let l = c.line().await.unwrap();
    assert!(l.text.starts_with("* BAD"), "{l:?}");
    c.send(b"+ NOOP\r\n").await;
    let l = c.line().await.unwrap();
    assert!(l.text.starts_with("* BAD"), "{l:?}");
    c.ok("NOOP").await;
}

#[tokio::test]
async fn overlong_line_gets_bye() {
    let s = TestServer::start_with(|c| c.limits.max_line = 1024).await;
    let mut c = s.client().await;
    c.send(&vec![b'a'; 5000]).await;
    let l = c.line().await.unwrap();
    assert!(l.text.starts_with("* BYE"), "{l:?}");
    assert!(c.line().await.is_none());
}

#[tokio::test]
async fn oversized_command_literal_is_refused() {
    let s = TestServer::start_with(|c| c.limits.max_command_literal = 100).await;
    let mut c = s.client().await;
    let (_, t) = c.cmd("LOGIN alice {1000}").await;
    assert!(t.text.contains(" BAD"), "{t:?}");
    c.ok("LOGIN alice {6+}\r\nsecret").await;
    // Many empty literals: refused, and the stream stays in sync.
    let (_, t) = c.cmd(&format!("NOOP{}", " {0+}\r\n".repeat(200))).await;
    assert!(t.text.contains(" BAD"), "{t:?}");
    c.ok("NOOP").await;
}

#[tokio::test]
async fn connection_limit_refuses_with_bye() {
    let s = TestServer::start_with(|c| c.limits.max_connections = 1).await;
    let _first = s.client().await;
    let mut second = Client::new(TcpStream::connect(s.handle.local_addr()).await.unwrap());
    let l = second.line().await.unwrap();
    assert!(l.text.starts_with("* BYE"), "{l:?}");
}

#[tokio::test]
async fn logout_says_bye() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let u = c.ok("LOGOUT").await;
    assert!(u[0].text.starts_with("* BYE"));
    assert!(c.line().await.is_none());
    s.handle.shutdown().await;
}

#[tokio::test]
async fn idle_connection_gets_bye_after_the_idle_timeout() {
    let s =
        TestServer::start_with(|c| c.limits.idle_timeout = std::time::Duration::from_millis(200))
            .await;
    let mut c = s.alice().await;
    let l = c.line().await.unwrap();
    assert!(l.text.starts_with("* BYE"), "{l:?}");
    assert!(c.line().await.is_none());
}

#[tokio::test]
async fn copy_and_uid_copy_report_copyuid_and_preserve_bytes_and_flags() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    c.ok("CREATE dest").await;
    let m: &[&[u8]] = &[
        b"Subject: a\r\n\r\n1\r\n",
        b"Subject: b\r\n\r\n22\r\n",
        b"Subject: c\r\n\r\n333\r\n",
    ];
    c.append_plus("INBOX", &[("(\\Flagged) ", m[0]), ("", m[1]), ("", m[2])])
        .await;
    c.ok("SELECT INBOX").await;
    let (_, t) = c.cmd("COPY 1,3 dest").await;
    let code = t
        .text
        .split("[COPYUID ")
        .nth(1)
        .expect("COPYUID")
        .split(']')
        .next()
        .unwrap();
    let parts: Vec<&str> = code.split(' ').collect();
    assert_eq!(&parts[1..], ["1,3", "1:2"], "{t:?}");
    let (_, t) = c.cmd("UID COPY 2 nosuch").await;
    assert!(t.text.contains("NO [TRYCREATE]"), "{t:?}");
    let (_, t) = c.cmd("UID COPY 2 dest").await;
    assert!(t.text.contains(" 2 3]"), "{t:?}");
    c.ok("SELECT dest").await;
    let got = c.fetch_all().await;
    assert_eq!(
        got,
        vec![(1, m[0].to_vec()), (2, m[2].to_vec()), (3, m[1].to_vec())]
    );
    let (u, _) = c.cmd("FETCH 1 FLAGS").await;
    assert!(u[0].text.contains("\\Flagged"), "{u:?}");
}

#[tokio::test]
async fn flag_changes_by_another_session_are_reported_once() {
    let s = TestServer::start().await;
    let mut a = s.alice().await;
    a.append_plus("INBOX", &[("", b"x\r\n"), ("", b"y\r\n")])
        .await;
    a.ok("SELECT INBOX").await;
    let mut b = s.alice().await;
    b.ok("SELECT INBOX").await;
    let u = a.ok("STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    assert!(u.is_empty(), "own .SILENT change is not reported: {u:?}");
    let u = b.ok("NOOP").await;
    let fetches: Vec<&str> = u
        .iter()
        .map(|l| l.text.as_str())
        .filter(|t| t.contains("FETCH"))
        .collect();
    assert_eq!(fetches, vec!["* 2 FETCH (FLAGS (\\Flagged))"]);
    let u = b.ok("NOOP").await;
    assert!(
        u.iter().all(|l| !l.text.contains("FETCH")),
        "reported once: {u:?}"
    );
    let u = a.ok("NOOP").await;
    assert!(u.iter().all(|l| !l.text.contains("FETCH")), "{u:?}");
}

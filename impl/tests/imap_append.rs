//! MULTIAPPEND over TCP: atomicity seen by a concurrent observer, every cancel path leaving the
//! mailbox exactly as before, TRYCREATE, APPENDUID shape, LITERAL+ and stream synchronisation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;

use imap_common::{TestServer, appenduid, staging_files};
use murder_server::imap::{Fault, Faults};

const M1: &[u8] = b"Subject: one\r\n\r\nfirst\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\nsecond\r\n";
const M3: &[u8] = b"Subject: three\r\n\r\nthird\r\n";

#[tokio::test]
async fn multiappend_assigns_contiguous_uids_and_reports_them_compressed() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    c.ok("CREATE box").await;
    let (_, t) = c
        .append_plus(
            "box",
            &[
                ("(\\Seen) ", M1),
                ("", M2),
                ("\"17-Jul-1996 02:44:25 -0700\" ", M3),
            ],
        )
        .await;
    assert!(t.text.contains("OK [APPENDUID "), "{t:?}");
    let set = t
        .text
        .split("[APPENDUID ")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    assert!(set.ends_with(" 1:3"), "uid-set must be compressed: {set}");
    let (v, uids) = appenduid(&t);
    assert_eq!(uids, vec![1, 2, 3]);
    let (_, t) = c.append_sync("box", &[M1]).await;
    assert_eq!(appenduid(&t), (v, vec![4]));
    c.ok("SELECT box").await;
    let got = c.fetch_all().await;
    assert_eq!(
        got,
        vec![
            (1, M1.to_vec()),
            (2, M2.to_vec()),
            (3, M3.to_vec()),
            (4, M1.to_vec())
        ]
    );
    let (u, _) = c.cmd("FETCH 1,3 (FLAGS INTERNALDATE)").await;
    assert!(u[0].text.contains("\\Seen"), "{u:?}");
    assert!(
        u[1].text
            .contains("INTERNALDATE \"17-Jul-1996 02:44:25 -0700\""),
        "{u:?}"
    );
}

#[tokio::test]
async fn synchronizing_literals_get_one_continuation_each() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    let (_, t) = c.append_sync("INBOX", &[M1, M2, M3]).await;
    assert_eq!(appenduid(&t).1, vec![1, 2, 3]);
}

#[tokio::test]
async fn literal_plus_gets_no_continuation() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    let (u, t) = c.append_plus("INBOX", &[("", M1), ("", M2)]).await;
    assert!(u.iter().all(|l| !l.text.starts_with('+')), "{u:?}");
    assert!(t.text.contains("OK [APPENDUID"));
}

/// The observer must see EXISTS go from N to N+k in one step.
async fn observer_sees_single_step(faults: Faults) -> Vec<String> {
    let s = TestServer::start_with(|c| c.faults = faults).await;
    let mut w = s.alice().await;
    w.ok("CREATE shared").await;
    w.append_plus("shared", &[("", M1), ("", M2)]).await;
    let mut obs = s.alice().await;
    let u = obs.ok("SELECT shared").await;
    assert!(u.iter().any(|l| l.text == "* 2 EXISTS"));
    let msgs: Vec<(&str, &[u8])> = (0..5).map(|_| ("", M3)).collect();
    let (_, t) = w.append_plus("shared", &msgs).await;
    assert!(t.text.contains("OK"), "{t:?}");
    // Collect the observer's EXISTS responses until it has seen all 7 messages.
    let mut seen = Vec::new();
    for _ in 0..20 {
        let (u, _) = obs.cmd("NOOP").await;
        seen.extend(
            u.into_iter()
                .map(|l| l.text)
                .filter(|t| t.ends_with("EXISTS")),
        );
        if seen.last().is_some_and(|l| l == "* 7 EXISTS") {
            break;
        }
    }
    seen
}

#[tokio::test]
async fn concurrent_observer_sees_exists_jump_in_one_step() {
    let seen = observer_sees_single_step(Faults::default()).await;
    assert_eq!(seen, vec!["* 7 EXISTS".to_string()]);
}

#[tokio::test]
async fn observer_detects_non_atomic_append_fault() {
    let seen = observer_sees_single_step(Faults::only(Fault::AppendNotAtomic)).await;
    assert_ne!(
        seen,
        vec!["* 7 EXISTS".to_string()],
        "the fault must be observable"
    );
}

#[tokio::test]
async fn idle_observer_is_told_without_sending_a_command() {
    let s = TestServer::start().await;
    let mut obs = s.alice().await;
    obs.ok("SELECT INBOX").await;
    let mut w = s.alice().await;
    w.append_plus("INBOX", &[("", M1), ("", M2), ("", M3)])
        .await;
    let l = obs.line().await.unwrap();
    assert_eq!(l.text, "* 3 EXISTS");
    let l = obs.line().await.unwrap();
    assert_eq!(l.text, "* 3 RECENT");
}

#[tokio::test]
async fn other_session_exists_fault_is_observable() {
    let s =
        TestServer::start_with(|c| c.faults = Faults::only(Fault::NoExistsToOtherSessions)).await;
    let mut obs = s.alice().await;
    obs.ok("SELECT INBOX").await;
    let mut w = s.alice().await;
    w.append_plus("INBOX", &[("", M1)]).await;
    let (u, _) = obs.cmd("NOOP").await;
    assert!(
        u.iter().all(|l| !l.text.ends_with("EXISTS")),
        "fault must be observable: {u:?}"
    );
}

/// Run one refused APPEND on a mailbox holding two messages and check nothing changed.
async fn refused_leaves_mailbox_unchanged(raw: &[u8], expect: &str) {
    let s = TestServer::start_with(|c| c.limits.max_message_size = 1000).await;
    let mut c = s.alice().await;
    c.ok("CREATE box").await;
    c.append_plus("box", &[("", M1), ("", M2)]).await;
    let before = c.status("box").await.unwrap();
    c.send(raw).await;
    let (_, t) = c.until_tagged("x").await;
    assert!(t.text.starts_with(&format!("x {expect}")), "{t:?}");
    // The stream is in sync: a following command works, and nothing was executed.
    let (u, t) = c.cmd("LIST \"\" *").await;
    assert!(t.text.contains(" OK"), "{t:?}");
    assert!(u.iter().all(|l| !l.text.contains("pwned")), "{u:?}");
    assert_eq!(c.status("box").await.unwrap(), before);
    assert_eq!(staging_files(&s.data()), 0);
    // No UID was consumed.
    let (_, t) = c.append_plus("box", &[("", M3)]).await;
    assert_eq!(appenduid(&t).1, vec![3]);
}

#[tokio::test]
async fn zero_length_message_cancels_the_whole_command() {
    // Synchronizing {0}: refused before the continuation.
    refused_leaves_mailbox_unchanged(b"x APPEND box {5+}\r\nhello {0}\r\n", "NO").await;
}

#[tokio::test]
async fn zero_length_nonsync_in_message_two_never_executes_the_rest() {
    refused_leaves_mailbox_unchanged(
        b"x APPEND box {5+}\r\nhello {0+}\r\n {16+}\r\ny CREATE pwned\r\n\r\n",
        "NO",
    )
    .await;
}

#[tokio::test]
async fn bad_flag_cancels() {
    refused_leaves_mailbox_unchanged(
        b"x APPEND box {5+}\r\nhello (\\Recent) {16+}\r\ny CREATE pwned\r\n\r\n",
        "NO",
    )
    .await;
    refused_leaves_mailbox_unchanged(b"x APPEND box {5+}\r\nhello (\\Bogus) {3}\r\n", "NO").await;
}

#[tokio::test]
async fn bad_date_time_cancels_and_pipelined_literal_is_not_executed() {
    refused_leaves_mailbox_unchanged(
        b"x APPEND box {5+}\r\nhello \"31-Feb-2020 00:00:00 +0000\" {16+}\r\ny CREATE pwned\r\n\r\n",
        "BAD",
    )
    .await;
}

#[tokio::test]
async fn unterminated_flag_list_cancels_and_literal_is_not_executed() {
    refused_leaves_mailbox_unchanged(
        b"x APPEND box {5+}\r\nhello (\\Seen {16+}\r\ny CREATE pwned\r\n\r\n",
        "BAD",
    )
    .await;
}

#[tokio::test]
async fn oversized_synchronizing_literal_is_refused_before_continuation() {
    refused_leaves_mailbox_unchanged(b"x APPEND box {5+}\r\nhello {5000}\r\n", "NO [TOOBIG]").await;
}

#[tokio::test]
async fn junk_after_a_literal_is_bad_and_cancels() {
    refused_leaves_mailbox_unchanged(b"x APPEND box {5+}\r\nhello junk\r\n", "BAD").await;
}

#[tokio::test]
async fn oversized_nonsync_literal_is_refused_then_bye() {
    let s = TestServer::start_with(|c| c.limits.max_message_size = 1000).await;
    let mut c = s.alice().await;
    let before = c.status("INBOX").await.unwrap();
    c.send(b"x APPEND INBOX {5000+}\r\ny CREATE pwned\r\n")
        .await;
    let (_, t) = c.until_tagged("x").await;
    assert!(t.text.starts_with("x NO"), "{t:?}");
    let bye = c.line().await.unwrap();
    assert!(bye.text.starts_with("* BYE"), "{bye:?}");
    assert!(c.line().await.is_none(), "connection must be closed");
    let mut c = s.alice().await;
    assert_eq!(c.status("INBOX").await.unwrap(), before);
    let (u, _) = c.cmd("LIST \"\" *").await;
    assert!(u.iter().all(|l| !l.text.contains("pwned")));
}

#[tokio::test]
async fn literal_plus_not_consumed_fault_is_observable() {
    let s = TestServer::start_with(|c| {
        c.limits.max_message_size = 1000;
        c.faults = Faults::only(Fault::LiteralPlusNotConsumed);
    })
    .await;
    let mut c = s.alice().await;
    c.send(b"x APPEND INBOX {5000+}\r\ny CREATE pwned\r\n")
        .await;
    let (_, t) = c.until_tagged("y").await;
    assert!(
        t.text.contains("OK"),
        "the fault executes literal bytes: {t:?}"
    );
}

#[tokio::test]
async fn rejected_append_fault_executes_literal_bytes() {
    let s = TestServer::start_with(|c| {
        c.faults = Faults::only(Fault::ExecutePipelinedAfterRejectedAppend);
    })
    .await;
    let mut c = s.alice().await;
    c.send(b"x APPEND INBOX {5+}\r\nhello {0+}\r\n {16+}\r\ny CREATE pwned\r\n\r\n")
        .await;
    let (_, t) = c.until_tagged("x").await;
    assert!(t.text.starts_with("x NO"));
    let (u, _) = c.cmd("LIST \"\" *").await;
    assert!(
        u.iter().any(|l| l.text.contains("pwned")),
        "fault must be observable: {u:?}"
    );
}

#[tokio::test]
async fn client_breaking_off_mid_literal_leaves_nothing() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    c.append_plus("INBOX", &[("", M1)]).await;
    let before = c.status("INBOX").await.unwrap();
    let mut b = s.alice().await;
    b.send(b"x APPEND INBOX {5+}\r\nhello {100+}\r\nonly part of it")
        .await;
    // Make sure the server is inside the literal (the staging file exists), then hang up.
    b.send(b"").await;
    drop(b);
    // Wait (bounded) for the session to notice EOF and clean up.
    for _ in 0..600 {
        if staging_files(&s.data()) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(staging_files(&s.data()), 0);
    assert_eq!(c.status("INBOX").await.unwrap(), before);
    let (_, t) = c.append_plus("INBOX", &[("", M2)]).await;
    assert_eq!(appenduid(&t).1, vec![2]);
}

#[tokio::test]
async fn missing_mailbox_is_trycreate_and_never_created() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    let (_, t) = c.append_plus("nosuch", &[("", M1), ("", M2)]).await;
    assert!(t.text.contains("NO [TRYCREATE]"), "{t:?}");
    let (_, t) = c.append_sync("nosuch", &[M1]).await;
    assert!(
        t.text.contains("NO [TRYCREATE]"),
        "sync literal refused before +: {t:?}"
    );
    assert_eq!(c.status("nosuch").await, None);
    let (u, _) = c.cmd("LIST \"\" *").await;
    assert!(u.iter().all(|l| !l.text.contains("nosuch")));
}

#[tokio::test]
async fn trycreate_faults_are_observable() {
    let s = TestServer::start_with(|c| c.faults = Faults::only(Fault::NoTryCreate)).await;
    let mut c = s.alice().await;
    let (_, t) = c.append_plus("nosuch", &[("", M1)]).await;
    assert!(
        t.text.contains("NO") && !t.text.contains("TRYCREATE"),
        "{t:?}"
    );
    let s = TestServer::start_with(|c| c.faults = Faults::only(Fault::AutoCreateMailbox)).await;
    let mut c = s.alice().await;
    let (_, t) = c.append_plus("nosuch", &[("", M1)]).await;
    assert!(t.text.contains("OK"), "{t:?}");
}

#[tokio::test]
async fn appenduid_faults_are_observable() {
    let s = TestServer::start_with(|c| c.faults = Faults::only(Fault::AppendUidOffByOne)).await;
    let mut c = s.alice().await;
    let (_, t) = c.append_plus("INBOX", &[("", M1), ("", M2)]).await;
    assert_eq!(appenduid(&t).1, vec![2, 3]);
    let s = TestServer::start_with(|c| c.faults = Faults::only(Fault::ZeroLengthAccepted)).await;
    let mut c = s.alice().await;
    let (_, t) = c.append_plus("INBOX", &[("", b"")]).await;
    assert!(t.text.contains("OK"), "{t:?}");
}

#[tokio::test]
async fn own_session_gets_exists_before_the_tagged_ok() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    c.ok("SELECT INBOX").await;
    let (u, t) = c.append_plus("INBOX", &[("", M1), ("", M2)]).await;
    assert!(t.text.contains("OK"));
    let exists: Vec<&str> = u
        .iter()
        .map(|l| l.text.as_str())
        .filter(|t| t.ends_with("EXISTS"))
        .collect();
    assert_eq!(exists, vec!["* 2 EXISTS"]);
    assert!(u.iter().any(|l| l.text == "* 2 RECENT"), "{u:?}");
}

#[tokio::test]
async fn mailbox_name_as_literal_and_quoted() {
    let s = TestServer::start().await;
    let mut c = s.alice().await;
    c.ok("CREATE \"with space\"").await;
    c.send(b"x APPEND {10+}\r\nwith space {5+}\r\nhello\r\n")
        .await;
    let (_, t) = c.until_tagged("x").await;
    assert!(t.text.contains("OK [APPENDUID"), "{t:?}");
    let (_, t) = c.append_plus("\"with space\"", &[("", M1)]).await;
    assert_eq!(appenduid(&t).1, vec![2]);
}

#[tokio::test]
async fn append_before_login_is_refused_and_stream_stays_in_sync() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.send(b"x APPEND INBOX {16+}\r\ny LOGIN alice secret\r\n\r\n")
        .await;
    let (_, t) = c.until_tagged("x").await;
    assert!(
        t.text.starts_with("x BAD") || t.text.starts_with("x NO"),
        "{t:?}"
    );
    let (_, t) = c.cmd("CAPABILITY").await;
    assert!(t.text.contains("OK"));
    let (_, t) = c.cmd("SELECT INBOX").await;
    assert!(
        !t.text.contains(" OK"),
        "the literal's LOGIN must not have run: {t:?}"
    );
}

//! Every fault switch changes what `mupdated` sends, in the way its documentation says; the
//! same script against a correct server gives the correct answer. (The conformance suite's
//! mutant tests rely on this.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use mupdate_common::*;
use murder_server::mupdate::Fault;

/// Run the script that exposes `fault` and return what the client saw.
async fn script(fault: Fault, s: &TestServer) -> Vec<String> {
    let mut c = Client::admin(s.addr).await;
    let act = |n: &str| format!("ACTIVATE \"{n}\" \"h!p\" \"a\"");
    match fault {
        Fault::ReserveAlwaysOk => {
            c.cmd("R", "RESERVE \"x\" \"h\"").await;
            c.cmd("R", "RESERVE \"x\" \"h\"").await
        }
        Fault::DeleteMissingOk => c.cmd("E", "DELETE \"nope\"").await,
        Fault::DeactivateMissingOk => c.cmd("D", "DEACTIVATE \"nope\" \"h\"").await,
        Fault::NoNoopBarrier
        | Fault::CoalesceStream
        | Fault::DropStreamDeletes
        | Fault::ReserveNotStreamed => {
            let mut sub = Client::admin(s.addr).await;
            sub.cmd("U", "UPDATE").await;
            c.cmd("R", "RESERVE \"x\" \"h\"").await;
            c.cmd("E", "DELETE \"x\"").await;
            sub.cmd("N", "NOOP").await
        }
        Fault::UntaggedData => {
            c.cmd("A", &act("x")).await;
            c.cmd("F", "FIND \"x\"").await
        }
        Fault::LogoutOk => c.cmd("L", "LOGOUT").await,
        Fault::CommandsBeforeLogin => Client::connect(s.addr).await.cmd("N", "NOOP").await,
        Fault::StarttlsExecutesPipelined => {
            let mut p = Client::connect(s.addr).await;
            p.send("S STARTTLS\r\nN NOOP\r\n").await;
            let first = p.line().await;
            // The correct server sends nothing more in plaintext; the faulty one answers N.
            p.send("\x16\x03\x01\x00\x00").await;
            let mut out = vec![first];
            if let Some(l) = p.raw_line().await {
                out.push(String::from_utf8_lossy(&l).into_owned());
            }
            out
        }
        Fault::SyncLiteralNoContinuation => {
            // Send the literal without waiting: the first line back tells whether the server
            // asked for it.
            c.send("X FIND {1}\r\na\r\n").await;
            vec![c.line().await]
        }
        Fault::ListIgnoresPrefix => {
            c.cmd("A", &act("x")).await;
            c.cmd("L", "LIST \"zz\"").await
        }
        Fault::FindReturnsReserveAsMailbox => {
            c.cmd("R", "RESERVE \"x\" \"h\"").await;
            c.cmd("F", "FIND \"x\"").await
        }
        Fault::UpdateRefused => c.cmd("U", "UPDATE").await,
        Fault::NamesCaseInsensitive => {
            c.cmd("R", "RESERVE \"Ab\" \"h\"").await;
            c.cmd("F", "FIND \"Ab\"").await
        }
        Fault::DeactivateDeletes => {
            c.cmd("A", &act("x")).await;
            c.cmd("D", "DEACTIVATE \"x\" \"h\"").await;
            c.cmd("F", "FIND \"x\"").await
        }
        Fault::ActivateKeepsAcl => {
            c.cmd("A", &act("x")).await;
            c.cmd("B", "ACTIVATE \"x\" \"h!p\" \"b\"").await;
            c.cmd("F", "FIND \"x\"").await
        }
        Fault::UpdateDumpOmitsReserved => {
            c.cmd("R", "RESERVE \"x\" \"h\"").await;
            Client::admin(s.addr).await.cmd("U", "UPDATE").await
        }
        Fault::StreamTagFollowsNoop | Fault::StreamDropsAcl => {
            let mut sub = Client::admin(s.addr).await;
            sub.cmd("U", "UPDATE").await;
            sub.cmd("N", "NOOP").await;
            c.cmd("A", &act("x")).await;
            sub.cmd("M", "NOOP").await
        }
        Fault::TagTruncated => {
            c.send("Abcdefghijkl NOOP\r\n").await;
            vec![c.line().await]
        }
        Fault::AcceptAfterFailedAuth => {
            let mut p = Client::connect(s.addr).await;
            // PLAIN "\0admin\0wrong".
            p.cmd("A", "AUTHENTICATE \"PLAIN\" \"AGFkbWluAHdyb25n\"")
                .await;
            p.cmd("N", "NOOP").await
        }
        Fault::StarttlsAfterAuth => c.cmd("S", "STARTTLS").await,
        Fault::PlainAuthzidUnchecked => {
            // bob's password, acting as admin (PLAIN "admin\0bob\0bobpw").
            let mut p = Client::connect(s.addr).await;
            p.cmd("A", "AUTHENTICATE \"PLAIN\" \"YWRtaW4AYm9iAGJvYnB3\"")
                .await;
            p.cmd("R", "RESERVE \"x\" \"h\"").await
        }
        Fault::UpdateOkBeforeDump => {
            c.cmd("R", "RESERVE \"x\" \"h\"").await;
            let mut sub = Client::admin(s.addr).await;
            sub.send("U UPDATE\r\n").await;
            vec![sub.line().await, sub.line().await]
        }
        Fault::ListPrefixSubstring => {
            c.cmd("A", "ACTIVATE \"x\" \"zh!p\" \"a\"").await;
            c.cmd("L", "LIST \"h\"").await
        }
        Fault::ReserveRace => {
            // Two RESERVEs of one free name on two connections at once (the racy check waits
            // 100 ms before committing), then a sequential one, which stays correct.
            let mut c2 = Client::admin(s.addr).await;
            c.send("R RESERVE \"x\" \"h1\"\r\n").await;
            c2.send("R RESERVE \"x\" \"h2\"\r\n").await;
            let mut out = vec![c.line().await, c2.line().await];
            out.sort();
            out.extend(c.cmd("S", "RESERVE \"x\" \"h3\"").await);
            out
        }
    }
}

#[tokio::test]
async fn each_fault_shows() {
    let pki = murder_server::net::TestPki::new(&["localhost"]).unwrap();
    for fault in Fault::ALL {
        let good = server_with(|c| c.tls = Some(pki.server_config())).await;
        let bad = server_with(|c| {
            c.tls = Some(pki.server_config());
            c.faults = [fault].into_iter().collect();
        })
        .await;
        let (g, b) = (script(fault, &good).await, script(fault, &bad).await);
        let ok =
            |v: &[String], want: &[&str]| v.iter().map(String::as_str).collect::<Vec<_>>() == want;
        let (good_want, bad_want): (&[&str], &[&str]) = match fault {
            Fault::ReserveAlwaysOk => (&["R NO \"mailbox already exists\""], &["R OK \"done\""]),
            Fault::DeleteMissingOk => (&["E NO \"mailbox does not exist\""], &["E OK \"done\""]),
            Fault::DeactivateMissingOk => {
                (&["D NO \"mailbox does not exist\""], &["D OK \"done\""])
            }
            Fault::NoNoopBarrier => (
                &[
                    "U RESERVE \"x\" \"h\"",
                    "U DELETE \"x\"",
                    "N OK \"NOOP complete\"",
                ],
                &["N OK \"NOOP complete\""],
            ),
            Fault::CoalesceStream => (
                &[
                    "U RESERVE \"x\" \"h\"",
                    "U DELETE \"x\"",
                    "N OK \"NOOP complete\"",
                ],
                &["U DELETE \"x\"", "N OK \"NOOP complete\""],
            ),
            Fault::DropStreamDeletes => (
                &[
                    "U RESERVE \"x\" \"h\"",
                    "U DELETE \"x\"",
                    "N OK \"NOOP complete\"",
                ],
                &["U RESERVE \"x\" \"h\"", "N OK \"NOOP complete\""],
            ),
            Fault::UntaggedData => (
                &["F MAILBOX \"x\" \"h!p\" \"a\"", "F OK \"Search completed\""],
                &["* MAILBOX \"x\" \"h!p\" \"a\"", "F OK \"Search completed\""],
            ),
            Fault::LogoutOk => (&["L BYE \"User logged out\""], &["L OK \"bye-bye\""]),
            Fault::CommandsBeforeLogin => (
                &["N NO \"Please login first\""],
                &["N OK \"NOOP complete\""],
            ),
            Fault::StarttlsExecutesPipelined => (
                &["S OK \"Begin TLS negotiation now\""],
                &[
                    "S OK \"Begin TLS negotiation now\"",
                    "N NO \"Please login first\"",
                ],
            ),
            Fault::SyncLiteralNoContinuation => (&["+ go ahead"], &["X OK \"Search completed\""]),
            Fault::ListIgnoresPrefix => (
                &["L OK \"List complete\""],
                &["L MAILBOX \"x\" \"h!p\" \"a\"", "L OK \"List complete\""],
            ),
            Fault::FindReturnsReserveAsMailbox => (
                &["F RESERVE \"x\" \"h\"", "F OK \"Search completed\""],
                &["F MAILBOX \"x\" \"h\" \"\"", "F OK \"Search completed\""],
            ),
            Fault::UpdateRefused => (&["U OK \"streaming starts\""], &["U NO \"UPDATE refused\""]),
            Fault::NamesCaseInsensitive => (
                &["F RESERVE \"Ab\" \"h\"", "F OK \"Search completed\""],
                &["F RESERVE \"ab\" \"h\"", "F OK \"Search completed\""],
            ),
            Fault::DeactivateDeletes => (
                &["F RESERVE \"x\" \"h\"", "F OK \"Search completed\""],
                &["F OK \"Search completed\""],
            ),
            Fault::ActivateKeepsAcl => (
                &["F MAILBOX \"x\" \"h!p\" \"b\"", "F OK \"Search completed\""],
                &["F MAILBOX \"x\" \"h!p\" \"a\"", "F OK \"Search completed\""],
            ),
            Fault::UpdateDumpOmitsReserved => (
                &["U RESERVE \"x\" \"h\"", "U OK \"streaming starts\""],
                &["U OK \"streaming starts\""],
            ),
            Fault::StreamTagFollowsNoop => (
                &["U MAILBOX \"x\" \"h!p\" \"a\"", "M OK \"NOOP complete\""],
                &["N MAILBOX \"x\" \"h!p\" \"a\"", "M OK \"NOOP complete\""],
            ),
            Fault::StreamDropsAcl => (
                &["U MAILBOX \"x\" \"h!p\" \"a\"", "M OK \"NOOP complete\""],
                &["U MAILBOX \"x\" \"h!p\" \"\"", "M OK \"NOOP complete\""],
            ),
            Fault::TagTruncated => (
                &["Abcdefghijkl OK \"NOOP complete\""],
                &["Abcdefghij OK \"NOOP complete\""],
            ),
            Fault::AcceptAfterFailedAuth => (
                &["N NO \"Please login first\""],
                &["N OK \"NOOP complete\""],
            ),
            Fault::PlainAuthzidUnchecked => (&["R NO \"Please login first\""], &["R OK \"done\""]),
            Fault::ReserveNotStreamed => (
                &[
                    "U RESERVE \"x\" \"h\"",
                    "U DELETE \"x\"",
                    "N OK \"NOOP complete\"",
                ],
                &["U DELETE \"x\"", "N OK \"NOOP complete\""],
            ),
            Fault::UpdateOkBeforeDump => (
                &["U RESERVE \"x\" \"h\"", "U OK \"streaming starts\""],
                &["U OK \"streaming starts\"", "U RESERVE \"x\" \"h\""],
            ),
            Fault::ListPrefixSubstring => (
                &["L OK \"List complete\""],
                &["L MAILBOX \"x\" \"zh!p\" \"a\"", "L OK \"List complete\""],
            ),
            Fault::StarttlsAfterAuth => (
                &["S NO \"STARTTLS not allowed after authentication\""],
                &["S OK \"Begin TLS negotiation now\""],
            ),
            Fault::ReserveRace => (
                &[
                    "R NO \"mailbox already exists\"",
                    "R OK \"done\"",
                    "S NO \"mailbox already exists\"",
                ],
                &[
                    "R OK \"done\"",
                    "R OK \"done\"",
                    "S NO \"mailbox already exists\"",
                ],
            ),
        };
        assert!(ok(&g, good_want), "{fault}: correct server {g:?}");
        assert!(ok(&b, bad_want), "{fault}: faulty server {b:?}");
        good.handle.shutdown().await;
        bad.handle.shutdown().await;
    }
}

//! `mupdated` over TCP: banner, every command and error, AUTHENTICATE forms, literals,
//! pipelining, UPDATE streaming and the NOOP barrier (RFC 3656; cases of the spec note, 8).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use mupdate_common::*;

fn activate(name: &str, loc: &str, acl: &str) -> String {
    format!("ACTIVATE \"{name}\" \"{loc}\" \"{acl}\"")
}

#[tokio::test]
async fn banner_has_auth_and_ok_mupdate_master() {
    let s = server().await;
    let c = Client::connect(s.addr).await;
    assert_eq!(c.banner[0], "* AUTH PLAIN LOGIN");
    assert_eq!(c.banner.len(), 2, "no STARTTLS without TLS: {:?}", c.banner);
    let last = &c.banner[1];
    assert!(
        last.starts_with("* OK MUPDATE \"mupdate.test\" \"murder\" \""),
        "{last}"
    );
    assert!(last.ends_with(" \"(master)\""), "{last}");
}

#[tokio::test]
async fn unauthenticated_commands_get_no_and_change_nothing() {
    let s = server().await;
    let mut c = Client::connect(s.addr).await;
    for (tag, cmd) in [
        ("F1", "FIND \"x\""),
        ("L1", "LIST"),
        ("U1", "UPDATE"),
        ("N1", "NOOP"),
        ("A1", "ACTIVATE \"x\" \"h!p\" \"\""),
        ("R1", "RESERVE \"x\" \"h!p\""),
        ("D1", "DEACTIVATE \"x\" \"h!p\""),
        ("E1", "DELETE \"x\""),
    ] {
        let r = c.cmd(tag, cmd).await;
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].starts_with(&format!("{tag} NO \"")), "{r:?}");
    }
    // A synchronizing literal before login gets NO and no "+ go ahead".
    c.send("X ACTIVATE {3}\r\n").await;
    assert!(c.line().await.starts_with("X NO "));
    let mut a = Client::admin(s.addr).await;
    assert_eq!(
        a.cmd("F", "FIND \"x\"").await,
        vec!["F OK \"Search completed\""]
    );
    c.send("L1 LOGOUT\r\n").await;
    assert_eq!(c.line().await, "L1 BYE \"User logged out\"");
    assert!(c.closed().await);
}

#[tokio::test]
async fn authenticate_forms() {
    let s = server().await;
    let ir = plain("admin", "secret");
    // Initial response as a quoted string, mechanism as a string.
    let mut c = Client::connect(s.addr).await;
    assert_eq!(
        c.cmd("A", &format!("AUTHENTICATE \"PLAIN\" \"{ir}\""))
            .await,
        vec!["A OK \"Authenticated\""]
    );
    // Second AUTHENTICATE: NO, still authenticated.
    let r = c
        .cmd("B", &format!("AUTHENTICATE \"PLAIN\" \"{ir}\""))
        .await;
    assert!(r[0].starts_with("B NO "), "{r:?}");
    assert_eq!(c.cmd("N", "NOOP").await, vec!["N OK \"NOOP complete\""]);
    // Initial response as a non-synchronizing literal, mechanism as an atom.
    let mut c = Client::connect(s.addr).await;
    c.send(format!(
        "A AUTHENTICATE PLAIN {{{}+}}\r\n{ir}\r\n",
        ir.len()
    ))
    .await;
    assert_eq!(c.line().await, "A OK \"Authenticated\"");
    // Synchronizing literal: "+ go ahead" first.
    let mut c = Client::connect(s.addr).await;
    c.send(format!("A AUTHENTICATE \"PLAIN\" {{{}}}\r\n", ir.len()))
        .await;
    assert_eq!(c.line().await, "+ go ahead");
    c.send(format!("{ir}\r\n")).await;
    assert_eq!(c.line().await, "A OK \"Authenticated\"");
    // No initial response: an empty challenge line, then the response as a bare base64 line.
    let mut c = Client::connect(s.addr).await;
    c.send("A AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(c.line().await, "");
    c.send(format!("{ir}\r\n")).await;
    assert_eq!(c.line().await, "A OK \"Authenticated\"");
    // Cancel.
    let mut c = Client::connect(s.addr).await;
    c.send("A AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(c.line().await, "");
    c.send("*\r\n").await;
    assert!(c.line().await.starts_with("A NO "));
    assert!(c.cmd("N", "NOOP").await[0].starts_with("N NO "));
    // "=" (atom or string): empty initial response; PLAIN then fails.
    for eq in ["=", "\"=\""] {
        let mut c = Client::connect(s.addr).await;
        let r = c.cmd("A", &format!("AUTHENTICATE \"PLAIN\" {eq}")).await;
        assert!(r[0].starts_with("A NO "), "{r:?}");
    }
    // Bad password: NO, still unauthenticated.
    let mut c = Client::connect(s.addr).await;
    let bad = plain("admin", "wrong");
    assert!(
        c.cmd("A", &format!("AUTHENTICATE \"PLAIN\" \"{bad}\""))
            .await[0]
            .starts_with("A NO ")
    );
    assert!(c.cmd("N", "NOOP").await[0].starts_with("N NO "));
    // Bad base64 after a challenge.
    c.send("B AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(c.line().await, "");
    c.send("\"!!\"\r\n").await;
    assert!(c.line().await.starts_with("B NO "));
    // Unknown mechanism; missing mechanism.
    assert!(c.cmd("C", "AUTHENTICATE \"NOPE\"").await[0].starts_with("C NO "));
    assert!(c.cmd("D", "AUTHENTICATE").await[0].starts_with("D BAD "));
    // LOGIN, multi-step with bare base64 lines.
    let mut c = Client::connect(s.addr).await;
    c.send("A AUTHENTICATE \"LOGIN\"\r\n").await;
    assert_eq!(c.line().await, "VXNlcm5hbWU6");
    c.send("YWRtaW4=\r\n").await;
    assert_eq!(c.line().await, "UGFzc3dvcmQ6");
    c.send("c2VjcmV0\r\n").await;
    assert_eq!(c.line().await, "A OK \"Authenticated\"");
}

#[tokio::test]
async fn plain_authzid_is_for_admins_only() {
    let s = server().await;
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut c = Client::connect(s.addr).await;
    let r = c
        .cmd(
            "A",
            &format!("AUTHENTICATE \"PLAIN\" \"{}\"", b64("admin\0bob\0bobpw")),
        )
        .await;
    assert!(r[0].starts_with("A NO "), "bob may not act as admin: {r:?}");
    let r = c
        .cmd(
            "B",
            &format!("AUTHENTICATE \"PLAIN\" \"{}\"", b64("bob\0admin\0secret")),
        )
        .await;
    assert_eq!(r, vec!["B OK \"Authenticated\""]);
    // Acting as bob, the admin has bob's (read-only) rights.
    assert!(c.cmd("D", "DELETE \"x\"").await[0].starts_with("D NO \"permission denied\""));
}

#[tokio::test]
async fn non_admins_read_but_may_not_write() {
    let s = server().await;
    let mut admin = Client::admin(s.addr).await;
    admin.cmd("A", &activate("user.x", "h!p", "acl")).await;
    let mut bob = Client::login(s.addr, "bob", "bobpw").await;
    for (t, cmd) in [
        ("A", "ACTIVATE \"y\" \"h\" \"a\""),
        ("R", "RESERVE \"y\" \"h\""),
        ("D", "DEACTIVATE \"user.x\" \"h\""),
        ("E", "DELETE \"user.x\""),
    ] {
        assert_eq!(
            bob.cmd(t, cmd).await,
            vec![format!("{t} NO \"permission denied\"")]
        );
    }
    // No "+ go ahead" for a refused write either.
    bob.send("X DELETE {6}\r\n").await;
    assert_eq!(bob.line().await, "X NO \"permission denied\"");
    assert_eq!(
        bob.cmd("F", "FIND \"user.x\"").await,
        vec![
            "F MAILBOX \"user.x\" \"h!p\" \"acl\"",
            "F OK \"Search completed\""
        ]
    );
    assert_eq!(bob.cmd("L", "LIST").await.len(), 2);
}

#[tokio::test]
async fn database_commands_follow_the_oracle() {
    let s = server().await;
    let mut c = Client::admin(s.addr).await;
    let ok = |t: &str| vec![format!("{t} OK \"done\"")];
    assert_eq!(
        c.cmd("A1", &activate("user.t1", "h1!p", "t1\\\\x")).await,
        ok("A1")
    );
    assert_eq!(
        c.cmd("F1", "FIND \"user.t1\"").await,
        vec![
            "F1 MAILBOX \"user.t1\" \"h1!p\" \"t1\\\\x\"",
            "F1 OK \"Search completed\""
        ]
    );
    // Overwrite.
    assert_eq!(
        c.cmd("A2", &activate("user.t1", "h2!q", "new")).await,
        ok("A2")
    );
    assert_eq!(
        c.cmd("F2", "FIND \"user.t1\"").await[0],
        "F2 MAILBOX \"user.t1\" \"h2!q\" \"new\""
    );
    // RESERVE: new OK; existing (any location) NO.
    assert_eq!(c.cmd("R1", "RESERVE \"user.t2\" \"h2!p\"").await, ok("R1"));
    assert_eq!(
        c.cmd("R2", "RESERVE \"user.t2\" \"other\"").await,
        vec!["R2 NO \"mailbox already exists\""]
    );
    assert_eq!(
        c.cmd("R3", "RESERVE \"user.t1\" \"h2!q\"").await,
        vec!["R3 NO \"mailbox already exists\""]
    );
    assert_eq!(
        c.cmd("F3", "FIND \"user.t2\"").await[0],
        "F3 RESERVE \"user.t2\" \"h2!p\""
    );
    // DEACTIVATE.
    assert_eq!(
        c.cmd("D1", "DEACTIVATE \"nope\" \"h\"").await,
        vec!["D1 NO \"mailbox does not exist\""]
    );
    assert_eq!(
        c.cmd("D2", "DEACTIVATE \"user.t2\" \"h\"").await,
        vec!["D2 NO \"mailbox not currently active\""]
    );
    assert_eq!(
        c.cmd("D3", "DEACTIVATE \"user.t1\" \"h3!p\"").await,
        ok("D3")
    );
    assert_eq!(
        c.cmd("F4", "FIND \"user.t1\"").await[0],
        "F4 RESERVE \"user.t1\" \"h3!p\""
    );
    // LIST with prefixes.
    assert_eq!(
        c.cmd("A3", &activate("user.t3", "h1!p", "")).await,
        ok("A3")
    );
    assert_eq!(c.cmd("L1", "LIST").await.len(), 4);
    assert_eq!(
        c.cmd("L2", "LIST \"h1!\"").await,
        vec![
            "L2 MAILBOX \"user.t3\" \"h1!p\" \"\"",
            "L2 OK \"List complete\""
        ]
    );
    assert_eq!(c.cmd("L3", "LIST \"h\"").await.len(), 4);
    assert_eq!(c.cmd("L4", "LIST \"\"").await.len(), 4);
    assert_eq!(
        c.cmd("L5", "LIST \"zz\"").await,
        vec!["L5 OK \"List complete\""]
    );
    // DELETE.
    assert_eq!(c.cmd("E1", "DELETE \"user.t2\"").await, ok("E1"));
    assert_eq!(
        c.cmd("E2", "DELETE \"user.t2\"").await,
        vec!["E2 NO \"mailbox does not exist\""]
    );
    assert_eq!(
        c.cmd("F5", "FIND \"user.t2\"").await,
        vec!["F5 OK \"Search completed\""]
    );
    // Empty name: refused, LIST unchanged.
    assert_eq!(
        c.cmd("A4", "ACTIVATE \"\" \"h!p\" \"\"").await,
        vec!["A4 NO \"invalid mailbox name\""]
    );
    assert_eq!(
        c.cmd("F6", "FIND {0+}\r\n").await,
        vec!["F6 OK \"Search completed\""]
    );
}

#[tokio::test]
async fn syntax_errors_are_bad_and_the_session_goes_on() {
    let s = server().await;
    let mut c = Client::admin(s.addr).await;
    for (tag, line) in [
        ("X", "X FIND"),
        ("X", "X RESERVE \"a\""),
        ("X", "X ACTIVATE \"a\" \"b\""),
        ("X", "X NOOP extra"),
        ("X", "X FIND \"a\" \"b\""),
        ("X", "X ACTIVATE \"a\" \"b\" \"c\" \"d\""),
        ("X", "X NOOP "),
        ("X", "X FIND user.foo"),
        ("X", "X CAPABILITY"),
        ("X", "X FIND \"caf\u{e9}\""),
        ("X", "X FIND \"a\\qb\""),
        ("X", "X FIND {-1}"),
        ("X", "X UPDATE \"h\""),
        ("X", "X"),
        ("*", ""),
        ("*", " NOOP"),
    ] {
        c.send(format!("{line}\r\n")).await;
        let r = c.line().await;
        assert!(r.starts_with(&format!("{tag} BAD \"")), "{line:?} -> {r:?}");
    }
    // NUL in a quoted string and in a literal.
    c.send(b"X FIND \"a\0b\"\r\n").await;
    assert!(c.line().await.starts_with("X BAD "));
    c.send(b"Y FIND {3+}\r\na\0b\r\n").await;
    assert!(c.line().await.starts_with("Y BAD "));
    // Bare LF: BAD, consistently.
    c.send("N NOOP\n").await;
    assert!(c.line().await.starts_with("N BAD "));
    // Lower case commands; tag echoed byte-exact.
    assert_eq!(c.cmd("n1", "noop").await, vec!["n1 OK \"NOOP complete\""]);
    assert_eq!(
        c.cmd("f1", "fInD \"x\"").await,
        vec!["f1 OK \"Search completed\""]
    );
    // A 15-character tag is fine; a 200-character one is over the 64-octet limit.
    let t15 = "T".repeat(15);
    assert_eq!(
        c.cmd(&t15, "NOOP").await,
        vec![format!("{t15} OK \"NOOP complete\"")]
    );
    c.send(format!("{} NOOP\r\n", "T".repeat(200))).await;
    assert!(c.line().await.starts_with("* BAD "));
    assert_eq!(c.cmd("Z", "NOOP").await, vec!["Z OK \"NOOP complete\""]);
}

#[tokio::test]
async fn literals_and_pipelining() {
    let s = server().await;
    let mut c = Client::admin(s.addr).await;
    // Literal with CRLF inside: names may not hold CR/LF (the oracle refuses them), opaque
    // ACLs may, and come back as a literal.
    c.send("X ACTIVATE {7+}\r\na\r\nb.cd \"h!p\" \"\"\r\n")
        .await;
    assert_eq!(c.line().await, "X NO \"invalid mailbox name\"");
    c.send("X ACTIVATE \"crlf\" \"h!p\" {4+}\r\na\r\nb\r\n")
        .await;
    assert_eq!(c.line().await, "X OK \"done\"");
    c.send("F FIND {4+}\r\ncrlf\r\n").await;
    assert_eq!(
        String::from_utf8(c.response().await).unwrap(),
        "F MAILBOX \"crlf\" \"h!p\" {4+}\r\na\r\nb"
    );
    assert_eq!(c.line().await, "F OK \"Search completed\"");
    // Every synchronizing literal gets its own "+ go ahead".
    c.send("Y ACTIVATE {3}\r\n").await;
    assert_eq!(c.line().await, "+ go ahead");
    c.send("abc {3}\r\n").await;
    assert_eq!(c.line().await, "+ go ahead");
    c.send("h!p {0}\r\n").await;
    assert_eq!(c.line().await, "+ go ahead");
    c.send("\r\n").await;
    assert_eq!(c.line().await, "Y OK \"done\"");
    // Quoted escapes round-trip.
    assert_eq!(
        c.cmd("Q", "ACTIVATE \"q\\\"u\\\\x\" \"h!p\" \"\"").await,
        vec!["Q OK \"done\""]
    );
    assert_eq!(
        c.cmd("G", "FIND \"q\\\"u\\\\x\"").await[0],
        "G MAILBOX \"q\\\"u\\\\x\" \"h!p\" \"\""
    );
    // 8-bit names work as literals.
    c.send("E ACTIVATE {5+}\r\ncaf\u{e9} \"h!p\" \"\"\r\n")
        .await;
    assert_eq!(c.line().await, "E OK \"done\"");
    // A 4096-octet literal name (RFC minimum) and a 1024-octet line.
    let big = "n".repeat(4096);
    c.send(format!("B ACTIVATE {{4096+}}\r\n{big} \"h!p\" \"\"\r\n"))
        .await;
    assert_eq!(c.line().await, "B OK \"done\"");
    let mut line = String::from("K FIND \"");
    line.push_str(&"k".repeat(1024 - line.len() - 3));
    line.push_str("\"\r\n");
    assert_eq!(line.len(), 1024);
    c.send(&line).await;
    assert_eq!(c.line().await, "K OK \"Search completed\"");
    // Pipelining: answered in order.
    c.send("X NOOP\r\nY NOOP\r\nZ FIND \"abc\"\r\nW LIST \"zzz\"\r\n")
        .await;
    assert_eq!(c.line().await, "X OK \"NOOP complete\"");
    assert_eq!(c.line().await, "Y OK \"NOOP complete\"");
    assert_eq!(c.line().await, "Z MAILBOX \"abc\" \"h!p\" \"\"");
    assert_eq!(c.line().await, "Z OK \"Search completed\"");
    assert_eq!(c.line().await, "W OK \"List complete\"");
}

#[tokio::test]
async fn update_streams_every_change_with_its_tag() {
    let s = server().await;
    let mut w = Client::admin(s.addr).await;
    w.cmd("A", &activate("user.a", "h!p", "acl")).await;
    w.cmd("R", "RESERVE \"user.b\" \"h2!p\"").await;
    let mut u = Client::admin(s.addr).await;
    assert_eq!(
        u.cmd("U1", "UPDATE").await,
        vec![
            "U1 MAILBOX \"user.a\" \"h!p\" \"acl\"",
            "U1 RESERVE \"user.b\" \"h2!p\"",
            "U1 OK \"streaming starts\""
        ]
    );
    // Another client's changes arrive, every intermediate state, tagged U1.
    w.cmd("R", "RESERVE \"user.c\" \"h!p\"").await;
    w.cmd("A", &activate("user.c", "h!p", "c")).await;
    w.cmd("D", "DELETE \"user.c\"").await;
    w.cmd("E", "DEACTIVATE \"user.a\" \"h9!p\"").await;
    assert_eq!(u.line().await, "U1 RESERVE \"user.c\" \"h!p\"");
    assert_eq!(u.line().await, "U1 MAILBOX \"user.c\" \"h!p\" \"c\"");
    assert_eq!(u.line().await, "U1 DELETE \"user.c\"");
    assert_eq!(u.line().await, "U1 RESERVE \"user.a\" \"h9!p\"");
    // Only NOOP and LOGOUT while streaming; a second UPDATE is refused, the stream goes on.
    for (t, cmd) in [
        ("F", "FIND \"x\""),
        ("L", "LIST"),
        ("A", "ACTIVATE \"x\" \"h\" \"\""),
        ("R", "RESERVE \"x\" \"h\""),
        ("D", "DEACTIVATE \"x\" \"h\""),
        ("E", "DELETE \"x\""),
        ("U2", "UPDATE"),
        ("S", "AUTHENTICATE \"PLAIN\""),
    ] {
        let r = u.cmd(t, cmd).await;
        assert!(r[0].starts_with(&format!("{t} NO ")), "{r:?}");
    }
    // NOOP barrier: a change committed before the NOOP is on the wire before its OK.
    w.cmd("A", &activate("user.d", "h!p", "d")).await;
    assert_eq!(
        u.cmd("N1", "NOOP").await,
        vec![
            "U1 MAILBOX \"user.d\" \"h!p\" \"d\"",
            "N1 OK \"NOOP complete\""
        ]
    );
    u.send("L LOGOUT\r\n").await;
    assert_eq!(u.line().await, "L BYE \"User logged out\"");
    assert!(u.closed().await);
    // The writer is unaffected; a new UPDATE sees everything.
    let mut u2 = Client::admin(s.addr).await;
    assert_eq!(u2.cmd("U", "UPDATE").await.len(), 4);
}

#[tokio::test]
async fn noop_barrier_under_concurrent_writes() {
    let s = server().await;
    let mut u = Client::admin(s.addr).await;
    u.cmd("U", "UPDATE").await;
    let addr = s.addr;
    let writer = tokio::spawn(async move {
        let mut w = Client::admin(addr).await;
        for i in 0..50 {
            let r = w
                .cmd("A", &activate(&format!("user.n{i}"), "h!p", ""))
                .await;
            assert_eq!(r, vec!["A OK \"done\""]);
        }
    });
    writer.await.unwrap();
    let r = u.cmd("N", "NOOP").await;
    assert_eq!(r.len(), 51, "every committed change precedes the OK: {r:?}");
    for (i, line) in r.iter().take(50).enumerate() {
        assert_eq!(line, &format!("U MAILBOX \"user.n{i}\" \"h!p\" \"\""));
    }
}

#[tokio::test]
async fn connection_limit_refuses_with_bye() {
    let s = server_with(|c| c.limits.max_connections = 2).await;
    let _a = Client::connect(s.addr).await;
    let _b = Client::connect(s.addr).await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_to_end(&mut c, &mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"* BYE \"too many connections\"\r\n");
    drop(_a);
    // A slot frees up once a connection closes.
    let mut ok = false;
    for _ in 0..200 {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let mut first = [0u8; 6];
        tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_exact(&mut c, &mut first),
        )
        .await
        .unwrap()
        .unwrap();
        if &first == b"* AUTH" {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(ok);
}

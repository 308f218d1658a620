//! `conformance verify-copy` against two in-process reference imapd instances: an exact copy of
//! 50 messages (varied sizes, 8-bit bytes, flags, internal dates) passes, and a one-byte change,
//! a changed flag, a changed internal date and a missing message are each reported as the first
//! difference, through the library and through the binary's exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use conformance::bench::client::{Client, Status};
use conformance::verify::{Compare, Difference, MailboxRef, verify_copy};
use murder_server::auth::UserDb;

const USER: &str = "test";
const PASSWORD: &str = "pw-verify";
const N: u32 = 50;

struct Msg {
    flags: &'static str,
    date: String,
    body: Vec<u8>,
}

fn messages() -> Vec<Msg> {
    (1..=N)
        .map(|i| {
            let mut body = format!(
                "From: copier <c@example.invalid>\r\nTo: test@example.invalid\r\n\
                 Subject: message {i}\r\nMessage-ID: <{i}.verify@example.invalid>\r\n\r\n"
            )
            .into_bytes();
            for line in 0..(i * 7 % 23) {
                body.extend_from_slice(format!("line {line} of message {i}: ").as_bytes());
                body.extend_from_slice(&[0xc3, 0xa9, b' ', 0xff, b'\t', b'x']);
                body.extend_from_slice(b"\r\n");
            }
            let flags = match i % 4 {
                0 => "",
                1 => "\\Seen",
                2 => "\\Seen \\Flagged",
                _ => "\\Answered $Label1",
            };
            let date = format!("{:02}-Oct-2026 {:02}:{:02}:07 +0200", i % 28 + 1, i % 24, i);
            Msg { flags, date, body }
        })
        .collect()
}

async fn imapd() -> (murder_server::imap::ServerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let users = Arc::new(UserDb::parse(&format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap());
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let cfg = murder_server::imap::Config::new(any, dir.path().join("imap"), users);
    (murder_server::imap::start(cfg).await.unwrap(), dir)
}

/// CREATE `mailbox` and MULTIAPPEND `msgs` to it in one command (LITERAL+).
async fn fill(addr: &str, mailbox: &str, msgs: &[Msg]) {
    let mut c = Client::connect(addr, Duration::from_secs(30))
        .await
        .unwrap();
    c.imap_login(USER, PASSWORD).await.unwrap();
    let (s, _) = c.command(&format!("CREATE \"{mailbox}\"")).await.unwrap();
    assert_eq!(s, Status::Ok);
    let tag = c.next_tag();
    let mut buf = format!("{tag} APPEND \"{mailbox}\"").into_bytes();
    for m in msgs {
        buf.extend_from_slice(
            format!(" ({}) \"{}\" {{{}+}}\r\n", m.flags, m.date, m.body.len()).as_bytes(),
        );
        buf.extend_from_slice(&m.body);
    }
    buf.extend_from_slice(b"\r\n");
    c.send(&buf).await.unwrap();
    let (s, lines) = c.wait(&tag).await.unwrap();
    assert_eq!(s, Status::Ok, "{lines:?}");
}

fn side(addr: &str, mailbox: &str) -> MailboxRef {
    MailboxRef {
        addr: addr.to_string(),
        user: USER.into(),
        password: PASSWORD.into(),
        mailbox: mailbox.into(),
    }
}

fn all(batch: u32) -> Compare {
    Compare {
        flags: true,
        internaldate: true,
        batch,
        timeout: Duration::from_secs(30),
    }
}

fn run_binary(src: &str, dst: &str, mailbox: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_conformance"))
        .args(["verify-copy", "--source", src, "--source-user", USER])
        .args(["--source-password", PASSWORD, "--source-mailbox", "src"])
        .args(["--target", dst, "--user", USER, "--password", PASSWORD])
        .args(["--target-mailbox", mailbox, "--min-messages", "50"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_copies_pass_and_the_first_difference_is_reported() {
    let (a, _da) = imapd().await;
    let (b, _db) = imapd().await;
    let (a_addr, b_addr) = (a.local_addr().to_string(), b.local_addr().to_string());
    let msgs = messages();
    fill(&a_addr, "src", &msgs).await;
    // Exact copies: on the other server, and in a second mailbox of the same server.
    fill(&b_addr, "copy", &msgs).await;
    fill(&a_addr, "copy-here", &msgs).await;
    // One byte changed in message 37 (inside its body, at a known offset).
    let mut one_byte = messages();
    let at = one_byte[36].body.len() - 5;
    one_byte[36].body[at] ^= 0x01;
    fill(&b_addr, "one-byte", &one_byte).await;
    // Same bytes, another flag on message 6.
    let mut flags = messages();
    flags[5].flags = "\\Seen \\Deleted";
    fill(&b_addr, "flags", &flags).await;
    // Same bytes and flags, message 9 a second later.
    let mut date = messages();
    date[8].date = date[8].date.replace(":07 ", ":08 ");
    fill(&b_addr, "date", &date).await;
    // The same instant written in another zone is no difference.
    let mut zone = messages();
    for m in &mut zone {
        let hour: u32 = m.date[12..14].parse().unwrap();
        if hour >= 2 {
            m.date = format!("{}{:02}{} +0000", &m.date[..12], hour - 2, &m.date[14..20]);
        }
    }
    fill(&b_addr, "zone", &zone).await;
    // One message missing at the end.
    fill(&b_addr, "short", &messages()[..49]).await;

    for (addr, mailbox, batch) in [
        (&b_addr, "copy", 100),
        (&a_addr, "copy-here", 7),
        (&b_addr, "zone", 1),
    ] {
        let r = verify_copy(&side(&a_addr, "src"), &side(addr, mailbox), all(batch))
            .await
            .unwrap();
        assert_eq!(r.difference, None, "{mailbox}");
        assert_eq!(r.messages, N);
        let total: usize = msgs.iter().map(|m| m.body.len()).sum();
        assert_eq!(r.bytes, total as u64);
    }

    let r = verify_copy(&side(&a_addr, "src"), &side(&b_addr, "one-byte"), all(10))
        .await
        .unwrap();
    match r.difference.unwrap() {
        Difference::Body {
            seq,
            offset,
            sizes,
            source_context,
            target_context,
            ..
        } => {
            assert_eq!(seq, 37);
            assert_eq!(offset, at);
            assert_eq!(sizes, (msgs[36].body.len(), msgs[36].body.len()));
            assert_ne!(source_context, target_context);
        }
        d => panic!("expected a body difference, got {d:?}"),
    }

    let r = verify_copy(&side(&a_addr, "src"), &side(&b_addr, "flags"), all(100))
        .await
        .unwrap();
    assert_eq!(
        r.difference,
        Some(Difference::Flags {
            seq: 6,
            source: vec!["\\FLAGGED".into(), "\\SEEN".into()],
            target: vec!["\\DELETED".into(), "\\SEEN".into()],
        })
    );
    let mut no_flags = all(100);
    no_flags.flags = false;
    let r = verify_copy(&side(&a_addr, "src"), &side(&b_addr, "flags"), no_flags)
        .await
        .unwrap();
    assert_eq!(r.difference, None);

    let r = verify_copy(&side(&a_addr, "src"), &side(&b_addr, "date"), all(100))
        .await
        .unwrap();
    assert!(
        matches!(r.difference, Some(Difference::InternalDate { seq: 9, .. })),
        "{:?}",
        r.difference
    );

    let r = verify_copy(&side(&a_addr, "src"), &side(&b_addr, "short"), all(100))
        .await
        .unwrap();
    assert_eq!(
        r.difference,
        Some(Difference::Count {
            source: 50,
            target: 49
        })
    );

    // A mailbox that does not exist is an error, not a difference.
    let e = verify_copy(&side(&a_addr, "src"), &side(&b_addr, "missing"), all(100)).await;
    assert!(e.is_err());

    // The binary: exit 0 for the copy, 1 with message and byte for the one-byte change, 2 for a
    // missing mailbox.
    let (src, dst) = (a_addr.clone(), b_addr.clone());
    let results = tokio::task::spawn_blocking(move || {
        [
            run_binary(&src, &dst, "copy"),
            run_binary(&src, &dst, "one-byte"),
            run_binary(&src, &dst, "missing"),
        ]
    })
    .await
    .unwrap();
    let [(ok, ok_text), (diff, diff_text), (missing, missing_text)] = results;
    assert_eq!(ok, 0, "{ok_text}");
    assert!(ok_text.contains("VERIFY-COPY ok"), "{ok_text}");
    assert!(ok_text.contains("messages=50"), "{ok_text}");
    assert_eq!(diff, 1, "{diff_text}");
    assert!(
        diff_text.contains(&format!(
            "message 37 (source UID 37, copy UID 37) differs at byte {at}"
        )),
        "{diff_text}"
    );
    assert_eq!(missing, 2, "{missing_text}");

    a.shutdown().await;
    b.shutdown().await;
}

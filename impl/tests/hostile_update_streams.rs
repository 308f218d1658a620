//! Many UPDATE streams on a large database keep `mupdated`'s memory bounded (issue 8): each
//! stream's initial dump must not stay in its connection's output buffer after it is sent, and
//! a dump or LIST must not copy the database per connection. Before the fix, 40 streams of a
//! 20,000-record dump held ~40 × 2 MiB. Measured as VmRSS of a real `mupdated` process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use mupdate_common::*;

/// Mailboxes in the database.
const MAILBOXES: usize = 20_000;
/// Streams held open after their dump.
const STREAMS: usize = 40;
/// ACTIVATEs per pipelined batch.
const BATCH: usize = 500;
/// Bound on the server's VmRSS with every stream open (debug build), in KiB. The database
/// itself is ~5 MiB; 40 retained dumps would add ~80 MiB.
const RSS_BOUND_KIB: u64 = 48 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_update_streams_of_twenty_thousand_mailboxes_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = spawn_quiet_mupdated(dir.path(), "127.0.0.1:0").await;
    let pid = child.id().unwrap();
    let mut w = Client::admin(addr).await;
    for start in (0..MAILBOXES).step_by(BATCH) {
        let mut batch = String::new();
        for i in start..start + BATCH {
            batch.push_str(&format!(
                "W{i} ACTIVATE \"user.m{i:06}\" \"backend1!default\" \"anyone\tlrs\t\"\r\n"
            ));
        }
        w.send(batch).await;
        for i in start..start + BATCH {
            assert_eq!(w.line().await, format!("W{i} OK \"done\""));
        }
    }
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut s = Client::admin(addr).await;
        let dump = s.cmd("U", "UPDATE").await;
        assert_eq!(dump.len(), MAILBOXES + 1);
        assert_eq!(dump.last().unwrap(), "U OK \"streaming starts\"");
        streams.push(s);
    }
    // Every stream is live: one more write reaches all of them.
    let r = w
        .cmd("X", "ACTIVATE \"user.last\" \"backend1!default\" \"\"")
        .await;
    assert_eq!(r, ["X OK \"done\""]);
    for s in &mut streams {
        assert!(s.line().await.starts_with("U MAILBOX \"user.last\""));
    }
    let rss = vm_rss_kib(pid).unwrap();
    println!("mupdated VmRSS with {STREAMS} streams of {MAILBOXES} mailboxes: {rss} KiB");
    assert!(rss < RSS_BOUND_KIB, "VmRSS {rss} KiB over the bound");
}

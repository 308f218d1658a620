//! A full or failing disk under `mupdated` (through the store's [`FaultInjector`], since a
//! read-only directory does not stop root): writes answer NO with the reason, reads and UPDATE
//! streams keep working, the server recovers when the disk does, and nothing acknowledged is
//! lost across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use mupdate_common::*;
use murder_server::mupdate::start;
use murder_server::store::FaultInjector;

fn activate(name: &str) -> String {
    format!("ACTIVATE \"{name}\" \"h!p\" \"acl\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_serves_reads_and_loses_nothing() {
    let fault = FaultInjector::new();
    let hook = fault.clone();
    let s = server_with(move |c| c.store_faults = Some(hook)).await;
    let mut w = Client::admin(s.addr).await;
    let mut sub = Client::admin(s.addr).await;
    sub.cmd("U", "UPDATE").await;
    let mut acked = Vec::new();
    for i in 0..5 {
        let name = format!("user.before{i}");
        assert_eq!(w.cmd("W", &activate(&name)).await, vec!["W OK \"done\""]);
        acked.push(name);
    }
    let before = w.cmd("L", "LIST").await;
    assert_eq!(sub.cmd("N", "NOOP").await.len(), 6);
    // The disk fills up.
    fault.set_fail_writes(true);
    for (i, cmd) in [
        activate("user.full"),
        "RESERVE \"user.full2\" \"h!p\"".to_string(),
        "DELETE \"user.before0\"".to_string(),
        "DEACTIVATE \"user.before1\" \"h!p\"".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let tag = format!("F{i}");
        let r = w.cmd(&tag, cmd).await;
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with(&format!("{tag} NO \"database error: ")),
            "{cmd}: {r:?}"
        );
        assert!(r[0].contains("space"), "the reason is given: {r:?}");
    }
    // Pipelined writes (one group commit) are refused one by one, in order.
    w.send("P1 DELETE \"user.before2\"\r\nP2 DELETE \"user.before3\"\r\nP3 NOOP\r\n")
        .await;
    assert!(w.line().await.starts_with("P1 NO "));
    assert!(w.line().await.starts_with("P2 NO "));
    assert_eq!(w.line().await, "P3 OK \"NOOP complete\"");
    assert!(fault.failures() > 0);
    // Reads keep working and show nothing of the refused writes; the stream saw nothing.
    assert_eq!(w.cmd("L", "LIST").await, before);
    let r = w.cmd("F", "FIND \"user.before0\"").await;
    assert_eq!(r[0], "F MAILBOX \"user.before0\" \"h!p\" \"acl\"");
    let mut fresh = Client::admin(s.addr).await;
    assert_eq!(fresh.cmd("L", "LIST").await, before);
    assert_eq!(sub.cmd("N", "NOOP").await, vec!["N OK \"NOOP complete\""]);
    // The disk recovers: writes work again and are streamed.
    fault.set_fail_writes(false);
    assert_eq!(
        w.cmd("W", &activate("user.after")).await,
        vec!["W OK \"done\""]
    );
    acked.push("user.after".into());
    let seen = sub.cmd("N", "NOOP").await;
    assert_eq!(
        seen,
        vec![
            "U MAILBOX \"user.after\" \"h!p\" \"acl\"".to_string(),
            "N OK \"NOOP complete\"".into()
        ]
    );
    // An fsync that reports failure after writing (unknown outcome): NO, and the server's
    // state stays equal to its file (checked across the restart below).
    fault.fail_next_sync_after_syncing();
    let r = w.cmd("X", &activate("user.unknown")).await;
    assert!(r[0].starts_with("X NO "), "{r:?}");
    assert_eq!(
        w.cmd("W", &activate("user.last")).await,
        vec!["W OK \"done\""]
    );
    acked.push("user.last".into());
    let served = w.cmd("L", "LIST").await;
    // Restart on the same directory without faults: everything acknowledged is there, and the
    // restarted server serves exactly what the old one did.
    let TestServer { handle, dir, .. } = s;
    drop((w, sub, fresh));
    handle.shutdown().await;
    let mut c = config(dir.path());
    c.listen = "127.0.0.1:0".parse().unwrap();
    let h = start(c).await.unwrap();
    let mut r = Client::admin(h.local_addr()).await;
    let after = r.cmd("L", "LIST").await;
    for name in &acked {
        let line = format!("L MAILBOX \"{name}\" \"h!p\" \"acl\"");
        assert!(after.contains(&line), "acknowledged {name} lost");
    }
    assert_eq!(after, served);
    h.shutdown().await;
}

//! A `mupdated` slave replicating a master (RFC 3656 2, 4.11): converges after random writes,
//! refuses writes, cascades UPDATE with a NOOP barrier through to the master, and reconverges
//! (deleted names included) after the master restarts on the same data directory and port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use std::time::Duration;

use mupdate_common::*;
use murder_server::mupdate::{Backoff, MasterLink, start};

async fn slave_of(master: std::net::SocketAddr) -> TestServer {
    server_with(|c| {
        let mut link = MasterLink::new(master.to_string(), "slave", "slavepw");
        link.backoff = Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        };
        c.slave_of = Some(link);
    })
    .await
}

/// LIST's data lines, sorted (LIST has no order guarantee across servers... but both use the
/// oracle's order; sorting keeps the comparison about content).
async fn list(c: &mut Client, tag: &str) -> Vec<String> {
    let mut r = c.cmd(tag, "LIST").await;
    assert_eq!(r.pop().unwrap(), format!("{tag} OK \"List complete\""));
    r.iter()
        .map(|l| l.trim_start_matches(tag).to_string())
        .collect()
}

/// `n` random writes on the master over `user.r0..user.r<seed_names>`.
async fn random_writes(c: &mut Client, n: usize, seed_names: usize) {
    for i in 0..n {
        random_write(c, "r", seed_names, i).await;
    }
}

/// Wait (bounded) until the slave's LIST equals the master's, using the slave's own UPDATE
/// stream and NOOP barrier: after the NOOP's OK the slave must already be in sync.
async fn assert_converged(master: &mut Client, slave_addr: std::net::SocketAddr) {
    let want = list(master, "L").await;
    let mut sub = Client::admin(slave_addr).await;
    sub.cmd("U", "UPDATE").await;
    sub.cmd("N", "NOOP").await;
    let mut s = Client::admin(slave_addr).await;
    assert_eq!(list(&mut s, "L").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_converges_refuses_writes_and_survives_a_master_restart() {
    let master = server().await;
    let mut m = Client::admin(master.addr).await;
    random_writes(&mut m, 60, 15).await;
    let slave = slave_of(master.addr).await;
    let mut sc = Client::admin(slave.addr).await;
    assert!(
        sc.banner
            .last()
            .unwrap()
            .ends_with(&format!("\"mupdate://{}/\"", master.addr))
    );
    // The slave answers after its first resync: it has the master's records at once.
    assert_eq!(list(&mut sc, "L").await, list(&mut m, "L").await);
    // Writes are refused on a slave.
    for (t, cmd) in [
        ("A", "ACTIVATE \"x\" \"h\" \"\""),
        ("R", "RESERVE \"x\" \"h\""),
        ("D", "DEACTIVATE \"x\" \"h\""),
        ("E", "DELETE \"x\""),
    ] {
        let r = sc.cmd(t, cmd).await;
        assert!(r[0].starts_with(&format!("{t} NO \"read-only")), "{r:?}");
    }
    // Cascade: an UPDATE on the slave sees the master's writes; the NOOP barrier goes through
    // to the master, so a write acknowledged by the master precedes the slave's NOOP OK.
    let mut sub = Client::admin(slave.addr).await;
    let dump = sub.cmd("U", "UPDATE").await;
    assert_eq!(dump.len() - 1, list(&mut m, "L").await.len());
    for i in 0..20 {
        let r = m
            .cmd("A", &format!("ACTIVATE \"user.cascade{i}\" \"h!p\" \"c\""))
            .await;
        assert_eq!(r, vec!["A OK \"done\""]);
        let seen = sub.cmd("N", "NOOP").await;
        assert!(
            seen.contains(&format!("U MAILBOX \"user.cascade{i}\" \"h!p\" \"c\"")),
            "{i}: {seen:?}"
        );
    }
    random_writes(&mut m, 60, 15).await;
    assert_converged(&mut m, slave.addr).await;

    // Stop the master, restart it on the same data directory and address; meanwhile the slave
    // keeps serving its last state.
    let addr = master.addr;
    let dir = master.dir;
    drop(m);
    master.handle.shutdown().await;
    let before = list(&mut Client::admin(slave.addr).await, "L").await;
    assert!(!before.is_empty());
    let mut c = config(dir.path());
    c.listen = addr;
    let restarted = start(c).await.unwrap();
    let mut m = Client::admin(addr).await;
    // Durable: the master kept everything.
    assert_eq!(list(&mut m, "L").await, before);
    // Deletions and changes while the slave reconnects.
    for name in list(&mut m, "L").await.iter().take(5) {
        let quoted = name.split('"').nth(1).unwrap().to_string();
        assert_eq!(
            m.cmd("E", &format!("DELETE \"{quoted}\"")).await,
            vec!["E OK \"done\""]
        );
    }
    random_writes(&mut m, 30, 15).await;
    // Converge (bounded wait for the reconnection, then the barrier check).
    let want = list(&mut m, "L").await;
    let mut converged = false;
    for _ in 0..200 {
        let mut s = Client::admin(slave.addr).await;
        if list(&mut s, "L").await == want {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        converged,
        "slave did not reconverge after the master restarted"
    );
    // And the slave's stream is live again.
    let mut sub = Client::admin(slave.addr).await;
    sub.cmd("U", "UPDATE").await;
    m.cmd("A", "ACTIVATE \"user.after\" \"h!p\" \"x\"").await;
    let seen = sub.cmd("N", "NOOP").await;
    assert!(
        seen.contains(&"U MAILBOX \"user.after\" \"h!p\" \"x\"".to_string()),
        "{seen:?}"
    );
    restarted.shutdown().await;
    slave.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_of_a_slave_follows_the_master_through_both_barriers() {
    let master = server().await;
    let first = slave_of(master.addr).await;
    let second = slave_of(first.addr).await;
    let mut m = Client::admin(master.addr).await;
    let mut sub = Client::admin(second.addr).await;
    assert_eq!(
        sub.cmd("U", "UPDATE").await,
        vec!["U OK \"streaming starts\""]
    );
    for i in 0..10 {
        let r = m
            .cmd("A", &format!("ACTIVATE \"user.chain{i}\" \"h!p\" \"c\""))
            .await;
        assert_eq!(r, vec!["A OK \"done\""]);
        // The NOOP goes second slave -> first slave -> master before it is answered.
        let seen = sub.cmd("N", "NOOP").await;
        assert!(
            seen.contains(&format!("U MAILBOX \"user.chain{i}\" \"h!p\" \"c\"")),
            "{i}: {seen:?}"
        );
    }
    assert_eq!(
        list(&mut Client::admin(second.addr).await, "L").await,
        list(&mut m, "L").await
    );
}

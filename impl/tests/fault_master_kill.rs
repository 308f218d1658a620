//! SIGKILL of a real `mupdated` master under write load while two slaves stream from it: after
//! the master restarts on the same data directory and port, every acknowledged write is there,
//! and both slaves reconnect and converge (LIST equal after a NOOP barrier on each slave's own
//! UPDATE stream, opened before the kill).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mupdate_common::*;
use murder_server::mupdate::{Backoff, MasterLink};

/// What the writers were told: names acknowledged present, and names acknowledged deleted.
#[derive(Default)]
struct Acked {
    present: Vec<String>,
    deleted: Vec<String>,
}

/// ACTIVATE unique names (and DELETE every third one again) until the connection breaks,
/// recording each acknowledged outcome. A write whose answer never came is in neither list.
async fn writer(addr: SocketAddr, id: usize, acked: Arc<Mutex<Acked>>) {
    let mut c = Client::admin(addr).await;
    for i in 0.. {
        let name = format!("user.k{id}.{i}");
        c.send(format!("W ACTIVATE \"{name}\" \"h!p\" \"acl\"\r\n"))
            .await;
        match c.raw_line().await {
            Some(l) if l == b"W OK \"done\"" => acked.lock().unwrap().present.push(name.clone()),
            _ => return,
        }
        if i % 3 == 2 {
            // Outcome unknown until answered.
            acked.lock().unwrap().present.retain(|n| *n != name);
            c.send(format!("D DELETE \"{name}\"\r\n")).await;
            match c.raw_line().await {
                Some(l) if l == b"D OK \"done\"" => acked.lock().unwrap().deleted.push(name),
                _ => return,
            }
        }
    }
}

/// LIST's data lines without their tag.
async fn list(addr: SocketAddr) -> Vec<String> {
    let mut r = Client::admin(addr).await.cmd("L", "LIST").await;
    assert_eq!(r.pop().unwrap(), "L OK \"List complete\"");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_master_keeps_acknowledged_writes_and_slaves_converge() {
    let dir = tempfile::tempdir().unwrap();
    let (mut master, maddr) = spawn_quiet_mupdated(dir.path(), "127.0.0.1:0").await;
    let mut slaves = Vec::new();
    for _ in 0..2 {
        slaves.push(
            server_with(|c| {
                let mut link = MasterLink::new(maddr.to_string(), "slave", "slavepw");
                link.backoff = Backoff {
                    initial: Duration::from_millis(20),
                    max: Duration::from_millis(200),
                };
                c.slave_of = Some(link);
            })
            .await,
        );
    }
    // Each slave's own UPDATE stream, open across the kill.
    let mut streams = Vec::new();
    for s in &slaves {
        let mut u = Client::admin(s.addr).await;
        assert_eq!(
            u.cmd("U", "UPDATE").await,
            vec!["U OK \"streaming starts\""]
        );
        streams.push(u);
    }
    let acked = Arc::new(Mutex::new(Acked::default()));
    let writers: Vec<_> = (0..3)
        .map(|id| tokio::spawn(writer(maddr, id, Arc::clone(&acked))))
        .collect();
    // Kill once a bounded number of writes went through (polled, no timing assertion).
    for _ in 0..4000 {
        if acked.lock().unwrap().present.len() >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    master.start_kill().unwrap();
    master.wait().await.unwrap();
    for w in writers {
        tokio::time::timeout(WAIT, w).await.unwrap().unwrap();
    }
    let (acked, deleted) = {
        let a = acked.lock().unwrap();
        (a.present.clone(), a.deleted.clone())
    };
    assert!(acked.len() >= 20, "too few writes before the kill");
    // The slaves keep serving their last state while the master is away.
    for s in &slaves {
        let mut c = Client::admin(s.addr).await;
        assert_eq!(c.cmd("N", "NOOP").await, vec!["N OK \"NOOP complete\""]);
    }
    // Restart on the same directory and port.
    let (mut master, addr2) = spawn_quiet_mupdated(dir.path(), &maddr.to_string()).await;
    assert_eq!(addr2, maddr);
    let want = list(maddr).await;
    for name in &acked {
        let line = format!("L MAILBOX \"{name}\" \"h!p\" \"acl\"");
        assert!(
            want.contains(&line),
            "acknowledged {name} lost after SIGKILL"
        );
    }
    for name in &deleted {
        let line = format!("L MAILBOX \"{name}\" \"h!p\" \"acl\"");
        assert!(
            !want.contains(&line),
            "acknowledged DELETE of {name} undone"
        );
    }
    // Each slave converges: a NOOP barrier on its stream (through to the master once the link
    // is back), then its LIST equals the master's. Bounded retries cover a barrier that was
    // answered from the slave's state while its link was still down (a slave answers a barrier
    // at once then: it covers what the slave has applied); polled, never a timing assertion.
    for (i, s) in slaves.iter().enumerate() {
        let mut converged = false;
        for attempt in 0..400 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let seen = streams[i].cmd("N", "NOOP").await;
            assert_eq!(seen.last().unwrap(), "N OK \"NOOP complete\"", "{attempt}");
            if list(s.addr).await == want {
                converged = true;
                break;
            }
        }
        assert!(converged, "slave {i} did not converge");
    }
    master.start_kill().unwrap();
    master.wait().await.unwrap();
}

//! A slave behind a TCP fault proxy that delays, stalls and cuts its link to the master: what
//! clients of the slave see (LIST snapshots, FIND answers, the state of the slave's own UPDATE
//! stream at each NOOP barrier) is always a state the master had, never invented history; and
//! once the link heals the slave converges to the master.
//!
//! The master's history is recorded by an UPDATE subscriber on the master itself, open before
//! the first write: its initial state and the state after each streamed change are every state
//! the master committed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use mupdate_common::*;
use murder_server::mupdate::{Backoff, MasterLink};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the bytes it forwards.
#[derive(Clone, Debug, Default)]
struct ProxyState {
    /// Hold every byte (both directions) while true.
    stall: bool,
    /// Pause before forwarding each chunk.
    delay: Duration,
    /// Bumped by `cut_all`: every connection opened before is closed.
    epoch: u64,
}

/// A TCP proxy to one upstream address, controlled by the test.
struct FaultProxy {
    addr: SocketAddr,
    ctl: watch::Sender<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ctl, rx) = watch::channel(ProxyState::default());
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let epoch = rx.borrow().epoch;
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pump(dr, uw, rx.clone(), epoch));
                tokio::spawn(pump(ur, dw, rx.clone(), epoch));
            }
        });
        FaultProxy { addr, ctl, task }
    }

    /// Close every connection through the proxy (new ones are accepted).
    fn cut_all(&self) {
        self.ctl.send_modify(|s| s.epoch += 1);
    }

    /// Hold (true) or release (false) all forwarding.
    fn stall(&self, on: bool) {
        self.ctl.send_modify(|s| s.stall = on);
    }

    /// Delay each forwarded chunk by `ms` milliseconds.
    fn delay(&self, ms: u64) {
        self.ctl
            .send_modify(|s| s.delay = Duration::from_millis(ms));
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_all();
    }
}

/// Resolves once the proxy cuts the connections of `epoch`.
async fn cut(mut rx: watch::Receiver<ProxyState>, epoch: u64) {
    while rx.borrow().epoch == epoch {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Wait while stalled; false when cut meanwhile.
async fn unstalled(rx: &mut watch::Receiver<ProxyState>, epoch: u64) -> bool {
    loop {
        let (stall, now) = {
            let s = rx.borrow();
            (s.stall, s.epoch)
        };
        if now != epoch {
            return false;
        }
        if !stall {
            return true;
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

/// Forward `src` to `dst` under the proxy's current faults until EOF or a cut.
async fn pump(
    mut src: tokio::net::tcp::OwnedReadHalf,
    mut dst: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<ProxyState>,
    epoch: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = src.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = dst.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            () = cut(rx.clone(), epoch) => return,
        };
        if !unstalled(&mut rx, epoch).await {
            return;
        }
        let delay = rx.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        tokio::select! {
            r = dst.write_all(&buf[..n]) => if r.is_err() { return },
            () = cut(rx.clone(), epoch) => return,
        }
    }
}

/// A database state: name -> record line without tag (`MAILBOX "n" "l" "a"`, `RESERVE ...`).
type State = BTreeMap<String, String>;

/// Split a tagged data line into (kind-and-rest, name).
fn parse(line: &str, tag: &str) -> (String, String) {
    let rest = line
        .strip_prefix(&format!("{tag} "))
        .unwrap_or_else(|| panic!("{line:?} lacks tag {tag}"));
    let name = rest.split('"').nth(1).unwrap().to_string();
    (rest.to_string(), name)
}

/// Apply one streamed change line to `state`.
fn apply(state: &mut State, line: &str, tag: &str) {
    let (rest, name) = parse(line, tag);
    if rest.starts_with("DELETE ") {
        state.remove(&name);
    } else {
        assert!(
            rest.starts_with("MAILBOX ") || rest.starts_with("RESERVE "),
            "{line}"
        );
        state.insert(name, rest);
    }
}

/// The slave's LIST as a state.
async fn list_state(c: &mut Client) -> State {
    let mut r = c.cmd("L", "LIST").await;
    assert_eq!(r.pop().unwrap(), "L OK \"List complete\"");
    let mut s = State::new();
    for l in r {
        apply(&mut s, &l, "L");
    }
    s
}

/// NOOP on an UPDATE stream (tag U): apply what arrived, return the state.
async fn barrier(stream: &mut Client, state: &mut State) -> State {
    let mut r = stream.cmd("N", "NOOP").await;
    assert_eq!(r.pop().unwrap(), "N OK \"NOOP complete\"");
    for l in r {
        apply(state, &l, "U");
    }
    state.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_behind_a_faulty_link_never_invents_history_and_converges() {
    let master = server().await;
    // The master's history: a subscriber on the master, open before any write.
    let mut recorder = Client::admin(master.addr).await;
    assert_eq!(
        recorder.cmd("U", "UPDATE").await,
        vec!["U OK \"streaming starts\""]
    );
    let proxy = FaultProxy::start(master.addr).await;
    let slave = server_with(|c| {
        let mut link = MasterLink::new(proxy.addr.to_string(), "slave", "slavepw");
        link.backoff = Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        };
        link.barrier_timeout = Duration::from_millis(300);
        link.ready_timeout = Duration::from_secs(2);
        c.slave_of = Some(link);
    })
    .await;
    let mut stream = Client::admin(slave.addr).await;
    let mut stream_state = State::new();
    for l in stream.cmd("U", "UPDATE").await {
        if l != "U OK \"streaming starts\"" {
            apply(&mut stream_state, &l, "U");
        }
    }
    let mut reader = Client::admin(slave.addr).await;
    let mut writer = Client::admin(master.addr).await;
    let mut rng = rand::rng();
    let mut observed: Vec<(&str, State)> = Vec::new();
    let mut finds: Vec<(String, Option<String>)> = Vec::new();
    let mut writes = 0;
    for phase in 0..9 {
        proxy.delay(0);
        match phase % 3 {
            0 => proxy.delay(rng.random_range(1..20)),
            1 => proxy.stall(true),
            _ => proxy.cut_all(),
        }
        for _ in 0..20 {
            random_write(&mut writer, "p", 12, writes).await;
            writes += 1;
            if writes % 5 == 0 {
                observed.push(("LIST", list_state(&mut reader).await));
                let name = format!("user.p{}", rng.random_range(0..12));
                let mut r = reader.cmd("F", &format!("FIND \"{name}\"")).await;
                assert_eq!(r.pop().unwrap(), "F OK \"Search completed\"");
                finds.push((name, r.pop().map(|l| parse(&l, "F").0)));
            }
        }
        observed.push(("stream", barrier(&mut stream, &mut stream_state).await));
        observed.push(("LIST", list_state(&mut reader).await));
        proxy.stall(false);
    }
    // Heal and converge (bounded polling: the link may be reconnecting after a cut).
    proxy.delay(0);
    proxy.stall(false);
    let want = list_state(&mut Client::admin(master.addr).await).await;
    let mut converged = false;
    for attempt in 0..400 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let s = barrier(&mut stream, &mut stream_state).await;
        observed.push(("stream", s.clone()));
        let l = list_state(&mut reader).await;
        observed.push(("LIST", l.clone()));
        if s == want && l == want {
            converged = true;
            break;
        }
    }
    assert!(
        converged,
        "the slave did not converge after the link healed"
    );
    // Every state of the master, from its change log.
    let mut history = vec![State::new()];
    let mut state = State::new();
    for l in barrier_lines(&mut recorder).await {
        apply(&mut state, &l, "U");
        history.push(state.clone());
    }
    assert_eq!(history.last().unwrap(), &want);
    let known: HashSet<Vec<(String, String)>> = history
        .iter()
        .map(|s| s.clone().into_iter().collect())
        .collect();
    for (i, (how, s)) in observed.iter().enumerate() {
        let key: Vec<(String, String)> = s.clone().into_iter().collect();
        assert!(
            known.contains(&key),
            "observation {i} ({how}) is a state the master never had: {s:?}"
        );
    }
    for (name, found) in &finds {
        assert!(
            history.iter().any(|s| s.get(name) == found.as_ref()),
            "FIND {name} answered {found:?}, which the master never had"
        );
    }
    println!(
        "{writes} writes, {} master states, {} slave observations, {} FINDs",
        history.len(),
        observed.len(),
        finds.len()
    );
}

/// The change lines of a master subscriber up to a NOOP barrier.
async fn barrier_lines(c: &mut Client) -> Vec<String> {
    let mut r = c.cmd("N", "NOOP").await;
    assert_eq!(r.pop().unwrap(), "N OK \"NOOP complete\"");
    r
}

//! `imapd`'s reconcile with the MUPDATE master (`imap::reconcile`), against the real `mupdated`
//! master in-process, sometimes behind a TCP proxy the test can cut at a chosen command:
//! each reconcile rule, the race the model found (a name reserved by another backend while this
//! one was down is not stolen), an unreachable master at start-up, and connections lost in the
//! middle of CREATE and DELETE.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;
mod mupdate_common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imap_common::{TestServer, WAIT};
use murder_server::imap::{MupdateLink, ReconcileStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const ACL: &str = "alice\tlrswipkxtecda\t";

/// The link of backend `backend1` as `admin`, retrying quickly so that tests finish fast (the
/// tests wait for published passes, never for time).
fn link(master: SocketAddr) -> MupdateLink {
    let mut l = MupdateLink::new(
        master.to_string(),
        "admin".into(),
        "secret".into(),
        "backend1".into(),
    );
    l.retry_interval = Duration::from_millis(50);
    l
}

/// One command on a master (ours or Cyrus's) as `user`: its data lines (tag stripped, lines
/// as received); asserts the tagged OK. Line-based on purpose: independent of impl's parser.
async fn master_cmd_as(master: SocketAddr, user: &str, password: &str, cmd: &str) -> Vec<String> {
    let mut c = mupdate_common::Client::connect(master).await;
    c.send(format!(
        "A AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
        mupdate_common::plain(user, password)
    ))
    .await;
    let auth = c.line().await;
    assert!(auth.starts_with("A OK"), "{auth}");
    c.send(format!("M {cmd}\r\n")).await;
    let mut data = Vec::new();
    loop {
        let l = quote_literals(&c.response().await);
        if l.starts_with("M OK") {
            return data;
        }
        assert!(
            l.starts_with("M MAILBOX") || l.starts_with("M RESERVE"),
            "{cmd}: {l}"
        );
        data.push(l.trim_start_matches("M ").to_string());
    }
}

/// A response with each `{n}`/`{n+}` literal (Cyrus sends them) written as a quoted string, so
/// both masters' answers compare the same way.
fn quote_literals(r: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < r.len() {
        if r[i] == b'{'
            && let Some(end) = r[i..].windows(3).position(|w| w == b"}\r\n")
            && let Ok(n) = std::str::from_utf8(&r[i + 1..i + end])
                .unwrap()
                .trim_end_matches('+')
                .parse::<usize>()
        {
            let start = i + end + 3;
            out.push(b'"');
            out.extend_from_slice(&r[start..start + n]);
            out.push(b'"');
            i = start + n;
        } else {
            out.push(r[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// [`master_cmd_as`] as our test master's `admin`.
async fn master_cmd(master: SocketAddr, cmd: &str) -> Vec<String> {
    master_cmd_as(master, "admin", "secret", cmd).await
}

/// The master's record of `name`: `Some("MAILBOX ...")`, `Some("RESERVE ...")` or None.
async fn find(master: SocketAddr, name: &str) -> Option<String> {
    master_cmd(master, &format!("FIND \"{name}\"")).await.pop()
}

fn active_here(name: &str) -> Option<String> {
    Some(format!("MAILBOX \"{name}\" \"backend1!default\" \"{ACL}\""))
}

/// Mailboxes of alice in `data`, made without a master (so the master knows none of them);
/// `with_message` get one message each.
async fn local_mailboxes(data: &Path, names: &[&str], with_message: &[&str]) {
    let s = TestServer::start_with(|c| c.data_dir = data.to_path_buf()).await;
    let mut c = s.alice().await;
    for n in names {
        c.ok(&format!("CREATE {n}")).await;
    }
    for n in with_message {
        let (_, t) = c
            .append_plus(n, &[("", b"Subject: kept\r\n\r\nbody\r\n")])
            .await;
        assert!(t.text.contains(" OK"), "{t:?}");
    }
    s.handle.shutdown().await;
}

async fn backend(data: &Path, link: &MupdateLink) -> TestServer {
    TestServer::start_with(|c| {
        c.data_dir = data.to_path_buf();
        c.mupdate = Some(link.clone());
    })
    .await
}

/// Wait (bounded) until the published reconcile status satisfies `f`.
async fn wait_status(
    rx: &mut watch::Receiver<ReconcileStatus>,
    f: impl FnMut(&ReconcileStatus) -> bool,
) -> ReconcileStatus {
    tokio::time::timeout(WAIT, rx.wait_for(f))
        .await
        .expect("reconcile status not reached")
        .unwrap()
        .clone()
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[tokio::test]
async fn start_up_reconcile_applies_each_rule() {
    let m = mupdate_common::server().await;
    let data = tempfile::tempdir().unwrap();
    let data = data.path().join("d");
    local_mailboxes(&data, &["here", "elsewhere", "unknown"], &["elsewhere"]).await;
    // Rule 1: reserved at our location (an ACTIVATE that never arrived).
    master_cmd(m.addr, "RESERVE \"user.alice.here\" \"backend1!default\"").await;
    // Rule 2: another server has the name.
    master_cmd(
        m.addr,
        "ACTIVATE \"user.alice.elsewhere\" \"other!default\" \"bob\tlrs\t\"",
    )
    .await;
    // Rule 4: stale records at our location (any partition).
    master_cmd(m.addr, "RESERVE \"user.alice.stale\" \"backend1!default\"").await;
    master_cmd(
        m.addr,
        "ACTIVATE \"user.bob.old\" \"backend1!p2\" \"bob\tlrs\t\"",
    )
    .await;
    // Not ours although it shares a prefix: untouched.
    master_cmd(
        m.addr,
        "ACTIVATE \"user.carol.x\" \"backend10!default\" \"c\tl\t\"",
    )
    .await;

    let link = link(m.addr);
    let s = backend(&data, &link).await;
    let st = link.reconcile_status().borrow().clone();
    assert_eq!(st.passes, 1, "{st:?}");
    assert!(!st.pending);
    let r = st.last.unwrap();
    assert_eq!(r.activated, ["user.alice.here"]);
    // Rule 3: INBOX and `unknown` were unknown to the master.
    assert_eq!(sorted(&r.registered), ["user.alice", "user.alice.unknown"]);
    assert_eq!(sorted(&r.deleted), ["user.alice.stale", "user.bob.old"]);
    assert_eq!(r.quarantined, ["user.alice.elsewhere"]);

    assert_eq!(
        find(m.addr, "user.alice.here").await,
        active_here("user.alice.here")
    );
    assert_eq!(
        find(m.addr, "user.alice.unknown").await,
        active_here("user.alice.unknown")
    );
    assert_eq!(find(m.addr, "user.alice").await, active_here("user.alice"));
    assert_eq!(
        find(m.addr, "user.alice.elsewhere").await.unwrap(),
        "MAILBOX \"user.alice.elsewhere\" \"other!default\" \"bob\tlrs\t\""
    );
    assert_eq!(find(m.addr, "user.alice.stale").await, None);
    assert_eq!(find(m.addr, "user.bob.old").await, None);
    assert!(find(m.addr, "user.carol.x").await.is_some());

    // The quarantined mailbox is not served, in any way.
    let mut c = s.alice().await;
    let (lines, _) = c.cmd("LIST \"\" \"*\"").await;
    let listed: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert!(
        listed
            .iter()
            .any(|l| l.ends_with("\"here\"") || l.ends_with(" here"))
    );
    assert!(
        !listed.iter().any(|l| l.contains("elsewhere")),
        "{listed:?}"
    );
    for cmd in [
        "SELECT elsewhere",
        "EXAMINE elsewhere",
        "STATUS elsewhere (MESSAGES)",
        "DELETE elsewhere",
        "RENAME elsewhere moved",
    ] {
        let (_, t) = c.cmd(cmd).await;
        assert!(t.text.contains(" NO [UNAVAILABLE]"), "{cmd}: {t:?}");
    }
    let (_, t) = c.append_plus("elsewhere", &[("", b"x\r\n")]).await;
    assert!(t.text.contains(" NO [UNAVAILABLE]"), "{t:?}");
    c.ok("SELECT here").await;
    let (_, t) = c.cmd("COPY 1:* elsewhere").await;
    assert!(t.text.contains(" NO"), "{t:?}");
    s.handle.shutdown().await;

    // Once the other server's record is gone, the next pass gives the name back: the local
    // data was kept untouched.
    master_cmd(m.addr, "DELETE \"user.alice.elsewhere\"").await;
    let s = backend(&data, &link).await;
    let st = link.reconcile_status().borrow().clone();
    assert_eq!(st.last.unwrap().registered, ["user.alice.elsewhere"]);
    let mut c = s.alice().await;
    c.ok("SELECT elsewhere").await;
    let msgs = c.fetch_all().await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].1, b"Subject: kept\r\n\r\nbody\r\n");
}

#[tokio::test]
async fn restart_does_not_steal_a_name_reserved_meanwhile() {
    let m = mupdate_common::server().await;
    let data = tempfile::tempdir().unwrap();
    let data = data.path().join("d");
    let link = link(m.addr);
    let s = backend(&data, &link).await;
    let mut c = s.alice().await;
    c.ok("CREATE shared").await;
    assert_eq!(
        find(m.addr, "user.alice.shared").await,
        active_here("user.alice.shared")
    );
    s.handle.shutdown().await;
    // While the backend is down its record goes away and another backend reserves the name
    // (the model's counterexample to a blind re-ACTIVATE).
    master_cmd(m.addr, "DELETE \"user.alice.shared\"").await;
    master_cmd(m.addr, "RESERVE \"user.alice.shared\" \"backend2!default\"").await;
    let s = backend(&data, &link).await;
    assert_eq!(
        find(m.addr, "user.alice.shared").await.unwrap(),
        "RESERVE \"user.alice.shared\" \"backend2!default\""
    );
    let st = link.reconcile_status().borrow().clone();
    assert_eq!(st.last.unwrap().quarantined, ["user.alice.shared"]);
    let mut c = s.alice().await;
    let (_, t) = c.cmd("SELECT shared").await;
    assert!(t.text.contains(" NO [UNAVAILABLE]"), "{t:?}");
    // Creating it again is refused too: the name is taken.
    let (_, t) = c.cmd("CREATE shared").await;
    assert!(t.text.contains(" NO"), "{t:?}");
}

#[tokio::test]
async fn quarantine_survives_a_restart_while_the_master_is_unreachable() {
    let m = mupdate_common::server().await;
    let data = tempfile::tempdir().unwrap();
    let data = data.path().join("d");
    local_mailboxes(&data, &["taken"], &[]).await;
    master_cmd(
        m.addr,
        "ACTIVATE \"user.alice.taken\" \"other!default\" \"bob\tlrs\t\"",
    )
    .await;
    let proxy = Proxy::start(m.addr, Mode::Relay).await;
    let link = link(proxy.addr);
    let s = backend(&data, &link).await;
    s.handle.shutdown().await;
    // Restart without a master: the saved quarantine still holds.
    proxy.set(Mode::Down);
    let mut status = link.reconcile_status();
    let before = status.borrow().passes;
    let s = backend(&data, &link).await;
    assert!(status.borrow().pending);
    let mut c = s.alice().await;
    let (_, t) = c.cmd("SELECT taken").await;
    assert!(t.text.contains(" NO [UNAVAILABLE]"), "{t:?}");
    c.ok("SELECT INBOX").await;
    // The master is back and still says so.
    proxy.set(Mode::Relay);
    let st = wait_status(&mut status, |s| s.passes > before && !s.pending).await;
    assert_eq!(st.last.unwrap().quarantined, ["user.alice.taken"]);
    let (_, t) = c.cmd("SELECT taken").await;
    assert!(t.text.contains(" NO [UNAVAILABLE]"), "{t:?}");
}

/// What the proxy does with the connections it relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Accept and close at once (the master is unreachable).
    Down,
    /// Relay everything.
    Relay,
    /// Close both sides instead of relaying a client chunk containing this word.
    CutBefore(&'static str),
    /// Relay a client chunk containing this word, then close both sides instead of relaying
    /// the master's answer (the command committed, the client never learns it).
    CutAfter(&'static str),
}

/// A TCP proxy in front of the master whose [`Mode`] the test sets.
struct Proxy {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
}

impl Proxy {
    async fn start(target: SocketAddr, mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let m = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *m.lock().unwrap() == Mode::Down {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, target, m.clone()));
            }
        });
        Proxy { addr, mode }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

fn contains(hay: &[u8], word: &str) -> bool {
    hay.windows(word.len()).any(|w| w == word.as_bytes())
}

/// Relay one connection (each command of the link is one small write, so a word is never
/// split across reads on loopback).
async fn relay(client: TcpStream, target: SocketAddr, mode: Arc<Mutex<Mode>>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (mut cbuf, mut sbuf) = (vec![0u8; 65536], vec![0u8; 65536]);
    let mut swallow = false;
    loop {
        tokio::select! {
            n = cr.read(&mut cbuf) => {
                let Ok(n) = n else { return };
                if n == 0 {
                    return;
                }
                let chunk = &cbuf[..n];
                let mode = *mode.lock().unwrap();
                match mode {
                    Mode::CutBefore(w) if contains(chunk, w) => return,
                    Mode::CutAfter(w) if contains(chunk, w) => swallow = true,
                    _ => {}
                }
                if sw.write_all(chunk).await.is_err() {
                    return;
                }
            }
            n = sr.read(&mut sbuf) => {
                let Ok(n) = n else { return };
                if n == 0 || swallow {
                    return;
                }
                if cw.write_all(&sbuf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::test]
async fn master_unreachable_at_start_then_reconciled_in_the_background() {
    let m = mupdate_common::server().await;
    let data = tempfile::tempdir().unwrap();
    let data = data.path().join("d");
    local_mailboxes(&data, &["kept"], &["kept"]).await;
    let proxy = Proxy::start(m.addr, Mode::Down).await;
    let link = link(proxy.addr);
    let mut status = link.reconcile_status();
    // imapd starts and serves its mailboxes although the master cannot be reached.
    let s = backend(&data, &link).await;
    let st = status.borrow().clone();
    assert!(st.failures >= 1 && st.pending && st.passes == 0, "{st:?}");
    let mut c = s.alice().await;
    let lines = c.ok("SELECT kept").await;
    assert!(lines.iter().any(|l| l.text == "* 1 EXISTS"), "{lines:?}");
    // Operations that need the master fail cleanly meanwhile.
    let (_, t) = c.cmd("CREATE new").await;
    assert!(t.text.contains(" NO [UNAVAILABLE]"), "{t:?}");
    assert_eq!(c.status("new").await, None);
    // The master comes back: a retried pass registers everything.
    proxy.set(Mode::Relay);
    let st = wait_status(&mut status, |s| s.passes >= 1 && !s.pending).await;
    assert_eq!(
        sorted(&st.last.unwrap().registered),
        ["user.alice", "user.alice.kept"]
    );
    assert_eq!(
        find(m.addr, "user.alice.kept").await,
        active_here("user.alice.kept")
    );
    c.ok("CREATE new").await;
    assert_eq!(
        find(m.addr, "user.alice.new").await,
        active_here("user.alice.new")
    );
}

/// A master, the proxy in front of it (relaying), a backend through the proxy, alice logged in.
struct Rig {
    m: mupdate_common::TestServer,
    proxy: Proxy,
    status: watch::Receiver<ReconcileStatus>,
    c: imap_common::Client<TcpStream>,
    _backend: TestServer,
    _data: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let m = mupdate_common::server().await;
        let data = tempfile::tempdir().unwrap();
        let proxy = Proxy::start(m.addr, Mode::Relay).await;
        let link = link(proxy.addr);
        let status = link.reconcile_status();
        let backend = backend(&data.path().join("d"), &link).await;
        let c = backend.alice().await;
        Rig {
            m,
            proxy,
            status,
            c,
            _backend: backend,
            _data: data,
        }
    }

    /// Successful passes so far.
    fn passes(&self) -> u64 {
        self.status.borrow().passes
    }

    /// Relay again and wait for a successful pass after the `before`-th one.
    async fn heal(&mut self, before: u64) -> ReconcileStatus {
        self.proxy.set(Mode::Relay);
        wait_status(&mut self.status, |s| s.passes > before && !s.pending).await
    }
}

#[tokio::test]
async fn connection_lost_before_activate_keeps_the_mailbox_and_a_pass_activates_it() {
    let mut r = Rig::start().await;
    let before = r.passes();
    r.proxy.set(Mode::CutBefore("ACTIVATE"));
    // RESERVE committed, ACTIVATE lost: the mailbox stays (the reservation keeps the name
    // ours) and is served; the master shows the reservation until a pass activates it.
    r.c.ok("CREATE fresh").await;
    assert_eq!(
        find(r.m.addr, "user.alice.fresh").await.unwrap(),
        "RESERVE \"user.alice.fresh\" \"backend1!default\""
    );
    let st = r.status.borrow().clone();
    assert!(st.pending || st.failures > 0, "{st:?}");
    r.c.ok("SELECT fresh").await;
    r.heal(before).await;
    assert_eq!(
        find(r.m.addr, "user.alice.fresh").await,
        active_here("user.alice.fresh")
    );
}

#[tokio::test]
async fn lost_answer_to_reserve_leaves_no_reservation_behind() {
    let mut r = Rig::start().await;
    let before = r.passes();
    r.proxy.set(Mode::CutAfter("RESERVE"));
    // The RESERVE committed but its answer was lost: CREATE fails and nothing is local; the
    // pass that follows deletes the stale reservation at our location (rule 4).
    let (_, t) = r.c.cmd("CREATE orphan").await;
    assert!(t.text.contains(" NO [UNAVAILABLE]"), "{t:?}");
    assert_eq!(r.c.status("orphan").await, None);
    let st = r.heal(before).await;
    assert_eq!(find(r.m.addr, "user.alice.orphan").await, None, "{st:?}");
    // The name is free again.
    r.c.ok("CREATE orphan").await;
}

#[tokio::test]
async fn lost_delete_keeps_the_mailbox_and_the_master_consistent() {
    let mut r = Rig::start().await;
    r.c.ok("CREATE doomed").await;

    // DELETE never reaches the master: NO, and everything stays as it was.
    r.proxy.set(Mode::CutBefore("DELETE"));
    let (_, t) = r.c.cmd("DELETE doomed").await;
    assert!(t.text.contains(" NO [UNAVAILABLE]"), "{t:?}");
    assert!(r.c.status("doomed").await.is_some());
    assert_eq!(
        find(r.m.addr, "user.alice.doomed").await,
        active_here("user.alice.doomed")
    );

    // DELETE commits but its answer is lost: NO, the mailbox stays, and the pass registers it
    // again, so the master never lacks a mailbox the backend serves for longer than a pass.
    let before = r.passes();
    r.proxy.set(Mode::CutAfter("DELETE"));
    let (_, t) = r.c.cmd("DELETE doomed").await;
    assert!(t.text.contains(" NO [UNAVAILABLE]"), "{t:?}");
    assert!(r.c.status("doomed").await.is_some());
    r.heal(before).await;
    assert_eq!(
        find(r.m.addr, "user.alice.doomed").await,
        active_here("user.alice.doomed")
    );

    // With the master reachable, DELETE removes both.
    r.c.ok("DELETE doomed").await;
    assert_eq!(r.c.status("doomed").await, None);
    assert_eq!(find(r.m.addr, "user.alice.doomed").await, None);
}

/// Start-up reconcile cost with many mailboxes (prints numbers; asserts the outcome):
/// `cargo test -p murder-server --test imap_reconcile -- --ignored --nocapture measure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn measure_reconcile_pass() {
    let n: usize = std::env::var("RECONCILE_MAILBOXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let m = mupdate_common::server().await;
    let data = tempfile::tempdir().unwrap();
    let data = data.path().join("d");
    let names: Vec<String> = (0..n).map(|i| format!("box{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    local_mailboxes(&data, &refs, &[]).await;
    let link = link(m.addr);
    let t = std::time::Instant::now();
    let s = backend(&data, &link).await;
    let cold = t.elapsed();
    let st = link.reconcile_status().borrow().clone();
    assert_eq!(st.last.unwrap().registered.len(), n + 1);
    s.handle.shutdown().await;
    let t = std::time::Instant::now();
    let s = backend(&data, &link).await;
    let warm = t.elapsed();
    let st = link.reconcile_status().borrow().clone();
    assert_eq!(st.last.unwrap().unchanged, n + 1);
    s.handle.shutdown().await;
    println!(
        "reconcile of {} mailboxes: cold start (all unknown to the master: LIST, {n}+1 FIND, \
         RESERVE, ACTIVATE) {cold:?}; warm start (all active: one LIST) {warm:?}",
        n + 1
    );
}

/// The reconcile against a real Cyrus mupdate master (`conformance/peers/cyrus-mupdate.sh start
/// master PORT`): `MURDER_CYRUS_MUPDATE=127.0.0.1:PORT` (user `admin`, password
/// `MURDER_CYRUS_MUPDATE_PASSWORD`, default `peer-secret`), then
/// `cargo test -p murder-server --test imap_reconcile -- --ignored cyrus`.
#[tokio::test]
#[ignore = "needs a Cyrus mupdate master: MURDER_CYRUS_MUPDATE=host:port"]
async fn reconcile_against_a_cyrus_master() {
    let addr: SocketAddr = std::env::var("MURDER_CYRUS_MUPDATE")
        .expect("MURDER_CYRUS_MUPDATE")
        .parse()
        .unwrap();
    let password =
        std::env::var("MURDER_CYRUS_MUPDATE_PASSWORD").unwrap_or_else(|_| "peer-secret".into());
    let cmd = |c: String| {
        let password = password.clone();
        async move { master_cmd_as(addr, "admin", &password, &c).await }
    };
    // Names unique to this run: Cyrus keeps its database between runs.
    let server = format!("recon{}x{}", std::process::id(), rand::random::<u32>());
    let user = format!("u{server}");
    let users =
        Arc::new(murder_server::auth::UserDb::parse(&format!("{user}:{{PLAIN}}pw\n")).unwrap());
    let data = tempfile::tempdir().unwrap();
    let data = data.path().join("d");
    let start = |link: Option<MupdateLink>| {
        let (users, data) = (users.clone(), data.clone());
        TestServer::start_with(move |c| {
            c.users = users;
            c.data_dir = data;
            c.mupdate = link;
        })
    };
    let s = start(None).await;
    let mut c = imap_common::Client::connect(s.handle.local_addr()).await;
    c.ok(&format!("LOGIN {user} pw")).await;
    for n in ["here", "elsewhere", "unknown"] {
        c.ok(&format!("CREATE {n}")).await;
    }
    s.handle.shutdown().await;
    let name = |n: &str| format!("user.{user}.{n}");
    cmd(format!("RESERVE \"{}\" \"{server}!default\"", name("here"))).await;
    cmd(format!(
        "ACTIVATE \"{}\" \"other{server}!default\" \"x\tlrs\t\"",
        name("elsewhere")
    ))
    .await;
    cmd(format!(
        "RESERVE \"{}\" \"{server}!default\"",
        name("stale")
    ))
    .await;

    let mut link = MupdateLink::new(
        addr.to_string(),
        "admin".into(),
        password.clone(),
        server.clone(),
    );
    link.retry_interval = Duration::from_millis(50);
    let s = start(Some(link.clone())).await;
    let st = link.reconcile_status().borrow().clone();
    let r = st.last.clone().unwrap_or_else(|| panic!("{st:?}"));
    assert_eq!(r.activated, [name("here")]);
    assert_eq!(
        sorted(&r.registered),
        [format!("user.{user}"), name("unknown")]
    );
    assert_eq!(r.deleted, [name("stale")]);
    assert_eq!(r.quarantined, [name("elsewhere")]);
    let acl = format!("{user}\tlrswipkxtecda\t");
    for n in ["here", "unknown"] {
        let f = cmd(format!("FIND \"{}\"", name(n))).await;
        assert_eq!(
            f,
            [format!(
                "MAILBOX \"{}\" \"{server}!default\" \"{acl}\"",
                name(n)
            )]
        );
    }
    assert!(cmd(format!("FIND \"{}\"", name("stale"))).await.is_empty());
    let f = cmd(format!("FIND \"{}\"", name("elsewhere"))).await;
    assert!(f[0].contains(&format!("other{server}!default")), "{f:?}");
    let mut c = imap_common::Client::connect(s.handle.local_addr()).await;
    c.ok(&format!("LOGIN {user} pw")).await;
    let (_, t) = c.cmd("SELECT elsewhere").await;
    assert!(t.text.contains(" NO [UNAVAILABLE]"), "{t:?}");
    // CREATE and DELETE through the Cyrus master.
    c.ok("CREATE fresh").await;
    assert_eq!(
        cmd(format!("FIND \"{}\"", name("fresh"))).await,
        [format!(
            "MAILBOX \"{}\" \"{server}!default\" \"{acl}\"",
            name("fresh")
        )]
    );
    c.ok("DELETE fresh").await;
    assert!(cmd(format!("FIND \"{}\"", name("fresh"))).await.is_empty());
    // Clean up what this run left on the Cyrus master.
    for n in ["here", "elsewhere", "unknown"] {
        cmd(format!("DELETE \"{}\"", name(n))).await;
    }
    cmd(format!("DELETE \"user.{user}\"")).await;
}

//! A small fake MUPDATE master for the runner's own tests, built on the model. It is only here to
//! exercise the runner (parsing, matching, races, reports, NOT-RUN); it is never a verdict on the
//! corpus, which runs against the reference servers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code,
    missing_docs
)]

pub mod imap;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use conformance::wire::command::{CommandReader, Parsed};
use murder_model::session::{CommandKind, SessionState, Verdict, verdict};
use murder_model::{Change, MailboxDb, MailboxEntry, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Deliberate bugs, to see the runner fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// RESERVE answers OK even when the name exists (and changes nothing).
    ReserveAlwaysOk,
    /// LOGOUT answers OK instead of BYE.
    LogoutOk,
    /// DELETE stops the whole server (listener and connections).
    CrashOnDelete,
}

struct Shared {
    db: MailboxDb,
    subs: Vec<(Vec<u8>, mpsc::UnboundedSender<Vec<u8>>)>,
    dead: bool,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn string(b: &[u8]) -> Vec<u8> {
    if b.iter()
        .all(|c| c.is_ascii_alphanumeric() || b".!-_ ".contains(c))
    {
        [b"\"".as_slice(), b, b"\""].concat()
    } else {
        [format!("{{{}+}}\r\n", b.len()).as_bytes(), b].concat()
    }
}

fn record_line(tag: &[u8], r: &Record) -> Vec<u8> {
    let mut out = tag.to_vec();
    match &r.entry {
        MailboxEntry::Active { location, acl } => {
            out.extend_from_slice(b" MAILBOX ");
            out.extend(string(&r.name));
            out.push(b' ');
            out.extend(string(location));
            out.push(b' ');
            out.extend(string(acl));
        }
        MailboxEntry::Reserved { location } => {
            out.extend_from_slice(b" RESERVE ");
            out.extend(string(&r.name));
            out.push(b' ');
            out.extend(string(location));
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn change_line(tag: &[u8], c: &Change) -> Vec<u8> {
    match c {
        Change::Upsert(r) => record_line(tag, r),
        Change::Delete { name } => {
            let mut out = tag.to_vec();
            out.extend_from_slice(b" DELETE ");
            out.extend(string(name));
            out.extend_from_slice(b"\r\n");
            out
        }
    }
}

pub async fn start(fault: Fault) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(Mutex::new(Shared {
        db: MailboxDb::new(),
        subs: Vec::new(),
        dead: false,
    }));
    let (kill_tx, mut kill_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                a = listener.accept() => {
                    let Ok((s, _)) = a else { break };
                    conns.spawn(serve(s, shared.clone(), fault, kill_tx.clone()));
                }
                _ = kill_rx.changed() => break,
            }
        }
        conns.abort_all();
    });
    FakeServer { addr, task }
}

/// Offsets of synchronizing literal headers completed in `buf[from..]` that need `+ go ahead`.
fn sync_literals(buf: &[u8], scan: &mut usize) -> usize {
    let mut count = 0;
    while let Some(rel) = buf
        .get(*scan..)
        .and_then(|t| t.iter().position(|&b| b == b'\n'))
    {
        let end = *scan + rel;
        let line = &buf[*scan..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        *scan = end + 1;
        if let Some(n) = conformance::wire::frame::trailing_literal(line) {
            if !line.ends_with(b"+}") {
                count += 1;
            }
            *scan += n as usize;
        }
    }
    count
}

async fn serve(
    mut s: TcpStream,
    shared: Arc<Mutex<Shared>>,
    fault: Fault,
    kill: tokio::sync::watch::Sender<bool>,
) {
    let _ = s
        .write_all(b"* AUTH \"PLAIN\"\r\n* PARTIAL-UPDATE\r\n* OK MUPDATE \"fake\" \"fake\" \"0\" \"(master)\"\r\n")
        .await;
    let mut state = SessionState::NotAuthenticated;
    let mut reader = CommandReader::default();
    let mut seen = Vec::new();
    let mut scan = 0;
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            n = s.read(&mut buf) => {
                let n = match n { Ok(0) | Err(_) => return, Ok(n) => n };
                seen.extend_from_slice(&buf[..n]);
                for _ in 0..sync_literals(&seen, &mut scan) {
                    let _ = s.write_all(b"+ go ahead\r\n").await;
                }
                reader.push(&buf[..n]);
                while let Some(cmd) = reader.next_command() {
                    let mut out = Vec::new();
                    let tag = cmd.tag.clone();
                    let t = |rest: &str| [tag.as_slice(), b" ", rest.as_bytes(), b"\r\n"].concat();
                    let mut close = false;
                    match &cmd.parsed {
                        _ if tag.is_empty() => out.extend(b"* BAD \"Need command\"\r\n"),
                        Parsed::Unknown => out.extend(t("BAD \"unknown command\"")),
                        Parsed::Syntax(_) => out.extend(t("BAD \"syntax error\"")),
                        Parsed::PartialUpdate => out.extend(t("NO \"not supported\"")),
                        Parsed::Session(k) => match (verdict(state, *k, false), k) {
                            (Verdict::Run, CommandKind::Authenticate) => {
                                state = SessionState::Authenticated;
                                out.extend(t("OK \"Authenticated\""));
                            }
                            (Verdict::Run, CommandKind::Noop) => {
                                while let Ok(l) = rx.try_recv() { out.extend(l); }
                                out.extend(t("OK \"Noop done\""));
                            }
                            (Verdict::Run, CommandKind::Logout) => {
                                out.extend(t(if fault == Fault::LogoutOk { "OK \"bye\"" } else { "BYE \"bye\"" }));
                                close = true;
                            }
                            (Verdict::Run, CommandKind::Update) => {
                                let mut g = shared.lock().unwrap();
                                for r in g.db.records() { out.extend(record_line(&tag, &r)); }
                                out.extend(t("OK \"streaming starts\""));
                                g.subs.push((tag.clone(), tx.clone()));
                                state = SessionState::Streaming;
                            }
                            (Verdict::Run, _) => out.extend(t("BAD \"not supported\"")),
                            (Verdict::No, _) => out.extend(t("NO \"login first\"")),
                            (Verdict::NoOrBad, _) => out.extend(t("BAD \"not allowed now\"")),
                        },
                        Parsed::Db(c) => match verdict(state, kind(c), false) {
                            Verdict::Run => {
                                if matches!(c, murder_model::Command::Delete { .. }) && fault == Fault::CrashOnDelete {
                                    shared.lock().unwrap().dead = true;
                                    let _ = kill.send(true);
                                    return;
                                }
                                let mut g = shared.lock().unwrap();
                                let (reply, change) = if fault == Fault::ReserveAlwaysOk
                                    && matches!(c, murder_model::Command::Reserve { .. })
                                    && c.name().is_some_and(|n| g.db.get(n).is_some())
                                {
                                    (murder_model::Reply { data: vec![], result: Ok(()) }, None)
                                } else {
                                    g.db.apply(c)
                                };
                                for r in &reply.data { out.extend(record_line(&tag, r)); }
                                match reply.result {
                                    Ok(()) => out.extend(t("OK \"done\"")),
                                    Err(e) => out.extend(t(&format!("NO \"{e}\""))),
                                }
                                if let Some(ch) = change {
                                    g.subs.retain(|(utag, sub)| sub.send(change_line(utag, &ch)).is_ok());
                                }
                            }
                            Verdict::No => out.extend(t("NO \"login first\"")),
                            Verdict::NoOrBad => out.extend(t("BAD \"not allowed now\"")),
                        },
                    }
                    if s.write_all(&out).await.is_err() { return; }
                    if close { return; }
                }
            }
            Some(line) = rx.recv() => {
                if s.write_all(&line).await.is_err() { return; }
            }
        }
    }
}

fn kind(c: &murder_model::Command) -> CommandKind {
    use murder_model::Command as C;
    match c {
        C::Activate { .. } => CommandKind::Activate,
        C::Reserve { .. } => CommandKind::Reserve,
        C::Deactivate { .. } => CommandKind::Deactivate,
        C::Delete { .. } => CommandKind::Delete,
        C::Find { .. } => CommandKind::Find,
        C::List { .. } => CommandKind::List,
    }
}

/// The scenario directory of the repository.
pub fn scenarios_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// The example files of `scenarios/README.md` section 9. The fake servers of these tests
/// implement just what the examples need; the whole corpus runs against the reference servers in
/// `tests/embedded.rs`.
pub const EXAMPLES: [&str; 8] = [
    "mupdate/reserve-new.scn",
    "mupdate/reserve-race.scn",
    "mupdate/update-sees-other-activate.scn",
    "mupdate/lex-sync-literal.scn",
    "mupdate/banner-shape.scn",
    "mupdate/logout-bye.scn",
    "mupdate/lex-blank-line.scn",
    "imap/multiappend-two-messages.scn",
];

/// A temporary scenario directory holding only [`EXAMPLES`].
pub fn example_scenarios() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in EXAMPLES {
        let to = dir.path().join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(scenarios_dir().join(name), to).unwrap();
    }
    dir
}

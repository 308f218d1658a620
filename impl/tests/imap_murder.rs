//! Murder backend mode against a tiny fake MUPDATE master that speaks the RFC 3656 wire
//! protocol for AUTHENTICATE, RESERVE, ACTIVATE, DELETE, FIND, LIST and LOGOUT and records what
//! it got (the exact bytes the backend sends). The reconcile cases run against the real master
//! in `imap_reconcile.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod imap_common;

use std::sync::{Arc, Mutex};

use base64::Engine;
use imap_common::TestServer;
use murder_server::imap::MupdateLink;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the fake master received, names it refuses to RESERVE, and the ACL of each name it saw
/// ACTIVATEd (and not DELETEd), which FIND reports at `backend1!default`; LIST reports nothing.
#[derive(Default)]
struct Master {
    log: Mutex<Vec<String>>,
    refuse: Mutex<Vec<String>>,
    active: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Master {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

async fn fake_master() -> (String, Arc<Master>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let master = Arc::new(Master::default());
    let m = master.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let m = m.clone();
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"* AUTH \"PLAIN\"\r\n* OK MUPDATE \"fake\" \"Cyrus Murder\" \"v0\" \"(master)\"\r\n")
                    .await
                    .unwrap();
                let mut line = String::new();
                while r.read_line(&mut line).await.unwrap() > 0 {
                    let l = line.trim_end().to_string();
                    line.clear();
                    let (tag, rest) = l.split_once(' ').unwrap();
                    let words: Vec<String> = rest
                        .split('"')
                        .enumerate()
                        .filter(|(i, s)| i % 2 == 1 || !s.trim().is_empty())
                        .map(|(i, s)| if i % 2 == 1 { s } else { s.trim() }.to_string())
                        .collect();
                    let answer = match words[0].as_str() {
                        "AUTHENTICATE" => {
                            let creds = base64::engine::general_purpose::STANDARD
                                .decode(&words[2])
                                .unwrap();
                            if creds == b"\0murder\0mpw" {
                                "OK \"Authenticated\"".to_string()
                            } else {
                                "NO \"bad credentials\"".to_string()
                            }
                        }
                        "RESERVE" if m.refuse.lock().unwrap().contains(&words[1]) => {
                            m.log.lock().unwrap().push(l.clone());
                            "NO \"Mailbox already reserved\"".to_string()
                        }
                        "FIND" => {
                            m.log.lock().unwrap().push(l.clone());
                            let acl = m.active.lock().unwrap().get(&words[1]).cloned();
                            if let Some(acl) = acl {
                                let data = format!(
                                    "{tag} MAILBOX \"{}\" \"backend1!default\" \"{acl}\"\r\n",
                                    words[1]
                                );
                                w.write_all(data.as_bytes()).await.unwrap();
                            }
                            "OK \"done\"".to_string()
                        }
                        "LOGOUT" => {
                            w.write_all(format!("{tag} OK \"bye\"\r\n").as_bytes())
                                .await
                                .unwrap();
                            break;
                        }
                        _ => {
                            m.log.lock().unwrap().push(l.clone());
                            let mut active = m.active.lock().unwrap();
                            match words[0].as_str() {
                                "ACTIVATE" => {
                                    active.insert(words[1].clone(), words[3].clone());
                                }
                                "DELETE" => {
                                    active.remove(&words[1]);
                                }
                                _ => {}
                            }
                            "OK \"done\"".to_string()
                        }
                    };
                    w.write_all(format!("{tag} {answer}\r\n").as_bytes())
                        .await
                        .unwrap();
                }
            });
        }
    });
    (addr, master)
}

fn link(addr: &str) -> MupdateLink {
    MupdateLink::new(
        addr.to_string(),
        "murder".into(),
        "mpw".into(),
        "backend1".into(),
    )
}

#[tokio::test]
async fn create_reserves_then_activates_with_location_and_acl() {
    let (addr, master) = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(|c| {
        c.mupdate = Some(link(&addr));
        c.data_dir = dir.path().join("d");
    })
    .await;
    let mut c = s.alice().await;
    c.ok("CREATE work/projects").await;
    let log = master.log();
    // The start-up reconcile lists our location; INBOX was created at login the same way.
    assert_eq!(
        log,
        vec![
            "C00 LIST \"backend1!\"",
            "C00 RESERVE \"user.alice\" \"backend1!default\"",
            "C01 ACTIVATE \"user.alice\" \"backend1!default\" \"alice\tlrswipkxtecda\t\"",
            "C00 RESERVE \"user.alice.work.projects\" \"backend1!default\"",
            "C01 ACTIVATE \"user.alice.work.projects\" \"backend1!default\" \"alice\tlrswipkxtecda\t\"",
        ]
    );
    // RENAME reserves the new name first; DELETE removes the master's record (after checking
    // it is ours), then the local mailbox.
    c.ok("RENAME work/projects work/old").await;
    c.ok("DELETE work/old").await;
    let log = master.log();
    assert_eq!(
        log[5..],
        [
            "C00 RESERVE \"user.alice.work.old\" \"backend1!default\"".to_string(),
            "C01 ACTIVATE \"user.alice.work.old\" \"backend1!default\" \"alice\tlrswipkxtecda\t\""
                .to_string(),
            "C02 DELETE \"user.alice.work.projects\"".to_string(),
            "C00 FIND \"user.alice.work.old\"".to_string(),
            "C01 DELETE \"user.alice.work.old\"".to_string(),
        ]
    );
    assert_eq!(c.status("work/old").await, None);
    s.handle.shutdown().await;
    // Restart: the reconcile lists our location (nothing: this fake lists nothing), FINDs the
    // held INBOX, sees it active here with our ACL, and sends nothing else (no blind ACTIVATE).
    let before = master.log().len();
    let s = TestServer::start_with(|c| {
        c.mupdate = Some(link(&addr));
        c.data_dir = dir.path().join("d");
    })
    .await;
    let log = master.log();
    assert_eq!(
        log[before..],
        [
            "C00 LIST \"backend1!\"".to_string(),
            "C01 FIND \"user.alice\"".to_string()
        ]
    );
    drop(s);
}

#[tokio::test]
async fn reserve_refused_means_create_fails_and_nothing_local_remains() {
    let (addr, master) = fake_master().await;
    master
        .refuse
        .lock()
        .unwrap()
        .push("user.alice.taken".to_string());
    let s = TestServer::start_with(|c| c.mupdate = Some(link(&addr))).await;
    let mut c = s.alice().await;
    let (_, t) = c.cmd("CREATE taken").await;
    assert!(t.text.contains(" NO"), "{t:?}");
    assert_eq!(c.status("taken").await, None);
    assert!(
        !master
            .log()
            .iter()
            .any(|l| l.contains("ACTIVATE \"user.alice.taken\""))
    );
    // A RENAME onto a refused name fails too, and the source stays.
    c.ok("CREATE free").await;
    let (_, t) = c.cmd("RENAME free taken").await;
    assert!(t.text.contains(" NO"), "{t:?}");
    assert!(c.status("free").await.is_some());
}

#[tokio::test]
async fn master_unreachable_means_create_fails() {
    // A port with nothing listening.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let s = TestServer::start_with(|c| c.mupdate = Some(link(&addr))).await;
    let mut c = s.alice().await;
    let (_, t) = c.cmd("CREATE x").await;
    assert!(t.text.contains(" NO"), "{t:?}");
    assert_eq!(c.status("x").await, None);
}

#[tokio::test]
async fn local_create_failure_after_reserve_releases_the_name() {
    let (addr, master) = fake_master().await;
    let s = TestServer::start_with(|c| c.mupdate = Some(link(&addr))).await;
    let mut c = s.alice().await;
    // An empty hierarchy level is refused by the local store, after RESERVE succeeded.
    let (_, t) = c.cmd("CREATE bad//name").await;
    assert!(t.text.contains(" NO"), "{t:?}");
    let log = master.log();
    let tail: Vec<&str> = log.iter().rev().take(2).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "C00 RESERVE \"user.alice.bad..name\" \"backend1!default\"",
            "C01 DELETE \"user.alice.bad..name\"",
        ]
    );
    assert_eq!(c.status("bad//name").await, None);
}

/// A minimal MUPDATE client for checking the real master's state.
async fn mupdate_command(addr: &str, command: &str) -> Vec<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        if line.starts_with("* OK") {
            break;
        }
    }
    let creds = base64::engine::general_purpose::STANDARD.encode(b"\0murder\0mpw");
    w.write_all(format!("A AUTHENTICATE \"PLAIN\" \"{creds}\"\r\n{command}\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).await.unwrap() > 0);
        let l = line.trim_end().to_string();
        let done = l.starts_with("C OK") || l.starts_with("C NO") || l.starts_with("C BAD");
        out.push(l);
        if done {
            return out;
        }
    }
}

#[tokio::test]
async fn backend_against_the_real_mupdated_master() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "murder:{PLAIN}mpw\n").unwrap();
    let mut master = tokio::process::Command::new(env!("CARGO_BIN_EXE_mupdated"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("mupdate"))
        .arg("--users")
        .arg(&users)
        .args(["--auth-failure-delay-ms", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(master.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(imap_common::WAIT, out.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    // Another backend holds a name already.
    let r = mupdate_command(&addr, "C RESERVE \"user.alice.taken\" \"other!default\"").await;
    assert!(r.last().unwrap().starts_with("C OK"), "{r:?}");

    let s = TestServer::start_with(|c| c.mupdate = Some(link(&addr))).await;
    let mut c = s.alice().await;
    c.ok("CREATE projects").await;
    let r = mupdate_command(&addr, "C FIND \"user.alice.projects\"").await;
    assert_eq!(
        r[r.len() - 2],
        "C MAILBOX \"user.alice.projects\" \"backend1!default\" \"alice\tlrswipkxtecda\t\""
    );
    let (_, t) = c.cmd("CREATE taken").await;
    assert!(t.text.contains(" NO"), "{t:?}");
    assert_eq!(c.status("taken").await, None);
    c.ok("DELETE projects").await;
    let r = mupdate_command(&addr, "C FIND \"user.alice.projects\"").await;
    assert_eq!(r.len(), 2, "gone from the master: {r:?}");
}

//! Durability of a real `mupdated` process: under concurrent write load it is killed with
//! SIGKILL at a random moment and restarted on the same data directory; every write that had
//! been answered OK must still be there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mupdate_common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mupdate_common::*;
use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;

async fn spawn(dir: &std::path::Path) -> (Child, SocketAddr) {
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, PASSWD).unwrap();
    spawn_mupdated(
        &dir.join("data"),
        &passwd,
        &["--admin", "admin"],
        "warn",
        Stdio::null(),
    )
    .await
}

/// ACTIVATE unique names until the connection breaks; record each one answered OK.
async fn writer(addr: SocketAddr, id: usize, acked: Arc<Mutex<Vec<String>>>) {
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let mut s = BufReader::new(tcp);
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if line.starts_with("* OK MUPDATE") {
            break;
        }
    }
    let login = format!(
        "A AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
        plain("admin", "secret")
    );
    if s.get_mut().write_all(login.as_bytes()).await.is_err() {
        return;
    }
    line.clear();
    if s.read_line(&mut line).await.unwrap_or(0) == 0 || !line.starts_with("A OK") {
        return;
    }
    for i in 0.. {
        let name = format!("user.w{id}.{i}");
        let cmd = format!("W ACTIVATE \"{name}\" \"h!p\" \"acl\"\r\n");
        if s.get_mut().write_all(cmd.as_bytes()).await.is_err() {
            return;
        }
        line.clear();
        match s.read_line(&mut line).await {
            Ok(n) if n > 0 && line == "W OK \"done\"\r\n" => acked.lock().unwrap().push(name),
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..3 {
        let (mut child, addr) = spawn(dir.path()).await;
        let mut writers = Vec::new();
        for w in 0..4 {
            writers.push(tokio::spawn(writer(
                addr,
                round * 10 + w,
                Arc::clone(&acked),
            )));
        }
        // Wait until some writes went through, then kill at a random moment.
        let before = acked.lock().unwrap().len();
        for _ in 0..2000 {
            if acked.lock().unwrap().len() > before + 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pause = rand::rng().random_range(0..100);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        for w in writers {
            tokio::time::timeout(WAIT, w).await.unwrap().unwrap();
        }
        assert!(
            acked.lock().unwrap().len() > before,
            "round {round}: no write succeeded"
        );
    }
    let (mut child, addr) = spawn(dir.path()).await;
    let mut c = Client::admin(addr).await;
    let names = acked.lock().unwrap().clone();
    let listed = c.cmd("L", "LIST").await;
    for name in &names {
        let line = format!("L MAILBOX \"{name}\" \"h!p\" \"acl\"");
        assert!(
            listed.contains(&line),
            "acknowledged {name} lost after SIGKILL"
        );
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

//! Test support for the `mupdate_*` integration tests: an in-process server on 127.0.0.1:0 with
//! a temporary data directory and passwd-file, and a small line-oriented MUPDATE client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use murder_server::auth::UserDb;
use murder_server::mupdate::{Config, ServerHandle, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous timeout that only fires when something is broken.
pub const WAIT: Duration = Duration::from_secs(20);

/// The passwd-file every test server uses.
pub const PASSWD: &str = "admin:{PLAIN}secret\nbob:{PLAIN}bobpw\nslave:{PLAIN}slavepw\n";

/// Users of [`PASSWD`], written to a file and loaded like the binary does.
pub fn users(dir: &std::path::Path) -> Arc<UserDb> {
    let path = dir.join("passwd");
    std::fs::write(&path, PASSWD).unwrap();
    Arc::new(UserDb::load(&path).unwrap())
}

/// A server and its temporary directory.
pub struct TestServer {
    /// The running server.
    pub handle: ServerHandle,
    /// Its address.
    pub addr: SocketAddr,
    /// Holds the data directory and passwd-file.
    pub dir: tempfile::TempDir,
}

/// A test configuration: admins `admin` and `slave`, no auth failure delay.
pub fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::new("127.0.0.1:0".parse().unwrap(), dir.join("data"), users(dir));
    c.admins = vec!["admin".into(), "slave".into()];
    c.server_name = "mupdate.test".into();
    c.limits.auth_failure_delay = Duration::ZERO;
    c
}

/// Start a master with [`config`] adjusted by `f`.
pub async fn server_with(f: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    f(&mut c);
    let handle = start(c).await.unwrap();
    let addr = handle.local_addr();
    TestServer { handle, addr, dir }
}

/// Start a default master.
pub async fn server() -> TestServer {
    server_with(|_| {}).await
}

/// base64 of `\0user\0password`.
pub fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// Start the real `mupdated` binary on 127.0.0.1:0 with `data` and `passwd` plus `extra`
/// arguments, `RUST_LOG=log_level` and stderr to `stderr`; returns it and the address it printed.
pub async fn spawn_mupdated(
    data: &std::path::Path,
    passwd: &std::path::Path,
    extra: &[&str],
    log_level: &str,
    stderr: std::process::Stdio,
) -> (tokio::process::Child, SocketAddr) {
    spawn_mupdated_on("127.0.0.1:0", data, passwd, extra, log_level, stderr).await
}

/// [`spawn_mupdated`] listening on `listen` (a restart on the same port).
pub async fn spawn_mupdated_on(
    listen: &str,
    data: &std::path::Path,
    passwd: &std::path::Path,
    extra: &[&str],
    log_level: &str,
    stderr: std::process::Stdio,
) -> (tokio::process::Child, SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mupdated"))
        .args(["--listen", listen, "--data"])
        .arg(data)
        .arg("--users")
        .arg(passwd)
        .args(["--auth-failure-delay-ms", "0"])
        .args(extra)
        .env("RUST_LOG", log_level)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    tokio::time::timeout(WAIT, out.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    (child, addr)
}

/// A real `mupdated` on `listen` with its data and [`PASSWD`] in `dir`, admins `admin` and
/// `slave`, logging at warn to nowhere (the fault and hostile-client tests).
pub async fn spawn_quiet_mupdated(
    dir: &std::path::Path,
    listen: &str,
) -> (tokio::process::Child, SocketAddr) {
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, PASSWD).unwrap();
    spawn_mupdated_on(
        listen,
        &dir.join("data"),
        &passwd,
        &["--admin", "admin", "--admin", "slave"],
        "warn",
        std::process::Stdio::null(),
    )
    .await
}

/// One random write (ACTIVATE, RESERVE, DEACTIVATE or DELETE) of `user.<prefix><0..names>` on
/// three locations, tagged W; asserts it is answered OK or NO.
pub async fn random_write(c: &mut Client, prefix: &str, names: usize, i: usize) {
    use rand::Rng;
    let mut rng = rand::rng();
    let name = format!("user.{prefix}{}", rng.random_range(0..names));
    let loc = format!("h{}!p", rng.random_range(0..3));
    let cmd = match rng.random_range(0..4) {
        0 => format!("ACTIVATE \"{name}\" \"{loc}\" \"acl{i}\""),
        1 => format!("RESERVE \"{name}\" \"{loc}\""),
        2 => format!("DEACTIVATE \"{name}\" \"{loc}\""),
        _ => format!("DELETE \"{name}\""),
    };
    let r = c.cmd("W", &cmd).await;
    assert!(
        r.len() == 1 && (r[0].starts_with("W OK ") || r[0].starts_with("W NO ")),
        "{r:?}"
    );
}

/// A raw MUPDATE client.
pub struct Client {
    /// The socket.
    pub stream: Halves,
    buf: Vec<u8>,
    /// The banner received on connect.
    pub banner: Vec<String>,
}

/// The socket of a [`Client`]: whole, or split by a test and put back together.
pub enum Halves {
    /// Not split.
    Whole(TcpStream),
    /// Split into owned halves.
    Split(
        tokio::net::tcp::OwnedReadHalf,
        tokio::net::tcp::OwnedWriteHalf,
    ),
}

impl Halves {
    /// Split into owned halves.
    pub fn into_split(
        self,
    ) -> (
        tokio::net::tcp::OwnedReadHalf,
        tokio::net::tcp::OwnedWriteHalf,
    ) {
        match self {
            Halves::Whole(s) => s.into_split(),
            Halves::Split(r, w) => (r, w),
        }
    }

    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Halves::Whole(s) => s.write_all(b).await,
            Halves::Split(_, w) => w.write_all(b).await,
        }
    }

    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            Halves::Whole(s) => s.read_buf(buf).await,
            Halves::Split(r, _) => r.read_buf(buf).await,
        }
    }
}

impl Client {
    /// A client from split halves (after the banner).
    pub fn from_halves(
        r: tokio::net::tcp::OwnedReadHalf,
        w: tokio::net::tcp::OwnedWriteHalf,
    ) -> Client {
        Client {
            stream: Halves::Split(r, w),
            buf: Vec::new(),
            banner: Vec::new(),
        }
    }

    /// Connect and read the banner.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        let mut c = Client {
            stream: Halves::Whole(stream),
            buf: Vec::new(),
            banner: Vec::new(),
        };
        loop {
            let line = c.line().await;
            let last = line.starts_with("* OK MUPDATE");
            c.banner.push(line);
            if last {
                break;
            }
        }
        c
    }

    /// Connect and authenticate as `admin`.
    pub async fn admin(addr: SocketAddr) -> Client {
        Self::login(addr, "admin", "secret").await
    }

    /// Connect and authenticate as `user`.
    pub async fn login(addr: SocketAddr, user: &str, password: &str) -> Client {
        let mut c = Client::connect(addr).await;
        c.send(format!(
            "A AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
            plain(user, password)
        ))
        .await;
        assert_eq!(c.line().await, "A OK \"Authenticated\"");
        c
    }

    /// Send raw bytes.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.unwrap();
    }

    /// Read more bytes into the buffer; false on EOF.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(65536);
        let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
            .await
            .expect("timed out waiting for the server")
            .unwrap_or(0);
        n > 0
    }

    /// One raw line without CRLF (panics on EOF or timeout).
    pub async fn line(&mut self) -> String {
        String::from_utf8_lossy(&self.raw_line().await.expect("unexpected EOF")).into_owned()
    }

    /// One raw line without CRLF, None on EOF.
    pub async fn raw_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// One response with its `{n+}` literals inlined (the literal bytes follow the marker).
    pub async fn response(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.raw_line().await.expect("unexpected EOF");
            out.extend_from_slice(&line);
            let Some(n) = trailing_literal(&line) else {
                return out;
            };
            out.extend_from_slice(b"\r\n");
            while self.buf.len() < n {
                assert!(self.fill().await, "EOF inside a literal");
            }
            out.extend(self.buf.drain(..n));
        }
    }

    /// Responses up to and including the tagged status line of `tag`.
    pub async fn until_done(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let r = String::from_utf8_lossy(&self.response().await).into_owned();
            let done = ["OK", "NO", "BAD", "BYE"]
                .iter()
                .any(|s| r.starts_with(&format!("{tag} {s} ")));
            out.push(r);
            if done {
                return out;
            }
        }
    }

    /// Send a command line (CRLF added) and collect its responses.
    pub async fn cmd(&mut self, tag: &str, rest: &str) -> Vec<String> {
        self.send(format!("{tag} {rest}\r\n")).await;
        self.until_done(tag).await
    }

    /// True when the server closed the connection (after any remaining bytes were read).
    pub async fn closed(&mut self) -> bool {
        loop {
            if !self.buf.is_empty() {
                self.buf.clear();
            }
            if !self.fill().await {
                return true;
            }
        }
    }

    /// Bytes received and not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

fn trailing_literal(line: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(line).ok()?;
    let inner = s.strip_suffix("+}")?;
    let start = inner.rfind('{')?;
    inner[start + 1..].parse().ok()
}

#[path = "../common/mod.rs"]
mod common;
#[allow(unused_imports)]
pub use common::{raise_nofile_limit, vm_rss_kib};

/// A well-behaved client that keeps doing NOOP and FIND round trips on its own connection
/// until stopped; every round trip must succeed (it panics otherwise, failing the test).
pub struct Prober {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Prober {
    /// Log in as admin on `addr` and start probing.
    pub async fn start(addr: SocketAddr) -> Prober {
        let mut c = Client::admin(addr).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut rounds = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(c.cmd("P", "NOOP").await, vec!["P OK \"NOOP complete\""]);
                let r = c.cmd("F", "FIND \"probe.none\"").await;
                assert_eq!(r, vec!["F OK \"Search completed\""]);
                rounds += 1;
                tokio::task::yield_now().await;
            }
            rounds
        });
        Prober { stop, task }
    }

    /// Stop and return how many round trips succeeded (panics if one failed).
    pub async fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("prober stuck")
            .expect("a well-behaved client's round trip failed")
    }
}

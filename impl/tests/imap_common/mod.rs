//! Test support for the imapd integration tests: an in-process server and a raw IMAP client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use murder_server::imap::{self, Config, ServerHandle, UserDb};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for any single wait; only reached when a test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Users of every test: alice/secret and bob/pw.
pub fn users() -> Arc<UserDb> {
    Arc::new(UserDb::parse("alice:{PLAIN}secret\nbob:{PLAIN}pw\n").unwrap())
}

/// A running in-process server with its data directory.
pub struct TestServer {
    /// The handle.
    pub handle: ServerHandle,
    /// Its data directory (kept alive).
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Start with default config, adjusted by `f`.
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join("data"),
            users(),
        );
        f(&mut config);
        let handle = imap::start(config).await.unwrap();
        TestServer { handle, dir }
    }

    /// Start with the default config.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A connected client (greeting read).
    pub async fn client(&self) -> Client<TcpStream> {
        Client::connect(self.handle.local_addr()).await
    }

    /// A client logged in as alice.
    pub async fn alice(&self) -> Client<TcpStream> {
        let mut c = self.client().await;
        c.ok("LOGIN alice secret").await;
        c
    }
}

/// Start the `imapd` binary (`exe`, from `env!("CARGO_BIN_EXE_imapd")`) on a free port: the
/// child (killed on drop), its pid and the address it reported on stdout.
pub async fn spawn_imapd(
    exe: &str,
    data: &Path,
    users: &Path,
) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(exe)
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--users")
        .arg(users)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(WAIT, out.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    (child, addr)
}

/// Number of files in the staging directory.
pub fn staging_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("staging")).map_or(0, |d| d.count())
}

/// One response line, with the literals it carried.
#[derive(Debug, Clone)]
pub struct Line {
    /// The text (literals replaced by `{n}` markers as sent).
    pub text: String,
    /// Literal payloads in order.
    pub literals: Vec<Vec<u8>>,
}

/// A raw IMAP client over any stream.
pub struct Client<S> {
    /// The stream.
    pub stream: S,
    buf: Vec<u8>,
    n: u32,
}

impl Client<TcpStream> {
    /// Connect and read the greeting.
    pub async fn connect(addr: std::net::SocketAddr) -> Client<TcpStream> {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut c = Client::new(stream);
        let greeting = c.line().await.expect("greeting");
        assert!(greeting.text.starts_with("* OK"), "{greeting:?}");
        c
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Wrap a stream (no greeting read).
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: Vec::new(),
            n: 0,
        }
    }

    /// Bytes received but not consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 65536];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("timed out waiting for the server")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response line (None at EOF), literals included.
    pub async fn line(&mut self) -> Option<Line> {
        let mut text = Vec::new();
        let mut literals = Vec::new();
        loop {
            let pos = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                if !self.fill().await {
                    return None;
                }
            };
            let part: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
            text.extend_from_slice(&part);
            let lit = part.strip_suffix(b"}").and_then(|p| {
                let open = p.iter().rposition(|&b| b == b'{')?;
                std::str::from_utf8(&p[open + 1..])
                    .ok()?
                    .parse::<usize>()
                    .ok()
            });
            match lit {
                Some(n) => {
                    while self.buf.len() < n {
                        if !self.fill().await {
                            return None;
                        }
                    }
                    literals.push(self.buf.drain(..n).collect());
                }
                None => {
                    return Some(Line {
                        text: String::from_utf8_lossy(&text).into_owned(),
                        literals,
                    });
                }
            }
        }
    }

    /// Send raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// A fresh tag.
    pub fn tag(&mut self) -> String {
        self.n += 1;
        format!("t{}", self.n)
    }

    /// Read until the line tagged `tag`: (untagged lines, tagged line).
    pub async fn until_tagged(&mut self, tag: &str) -> (Vec<Line>, Line) {
        let mut untagged = Vec::new();
        loop {
            let l = self
                .line()
                .await
                .unwrap_or_else(|| panic!("EOF waiting for {tag}; got {untagged:?}"));
            if l.text.starts_with(&format!("{tag} ")) {
                return (untagged, l);
            }
            untagged.push(l);
        }
    }

    /// Send `tag text` and read to its tagged answer.
    pub async fn cmd(&mut self, text: &str) -> (Vec<Line>, Line) {
        let tag = self.tag();
        self.send(format!("{tag} {text}\r\n").as_bytes()).await;
        self.until_tagged(&tag).await
    }

    /// Like [`Client::cmd`] but asserting OK.
    pub async fn ok(&mut self, text: &str) -> Vec<Line> {
        let (u, t) = self.cmd(text).await;
        assert!(t.text.contains(" OK"), "{text} -> {t:?} ({u:?})");
        u
    }

    /// APPEND with LITERAL+ literals: `messages` are (argument prefix like `(\Seen) `, body).
    pub async fn append_plus(
        &mut self,
        mailbox: &str,
        messages: &[(&str, &[u8])],
    ) -> (Vec<Line>, Line) {
        let tag = self.tag();
        let mut data = format!("{tag} APPEND {mailbox}").into_bytes();
        for (args, body) in messages {
            data.extend_from_slice(format!(" {args}{{{}+}}\r\n", body.len()).as_bytes());
            data.extend_from_slice(body);
        }
        data.extend_from_slice(b"\r\n");
        self.send(&data).await;
        self.until_tagged(&tag).await
    }

    /// APPEND with synchronizing literals, waiting for each `+`.
    pub async fn append_sync(&mut self, mailbox: &str, messages: &[&[u8]]) -> (Vec<Line>, Line) {
        let tag = self.tag();
        let mut head = format!("{tag} APPEND {mailbox}");
        for (i, body) in messages.iter().enumerate() {
            head.push_str(&format!(" {{{}}}\r\n", body.len()));
            self.send(head.as_bytes()).await;
            let l = self.line().await.expect("continuation");
            if !l.text.starts_with('+') {
                return (Vec::new(), l);
            }
            self.send(body).await;
            head = String::new();
            if i + 1 == messages.len() {
                self.send(b"\r\n").await;
            }
        }
        self.until_tagged(&tag).await
    }

    /// (uid, body) of every message of the selected mailbox.
    pub async fn fetch_all(&mut self) -> Vec<(u32, Vec<u8>)> {
        let (u, t) = self.cmd("UID FETCH 1:* (UID BODY.PEEK[])").await;
        assert!(t.text.contains(" OK"), "{t:?}");
        u.into_iter()
            .filter(|l| l.text.contains(" FETCH "))
            .map(|l| {
                let uid = l
                    .text
                    .split("UID ")
                    .nth(1)
                    .unwrap()
                    .split([' ', ')'])
                    .next()
                    .unwrap();
                (uid.parse().unwrap(), l.literals[0].clone())
            })
            .collect()
    }

    /// STATUS (MESSAGES UIDNEXT): None when the mailbox does not exist.
    pub async fn status(&mut self, mailbox: &str) -> Option<(u32, u32)> {
        let (u, t) = self
            .cmd(&format!("STATUS {mailbox} (MESSAGES UIDNEXT)"))
            .await;
        if !t.text.contains(" OK") {
            return None;
        }
        let l = &u.iter().find(|l| l.text.starts_with("* STATUS"))?.text;
        let num = |k: &str| -> u32 {
            l.split(k)
                .nth(1)
                .unwrap()
                .trim()
                .split([' ', ')'])
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        Some((num("MESSAGES "), num("UIDNEXT ")))
    }
}

/// Parse `OK [APPENDUID v set]`: (uidvalidity, uids).
pub fn appenduid(tagged: &Line) -> (u32, Vec<u32>) {
    let rest = tagged.text.split("[APPENDUID ").nth(1).expect("APPENDUID");
    let rest = rest.split(']').next().unwrap();
    let (v, set) = rest.split_once(' ').unwrap();
    (
        v.parse().unwrap(),
        murder_model::multiappend::parse_uid_set(set).expect("uid-set"),
    )
}

//! One benchmark connection: the runner's own [`Conn`] and framer, tags, greeting, login, and
//! "send a command, collect lines up to its tagged status". Shared by the MUPDATE and IMAP
//! workloads; never uses the reference server's codecs.

use std::time::Duration;

use base64::Engine as _;
use tokio::time::Instant;

use super::BenchError;
use crate::run::conn::Conn;
use crate::wire::frame::Line;
use crate::wire::token::{Token, tokenize};

/// The status word ending a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`.
    Ok,
    /// `NO`.
    No,
    /// `BAD`.
    Bad,
}

/// A connected client with a tag counter and a per-read timeout.
pub struct Client {
    conn: Conn,
    tag: u64,
    /// How long any single read may wait.
    pub timeout: Duration,
    /// Capabilities seen in the greeting or a CAPABILITY reply (upper case).
    pub caps: Vec<String>,
}

/// The first two atoms of a line, upper-cased second one (`("A1", "OK")`).
pub fn head(line: &[u8]) -> (Vec<u8>, String) {
    let toks = tokenize(line);
    let atom = |i: usize| match toks.get(i).map(|t| &t.token) {
        Some(Token::Atom(a)) => a.clone(),
        _ => Vec::new(),
    };
    (
        atom(0),
        String::from_utf8_lossy(&atom(1)).to_ascii_uppercase(),
    )
}

/// The value of the third token when it is a string (the mailbox name of a MUPDATE `MAILBOX`
/// line).
pub fn third_string(line: &[u8]) -> Option<Vec<u8>> {
    tokenize(line)
        .get(2)
        .and_then(|t| t.token.string_value().map(<[u8]>::to_vec))
}

/// The status a (upper-case) word names, if any.
pub fn status_of(word: &str) -> Option<Status> {
    match word {
        "OK" => Some(Status::Ok),
        "NO" => Some(Status::No),
        "BAD" => Some(Status::Bad),
        _ => None,
    }
}

/// A quoted string for a command (names used by the benchmark have no `"` or `\`).
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Client {
    /// Connect and read the greeting up to its `* OK` line (IMAP: the first line; MUPDATE: the
    /// last banner line).
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client, BenchError> {
        let conn = Conn::connect(addr, Instant::now() + timeout).await?;
        let mut c = Client {
            conn,
            tag: 0,
            timeout,
            caps: Vec::new(),
        };
        loop {
            let line = c.line().await?;
            let upper = String::from_utf8_lossy(&line.bytes).to_ascii_uppercase();
            if upper.starts_with("* OK") {
                c.caps = capability_words(&upper);
                return Ok(c);
            }
            if upper.starts_with("* BYE") {
                return Err(BenchError::Protocol(format!("greeting: {upper}")));
            }
        }
    }

    /// The next line.
    pub async fn line(&mut self) -> Result<Line, BenchError> {
        Ok(self
            .conn
            .read_line(Instant::now() + self.timeout, self.timeout)
            .await?)
    }

    /// Send raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        Ok(self
            .conn
            .send(
                bytes,
                Instant::now() + self.timeout.max(Duration::from_secs(60)),
            )
            .await?)
    }

    /// A fresh tag.
    pub fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("B{}", self.tag)
    }

    /// Read lines until `tag`'s status; the lines before it are returned too.
    pub async fn wait(&mut self, tag: &str) -> Result<(Status, Vec<Line>), BenchError> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let (t, word) = head(&line.bytes);
            if t == tag.as_bytes()
                && let Some(s) = status_of(&word)
            {
                return Ok((s, lines));
            }
            lines.push(line);
        }
    }

    /// Read lines until `tag`'s status and return it with the status line itself (the lines
    /// before it are dropped).
    pub async fn wait_status_line(&mut self, tag: &str) -> Result<(Status, Vec<u8>), BenchError> {
        loop {
            let line = self.line().await?;
            let (t, word) = head(&line.bytes);
            if t == tag.as_bytes()
                && let Some(s) = status_of(&word)
            {
                return Ok((s, line.bytes));
            }
        }
    }

    /// Like [`Client::wait`] but only counts the lines before the status (LIST of 100,000).
    pub async fn wait_counting(&mut self, tag: &str) -> Result<(Status, u64), BenchError> {
        let mut n = 0;
        loop {
            let line = self.line().await?;
            let (t, word) = head(&line.bytes);
            if t == tag.as_bytes() {
                if let Some(s) = status_of(&word) {
                    return Ok((s, n));
                }
                n += 1;
            }
        }
    }

    /// Send `TAG text\r\n` and wait for its status.
    pub async fn command(&mut self, text: &str) -> Result<(Status, Vec<Line>), BenchError> {
        let tag = self.next_tag();
        self.send(format!("{tag} {text}\r\n").as_bytes()).await?;
        self.wait(&tag).await
    }

    /// MUPDATE `AUTHENTICATE "PLAIN"` with an initial response.
    pub async fn mupdate_login(&mut self, user: &str, password: &str) -> Result<(), BenchError> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        let (s, _) = self
            .command(&format!("AUTHENTICATE \"PLAIN\" \"{b64}\""))
            .await?;
        ok_or(s, "AUTHENTICATE PLAIN")
    }

    /// IMAP `LOGIN`, then `CAPABILITY` (capabilities may change after login).
    pub async fn imap_login(&mut self, user: &str, password: &str) -> Result<(), BenchError> {
        let (s, _) = self
            .command(&format!("LOGIN {} {}", quote(user), quote(password)))
            .await?;
        ok_or(s, "LOGIN")?;
        let (s, lines) = self.command("CAPABILITY").await?;
        ok_or(s, "CAPABILITY")?;
        for l in lines {
            let upper = String::from_utf8_lossy(&l.bytes).to_ascii_uppercase();
            if upper.starts_with("* CAPABILITY") {
                self.caps = upper.split_whitespace().map(str::to_string).collect();
            }
        }
        Ok(())
    }

    /// Whether a capability was advertised.
    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }
}

fn capability_words(greeting: &str) -> Vec<String> {
    match (greeting.find("[CAPABILITY "), greeting.find(']')) {
        (Some(a), Some(b)) if b > a => greeting
            .get(a + 12..b)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `Ok` or a protocol error naming the command.
pub fn ok_or(s: Status, what: &str) -> Result<(), BenchError> {
    if s == Status::Ok {
        Ok(())
    } else {
        Err(BenchError::Protocol(format!("{what} answered {s:?}")))
    }
}

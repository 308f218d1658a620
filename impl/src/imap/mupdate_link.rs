//! The backend's MUPDATE client (RFC 3656): how a Murder backend keeps the master's mailbox
//! list in step with its own.
//!
//! Every operation is one short connection: read the banner (up to `* OK`), `AUTHENTICATE
//! "PLAIN" "<base64>"`, the command(s), `LOGOUT`. The names and values sent:
//! * mailbox name: `user.<owner>` for INBOX, `user.<owner>.<name>` otherwise, with the IMAP
//!   hierarchy separator `/` mapped to Cyrus's `.`;
//! * location: `<server-name>!default` (Cyrus `server!partition`);
//! * ACL (ACTIVATE): `<owner>\tlrswipkxtecda\t`, Cyrus's tab-separated `identifier\trights\t`
//!   list giving the owner all rights.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where and as whom the backend talks to the MUPDATE master.
#[derive(Clone, Debug)]
pub struct MupdateLink {
    /// `host:port` of the master.
    pub addr: String,
    /// SASL PLAIN user.
    pub user: String,
    /// SASL PLAIN password.
    pub password: String,
    /// This backend's server name (the location is `<server_name>!default`).
    pub server_name: String,
    /// Bound on one whole operation (connect to LOGOUT). Default 30 s.
    pub timeout: Duration,
}

/// One MUPDATE write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MupdateOp {
    /// `RESERVE name location`.
    Reserve(String),
    /// `ACTIVATE name location acl`.
    Activate {
        /// Mailbox name.
        name: String,
        /// ACL string.
        acl: String,
    },
    /// `DELETE name`.
    Delete(String),
}

/// Why a MUPDATE operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MupdateError {
    /// The master answered NO (or BAD) to the command.
    #[error("MUPDATE master refused: {0}")]
    Refused(String),
    /// Connection, protocol or authentication failure.
    #[error("MUPDATE master unavailable: {0}")]
    Unavailable(String),
}

/// The MUPDATE name of `owner`'s mailbox `name`.
pub fn mupdate_name(owner: &str, name: &str) -> String {
    if name == "INBOX" {
        format!("user.{owner}")
    } else {
        format!("user.{owner}.{}", name.replace('/', "."))
    }
}

/// The ACL sent with ACTIVATE for a mailbox owned by `owner`.
pub fn owner_acl(owner: &str) -> String {
    format!("{owner}\tlrswipkxtecda\t")
}

fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            q.push('\\');
        }
        q.push(ch);
    }
    q.push('"');
    q
}

impl MupdateLink {
    /// A link with the default timeout.
    pub fn new(addr: String, user: String, password: String, server_name: String) -> Self {
        MupdateLink {
            addr,
            user,
            password,
            server_name,
            timeout: Duration::from_secs(30),
        }
    }

    /// `<server-name>!default`.
    pub fn location(&self) -> String {
        format!("{}!default", self.server_name)
    }

    /// Run `ops` on one connection; the result of each (stops at the first failure).
    pub async fn run(&self, ops: &[MupdateOp]) -> Result<(), MupdateError> {
        tokio::time::timeout(self.timeout, self.run_inner(ops))
            .await
            .map_err(|_| MupdateError::Unavailable("timed out".into()))?
    }

    /// One operation on its own connection.
    pub async fn one(&self, op: MupdateOp) -> Result<(), MupdateError> {
        self.run(std::slice::from_ref(&op)).await
    }

    async fn run_inner(&self, ops: &[MupdateOp]) -> Result<(), MupdateError> {
        let io = |e: std::io::Error| MupdateError::Unavailable(e.to_string());
        let tcp = TcpStream::connect(&self.addr).await.map_err(io)?;
        let (r, mut w) = tcp.into_split();
        let mut r = BufReader::new(r);
        // Banner: untagged lines up to "* OK".
        loop {
            let line = read_line(&mut r).await?;
            if line.starts_with("* OK") {
                break;
            }
            if line.starts_with("* BYE") {
                return Err(MupdateError::Unavailable(line));
            }
        }
        let mut creds = Vec::new();
        creds.push(0);
        creds.extend_from_slice(self.user.as_bytes());
        creds.push(0);
        creds.extend_from_slice(self.password.as_bytes());
        let b64 = crate::auth::sasl::encode_base64(&creds);
        w.write_all(format!("A01 AUTHENTICATE \"PLAIN\" \"{b64}\"\r\n").as_bytes())
            .await
            .map_err(io)?;
        let auth = tagged(&mut r, "A01").await?;
        if !auth.starts_with("OK") {
            return Err(MupdateError::Unavailable(format!("authentication: {auth}")));
        }
        let loc = quote(&self.location());
        let mut result = Ok(());
        for (i, op) in ops.iter().enumerate() {
            let tag = format!("C{i:02}");
            let cmd = match op {
                MupdateOp::Reserve(n) => format!("{tag} RESERVE {} {loc}\r\n", quote(n)),
                MupdateOp::Activate { name, acl } => {
                    format!("{tag} ACTIVATE {} {loc} {}\r\n", quote(name), quote(acl))
                }
                MupdateOp::Delete(n) => format!("{tag} DELETE {}\r\n", quote(n)),
            };
            w.write_all(cmd.as_bytes()).await.map_err(io)?;
            let answer = tagged(&mut r, &tag).await?;
            if !answer.starts_with("OK") {
                result = Err(MupdateError::Refused(answer));
                break;
            }
        }
        w.write_all(b"Z01 LOGOUT\r\n").await.map_err(io)?;
        // Best effort: the master answers BYE/OK and closes.
        let _ = tagged(&mut r, "Z01").await;
        result
    }
}

async fn read_line(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Result<String, MupdateError> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(64 * 1024)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| MupdateError::Unavailable(e.to_string()))?;
    if n == 0 {
        return Err(MupdateError::Unavailable("connection closed".into()));
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

/// Read lines until the one tagged `tag`; return what follows the tag.
async fn tagged(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    tag: &str,
) -> Result<String, MupdateError> {
    for _ in 0..100_000 {
        let line = read_line(r).await?;
        if let Some(rest) = line.strip_prefix(tag).and_then(|l| l.strip_prefix(' ')) {
            return Ok(rest.to_string());
        }
    }
    Err(MupdateError::Unavailable("no tagged answer".into()))
}

use tokio::io::AsyncReadExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(mupdate_name("bob", "INBOX"), "user.bob");
        assert_eq!(mupdate_name("bob", "a/b"), "user.bob.a.b");
        assert_eq!(owner_acl("bob"), "bob\tlrswipkxtecda\t");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }
}

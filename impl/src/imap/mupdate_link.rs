//! The backend's MUPDATE client (RFC 3656): one short connection per operation or reconcile
//! pass, commands written with the server's own string encoder and answers read with
//! [`crate::mupdate::reply`] (sans-IO, bounded: quoted strings and literals alike).
//!
//! A connection reads the banner (up to `* OK`), sends `AUTHENTICATE "PLAIN" "<base64>"`, then
//! the commands (tags `C00`, `C01`, ...) and `LOGOUT`. The names and values sent:
//! * mailbox name: `user.<owner>` for INBOX, `user.<owner>.<name>` otherwise, with the IMAP
//!   hierarchy separator `/` mapped to Cyrus's `.`;
//! * location: `<server-name>!default` (Cyrus `server!partition`); a record whose location is
//!   `<server-name>` or starts with `<server-name>!` is this backend's;
//! * ACL (ACTIVATE): `<owner>\tlrswipkxtecda\t`, Cyrus's tab-separated `identifier\trights\t`
//!   list giving the owner all rights.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use murder_model::{Change, MailboxEntry, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::reconcile::ReconcileStatus;
use crate::mupdate::reply::{Reply, ReplyDecoder, ReplyLimits, take_line};
use crate::mupdate::response::{Status, put_string};

/// Where and as whom the backend talks to the MUPDATE master, and how often it reconciles.
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
    /// Bound on connecting and authenticating, and on each command's answer. Default 30 s.
    pub timeout: Duration,
    /// While a reconcile is owed (the last pass failed, or an operation lost the master in the
    /// middle), a pass is tried this often. Default 30 s.
    pub retry_interval: Duration,
    /// A full reconcile pass runs this often even when nothing failed (it repairs records
    /// changed behind the backend's back). Default 1 hour.
    pub reconcile_interval: Duration,
    /// Size limits on the master's answers. Default: 64 KiB lines and literals.
    pub limits: ReplyLimits,
    /// Published after every reconcile pass (shared by clones: subscribe with
    /// [`MupdateLink::reconcile_status`]).
    pub status: Arc<watch::Sender<ReconcileStatus>>,
}

/// Most commands written at once by [`MupdateConnection::batch`] before their answers are read
/// (keeps both sides' socket buffers from filling: 128 small commands and answers).
pub const PIPELINE_DEPTH: usize = 128;

/// One MUPDATE command the backend sends (the location is always its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MupdateCommand {
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
    Delete(Vec<u8>),
    /// `FIND name`.
    Find(String),
    /// `LIST [prefix]`.
    List(Option<String>),
}

/// Why a MUPDATE operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MupdateError {
    /// The master answered NO (or BAD) to the command.
    #[error("MUPDATE master refused: {0}")]
    Refused(String),
    /// Connection, protocol or authentication failure: a command in flight may or may not have
    /// been committed.
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

impl MupdateLink {
    /// A link with the default timeout, intervals and limits.
    pub fn new(addr: String, user: String, password: String, server_name: String) -> Self {
        MupdateLink {
            addr,
            user,
            password,
            server_name,
            timeout: Duration::from_secs(30),
            retry_interval: Duration::from_secs(30),
            reconcile_interval: Duration::from_secs(3600),
            limits: ReplyLimits::default(),
            status: Arc::new(watch::channel(ReconcileStatus::default()).0),
        }
    }

    /// `<server-name>!default`.
    pub fn location(&self) -> String {
        format!("{}!default", self.server_name)
    }

    /// Whether `location` is this backend's: `<server-name>` alone or with any `!partition`.
    pub fn is_ours(&self, location: &[u8]) -> bool {
        location
            .strip_prefix(self.server_name.as_bytes())
            .is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'!'))
    }

    /// The reconcile passes' outcomes so far (see [`ReconcileStatus`]).
    pub fn reconcile_status(&self) -> watch::Receiver<ReconcileStatus> {
        self.status.subscribe()
    }

    /// Connect, read the banner and authenticate.
    pub async fn connect(&self) -> Result<MupdateConnection, MupdateError> {
        tokio::time::timeout(self.timeout, self.connect_inner())
            .await
            .map_err(|_| MupdateError::Unavailable("timed out".into()))?
    }

    async fn connect_inner(&self) -> Result<MupdateConnection, MupdateError> {
        let tcp = TcpStream::connect(&self.addr).await.map_err(io)?;
        let _ = tcp.set_nodelay(true);
        let mut c = MupdateConnection {
            tcp,
            buf: BytesMut::with_capacity(4096),
            decoder: ReplyDecoder::new(self.limits),
            location: self.location(),
            timeout: self.timeout,
            next_tag: 0,
            max_line: self.limits.max_line,
        };
        // Banner: untagged lines up to "* OK" (bounded: a server sends a handful).
        let mut banner_ok = false;
        for _ in 0..64 {
            let line = c.raw_line().await?;
            if line.starts_with(b"* OK") {
                banner_ok = true;
                break;
            }
            if line.starts_with(b"* BYE") {
                return Err(MupdateError::Unavailable(lossy(&line)));
            }
        }
        if !banner_ok {
            return Err(MupdateError::Unavailable("no banner".into()));
        }
        let mut creds = vec![0];
        creds.extend_from_slice(self.user.as_bytes());
        creds.push(0);
        creds.extend_from_slice(self.password.as_bytes());
        let b64 = crate::auth::sasl::encode_base64(&creds);
        c.write(format!("A01 AUTHENTICATE \"PLAIN\" \"{b64}\"\r\n").as_bytes())
            .await?;
        let (status, text, _) = c.answer(b"A01").await?;
        if status != Status::Ok {
            return Err(MupdateError::Unavailable(format!("authentication: {text}")));
        }
        Ok(c)
    }
}

/// An authenticated connection to the master.
#[derive(Debug)]
pub struct MupdateConnection {
    tcp: TcpStream,
    buf: BytesMut,
    decoder: ReplyDecoder,
    location: String,
    timeout: Duration,
    next_tag: u32,
    max_line: usize,
}

fn io(e: std::io::Error) -> MupdateError {
    MupdateError::Unavailable(e.to_string())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl MupdateConnection {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), MupdateError> {
        self.tcp.write_all(bytes).await.map_err(io)
    }

    async fn fill(&mut self) -> Result<(), MupdateError> {
        if self.tcp.read_buf(&mut self.buf).await.map_err(io)? == 0 {
            return Err(MupdateError::Unavailable("connection closed".into()));
        }
        Ok(())
    }

    async fn raw_line(&mut self) -> Result<Vec<u8>, MupdateError> {
        loop {
            let line = take_line(&mut self.buf, self.max_line)
                .map_err(|e| MupdateError::Unavailable(e.to_string()))?;
            if let Some(line) = line {
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    /// Data lines and the final status of the command tagged `tag`.
    async fn answer(&mut self, tag: &[u8]) -> Result<(Status, String, Vec<Record>), MupdateError> {
        let mut data = Vec::new();
        loop {
            let reply = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| MupdateError::Unavailable(e.to_string()))?;
            match reply {
                None => self.fill().await?,
                Some(Reply::Status {
                    tag: t,
                    status,
                    text,
                }) if t == tag => {
                    return Ok((status, lossy(&text), data));
                }
                Some(Reply::Data {
                    tag: t,
                    change: Change::Upsert(r),
                }) if t == tag => {
                    // Bounded by the master's database size, which the operator controls.
                    data.push(r);
                }
                // Lines of another tag (none are expected): ignored.
                Some(_) => {}
            }
        }
    }

    /// Append `<tag> <WORD> <args...>\r\n` for `cmd` to `out`; the tag.
    fn encode(&mut self, cmd: &MupdateCommand, out: &mut Vec<u8>) -> String {
        let tag = format!("C{:02}", self.next_tag);
        self.next_tag = self.next_tag.saturating_add(1);
        let loc = self.location.as_bytes();
        let (word, args): (&str, Vec<&[u8]>) = match cmd {
            MupdateCommand::Reserve(n) => ("RESERVE", vec![n.as_bytes(), loc]),
            MupdateCommand::Activate { name, acl } => {
                ("ACTIVATE", vec![name.as_bytes(), loc, acl.as_bytes()])
            }
            MupdateCommand::Delete(n) => ("DELETE", vec![n.as_slice()]),
            MupdateCommand::Find(n) => ("FIND", vec![n.as_bytes()]),
            MupdateCommand::List(Some(p)) => ("LIST", vec![p.as_bytes()]),
            MupdateCommand::List(None) => ("LIST", vec![]),
        };
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(word.as_bytes());
        for a in args {
            out.push(b' ');
            put_string(out, a);
        }
        out.extend_from_slice(b"\r\n");
        tag
    }

    /// Send `cmds` pipelined ([`PIPELINE_DEPTH`] per write, each write bounded by the link
    /// timeout) and read their answers in order: per command its data lines, or the text of
    /// its NO/BAD. A lost connection fails the whole batch.
    pub async fn batch(
        &mut self,
        cmds: &[MupdateCommand],
    ) -> Result<Vec<Result<Vec<Record>, String>>, MupdateError> {
        let mut results = Vec::with_capacity(cmds.len());
        for chunk in cmds.chunks(PIPELINE_DEPTH) {
            let mut out = Vec::new();
            let tags: Vec<String> = chunk.iter().map(|c| self.encode(c, &mut out)).collect();
            let timeout = self.timeout;
            let answers = tokio::time::timeout(timeout, async {
                self.write(&out).await?;
                let mut answers = Vec::with_capacity(tags.len());
                for tag in &tags {
                    answers.push(self.answer(tag.as_bytes()).await?);
                }
                Ok::<_, MupdateError>(answers)
            })
            .await
            .map_err(|_| MupdateError::Unavailable("the master did not answer in time".into()))??;
            for (status, text, data) in answers {
                results.push(match status {
                    Status::Ok => Ok(data),
                    Status::No | Status::Bad => Err(text),
                    Status::Bye => return Err(MupdateError::Unavailable(text)),
                });
            }
        }
        Ok(results)
    }

    /// One command; NO/BAD is [`MupdateError::Refused`].
    async fn command(&mut self, cmd: MupdateCommand) -> Result<Vec<Record>, MupdateError> {
        let mut answers = self.batch(std::slice::from_ref(&cmd)).await?;
        match answers.pop() {
            Some(Ok(data)) => Ok(data),
            Some(Err(text)) => Err(MupdateError::Refused(text)),
            None => Err(MupdateError::Unavailable("no answer".into())),
        }
    }

    /// `RESERVE name <our location>`.
    pub async fn reserve(&mut self, name: &str) -> Result<(), MupdateError> {
        self.command(MupdateCommand::Reserve(name.into()))
            .await
            .map(drop)
    }

    /// `ACTIVATE name <our location> acl`.
    pub async fn activate(&mut self, name: &str, acl: &str) -> Result<(), MupdateError> {
        let cmd = MupdateCommand::Activate {
            name: name.into(),
            acl: acl.into(),
        };
        self.command(cmd).await.map(drop)
    }

    /// `DELETE name` (any byte string: stale records may carry names this backend never made).
    pub async fn delete(&mut self, name: &[u8]) -> Result<(), MupdateError> {
        self.command(MupdateCommand::Delete(name.to_vec()))
            .await
            .map(drop)
    }

    /// `FIND name`: the record, if any.
    pub async fn find(&mut self, name: &str) -> Result<Option<Record>, MupdateError> {
        let data = self.command(MupdateCommand::Find(name.into())).await?;
        Ok(data.into_iter().find(|r| r.name == name.as_bytes()))
    }

    /// `LIST [prefix]` (RFC 3656 4.6): the records whose location starts with `prefix`.
    pub async fn list(&mut self, prefix: Option<&str>) -> Result<Vec<Record>, MupdateError> {
        self.command(MupdateCommand::List(prefix.map(str::to_string)))
            .await
    }

    /// `LOGOUT`, best effort (the work is done; the master closes the connection).
    pub async fn logout(mut self) {
        let tag = b"Z01";
        if self.write(b"Z01 LOGOUT\r\n").await.is_ok() {
            let _ = tokio::time::timeout(self.timeout, self.answer(tag)).await;
        }
    }
}

/// Whether a record is active at `location` with `acl`.
pub fn is_active_at(record: &Record, location: &str, acl: &str) -> bool {
    matches!(&record.entry, MailboxEntry::Active { location: l, acl: a }
        if l == location.as_bytes() && a == acl.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(mupdate_name("bob", "INBOX"), "user.bob");
        assert_eq!(mupdate_name("bob", "a/b"), "user.bob.a.b");
        assert_eq!(owner_acl("bob"), "bob\tlrswipkxtecda\t");
    }

    #[test]
    fn our_locations() {
        let l = MupdateLink::new("a:1".into(), "u".into(), "p".into(), "be1".into());
        assert!(l.is_ours(b"be1!default"));
        assert!(l.is_ours(b"be1!other"));
        assert!(!l.is_ours(b"be10!default"));
        assert!(l.is_ours(b"be1"));
        assert!(!l.is_ours(b"be"));
        assert!(!l.is_ours(b"xbe1!default"));
    }
}

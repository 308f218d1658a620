//! One IMAP connection: reading frames, dispatching commands, keeping the selected mailbox's
//! view (message sequence numbers) in step with the store.
//!
//! The selected view is the list of UIDs this session has announced. New messages are
//! announced with `* n EXISTS` / `* r RECENT` as soon as the store publishes them (also while
//! the client is idle, RFC 3501 7.3.1 allows it); expunges only when a command other than
//! FETCH, STORE or SEARCH completes (RFC 3501 7.4.1).

mod append;
mod auth;
mod copy;
mod fetch;
mod mailbox;
mod search;

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Config;
use super::Limits;
use super::codec::command::{Command, parse_command, parse_tag_and_name};
use super::codec::framer::{Frame, FrameError, Framer, LiteralSpec};
use super::codec::parser::{Cursor, Piece};
use super::faults::{Fault, Faults};
use super::mailstore::MailStore;
use super::reconcile::MurderBackend;
use crate::auth::UserDb;
use crate::net::{ShutdownSignal, Stream};

/// Most pieces (line parts and literals) a command other than APPEND may have.
const MAX_COMMAND_PIECES: usize = 64;

/// What every session shares.
pub struct Shared {
    /// The store.
    pub store: Arc<MailStore>,
    /// Users.
    pub users: Arc<UserDb>,
    /// STARTTLS acceptor.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// LOGINDISABLED before TLS.
    pub require_tls: bool,
    /// Backend mode: the MUPDATE link, quarantined mailboxes, owed reconcile.
    pub murder: Option<Arc<MurderBackend>>,
    /// Limits.
    pub limits: Limits,
    /// Faults.
    pub faults: Faults,
    /// GSSAPI acceptor credentials (AUTH=GSSAPI offered when set).
    pub gssapi: Option<crate::auth::exchange::Acceptor>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .finish()
    }
}

impl Shared {
    /// From the configuration and the opened store.
    pub fn new(config: &Config, store: Arc<MailStore>) -> Shared {
        Shared {
            store: store.clone(),
            users: config.users.clone(),
            tls: config.tls.clone().map(tokio_rustls::TlsAcceptor::from),
            require_tls: config.require_tls,
            murder: config
                .mupdate
                .clone()
                .map(|link| Arc::new(MurderBackend::new(link, store.clone(), &config.data_dir))),
            limits: config.limits.clone(),
            faults: config.faults.clone(),
            gssapi: config.gssapi.clone(),
        }
    }
}

/// Why a session ends.
#[derive(Debug)]
pub(crate) enum End {
    /// Clean end (LOGOUT, EOF, BYE sent).
    Closed,
    /// I/O error.
    Io(std::io::Error),
    /// The server is shutting down.
    Shutdown,
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        End::Io(e)
    }
}

type Res<T> = Result<T, End>;

/// The selected mailbox.
#[derive(Debug)]
pub(crate) struct Selected {
    pub name: String,
    pub id: u64,
    pub read_only: bool,
    /// UIDs in message-sequence order (seq = index + 1).
    pub uids: Vec<u32>,
    /// UIDs this session reports as \Recent.
    pub recent: BTreeSet<u32>,
    pub watch: watch::Receiver<u64>,
    /// The mailbox `modseq` up to which flag changes were reported.
    pub modseq_seen: u64,
}

/// A connection's protocol state.
pub struct Session {
    conn: Stream,
    rbuf: BytesMut,
    out: Vec<u8>,
    framer: Framer,
    shared: Arc<Shared>,
    user: Option<String>,
    selected: Option<Selected>,
    /// Failed LOGIN/AUTHENTICATE attempts so far (closed at [`Limits::max_auth_failures`]).
    auth_failures: u32,
}

enum Flow {
    Continue,
    Close,
    /// STARTTLS answered OK: hand the connection to TLS (done by [`Session::run`], which owns
    /// the stream).
    StartTls(tokio_rustls::TlsAcceptor),
}

impl Session {
    /// A session on a fresh connection.
    pub fn new(tcp: TcpStream, shared: Arc<Shared>) -> Session {
        Session {
            conn: Stream::Plain(tcp),
            rbuf: BytesMut::with_capacity(shared.limits.read_chunk),
            out: Vec::with_capacity(4096),
            framer: Framer::new(shared.limits.max_line),
            shared,
            user: None,
            selected: None,
            auth_failures: 0,
        }
    }

    /// Serve the connection until LOGOUT, EOF, error or timeout.
    pub async fn run(mut self, shutdown: ShutdownSignal) {
        self.push_line(&format!(
            "* OK [CAPABILITY {}] imapd ready",
            self.capabilities()
        ));
        loop {
            let result = tokio::select! {
                r = self.serve() => r,
                _ = shutdown.wait() => Err(End::Shutdown),
            };
            match result {
                Ok(Flow::StartTls(acceptor)) => {
                    // Anything the client pipelined after STARTTLS was sent in plaintext:
                    // discard it (RFC 3501 6.2.1; the STARTTLS command-injection attack).
                    let kept = if self.shared.faults.has(Fault::StarttlsExecutesPipelined) {
                        std::mem::take(&mut self.rbuf)
                    } else {
                        BytesMut::new()
                    };
                    let handshake = self.conn.upgrade_discarding(&acceptor, &mut self.rbuf);
                    match tokio::time::timeout(self.shared.limits.idle_timeout, handshake).await {
                        Ok(Ok(tls)) => self.conn = tls,
                        Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    }
                    self.framer = Framer::new(self.shared.limits.max_line);
                    self.rbuf = kept;
                    continue;
                }
                Ok(Flow::Continue | Flow::Close) | Err(End::Closed) => {}
                Err(End::Shutdown) => self.push_line("* BYE Server shutting down"),
                Err(End::Io(e)) => tracing::debug!("connection ended: {e}"),
            }
            let _ = self.flush().await;
            let _ = self.conn.shutdown().await;
            return;
        }
    }

    async fn serve(&mut self) -> Res<Flow> {
        self.flush().await?;
        loop {
            let frame = self.next_frame(true).await?;
            let Frame::Line { text, literal } = frame else {
                continue;
            };
            match self.command(text, literal).await? {
                Flow::Continue => {}
                flow => {
                    self.flush().await?;
                    return Ok(flow);
                }
            }
            self.flush().await?;
        }
    }

    fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS SASL-IR");
        if self.shared.tls.is_some() && !self.conn.is_tls() {
            caps.push_str(" STARTTLS");
        }
        if self.login_disabled() {
            caps.push_str(" LOGINDISABLED");
        }
        let mechs = crate::auth::exchange::offered_mechanisms(
            !self.login_disabled(),
            self.shared.gssapi.as_ref(),
        );
        for m in mechs {
            caps.push_str(" AUTH=");
            caps.push_str(m);
        }
        caps
    }

    fn login_disabled(&self) -> bool {
        self.shared.require_tls && !self.conn.is_tls()
    }

    // ---- output ----

    fn push_line(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn tagged(&mut self, tag: &str, status: &str, text: &str) {
        self.push_line(&format!("{tag} {status} {text}"));
    }

    async fn flush(&mut self) -> Res<()> {
        if !self.out.is_empty() {
            self.conn.write_all(&self.out).await?;
            self.out.clear();
        }
        self.conn.flush().await?;
        Ok(())
    }

    // ---- input ----

    /// Read more bytes; while `idle` and a mailbox is selected, announce new messages.
    async fn read_more(&mut self, idle: bool) -> Res<()> {
        let timeout = self.shared.limits.idle_timeout;
        self.rbuf.reserve(self.shared.limits.read_chunk);
        loop {
            let watching = idle && self.selected.is_some();
            let read = async {
                if watching {
                    let sel = self.selected.as_mut()?;
                    tokio::select! {
                        r = self.conn.read_buf(&mut self.rbuf) => Some(r),
                        _ = sel.watch.changed() => None,
                    }
                } else {
                    Some(self.conn.read_buf(&mut self.rbuf).await)
                }
            };
            match tokio::time::timeout(timeout, read).await {
                Err(_) => {
                    self.push_line("* BYE Autologout; idle for too long");
                    return Err(End::Closed);
                }
                Ok(None) => {
                    // The selected mailbox changed while we wait for the client.
                    self.sync_selected(false);
                    self.flush().await?;
                }
                Ok(Some(Ok(0))) => return Err(End::Closed),
                Ok(Some(Ok(_))) => return Ok(()),
                Ok(Some(Err(e))) => return Err(End::Io(e)),
            }
        }
    }

    /// The next frame. A recoverable framing error is answered with an untagged BAD and the
    /// next frame is returned; a fatal one ends the session with BYE.
    async fn next_frame(&mut self, idle: bool) -> Res<Frame> {
        loop {
            match self.framer.next_frame(&mut self.rbuf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => self.read_more(idle && self.framer.at_line_start()).await?,
                Err(e @ FrameError::BareLf) => {
                    self.push_line(&format!("* BAD {e}"));
                }
                Err(e) => {
                    self.push_line(&format!("* BYE {e}"));
                    return Err(End::Closed);
                }
            }
        }
    }

    /// Inside a command: the next line (after a literal).
    async fn next_line(&mut self) -> Res<(Bytes, Option<LiteralSpec>)> {
        match self.next_frame(false).await? {
            Frame::Line { text, literal } => Ok((text, literal)),
            // Cannot happen: literal frames only follow a literal announcement.
            _ => {
                self.push_line("* BYE internal framing error");
                Err(End::Closed)
            }
        }
    }

    /// Accept a small (already size-checked) literal, read it and the line after it into
    /// `pieces`; returns the literal announced at the end of that line.
    async fn read_small_literal(
        &mut self,
        spec: LiteralSpec,
        pieces: &mut Vec<Piece>,
    ) -> Res<Option<LiteralSpec>> {
        if spec.sync {
            self.framer.accept_literal();
            self.push_line("+ Ready for literal data");
            self.flush().await?;
        }
        let data = self.read_literal().await?;
        pieces.push(Piece::Literal(Bytes::from(data)));
        let (t, l) = self.next_line().await?;
        pieces.push(Piece::Text(t));
        Ok(l)
    }

    /// Read a whole (small, already size-checked) literal into memory.
    async fn read_literal(&mut self) -> Res<Vec<u8>> {
        let mut data = Vec::new();
        loop {
            match self.next_frame(false).await? {
                Frame::LiteralData(b) => data.extend_from_slice(&b),
                Frame::LiteralEnd => return Ok(data),
                Frame::Line { .. } => {
                    self.push_line("* BYE internal framing error");
                    return Err(End::Closed);
                }
            }
        }
    }

    /// The client announced literal `spec` but the command is refused: keep the stream in
    /// sync. For `{n}` nothing was sent; for `{n+}` consume the literal and every following
    /// `{n+}` of the same command, up to its end or a `{n}` (which the tagged answer refuses).
    /// Returns false when the connection must be closed (oversized `{n+}`: BYE sent).
    async fn skip_command(&mut self, spec: Option<LiteralSpec>) -> Res<bool> {
        let mut spec = spec;
        while let Some(s) = spec {
            if s.sync {
                self.framer.reject_literal();
                return Ok(true);
            }
            if self
                .shared
                .faults
                .has(Fault::ExecutePipelinedAfterRejectedAppend)
            {
                self.framer.abandon_literal();
                return Ok(true);
            }
            if s.len > self.shared.limits.max_message_size {
                if self.shared.faults.has(Fault::LiteralPlusNotConsumed) {
                    self.framer.abandon_literal();
                    return Ok(true);
                }
                return Ok(false);
            }
            loop {
                match self.next_frame(false).await? {
                    Frame::LiteralData(_) => {}
                    Frame::LiteralEnd => break,
                    Frame::Line { .. } => break,
                }
            }
            spec = self.next_line().await?.1;
        }
        Ok(true)
    }

    /// Answer a refused command after [`Session::skip_command`].
    async fn refuse(
        &mut self,
        tag: &str,
        status: &str,
        text: &str,
        spec: Option<LiteralSpec>,
    ) -> Res<Flow> {
        if let Some(s) = spec
            && s.sync
            && self.shared.faults.has(Fault::RefusedSyncLiteralSkipped)
        {
            self.tagged(tag, status, text);
            self.flush().await?;
            self.framer.accept_literal();
            while let Frame::LiteralData(_) = self.next_frame(false).await? {}
            return Ok(Flow::Continue);
        }
        let in_sync = self.skip_command(spec).await?;
        self.tagged(tag, status, text);
        if !in_sync {
            self.push_line("* BYE Literal too large; closing to keep the stream in sync");
            return Ok(Flow::Close);
        }
        Ok(Flow::Continue)
    }

    // ---- commands ----

    async fn command(&mut self, text: Bytes, literal: Option<LiteralSpec>) -> Res<Flow> {
        let first = [Piece::Text(text.clone())];
        let mut c = Cursor::new(&first);
        let (tag, name) = match parse_tag_and_name(&mut c) {
            Ok(x) => x,
            Err(e) => {
                let tag = e.tag.unwrap_or_else(|| "*".to_string());
                return self.refuse(&tag, "BAD", &e.message, literal).await;
            }
        };
        if name == "APPEND" {
            let rest = text.slice(c.offset()..);
            return self.append(tag, rest, literal).await;
        }
        let mut pieces = vec![Piece::Text(text)];
        let mut lit = literal;
        // Literals of one command count together against the limit; so do their number.
        let mut total: u64 = 0;
        while let Some(spec) = lit {
            total = total.saturating_add(spec.len);
            if total > self.shared.limits.max_command_literal || pieces.len() > MAX_COMMAND_PIECES {
                let msg = format!(
                    "Literals of this command exceed the limit of {} octets or {} literals",
                    self.shared.limits.max_command_literal,
                    MAX_COMMAND_PIECES / 2
                );
                if spec.sync {
                    self.framer.reject_literal();
                    self.tagged(&tag, "BAD", &msg);
                    return Ok(Flow::Continue);
                }
                return self.refuse(&tag, "BAD", &msg, Some(spec)).await;
            }
            lit = self.read_small_literal(spec, &mut pieces).await?;
        }
        let mut c = Cursor::new(&pieces);
        let parsed = parse_tag_and_name(&mut c)
            .map_err(|e| e.message)
            .and_then(|_| parse_command(&name, &mut c).map_err(|e| e.to_string()));
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(msg) => {
                self.tagged(&tag, "BAD", &format!("{name}: {msg}"));
                return Ok(Flow::Continue);
            }
        };
        self.execute(&tag, cmd).await
    }

    async fn execute(&mut self, tag: &str, cmd: Command) -> Res<Flow> {
        let needs_auth = !matches!(
            cmd,
            Command::Capability
                | Command::Noop
                | Command::Logout
                | Command::StartTls
                | Command::Login { .. }
                | Command::Authenticate { .. }
        );
        if needs_auth && self.user.is_none() {
            self.tagged(
                tag,
                "BAD",
                "Command requires authentication (LOGIN or AUTHENTICATE)",
            );
            return Ok(Flow::Continue);
        }
        let needs_selected = matches!(
            cmd,
            Command::Check
                | Command::Close
                | Command::Expunge
                | Command::Search { .. }
                | Command::Fetch { .. }
                | Command::Store { .. }
                | Command::Copy { .. }
        );
        if needs_selected && self.selected.is_none() {
            self.tagged(tag, "BAD", "No mailbox selected");
            return Ok(Flow::Continue);
        }
        match cmd {
            Command::Capability => {
                let caps = self.capabilities();
                self.push_line(&format!("* CAPABILITY {caps}"));
                self.tagged(tag, "OK", "CAPABILITY completed");
            }
            Command::Noop | Command::Check => {
                self.sync_selected(true);
                self.tagged(tag, "OK", "NOOP completed");
            }
            Command::Logout => {
                self.push_line("* BYE imapd logging out");
                self.tagged(tag, "OK", "LOGOUT completed");
                return Ok(Flow::Close);
            }
            Command::StartTls => return self.starttls(tag).await,
            Command::Login { user, password } => {
                if self.user.is_some() {
                    self.tagged(tag, "BAD", "Already authenticated");
                } else if self.login_disabled() {
                    self.tagged(
                        tag,
                        "NO",
                        "[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS",
                    );
                } else {
                    return Ok(self.login(tag, &user, &password).await);
                }
            }
            Command::Authenticate { mechanism, initial } => {
                return self.authenticate(tag, &mechanism, initial).await;
            }
            Command::Select(m) => self.select(tag, m, false),
            Command::Examine(m) => self.select(tag, m, true),
            Command::Create(m) => self.create(tag, &m).await,
            Command::Delete(m) => self.delete(tag, &m).await,
            Command::Rename(a, b) => self.rename(tag, &a, &b).await,
            Command::Subscribe(m) => self.subscribe(tag, &m, true),
            Command::Unsubscribe(m) => self.subscribe(tag, &m, false),
            Command::List(r, p) => self.list(tag, &r, &p, false),
            Command::Lsub(r, p) => self.list(tag, &r, &p, true),
            Command::Status(m, items) => self.status(tag, &m, &items),
            Command::Close => {
                if let Some(sel) = self.selected.take()
                    && !sel.read_only
                {
                    let store = self.shared.store.clone();
                    let _ = tokio::task::spawn_blocking(move || store.expunge(sel.id)).await;
                }
                self.tagged(tag, "OK", "CLOSE completed");
            }
            Command::Expunge => self.expunge(tag).await,
            Command::Search { uid, charset, keys } => {
                self.search(tag, uid, charset.as_deref(), &keys).await
            }
            Command::Fetch { uid, set, attrs } => self.fetch(tag, uid, &set, &attrs).await?,
            Command::Store {
                uid,
                set,
                op,
                silent,
                flags,
            } => self.store(tag, uid, &set, op, silent, &flags).await,
            Command::Copy { uid, set, mailbox } => self.copy(tag, uid, &set, &mailbox).await,
        }
        Ok(Flow::Continue)
    }

    fn user(&self) -> String {
        self.user.clone().unwrap_or_default()
    }
}

//! The slave's link to its master (RFC 3656 2, 4.11): a small MUPDATE client.
//!
//! The link connects, waits for the banner, authenticates with `AUTHENTICATE "PLAIN"` and an
//! initial response, sends `U01 UPDATE`, collects the dump until `U01 OK`, and replaces the
//! slave's whole state with it in one transaction ([`MupdateStore::resync`], which sends the
//! exact difference to the slave's own UPDATE subscribers, names deleted meanwhile included).
//! Then it applies each streamed MAILBOX/RESERVE/DELETE durably
//! ([`MupdateStore::apply_replicated`]), which forwards it to the slave's subscribers.
//!
//! While the master is unreachable the slave keeps serving its last state (which the master had
//! at some point; it never shows a state the master never had) and reconnects after
//! [`Backoff::initial`], doubling up to [`Backoff::max`]; every reconnection resynchronises.
//!
//! Barrier: a client's NOOP on the slave's UPDATE stream asks the link ([`Kick`]) to send its
//! own NOOP upstream and waits for the master's OK. The master's stream is in order, so every
//! change the master committed before the client's NOOP has then been applied by the slave,
//! and the connection forwards it before its OK. If the link is down (or the master does not
//! answer within [`MasterLink::barrier_timeout`]) the NOOP covers what the slave applied so far.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use bytes::BytesMut;
use murder_model::Change;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::store::{MupdateStore, StoreError};

use super::codec::{Decoder, Event, Token};
use super::config::{Backoff, Limits};
use super::reply::parse_change;
use super::server::MasterLink;

/// The link sends a NOOP upstream after this much time without one, so that the master's idle
/// timeout never ends a quiet UPDATE stream.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// Longest wait for the master to accept the connection, send its banner, or answer
/// AUTHENTICATE.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// `f`, failing with a timeout after [`HANDSHAKE_TIMEOUT`].
async fn within<T>(f: impl std::future::Future<Output = T>) -> Result<T, LinkError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, f)
        .await
        .map_err(|_| LinkError::Protocol("master did not answer in time".into()))
}

/// Longest a banner line from the master may be.
const MAX_BANNER_LINE: usize = 64 * 1024;

/// Handle a connection uses to ask the master link for an upstream NOOP barrier.
#[derive(Clone, Debug)]
pub(crate) struct Kick {
    tx: mpsc::Sender<oneshot::Sender<()>>,
    timeout: Duration,
}

impl Kick {
    pub(crate) fn new(timeout: Duration) -> (Kick, mpsc::Receiver<oneshot::Sender<()>>) {
        let (tx, rx) = mpsc::channel(1024);
        (Kick { tx, timeout }, rx)
    }

    /// Returns once the master answered a NOOP sent after this call (or the link is down, or
    /// the timeout passed).
    pub(crate) async fn barrier(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(done).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(self.timeout, wait).await;
    }
}

/// Why one link session ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("master closed the connection")]
    Eof,
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Run the link until the task is aborted.
pub(crate) async fn run(
    link: MasterLink,
    store: MupdateStore,
    ready: watch::Sender<bool>,
    mut kicks: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let Backoff { initial, max } = link.backoff.clone();
    let mut delay = initial;
    loop {
        let mut synced = false;
        match session(&link, &store, &ready, &mut kicks, &mut synced).await {
            Ok(()) => info!(master = %link.master, "master link closed"),
            Err(e) => warn!(master = %link.master, error = %e, "master link failed"),
        }
        if synced {
            delay = initial;
        }
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                k = kicks.recv() => match k {
                    // Link down: a barrier covers what the slave has applied.
                    Some(done) => { let _ = done.send(()); }
                    None => return,
                },
            }
        }
        delay = (delay * 2).min(max);
    }
}

/// The reading side of the link.
struct Reader {
    tcp: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Reader {
    async fn fill(&mut self) -> Result<(), LinkError> {
        if self.tcp.read_buf(&mut self.buf).await? == 0 {
            return Err(LinkError::Eof);
        }
        Ok(())
    }

    /// One raw line (banner and AUTHENTICATE answer), without CRLF.
    async fn raw_line(&mut self) -> Result<Vec<u8>, LinkError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = self.buf.split_to(i + 1).to_vec();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_BANNER_LINE {
                return Err(LinkError::Protocol("banner line too long".into()));
            }
            self.fill().await?;
        }
    }

    /// One response, parsed like a command: tag, keyword, strings. Cancel-safe.
    async fn response(&mut self) -> Result<(Vec<u8>, Vec<u8>, Vec<Vec<u8>>), LinkError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Event::Command(raw))) => {
                    let args = raw
                        .args
                        .into_iter()
                        .map(|t| match t {
                            Token::String(s) | Token::Atom(s) => s,
                        })
                        .collect();
                    return Ok((raw.tag, raw.word.to_ascii_uppercase(), args));
                }
                // A server should not send synchronizing literals; read them anyway.
                Ok(Some(Event::LiteralRequest { .. })) => self.decoder.accept_literal(),
                Ok(Some(Event::Error(e))) => {
                    return Err(LinkError::Protocol(format!("unexpected line: {}", e.error)));
                }
                Ok(Some(Event::SaslLine(_))) => {}
                Ok(None) => self.fill().await?,
                Err(fatal) => return Err(LinkError::Protocol(fatal.to_string())),
            }
        }
    }
}

/// `AUTHENTICATE "PLAIN"` with an initial response; the master's answer line.
#[cfg(not(feature = "gssapi"))]
async fn authenticate(link: &MasterLink, r: &mut Reader) -> Result<Vec<u8>, LinkError> {
    plain(link, r).await
}

/// `AUTHENTICATE "PLAIN"` with an initial response; the master's answer line.
async fn plain(link: &MasterLink, r: &mut Reader) -> Result<Vec<u8>, LinkError> {
    let mut message = vec![0u8];
    message.extend_from_slice(link.user.as_bytes());
    message.push(0);
    message.extend_from_slice(link.password.as_bytes());
    let ir = base64::engine::general_purpose::STANDARD.encode(&message);
    let auth = format!("A01 AUTHENTICATE \"PLAIN\" {{{}+}}\r\n{ir}\r\n", ir.len());
    r.tcp.write_all(auth.as_bytes()).await?;
    within(r.raw_line()).await?
}

/// PLAIN, or GSSAPI when [`MasterLink::gssapi_service`] is set; the master's final answer line.
#[cfg(feature = "gssapi")]
async fn authenticate(link: &MasterLink, r: &mut Reader) -> Result<Vec<u8>, LinkError> {
    use crate::auth::gssapi::{GssapiClient, GssapiError};
    use crate::auth::sasl::{decode_base64_line, encode_base64};
    let Some(service) = link.gssapi_service.clone() else {
        return plain(link, r).await;
    };
    let principal = (!link.user.is_empty()).then(|| link.user.clone());
    let gss = |e: GssapiError| LinkError::Protocol(format!("GSSAPI: {e}"));
    // Acquiring credentials and the service ticket may talk to the KDC: off the async threads.
    let blocking = |client: GssapiClient, challenge: Option<Vec<u8>>| {
        tokio::task::spawn_blocking(move || {
            let mut client = client;
            let out = match challenge {
                None => client.initial_response(),
                Some(c) => client.step(&c),
            };
            (client, out)
        })
    };
    let client =
        tokio::task::spawn_blocking(move || GssapiClient::new(&service, principal.as_deref(), ""))
            .await
            .map_err(|e| LinkError::Protocol(format!("GSSAPI: {e}")))?
            .map_err(gss)?;
    let (mut client, first) = blocking(client, None)
        .await
        .map_err(|e| LinkError::Protocol(format!("GSSAPI: {e}")))?;
    let ir = encode_base64(&first.map_err(gss)?);
    let auth = format!("A01 AUTHENTICATE \"GSSAPI\" {{{}+}}\r\n{ir}\r\n", ir.len());
    r.tcp.write_all(auth.as_bytes()).await?;
    // RFC 4752: a few round trips at most (context tokens, then the security layer).
    for _ in 0..8 {
        let line = within(r.raw_line()).await??;
        if line.starts_with(b"A01 ") {
            return Ok(line);
        }
        let challenge = decode_base64_line(&line)
            .map_err(|_| LinkError::Protocol("master sent an invalid GSSAPI challenge".into()))?;
        let (c, response) = blocking(client, Some(challenge))
            .await
            .map_err(|e| LinkError::Protocol(format!("GSSAPI: {e}")))?;
        client = c;
        let response = match response {
            Ok(resp) => resp,
            Err(e) => {
                r.tcp.write_all(b"*\r\n").await?;
                return Err(gss(e));
            }
        };
        r.tcp
            .write_all(format!("{}\r\n", encode_base64(&response)).as_bytes())
            .await?;
    }
    Err(LinkError::Protocol(
        "GSSAPI exchange with the master did not end".into(),
    ))
}

async fn session(
    link: &MasterLink,
    store: &MupdateStore,
    ready: &watch::Sender<bool>,
    kicks: &mut mpsc::Receiver<oneshot::Sender<()>>,
    synced: &mut bool,
) -> Result<(), LinkError> {
    let tcp = within(TcpStream::connect(&link.master)).await??;
    let _ = tcp.set_nodelay(true);
    let limits = Limits {
        max_line: 1024 * 1024,
        max_literal: 16 * 1024 * 1024,
        literal_drain_limit: 0,
        max_tag: 1024,
        ..Limits::default()
    };
    let mut r = Reader {
        tcp,
        buf: BytesMut::new(),
        decoder: Decoder::new(limits),
    };
    loop {
        let line = within(r.raw_line()).await??;
        if line.starts_with(b"* OK MUPDATE") {
            break;
        }
        if line.starts_with(b"* BYE") {
            return Err(LinkError::Protocol(
                String::from_utf8_lossy(&line).into_owned(),
            ));
        }
    }
    let answer = authenticate(link, &mut r).await?;
    if !answer.starts_with(b"A01 OK") {
        return Err(LinkError::Protocol(format!(
            "authentication refused: {}",
            String::from_utf8_lossy(&answer)
        )));
    }
    r.tcp.write_all(b"U01 UPDATE\r\n").await?;
    let mut records = Vec::new();
    loop {
        let (tag, word, args) = r.response().await?;
        if word == b"OK" && tag == b"U01" {
            break;
        }
        match parse_change(&word, args) {
            Some(Change::Upsert(record)) => records.push(record),
            _ => {
                return Err(LinkError::Protocol(format!(
                    "unexpected {} during the UPDATE dump",
                    String::from_utf8_lossy(&word)
                )));
            }
        }
    }
    let count = records.len();
    store.resync(records).await?;
    *synced = true;
    ready.send_replace(true);
    info!(master = %link.master, records = count, "resynchronised with the master");
    let mut noops = Noops::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(KEEPALIVE) => {
                if !noops.pending.is_empty() {
                    return Err(LinkError::Protocol("master did not answer NOOP".into()));
                }
                let (done, _) = oneshot::channel();
                noops.send(&mut r.tcp, done).await?;
            }
            response = r.response() => {
                let (tag, word, args) = response?;
                if tag == b"U01" {
                    let Some(change) = parse_change(&word, args) else {
                        return Err(LinkError::Protocol(format!(
                            "unexpected {} on the UPDATE stream",
                            String::from_utf8_lossy(&word)
                        )));
                    };
                    store.apply_replicated(change).await?;
                } else if !noops.answered(&tag) {
                    return Err(LinkError::Protocol(format!(
                        "unexpected response {} {}",
                        String::from_utf8_lossy(&tag),
                        String::from_utf8_lossy(&word)
                    )));
                }
            }
            kick = kicks.recv() => match kick {
                Some(done) => noops.send(&mut r.tcp, done).await?,
                None => return Ok(()),
            },
        }
    }
}

/// The NOOPs the link sent upstream and not yet seen answered, in order.
#[derive(Default)]
struct Noops {
    sent: u64,
    pending: VecDeque<(Vec<u8>, oneshot::Sender<()>)>,
}

impl Noops {
    /// Send `N<n> NOOP`; `done` fires when the master answers it.
    async fn send(
        &mut self,
        tcp: &mut TcpStream,
        done: oneshot::Sender<()>,
    ) -> Result<(), LinkError> {
        self.sent += 1;
        let tag = format!("N{}", self.sent).into_bytes();
        let mut line = tag.clone();
        line.extend_from_slice(b" NOOP\r\n");
        tcp.write_all(&line).await?;
        self.pending.push_back((tag, done));
        Ok(())
    }

    /// The master answered `tag`: true if it was the oldest pending NOOP.
    fn answered(&mut self, tag: &[u8]) -> bool {
        if self
            .pending
            .front()
            .is_none_or(|(t, _)| t.as_slice() != tag)
        {
            return false;
        }
        if let Some((_, done)) = self.pending.pop_front() {
            let _ = done.send(());
        }
        true
    }
}

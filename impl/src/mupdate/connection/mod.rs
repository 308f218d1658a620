//! One client connection: the tokio driver around the sans-IO [`Decoder`] and [`Session`].
//!
//! The driver owns the socket, the input buffer and the UPDATE [`Subscription`]. It reads,
//! feeds the decoder, turns each [`Action`] into I/O, and while streaming forwards every
//! committed change as soon as the store publishes it (no timer: a change is written the moment
//! it is committed, with every intermediate state). Output is buffered while pipelined input is
//! being answered and flushed before the driver waits.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use murder_model::{Change, Command, MailboxEntry, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, trace, warn};

use crate::net::{ShutdownSignal, Stream};
use crate::store::{Lagged, StoreError, Subscription};

use super::codec::Decoder;
use super::faults::Fault;
use super::response;
use super::server::Shared;
use super::session::{Action, Session, bye};

mod log;
mod sasl;

use log::{describe, redacted};

/// Free space made in the input buffer before each read.
const READ_CHUNK: usize = 64 * 1024;

/// Output above this size is flushed even while more pipelined input waits.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// After a flush, an output buffer whose capacity grew beyond this (a LIST or an UPDATE dump of
/// a large database) is released instead of kept for the connection's lifetime: 100 UPDATE
/// streams that each once sent a 50,000-record dump would otherwise hold ~100 × 4 MiB.
const MAX_RETAINED_OUTPUT: usize = 4 * FLUSH_THRESHOLD;

/// After the last response, how long the connection keeps reading and discarding input.
const LINGER: Duration = Duration::from_millis(500);

/// After the last response, the most input read and discarded.
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Whether the connection goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Why a connection ended abnormally (logged, never sent).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    Eof,
}

/// One connection's state.
pub(crate) struct Connection {
    /// None only after a failed TLS handshake.
    io: Option<Stream>,
    signal: ShutdownSignal,
    shared: Arc<Shared>,
    session: Session,
    decoder: Decoder,
    input: BytesMut,
    output: Vec<u8>,
    sub: Option<Subscription>,
    /// Sequence number of the last change received from `sub`.
    last_seq: u64,
    /// Changes received but not yet written (only ever non-empty under a stream fault).
    held: Vec<(u64, Change)>,
    held_until: Option<tokio::time::Instant>,
    /// Pipelined writes handed to the store, answered in order.
    in_flight: VecDeque<InFlight>,
    /// Failed AUTHENTICATEs so far (closed at [`Limits::max_auth_failures`](super::Limits)).
    auth_failures: u32,
    peer: String,
}

/// Most pipelined writes of one connection handed to the store before their answers are sent.
const MAX_IN_FLIGHT: usize = 128;

/// A store call running on its own.
type InFlightFuture = Pin<Box<dyn Future<Output = Result<Reply, StoreError>> + Send>>;

/// A pipelined write whose answer is still to be sent.
struct InFlight {
    tag: Vec<u8>,
    command: Command,
    state: InFlightState,
}

/// Where a pipelined write is.
enum InFlightState {
    /// Finished on its first poll.
    Done(Result<Reply, StoreError>),
    /// Queued in the store.
    Running(InFlightFuture),
}

/// How long the stream faults hold changes back.
const FAULT_STREAM_DELAY: Duration = Duration::from_secs(1);

/// Resolves at `deadline`; never without one.
/// The `ActivateKeepsAcl` fault: an ACTIVATE of an active name keeps the stored ACL.
async fn keep_old_acl(shared: Arc<Shared>, command: Command) -> Command {
    let Command::Activate {
        name,
        location,
        acl,
    } = command
    else {
        return command;
    };
    let mut acl = acl;
    if shared.policy.faults.has(Fault::ActivateKeepsAcl) {
        let find = Command::Find { name: name.clone() };
        if let Ok(found) = shared.store.execute(find).await
            && let Some(MailboxEntry::Active { acl: old, .. }) =
                found.data.first().map(|r| &r.entry)
        {
            acl = old.clone();
        }
    }
    Command::Activate {
        name,
        location,
        acl,
    }
}

/// The `ListPrefixSubstring` fault's match: the record's location contains `prefix` anywhere.
fn location_contains(record: &murder_model::Record, prefix: &[u8]) -> bool {
    let location = match &record.entry {
        MailboxEntry::Active { location, .. } | MailboxEntry::Reserved { location } => location,
    };
    prefix.is_empty() || location.windows(prefix.len()).any(|w| w == prefix)
}

async fn held_deadline(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn closed() -> ConnError {
    ConnError::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "connection closed",
    ))
}

/// Read from `io` into `buf`; the byte count (0 at EOF).
async fn read_io(io: &mut Option<Stream>, buf: &mut BytesMut) -> Result<usize, ConnError> {
    // Read in large chunks: pipelined commands then share one group commit.
    buf.reserve(READ_CHUNK);
    match io {
        Some(s) => Ok(s.read_buf(buf).await?),
        None => Err(closed()),
    }
}

/// Wait for the next change of `sub`; never resolves without a subscription.
async fn next_change(sub: &mut Option<Subscription>) -> Result<(u64, Change), Lagged> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

impl Connection {
    /// A connection on `tcp` from `peer`.
    pub(crate) fn new(
        tcp: TcpStream,
        peer: String,
        shared: Arc<Shared>,
        signal: ShutdownSignal,
    ) -> Self {
        let session = Session::new(Arc::clone(&shared.policy));
        let decoder = Decoder::new(shared.limits.clone());
        Connection {
            io: Some(Stream::Plain(tcp)),
            signal,
            shared,
            session,
            decoder,
            input: BytesMut::with_capacity(4096),
            output: Vec::new(),
            sub: None,
            last_seq: 0,
            held: Vec::new(),
            held_until: None,
            in_flight: VecDeque::new(),
            auth_failures: 0,
            peer,
        }
    }

    /// Serve the connection until it ends.
    pub(crate) async fn run(mut self) {
        info!(peer = %self.peer, "connection opened");
        let result = self.serve().await;
        // A failed write of the final bytes is not an error (clients often close first).
        let _ = self.flush().await;
        if let Some(io) = self.io.as_mut() {
            let _ = io.shutdown().await;
            // Read what the client still sends for a moment, so that closing a socket with
            // unread input does not make the kernel reset the connection and lose the BYE.
            let mut sink = BytesMut::with_capacity(64 * 1024);
            let _ = tokio::time::timeout(LINGER, async {
                let mut total = 0usize;
                while total < LINGER_BYTES {
                    sink.clear();
                    match io.read_buf(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
            })
            .await;
        }
        match result {
            Ok(()) | Err(ConnError::Eof) => info!(peer = %self.peer, "connection closed"),
            Err(e) => info!(peer = %self.peer, error = %e, "connection closed"),
        }
    }

    fn banner(&self) -> Vec<u8> {
        let mechs = crate::auth::exchange::offered_mechanisms(true, self.gssapi_acceptor());
        self.session.banner(&self.shared.server_name, &mechs)
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        let Some(io) = self.io.as_mut() else {
            return Err(closed());
        };
        if !self.output.is_empty() {
            trace!(peer = %self.peer, bytes = %String::from_utf8_lossy(&self.output), "send");
            io.write_all(&self.output).await?;
            self.output.clear();
            if self.output.capacity() > MAX_RETAINED_OUTPUT {
                self.output = Vec::new();
            }
        }
        io.flush().await?;
        Ok(())
    }

    /// Read more input (with the idle timeout); `Ok(false)` when the idle timer expired.
    async fn read_more(&mut self) -> Result<bool, ConnError> {
        let idle = self.shared.limits.idle_timeout;
        match tokio::time::timeout(idle, read_io(&mut self.io, &mut self.input)).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => Err(ConnError::Eof),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn serve(&mut self) -> Result<(), ConnError> {
        if let Some(ready) = &self.shared.slave_ready {
            // A slave answers once its first resynchronisation is done (or the wait expired).
            let mut ready = ready.clone();
            let wait = self.shared.slave_ready_timeout;
            let _ = tokio::time::timeout(wait, ready.wait_for(|r| *r)).await;
        }
        self.output = self.banner();
        loop {
            loop {
                let event = match self.decoder.decode(&mut self.input) {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    Err(fatal) => {
                        self.finish_in_flight().await;
                        self.output.extend(bye(&fatal.to_string()));
                        return Ok(());
                    }
                };
                trace!(peer = %self.peer, event = %redacted(&event), "received");
                let action = self.session.on_event(event);
                match action {
                    // Consecutive pipelined writes go to the store together (one group
                    // commit); anything else first waits for them, so that every command
                    // sees the effects of the ones before it.
                    Action::Execute { tag, command }
                        if command.is_write() && self.in_flight.len() < MAX_IN_FLIGHT =>
                    {
                        self.submit(tag, command);
                        continue;
                    }
                    action => {
                        self.finish_in_flight().await;
                        if self.handle(action).await? == Flow::Close {
                            return Ok(());
                        }
                    }
                }
                if self.output.len() > FLUSH_THRESHOLD {
                    self.flush().await?;
                }
            }
            self.finish_in_flight().await;
            self.flush().await?;
            let idle = self.shared.limits.idle_timeout;
            tokio::select! {
                r = tokio::time::timeout(idle, read_io(&mut self.io, &mut self.input)) => match r {
                    Err(_) => {
                        self.output.extend(bye("idle for too long"));
                        return Ok(());
                    }
                    Ok(Ok(0)) => return Err(ConnError::Eof),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                },
                () = self.signal.wait() => {
                    self.output.extend(bye("server shutting down"));
                    return Ok(());
                }
                change = next_change(&mut self.sub) => {
                    if self.stream(change) == Flow::Close {
                        return Ok(());
                    }
                }
                () = held_deadline(self.held_until) => self.release_held(),
            }
        }
    }

    /// Forward `first` and every change already waiting; Close when the subscriber lagged.
    fn stream(&mut self, first: Result<(u64, Change), Lagged>) -> Flow {
        let mut batch = Vec::new();
        let mut next = first;
        loop {
            match next {
                Ok(item) => batch.push(item),
                Err(lagged) => {
                    warn!(peer = %self.peer, %lagged, "UPDATE subscriber dropped");
                    self.output
                        .extend(bye("too far behind, resynchronise with UPDATE"));
                    return Flow::Close;
                }
            }
            if batch.len() >= 1024 {
                break;
            }
            next = match self.sub.as_mut().map(Subscription::try_recv) {
                Some(Ok(Some(item))) => Ok(item),
                Some(Ok(None)) | None => break,
                Some(Err(lagged)) => Err(lagged),
            };
        }
        for (seq, _) in &batch {
            self.last_seq = self.last_seq.max(*seq);
        }
        self.held.extend(batch);
        let faults = &self.shared.policy.faults;
        if faults.has(Fault::NoNoopBarrier) || faults.has(Fault::CoalesceStream) {
            // Deliberate bug: hold changes back (like a flush timer) so the fault is visible.
            if self.held_until.is_none() {
                self.held_until = Some(tokio::time::Instant::now() + FAULT_STREAM_DELAY);
            }
        } else {
            self.release_held();
        }
        Flow::Continue
    }

    /// Write the changes received so far.
    fn release_held(&mut self) {
        self.held_until = None;
        let mut batch = std::mem::take(&mut self.held);
        if self.shared.policy.faults.has(Fault::CoalesceStream) {
            let mut coalesced: Vec<(u64, Change)> = Vec::new();
            for (seq, change) in batch {
                coalesced.retain(|(_, c)| c.name() != change.name());
                coalesced.push((seq, change));
            }
            batch = coalesced;
        }
        for (_, change) in batch {
            self.output.extend(self.session.stream_change(&change));
        }
    }

    async fn handle(&mut self, action: Action) -> Result<Flow, ConnError> {
        match action {
            Action::Send(bytes) => self.output.extend(bytes),
            Action::GoAhead(bytes) => {
                self.output.extend(bytes);
                self.flush().await?;
                self.decoder.accept_literal();
            }
            Action::RefuseLiteral(bytes) => {
                self.output.extend(bytes);
                self.decoder.refuse_literal();
            }
            Action::Execute { tag, command } => {
                if let Command::List { prefix } = &command {
                    // Formatted straight from the committed snapshot: no `Vec<Record>` copy of
                    // the database. The snapshot is held only while formatting (CPU-bound, no
                    // I/O), so the writer copies the database at most once meanwhile.
                    let db = self.shared.store.snapshot();
                    // The `ListPrefixSubstring` fault scans every record for the prefix.
                    let substring = prefix
                        .as_deref()
                        .filter(|_| self.shared.policy.faults.has(Fault::ListPrefixSubstring));
                    let scan = if substring.is_some() {
                        None
                    } else {
                        prefix.as_deref()
                    };
                    for record in db.list_records(scan) {
                        if substring.is_some_and(|p| !location_contains(&record, p)) {
                            continue;
                        }
                        self.session.data_record(&mut self.output, &tag, &record);
                    }
                    drop(db);
                    let done = Reply {
                        data: Vec::new(),
                        result: Ok(()),
                    };
                    self.output
                        .extend(self.session.reply(&tag, &command, &done));
                    return Ok(Flow::Continue);
                }
                let result = self.execute(command.clone()).await;
                self.reply(&tag, &command, result);
            }
            Action::Authenticate {
                tag,
                mechanism,
                initial,
            } => return self.authenticate(&tag, &mechanism, initial).await,
            Action::StartTls(ok) => return self.start_tls(ok).await,
            Action::Update { tag } => {
                // Formatted straight from the snapshot (no `Vec<Record>` copy), like LIST.
                let (db, sub) = self.shared.store.subscribe_snapshot();
                self.last_seq = sub.start_seq();
                self.output.extend(self.session.update_opening(&tag));
                for record in db.records() {
                    self.session.dump_record(&mut self.output, &tag, &record);
                }
                let records = db.len();
                drop(db);
                self.output.extend(self.session.update_started(&tag));
                self.session.streaming(&tag);
                self.sub = Some(sub);
                info!(peer = %self.peer, records, "UPDATE stream started");
            }
            Action::Barrier(ok) => {
                if self.shared.policy.faults.has(Fault::NoNoopBarrier) {
                    self.output.extend(ok);
                    self.flush().await?;
                    return Ok(Flow::Continue);
                }
                if let Some(kick) = &self.shared.kick {
                    // Slave: let the master's stream catch up first (RFC 3656 4.8 through a
                    // slave: everything the master committed before this NOOP).
                    kick.barrier().await;
                }
                let target = self.shared.store.committed_seq();
                while self.last_seq < target {
                    let change = next_change(&mut self.sub).await;
                    if self.stream(change) == Flow::Close {
                        return Ok(Flow::Close);
                    }
                }
                self.release_held();
                self.output.extend(ok);
            }
            Action::Close(bytes) => {
                self.output.extend(bytes);
                return Ok(Flow::Close);
            }
        }
        Ok(Flow::Continue)
    }

    /// Append the response to a database command's result.
    fn reply(&mut self, tag: &[u8], command: &Command, result: Result<Reply, StoreError>) {
        match result {
            Ok(reply) => {
                if command.is_write() {
                    info!(
                        peer = %self.peer,
                        user = self.session.identity().unwrap_or(""),
                        command = %describe(command),
                        ok = reply.result.is_ok(),
                        "write"
                    );
                }
                self.output.extend(self.session.reply(tag, command, &reply));
            }
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "store error");
                let mut out = Vec::new();
                response::status(
                    &mut out,
                    response::Tag::Tagged(tag),
                    response::Status::No,
                    &format!("database error: {e}"),
                );
                self.output.extend(out);
            }
        }
    }

    /// Hand a pipelined write to the store now (it joins the group commit queue in pipeline
    /// order); its response is written by [`Connection::finish_in_flight`].
    fn submit(&mut self, tag: Vec<u8>, command: Command) {
        let mut future = self.execute(command.clone());
        // One poll enqueues the write (the store's queue is FIFO even when full).
        let mut cx = Context::from_waker(Waker::noop());
        let state = match future.as_mut().poll(&mut cx) {
            Poll::Ready(result) => InFlightState::Done(result),
            Poll::Pending => InFlightState::Running(future),
        };
        self.in_flight.push_back(InFlight {
            tag,
            command,
            state,
        });
    }

    /// The store call for `command` (through the `ReserveRace` fault's racy RESERVE when that
    /// test-only fault is on).
    fn execute(&self, command: Command) -> InFlightFuture {
        let store = self.shared.store.clone();
        if self.shared.policy.faults.has(Fault::ReserveRace) {
            return Box::pin(async move { super::faults::racy_reserve(&store, command).await });
        }
        if self.shared.policy.faults.has(Fault::ActivateKeepsAcl) {
            let shared = self.shared.clone();
            return Box::pin(
                async move { store.execute(keep_old_acl(shared, command).await).await },
            );
        }
        Box::pin(async move { store.execute(command).await })
    }

    /// Wait for every submitted write, in order, and append their responses.
    async fn finish_in_flight(&mut self) {
        while let Some(f) = self.in_flight.pop_front() {
            let result = match f.state {
                InFlightState::Done(r) => r,
                InFlightState::Running(fut) => fut.await,
            };
            self.reply(&f.tag, &f.command, result);
        }
    }

    async fn start_tls(&mut self, ok: Vec<u8>) -> Result<Flow, ConnError> {
        let Some(acceptor) = self.shared.tls.clone() else {
            return Ok(Flow::Continue);
        };
        self.output.extend(ok);
        self.flush().await?;
        if self
            .shared
            .policy
            .faults
            .has(Fault::StarttlsExecutesPipelined)
        {
            // Deliberate bug: run what was pipelined after STARTTLS, in plaintext.
            while let Ok(Some(ev)) = self.decoder.decode(&mut self.input) {
                let action = self.session.on_event(ev);
                if Box::pin(self.handle(action)).await? == Flow::Close {
                    return Ok(Flow::Close);
                }
            }
            self.flush().await?;
        }
        // Anything the client sent after the STARTTLS line is discarded (never executed).
        self.decoder = Decoder::new(self.shared.limits.clone());
        let Some(plain) = self.io.take() else {
            return Ok(Flow::Close);
        };
        // A client that never finishes the handshake is dropped like an idle one.
        let idle = self.shared.limits.idle_timeout;
        let handshake = plain.upgrade_discarding(&acceptor, &mut self.input);
        let upgraded = match tokio::time::timeout(idle, handshake).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake idle for too long",
            )),
        };
        match upgraded {
            Ok(tls) => {
                self.io = Some(tls);
                self.session.tls_started();
                info!(peer = %self.peer, "TLS started");
                self.output.extend(self.banner());
                Ok(Flow::Continue)
            }
            Err(e) => {
                info!(peer = %self.peer, error = %e, "TLS handshake failed");
                Ok(Flow::Close)
            }
        }
    }
}

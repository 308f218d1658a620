//! The accept loop both servers run: one task per connection, a connection limit, and a clean
//! shutdown.
//!
//! A connection over [`ListenerConfig::max_connections`] is not served: it goes to the `refuse`
//! hook (which typically writes `* BYE too many connections` and closes, see
//! [`write_and_close`]). So does a connection from an address that already has
//! [`ListenerConfig::max_connections_per_ip`] connections being served (127.0.0.1 and ::1
//! exempt by default, see [`ListenerConfig::per_ip_exempt_localhost`]). On [`ServerHandle::shutdown`] the listener is closed at once, sessions
//! are told through their [`ShutdownSignal`], and sessions still running after
//! [`ListenerConfig::shutdown_grace`] are aborted (dropping their sockets).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

/// Limits of the accept loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Connections served at once; one more goes to the refuse hook. Default 1024.
    pub max_connections: usize,
    /// Connections served at once from one IP address; one more from that address goes to the
    /// refuse hook, so a single host cannot take every slot of [`max_connections`]. Default 64
    /// ([`DEFAULT_MAX_CONNECTIONS_PER_IP`]): far above what one IMAP frontend or backend opens
    /// to a MUPDATE master or one user's clients open to a backend. 0 turns the limit off.
    ///
    /// [`max_connections`]: ListenerConfig::max_connections
    pub max_connections_per_ip: usize,
    /// Whether peers at 127.0.0.1 and ::1 are exempt from
    /// [`max_connections_per_ip`](ListenerConfig::max_connections_per_ip). Default true: those
    /// are the host's own services, the conformance runner's parallel jobs and the benchmark's
    /// hundred UPDATE streams, which legitimately open many connections from the default
    /// loopback address; they are still bounded by `max_connections`. Other loopback addresses
    /// (127.0.0.2, ...) are counted like any remote address.
    pub per_ip_exempt_localhost: bool,
    /// How long [`ServerHandle::shutdown`] waits for sessions to end after signalling them,
    /// before aborting them. Default 2 s.
    pub shutdown_grace: Duration,
    /// How long the refuse hook may run for one refused connection. Default 5 s.
    pub refuse_timeout: Duration,
    /// Refused connections whose refuse hook may run at once; a connection refused beyond this
    /// is closed without running the hook, so a flood cannot pile up tasks. Default 64.
    pub max_pending_refusals: usize,
    /// Set `TCP_NODELAY` on accepted sockets, so a reply written in several pieces is not held
    /// back by Nagle's algorithm waiting for a delayed ACK (up to 40 ms per round trip on
    /// Linux). Sessions should still buffer a reply and write it at once. Default true.
    pub nodelay: bool,
    /// Pause after a failed `accept` (for example out of file descriptors), so the loop does not
    /// spin. Default 100 ms.
    pub accept_error_backoff: Duration,
}

/// Default of [`ListenerConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of [`ListenerConfig::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;
/// Default of [`ListenerConfig::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Default of [`ListenerConfig::refuse_timeout`].
pub const DEFAULT_REFUSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`ListenerConfig::max_pending_refusals`].
pub const DEFAULT_MAX_PENDING_REFUSALS: usize = 64;
/// Default of [`ListenerConfig::accept_error_backoff`].
pub const DEFAULT_ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Most bytes [`write_and_close`] reads and discards from the client after its message.
pub const REFUSE_DRAIN_LIMIT: usize = 64 * 1024;

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            per_ip_exempt_localhost: true,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            refuse_timeout: DEFAULT_REFUSE_TIMEOUT,
            max_pending_refusals: DEFAULT_MAX_PENDING_REFUSALS,
            nodelay: true,
            accept_error_backoff: DEFAULT_ACCEPT_ERROR_BACKOFF,
        }
    }
}

/// Tells sessions that the server is shutting down, so they can say goodbye (`* BYE`) and end
/// before they are aborted. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// Whether shutdown has begun (or the server handle is gone).
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Completes when shutdown begins; use it in `tokio::select!` beside the session's read.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means the sender is gone, which also means shutdown.
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// A running server: its address, and the way to stop it. Dropping the handle also begins
/// shutdown (without waiting for it), so a test cannot leak a server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    permits: Arc<Semaphore>,
    max_connections: usize,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting (the listening socket is closed), signals every session, waits up to
    /// [`ListenerConfig::shutdown_grace`] for them, aborts the rest, and returns when every
    /// connection task has ended.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Err(e) = (&mut self.accept_task).await {
            tracing::error!(error = %e, "accept loop ended abnormally");
        }
    }

    /// A signal sessions can wait on (the same one the connection handlers of
    /// [`serve_with_shutdown`] receive).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.shutdown_tx.subscribe(),
        }
    }

    /// Connections being served now (refused ones not counted).
    pub fn active_connections(&self) -> usize {
        self.max_connections
            .saturating_sub(self.permits.available_permits())
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

/// Serves `listener`: each accepted connection runs `handler(stream, peer)` in its own task while
/// fewer than `config.max_connections` are being served; otherwise `refuse(stream)` runs
/// (bounded by `config.refuse_timeout`). Sessions that want to end gracefully on shutdown use
/// [`serve_with_shutdown`] or [`ServerHandle::shutdown_signal`].
///
/// Fails only if the listener's local address cannot be read.
pub async fn serve<H, F, R, RF>(
    listener: TcpListener,
    config: ListenerConfig,
    handler: H,
    refuse: R,
) -> io::Result<ServerHandle>
where
    H: Fn(TcpStream, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
    R: Fn(TcpStream) -> RF + Send + Sync + 'static,
    RF: Future<Output = ()> + Send + 'static,
{
    serve_with_shutdown(
        listener,
        config,
        move |stream, peer, _signal| handler(stream, peer),
        refuse,
    )
    .await
}

/// [`serve`] where the handler also receives the [`ShutdownSignal`].
pub async fn serve_with_shutdown<H, F, R, RF>(
    listener: TcpListener,
    config: ListenerConfig,
    handler: H,
    refuse: R,
) -> io::Result<ServerHandle>
where
    H: Fn(TcpStream, SocketAddr, ShutdownSignal) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
    R: Fn(TcpStream) -> RF + Send + Sync + 'static,
    RF: Future<Output = ()> + Send + 'static,
{
    let local_addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let max_connections = config.max_connections;
    let accept = AcceptLoop {
        listener,
        refusals: Arc::new(Semaphore::new(config.max_pending_refusals)),
        config,
        permits: permits.clone(),
        signal: ShutdownSignal { rx: shutdown_rx },
        per_ip: PerIp::default(),
        tasks: JoinSet::new(),
        next_id: 0,
    };
    let accept_task = tokio::spawn(
        accept
            .run(handler, refuse)
            .instrument(tracing::info_span!("listener", addr = %local_addr)),
    );
    tracing::info!(addr = %local_addr, max_connections, "listening");
    Ok(ServerHandle {
        local_addr,
        shutdown_tx,
        accept_task,
        permits,
        max_connections,
    })
}

/// The state of the accept task.
struct AcceptLoop {
    listener: TcpListener,
    config: ListenerConfig,
    permits: Arc<Semaphore>,
    /// Bounds the refuse hooks running at once.
    refusals: Arc<Semaphore>,
    signal: ShutdownSignal,
    /// Connections being served per peer address.
    per_ip: PerIp,
    /// Connection and refuse tasks, so shutdown can wait for and abort them.
    tasks: JoinSet<()>,
    next_id: u64,
}

impl AcceptLoop {
    async fn run<H, F, R, RF>(mut self, handler: H, refuse: R)
    where
        H: Fn(TcpStream, SocketAddr, ShutdownSignal) -> F,
        F: Future<Output = ()> + Send + 'static,
        R: Fn(TcpStream) -> RF,
        RF: Future<Output = ()> + Send + 'static,
    {
        let signal = self.signal.clone();
        loop {
            tokio::select! {
                biased;
                () = signal.wait() => break,
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = joined {
                        tracing::error!(error = %e, "connection task failed");
                    }
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.dispatch(stream, peer, &handler, &refuse),
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(self.config.accept_error_backoff).await;
                    }
                },
            }
        }
        let AcceptLoop {
            listener,
            config,
            mut tasks,
            ..
        } = self;
        drop(listener);
        tracing::info!(connections = tasks.len(), "shutting down");
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = tasks.len(),
                "sessions still running after the grace period; aborting them"
            );
            tasks.shutdown().await;
        }
        tracing::info!("stopped");
    }

    fn dispatch<H, F, R, RF>(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        handler: &H,
        refuse: &R,
    ) where
        H: Fn(TcpStream, SocketAddr, ShutdownSignal) -> F,
        F: Future<Output = ()> + Send + 'static,
        R: Fn(TcpStream) -> RF,
        RF: Future<Output = ()> + Send + 'static,
    {
        self.next_id = self.next_id.wrapping_add(1);
        let span = tracing::info_span!("conn", id = self.next_id, %peer);
        if self.config.nodelay
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!(parent: &span, error = %e, "cannot set TCP_NODELAY");
        }
        // An IPv4 client on a dual-stack socket is `::ffff:a.b.c.d`: count it as `a.b.c.d`.
        let ip = peer.ip().to_canonical();
        let localhost =
            ip == IpAddr::from(Ipv4Addr::LOCALHOST) || ip == IpAddr::from(Ipv6Addr::LOCALHOST);
        let limited = self.config.max_connections_per_ip > 0
            && !(self.config.per_ip_exempt_localhost && localhost);
        let ip_slot = if limited {
            self.per_ip
                .try_acquire(ip, self.config.max_connections_per_ip)
        } else {
            Some(None)
        };
        let permit = match ip_slot {
            Some(slot) => self
                .permits
                .clone()
                .try_acquire_owned()
                .map(|permit| (permit, slot))
                .map_err(|_| "connection refused: limit reached"),
            None => Err("connection refused: per-address limit reached"),
        };
        match permit {
            Ok((permit, ip_slot)) => {
                let session = handler(stream, peer, self.signal.clone());
                self.tasks.spawn(
                    async move {
                        tracing::info!("connection opened");
                        session.await;
                        drop(permit);
                        drop(ip_slot);
                        tracing::info!("connection closed");
                    }
                    .instrument(span),
                );
            }
            Err(why) => {
                let Ok(refusing) = self.refusals.clone().try_acquire_owned() else {
                    tracing::warn!(parent: &span, "connection dropped: limit reached and too many refusals pending");
                    return;
                };
                let refusal = refuse(stream);
                let limit = self.config.refuse_timeout;
                let max = self.config.max_connections;
                let per_ip = self.config.max_connections_per_ip;
                self.tasks.spawn(
                    async move {
                        tracing::warn!(
                            max_connections = max,
                            max_connections_per_ip = per_ip,
                            "{why}"
                        );
                        if tokio::time::timeout(limit, refusal).await.is_err() {
                            tracing::info!("refusal timed out");
                        }
                        drop(refusing);
                    }
                    .instrument(span),
                );
            }
        }
    }
}

/// Connections being served per peer IP address (only addresses under the per-IP limit).
#[derive(Debug, Default, Clone)]
struct PerIp {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    /// A slot for one more connection from `ip` if it has fewer than `max`: `Some(Some(slot))`,
    /// released when the slot is dropped; `None` when `ip` is at its limit.
    fn try_acquire(&self, ip: IpAddr, max: usize) -> Option<Option<IpSlot>> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Some(IpSlot {
            ip,
            counts: Arc::clone(&self.counts),
        }))
    }
}

/// One served connection counted against its address; dropping it frees the count.
#[derive(Debug)]
struct IpSlot {
    ip: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Writes `bytes` (for example `* BYE too many connections\r\n`), closes the sending side, and
/// reads and discards what the client still sends (up to [`REFUSE_DRAIN_LIMIT`] bytes, until it
/// closes) so the kernel does not reset the connection and lose the message. Errors are logged
/// at debug level: the peer may already be gone. Bound it with a timeout (the listener does).
pub async fn write_and_close(mut stream: TcpStream, bytes: &[u8]) {
    let result: io::Result<()> = async {
        stream.write_all(bytes).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < REFUSE_DRAIN_LIMIT {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            drained = drained.saturating_add(n);
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "closing refused connection");
    }
}

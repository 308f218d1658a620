//! The accept loop both servers run: one task per connection, a connection limit, and a clean
//! shutdown.
//!
//! A connection over [`ListenerConfig::max_connections`] is not served: it goes to the `refuse`
//! hook (which typically writes `* BYE too many connections` and closes, see
//! [`write_and_close`]). On [`ServerHandle::shutdown`] the listener is closed at once, sessions
//! are told through their [`ShutdownSignal`], and sessions still running after
//! [`ListenerConfig::shutdown_grace`] are aborted (dropping their sockets).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
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
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let session = handler(stream, peer, self.signal.clone());
                self.tasks.spawn(
                    async move {
                        tracing::info!("connection opened");
                        session.await;
                        drop(permit);
                        tracing::info!("connection closed");
                    }
                    .instrument(span),
                );
            }
            Err(_) => {
                let Ok(refusing) = self.refusals.clone().try_acquire_owned() else {
                    tracing::warn!(parent: &span, "connection dropped: limit reached and too many refusals pending");
                    return;
                };
                let refusal = refuse(stream);
                let limit = self.config.refuse_timeout;
                let max = self.config.max_connections;
                self.tasks.spawn(
                    async move {
                        tracing::warn!(max_connections = max, "connection refused: limit reached");
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

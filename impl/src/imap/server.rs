//! The listener: accepts connections, enforces the connection limit, runs a session each.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::mailstore::MailStore;
use super::mupdate_link::{MupdateOp, mupdate_name, owner_acl};
use super::session::{Session, Shared};
use super::{Config, ImapError};

/// A running server: its address, and a way to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting and close every connection (in-flight commands are dropped; committed
    /// data is durable).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Open the store, resync with the MUPDATE master (backend mode), and start listening.
pub async fn start(config: Config) -> Result<ServerHandle, ImapError> {
    let dir = config.data_dir.clone();
    let faults = config.faults.clone();
    let store = tokio::task::spawn_blocking(move || MailStore::open(&dir, faults))
        .await
        .map_err(|e| ImapError::Listen(std::io::Error::other(e)))??;
    let store = Arc::new(store);
    if let Some(link) = &config.mupdate {
        // RFC 3656 4.1: a backend (re)activates its mailboxes when it (re)connects.
        let ops: Vec<MupdateOp> = store
            .all_mailboxes()
            .into_iter()
            .map(|(user, name)| MupdateOp::Activate {
                name: mupdate_name(&user, &name),
                acl: owner_acl(&user),
            })
            .collect();
        if !ops.is_empty()
            && let Err(e) = link.run(&ops).await
        {
            tracing::warn!("MUPDATE resync of {} mailboxes failed: {e}", ops.len());
        }
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(ImapError::Listen)?;
    let local_addr = listener.local_addr().map_err(ImapError::Listen)?;
    let (stop, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(&config, store));
    let task = tokio::spawn(accept_loop(listener, shared, stop_rx));
    tracing::info!("imapd listening on {local_addr}");
    Ok(ServerHandle {
        local_addr,
        stop,
        task,
    })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let permit = slots.clone().try_acquire_owned();
        let shared = shared.clone();
        let mut stop = stop.clone();
        sessions.spawn(async move {
            let Ok(_permit) = permit else {
                use tokio::io::AsyncWriteExt;
                let mut tcp = tcp;
                let _ = tcp.write_all(b"* BYE Too many connections\r\n").await;
                return;
            };
            tracing::debug!("connection from {peer}");
            let session = Session::new(tcp, shared);
            tokio::select! {
                _ = stop.changed() => {}
                _ = session.run() => {}
            }
        });
        while sessions.try_join_next().is_some() {}
    }
    sessions.shutdown().await;
}

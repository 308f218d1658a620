//! Start-up: open the store, reconcile with the MUPDATE master in backend mode (see
//! [`super::reconcile`]; a master that cannot be reached does not stop the start), and serve
//! connections through the shared listener ([`crate::net::listener`]: connection limit, shutdown).

use std::sync::Arc;

use tokio::net::TcpListener;

use super::mailstore::MailStore;
use super::reconcile::run_reconciler;
use super::session::{Session, Shared};
use super::{Config, ImapError};
use crate::net::{ListenerConfig, ServerHandle, serve_with_shutdown, write_and_close};

/// Open the store, reconcile with the MUPDATE master (backend mode), and start listening.
pub async fn start(config: Config) -> Result<ServerHandle, ImapError> {
    let dir = config.data_dir.clone();
    let faults = config.faults.clone();
    let mut store = tokio::task::spawn_blocking(move || MailStore::open(&dir, faults))
        .await
        .map_err(|e| ImapError::Listen(std::io::Error::other(e)))??;
    if let Some(d) = &config.disk_fault {
        store.set_disk_fault(d.clone());
    }
    store.set_inline_segment_limit(config.limits.inline_append_limit);
    store.set_direct_io(config.direct_io);
    let store = Arc::new(store);
    let shared = Arc::new(Shared::new(&config, store));
    if let Some(murder) = &shared.murder {
        // RFC 3656 4.1 resynchronisation, the safe way (see `reconcile`): before serving, and
        // retried in the background while the master is unreachable.
        let _ = murder.reconcile().await;
        tokio::spawn(run_reconciler(Arc::downgrade(murder)));
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(ImapError::Listen)?;
    let listener_config = ListenerConfig {
        max_connections: config.limits.max_connections,
        max_connections_per_ip: config.limits.max_connections_per_ip,
        ..ListenerConfig::default()
    };
    serve_with_shutdown(
        listener,
        listener_config,
        move |tcp, peer, shutdown| {
            let shared = shared.clone();
            async move {
                tracing::debug!("connection from {peer}");
                Session::new(tcp, shared).run(shutdown).await;
            }
        },
        |tcp| write_and_close(tcp, b"* BYE Too many connections\r\n"),
    )
    .await
    .map_err(ImapError::Listen)
}

//! Process signals that stop a server, for the binaries' main loops.

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Installed SIGINT and SIGTERM handlers. Installing them (with [`termination`]) before the
/// server starts means a signal arriving during start-up is not lost and does not kill the
/// process with the default action.
#[derive(Debug)]
pub struct Termination {
    term: Signal,
    int: Signal,
}

/// Installs the SIGINT (Ctrl-C) and SIGTERM (`systemctl stop`, container runtimes) handlers.
/// Fails only if the handlers cannot be installed.
pub fn termination() -> io::Result<Termination> {
    Ok(Termination {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
    })
}

impl Termination {
    /// Completes when SIGINT or SIGTERM arrives; then call
    /// [`ServerHandle::shutdown`](super::ServerHandle::shutdown).
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

//! The `mupdated` server: configuration, start-up and the accept loop.
//!
//! [`start`] opens the durable store in [`Config::data_dir`], binds [`Config::listen`], and
//! serves every connection with a `Connection` task. On a slave it also runs the link to the
//! master (module `slave`). [`ServerHandle::shutdown`] stops accepting, closes every
//! connection and closes the store, so the same data directory and address can be reused at
//! once (tests restart a master that way).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::auth::UserDb;
use crate::net::{self, ListenerConfig, ShutdownSignal};
use crate::store::{FaultInjector, MupdateStore, StoreConfig, StoreError};

use super::config::{Backoff, Limits};
use super::connection::Connection;
use super::faults::Faults;
use super::session::{Policy, Role, bye};
use super::slave::{self, Kick};

/// How a slave reaches its master (RFC 3656 2: a slave is a client of the master).
#[derive(Clone)]
pub struct MasterLink {
    /// The master's `host:port`.
    pub master: String,
    /// The user the slave authenticates as (SASL PLAIN); with GSSAPI the client principal
    /// (empty: the default principal of the credential cache).
    pub user: String,
    /// Its password (never logged).
    pub password: String,
    /// Reconnection delays after the link drops.
    pub backoff: Backoff,
    /// How long a new client connection waits for the slave's first resynchronisation before it
    /// is served the slave's last stored state anyway (default 10 s).
    pub ready_timeout: Duration,
    /// How long a client's NOOP on a slave's UPDATE stream waits for the master's answer to the
    /// slave's own upstream NOOP before it is answered from the slave's state (default 10 s).
    pub barrier_timeout: Duration,
    /// Authenticate with SASL GSSAPI to this host-based service (`mupdate@HOST`) instead of
    /// PLAIN, with the credential cache (`KRB5CCNAME`) or client keytab (`KRB5_CLIENT_KTNAME`)
    /// of the process (default: none, PLAIN).
    #[cfg(feature = "gssapi")]
    pub gssapi_service: Option<String>,
}

impl MasterLink {
    /// A link to `master` as `user` with default timing.
    pub fn new(
        master: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        MasterLink {
            master: master.into(),
            user: user.into(),
            password: password.into(),
            backoff: Backoff::default(),
            ready_timeout: Duration::from_secs(10),
            barrier_timeout: Duration::from_secs(10),
            #[cfg(feature = "gssapi")]
            gssapi_service: None,
        }
    }
}

impl fmt::Debug for MasterLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterLink")
            .field("master", &self.master)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("backoff", &self.backoff)
            .field("ready_timeout", &self.ready_timeout)
            .field("barrier_timeout", &self.barrier_timeout)
            .finish_non_exhaustive()
    }
}

/// Everything a `mupdated` needs; build with [`Config::new`] and adjust the fields.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (port 0 picks a free one; see [`ServerHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Directory of the durable database (created if missing).
    pub data_dir: PathBuf,
    /// Users who may authenticate.
    pub users: Arc<UserDb>,
    /// Identities that may write (ACTIVATE, RESERVE, DEACTIVATE, DELETE) and act as another
    /// user through PLAIN's authzid. Empty: every authenticated user may write.
    pub admins: Vec<String>,
    /// Host name in the banner.
    pub server_name: String,
    /// TLS configuration; offers STARTTLS when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Run as a read-only slave of this master.
    pub slave_of: Option<MasterLink>,
    /// Resource limits.
    pub limits: Limits,
    /// Refuse AUTHENTICATE until STARTTLS succeeded (`--require-tls`; default off). Needs
    /// [`Config::tls`]; before TLS the banner's `* AUTH` lists no mechanism.
    pub require_tls: bool,
    /// Deliberate bugs for the conformance suite's mutant tests (empty by default).
    pub faults: Faults,
    /// Offer SASL GSSAPI (Kerberos 5) with these acceptor credentials (default: none).
    #[cfg(feature = "gssapi")]
    pub gssapi: Option<crate::auth::gssapi::GssapiAcceptor>,
    /// Test hook: open the store behind this disk-fault switch (full disk, failing fsync).
    /// Always None in production.
    #[doc(hidden)]
    pub store_faults: Option<FaultInjector>,
}

impl Config {
    /// A master on `listen` storing in `data_dir`, every other setting at its default (no admin
    /// list, no TLS, server name `localhost`).
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>, users: Arc<UserDb>) -> Self {
        Config {
            listen,
            data_dir: data_dir.into(),
            users,
            admins: Vec::new(),
            server_name: "localhost".to_string(),
            tls: None,
            slave_of: None,
            limits: Limits::default(),
            require_tls: false,
            faults: Faults::default(),
            #[cfg(feature = "gssapi")]
            gssapi: None,
            store_faults: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MupdateError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    /// A limit is out of its allowed range.
    #[error("invalid limit: {0}")]
    Limit(&'static str),
}

/// What every connection of one server shares.
pub(crate) struct Shared {
    pub(crate) store: MupdateStore,
    pub(crate) users: Arc<UserDb>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) limits: Limits,
    pub(crate) server_name: String,
    pub(crate) tls: Option<TlsAcceptor>,
    /// On a slave: true once the first resynchronisation finished.
    pub(crate) slave_ready: Option<watch::Receiver<bool>>,
    pub(crate) slave_ready_timeout: Duration,
    /// On a slave: asks the master link for an upstream NOOP barrier.
    pub(crate) kick: Option<Kick>,
    /// GSSAPI acceptor credentials, when GSSAPI is offered.
    #[cfg(feature = "gssapi")]
    pub(crate) gssapi: Option<crate::auth::gssapi::GssapiAcceptor>,
}

/// A running server: the transport's [`net::ServerHandle`] plus what `mupdated` owns besides
/// it (the store, a slave's master link), so that [`ServerHandle::shutdown`] can release the
/// data directory before it returns.
#[derive(Debug)]
pub struct ServerHandle {
    net: net::ServerHandle,
    store: MupdateStore,
    link: Option<AbortOnDrop>,
}

/// A task aborted when its handle is dropped (a slave's link must not outlive its server).
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr()
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        self.net.active_connections()
    }

    /// Stop accepting, say `* BYE` to every session (and abort those that do not end within the
    /// listener's grace period), stop a slave's master link, and close the store. Returns once
    /// the data directory can be opened again.
    pub async fn shutdown(mut self) {
        if let Some(mut link) = self.link.take() {
            link.0.abort();
            let _ = (&mut link.0).await;
        }
        self.net.shutdown().await;
        self.store.close().await;
    }
}

fn check_limits(l: &Limits) -> Result<(), MupdateError> {
    if l.max_line < 1024 {
        return Err(MupdateError::Limit(
            "max_line must be at least 1024 (RFC 3656 2)",
        ));
    }
    if l.max_literal < 4096 {
        return Err(MupdateError::Limit(
            "max_literal must be at least 4096 (RFC 3656 2.2)",
        ));
    }
    if l.idle_timeout.is_zero() {
        return Err(MupdateError::Limit("idle_timeout must not be zero"));
    }
    if l.max_tag == 0 || l.max_args < 3 || l.max_connections == 0 || l.max_batch == 0 {
        return Err(MupdateError::Limit(
            "max_tag, max_connections, max_batch >= 1, max_args >= 3",
        ));
    }
    if l.max_auth_failures == 0 {
        return Err(MupdateError::Limit("max_auth_failures must be at least 1"));
    }
    if l.subscriber_buffer == 0 {
        return Err(MupdateError::Limit("subscriber_buffer must be at least 1"));
    }
    Ok(())
}

/// Start a server; it runs until [`ServerHandle::shutdown`].
pub async fn start(config: Config) -> Result<ServerHandle, MupdateError> {
    check_limits(&config.limits)?;
    if config.require_tls && config.tls.is_none() {
        return Err(MupdateError::Limit(
            "require_tls needs a TLS configuration (--tls-cert, --tls-key)",
        ));
    }
    let store_config = StoreConfig {
        path: config.data_dir.clone(),
        max_batch: config.limits.max_batch,
        subscriber_buffer: config.limits.subscriber_buffer,
        ..StoreConfig::new(config.data_dir.clone())
    };
    let store = match config.store_faults.clone() {
        Some(fault) => MupdateStore::open_with_faults(store_config, fault).await?,
        None => MupdateStore::open(store_config).await?,
    };
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(source) => {
            store.close().await;
            return Err(MupdateError::Bind {
                addr: config.listen,
                source,
            });
        }
    };
    let role = match &config.slave_of {
        Some(link) => Role::Slave {
            master: link.master.clone(),
        },
        None => Role::Master,
    };
    let (slave_ready, kick, ready_timeout, link_task) = match config.slave_of.clone() {
        Some(link) => {
            let (ready_tx, ready_rx) = watch::channel(false);
            let (kick, kicks) = Kick::new(link.barrier_timeout);
            let timeout = link.ready_timeout;
            let task = tokio::spawn(slave::run(link, store.clone(), ready_tx, kicks));
            (Some(ready_rx), Some(kick), timeout, Some(task))
        }
        None => (None, None, Duration::ZERO, None),
    };
    let listener_config = ListenerConfig {
        max_connections: config.limits.max_connections,
        max_connections_per_ip: config.limits.max_connections_per_ip,
        ..ListenerConfig::default()
    };
    let shared = Arc::new(Shared {
        store: store.clone(),
        users: config.users,
        policy: Arc::new(Policy {
            role,
            admins: config.admins,
            tls_available: config.tls.is_some(),
            require_tls: config.require_tls,
            faults: config.faults,
        }),
        limits: config.limits,
        server_name: config.server_name,
        tls: config.tls.map(TlsAcceptor::from),
        slave_ready,
        slave_ready_timeout: ready_timeout,
        kick,
        #[cfg(feature = "gssapi")]
        gssapi: config.gssapi,
    });
    let role_text = shared.policy.role.banner_text();
    let handler = move |tcp: TcpStream, peer: SocketAddr, signal: ShutdownSignal| {
        Connection::new(tcp, peer.to_string(), Arc::clone(&shared), signal).run()
    };
    let refuse = |tcp: TcpStream| async move {
        info!("connection refused: too many connections");
        net::write_and_close(tcp, &bye("too many connections")).await;
    };
    let net = match net::serve_with_shutdown(listener, listener_config, handler, refuse).await {
        Ok(n) => n,
        Err(source) => {
            if let Some(t) = &link_task {
                t.abort();
            }
            store.close().await;
            return Err(MupdateError::Bind {
                addr: config.listen,
                source,
            });
        }
    };
    info!(addr = %net.local_addr(), role = %role_text, "mupdated listening");
    Ok(ServerHandle {
        net,
        store,
        link: link_task.map(AbortOnDrop),
    })
}

//! Transport shared by both servers, with nothing protocol-specific in it:
//!
//! * [`listener`]: the accept loop, connection limit and shutdown ([`serve`], [`ServerHandle`]).
//! * [`stream`]: a connection that is plain TCP or TLS after STARTTLS ([`Stream`]); read its
//!   STARTTLS safety note.
//! * [`tls`]: rustls configs (ring provider only) and run-time test certificates ([`TestPki`]).
//! * [`idle`]: idle timeouts for reads.
//! * [`signal`]: SIGINT/SIGTERM for the binaries.

pub mod idle;
pub mod listener;
pub mod signal;
pub mod stream;
pub mod tls;

pub use idle::{IdleTimeout, read_with_idle_timeout, with_idle_timeout};
pub use listener::{
    ListenerConfig, ServerHandle, ShutdownSignal, serve, serve_with_shutdown, write_and_close,
};
pub use stream::Stream;
pub use tls::{
    TestPki, TlsError, client_config_with_ca, insecure_client_config, load_server_config,
};

//! Limits and configuration of `mupdated`.
//!
//! Every limit the server enforces is a named field of [`Limits`] with a documented default, so
//! that operators can see and change them (each one is also a command-line option).

use std::time::Duration;

/// Every resource limit of a MUPDATE server, with the defaults documented per field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line outside literals, CRLF included (default 8 KiB; RFC 3656 2 requires
    /// at least 1024). A longer line gets `* BYE` and the connection closes, because the framing
    /// is lost.
    pub max_line: usize,
    /// Largest literal accepted (default 64 KiB; RFC 3656 2.2 requires at least 4096). A larger
    /// synchronizing literal gets BAD without `+ go ahead`; a larger non-synchronizing literal is
    /// drained (see [`Limits::literal_drain_limit`]) and answered BAD.
    pub max_literal: usize,
    /// Largest over-limit non-synchronizing literal the server reads and throws away to keep the
    /// connection (default 1 MiB). Above it: `* BYE` and close.
    pub literal_drain_limit: u64,
    /// Longest tag (default 64 octets). A longer tag gets an untagged BAD.
    pub max_tag: usize,
    /// Most arguments in one command (default 8; no MUPDATE command takes more than 3).
    pub max_args: usize,
    /// Most simultaneous connections (default 1024); one more gets `* BYE` and is closed.
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address (default 64, 0 = no limit); one more
    /// gets `* BYE` and is closed. Peers at 127.0.0.1 and ::1 are exempt (see
    /// [`ListenerConfig::per_ip_exempt_localhost`](crate::net::ListenerConfig::per_ip_exempt_localhost)).
    pub max_connections_per_ip: usize,
    /// Idle time after which a connection gets `* BYE` and is closed (default 30 min; RFC 3656 2
    /// requires at least 15 min; `mupdated` refuses less, the library allows it for tests). Any
    /// input resets it; an UPDATE stream that carries data does too.
    pub idle_timeout: Duration,
    /// Pause before answering a failed AUTHENTICATE (default 1 s), to slow password guessing.
    pub auth_failure_delay: Duration,
    /// Failed AUTHENTICATEs one connection may make (default 3); the last one's NO is followed
    /// by `* BYE` and the connection closes. A cancelled exchange (`*`) is not a failure.
    pub max_auth_failures: u32,
    /// Changes buffered per UPDATE subscriber before it is dropped with `* BYE` (default 65536).
    pub subscriber_buffer: usize,
    /// Most writes committed in one group commit (default 256).
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            max_literal: 64 * 1024,
            literal_drain_limit: 1024 * 1024,
            max_tag: 64,
            max_args: 8,
            max_connections: 1024,
            max_connections_per_ip: crate::net::listener::DEFAULT_MAX_CONNECTIONS_PER_IP,
            idle_timeout: Duration::from_secs(30 * 60),
            auth_failure_delay: Duration::from_secs(1),
            max_auth_failures: 3,
            subscriber_buffer: 65536,
            max_batch: 256,
        }
    }
}

/// Reconnection policy of a slave's link to its master: the first retry after
/// [`initial`](Backoff::initial), then doubling up to [`max`](Backoff::max); back to `initial`
/// after every successful resynchronisation.
///
/// The cap bounds how late a slave notices that its master is back: with the default 500 ms a
/// slave reconnects within about half a second of the master's return (the goal is 1 s; Cyrus
/// takes ~27 s). The price is at most two connection attempts per second per slave while the
/// master is away, which a refused or unanswered TCP connect makes negligible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay after the link drops (default 100 ms).
    pub initial: Duration,
    /// Largest delay; the delay doubles up to it (default 500 ms).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        }
    }
}

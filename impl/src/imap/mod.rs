//! `imapd`: an IMAP4rev1 subset with MULTIAPPEND (RFC 3502), LITERAL+ (RFC 2088) and UIDPLUS
//! (RFC 4315), usable as a Cyrus Murder backend (RFC 3656 client side).
//!
//! * [`codec`]: sans-IO framing (lines and literals) and command parsing.
//! * [`session`]: one connection's protocol state; APPEND streams literals to a staging segment.
//! * [`mailstore`]: durable storage (one segment file + one redb transaction per APPEND, group
//!   commit across sessions, recovery on start).
//! * [`message`]: header fields, ENVELOPE and a single-part BODYSTRUCTURE for FETCH.
//! * [`mupdate_link`]: the backend's MUPDATE client (RESERVE/ACTIVATE/DELETE/FIND/LIST).
//! * [`reconcile`]: backend mode: CREATE/DELETE/RENAME through the master, the start-up and
//!   retried reconcile, quarantined mailboxes.
//! * [`faults`]: deliberate deviations for the conformance suite's mutant tests.
//!
//! # Policies
//! * Plaintext LOGIN and AUTHENTICATE PLAIN are allowed unless [`Config::require_tls`] is set
//!   and the connection is not (yet) TLS; then CAPABILITY shows `LOGINDISABLED` and no
//!   `AUTH=PLAIN`, and both commands answer NO.
//! * AUTHENTICATE GSSAPI ([`Config::gssapi`], Kerberos 5 without a security layer) does not
//!   send a password, so it is offered and accepted before STARTTLS even with `require_tls`.
//! * [`Limits::max_auth_failures`] (3) failed LOGIN/AUTHENTICATE attempts on one connection:
//!   the last one's tagged answer is followed by `* BYE` and the connection closes.
//! * Each user has a private namespace; `INBOX` is created at first login; the hierarchy
//!   separator is `/`.
//! * A message literal larger than [`Limits::max_message_size`] is refused: for `{n}` without
//!   sending `+`; for `{n+}` with a tagged NO followed by `* BYE` (the bytes that follow are
//!   never read as commands). Any other refused APPEND with `{n+}` literals is answered after
//!   its remaining literals have been read and discarded (the framer, not the grammar, decides
//!   what is literal data), so the stream stays in sync and no literal byte is ever executed.
//! * Sessions with a mailbox selected are told about new messages (`EXISTS`, `RECENT`) and about
//!   other sessions' flag changes (`FETCH (FLAGS ..)`) as soon as they happen, also while idle;
//!   `EXPUNGE` only at the end of a command other than FETCH, STORE or SEARCH.
//! * COPY / UID COPY answer `[COPYUID ..]`; a missing target is `NO [TRYCREATE]`.
//! * Backend mode ([`Config::mupdate`]): see [`mupdate_link`] for the names, location and ACL
//!   sent to the master, and [`reconcile`] for what happens when the master and the local
//!   mailboxes disagree (start-up, lost connections, names taken by another server).

pub mod codec;
pub mod faults;
pub mod mailstore;
pub mod message;
pub mod mupdate_link;
pub mod reconcile;
pub mod server;
pub mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::auth::UserDb;
pub use crate::net::ServerHandle;
pub use faults::{DiskFault, Fault, Faults};
pub use mupdate_link::MupdateLink;
pub use reconcile::{ReconcileReport, ReconcileStatus};
pub use server::start;

/// Every limit of the server, with its default.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest command line, CRLF included. Default 64 KiB.
    pub max_line: usize,
    /// Largest literal in commands other than APPEND's message literals (e.g. a LOGIN
    /// password). Default 64 KiB.
    pub max_command_literal: u64,
    /// Largest APPEND message literal. Default 1 GiB + 64 MiB (a 1 GB message fits).
    pub max_message_size: u64,
    /// Most messages in one APPEND command. Default 100 000.
    pub max_messages_per_append: usize,
    /// Simultaneous connections; further ones get `* BYE` at once. Default 1024 (the shared
    /// listener's default).
    pub max_connections: usize,
    /// Simultaneous connections from one IP address; further ones get `* BYE` at once.
    /// Default 64 (the shared listener's default), 0 = no limit; peers at 127.0.0.1 and ::1 are exempt.
    pub max_connections_per_ip: usize,
    /// A connection with no input for this long is closed with `* BYE` (RFC 3501 5.4: at
    /// least 30 minutes). Default 30 min.
    pub idle_timeout: Duration,
    /// Size of one socket read. Default 64 KiB.
    pub read_chunk: usize,
    /// Failed LOGIN/AUTHENTICATE attempts one connection may make (default 3, like
    /// mupdated's): the last one's tagged NO (or BAD for a malformed SASL response) is
    /// followed by `* BYE` and the connection closes. A cancelled AUTHENTICATE (`*`), an
    /// unsupported mechanism and a refusal before STARTTLS are not failures. 0 acts as 1.
    pub max_auth_failures: u32,
    /// An APPEND whose literals total at most this many octets is buffered in memory and
    /// committed inside the index transaction (one fsync per command); larger ones stream to a
    /// staging file. Bounds the memory one session spends on an APPEND. 0 = always stream.
    /// Default 256 KiB (`mailstore::DEFAULT_INLINE_SEGMENT_LIMIT`).
    pub inline_append_limit: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_command_literal: 64 * 1024,
            max_message_size: (1 << 30) + (64 << 20),
            max_messages_per_append: 100_000,
            max_connections: crate::net::listener::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: crate::net::listener::DEFAULT_MAX_CONNECTIONS_PER_IP,
            idle_timeout: Duration::from_secs(30 * 60),
            read_chunk: 64 * 1024,
            max_auth_failures: 3,
            inline_append_limit: mailstore::DEFAULT_INLINE_SEGMENT_LIMIT,
        }
    }
}

/// Everything `imapd` needs to run (the conformance runner builds one in-process).
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (port 0 picks a free one; see [`ServerHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Data directory of the mail store.
    pub data_dir: PathBuf,
    /// User database.
    pub users: Arc<UserDb>,
    /// TLS for STARTTLS; None disables STARTTLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse LOGIN/AUTHENTICATE before TLS (advertise LOGINDISABLED).
    pub require_tls: bool,
    /// Murder backend mode: the MUPDATE master to keep informed.
    pub mupdate: Option<MupdateLink>,
    /// Limits.
    pub limits: Limits,
    /// Fault switches (empty: correct behaviour).
    pub faults: Faults,
    /// Test hook: while on, the mail store refuses to commit APPENDs as if the disk were full.
    pub disk_fault: Option<DiskFault>,
    /// Offer `AUTH=GSSAPI` with these acceptor credentials (service `imap@HOST`; cargo feature
    /// `gssapi`, always `None` without it). A client principal `user@REALM` of the service's
    /// realm logs in as `user`, any other as the full principal.
    pub gssapi: Option<crate::auth::exchange::Acceptor>,
    /// Write the staging files of large APPENDs with direct I/O (`O_DIRECT`) where the
    /// filesystem allows it (default true; see `mailstore::staging`). False: through the page
    /// cache.
    pub direct_io: bool,
}

impl Config {
    /// A configuration with defaults: no TLS, no MUPDATE, default limits, no faults.
    pub fn new(listen: SocketAddr, data_dir: PathBuf, users: Arc<UserDb>) -> Config {
        Config {
            listen,
            data_dir,
            users,
            tls: None,
            require_tls: false,
            mupdate: None,
            limits: Limits::default(),
            faults: Faults::default(),
            disk_fault: None,
            gssapi: None,
            direct_io: true,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// Binding the listener failed.
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
    /// The mail store could not be opened or recovered.
    #[error("mail store: {0}")]
    Store(#[from] mailstore::StoreError),
}

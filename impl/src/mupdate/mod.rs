//! `mupdated`: a MUPDATE (RFC 3656) master or slave.
//!
//! Layers, each in its own file:
//! * [`codec`]: bytes to [`codec::RawCommand`]s (sans-IO); [`response`]: responses to bytes;
//!   [`reply`]: a client's reading of responses (sans-IO, on top of [`codec`]).
//! * [`command`]: raw commands to typed [`command::Request`]s.
//! * [`session`]: per-connection protocol state and decisions (sans-IO).
//! * `connection`: the tokio driver of one connection (I/O, SASL exchange, STARTTLS, UPDATE
//!   streaming, NOOP barrier).
//! * [`server`]: [`Config`], [`start`], the accept loop; `slave`: a slave's link to its master.
//! * [`config`]: [`Limits`] and the other knobs; [`faults`]: test-only fault switches.
//!
//! Semantics come from the oracle (`murder_model`); durability from [`crate::store`].
//!
//! # Choices where RFC 3656 or Cyrus leave room
//! * Before AUTHENTICATE: NO (RFC 4 SHOULD), never a `+ go ahead` for a refused command.
//! * LOGOUT: tagged BYE (RFC 4.7), then close. Unknown command words: BAD.
//! * Tags: ACAP ATOM-CHARs, at most [`Limits::max_tag`] octets (64; the RFC's "< 15" is not
//!   enforced because Cyrus clients never send long tags and a strict limit buys nothing).
//! * Lines end with CRLF only; a bare LF line is answered BAD. Quoted strings are 7-bit without
//!   NUL, escapes are `\"` and `\\` only; 8-bit data goes in literals.
//! * Over-limit input: BAD when the line boundary is known, `* BYE` and close when it is lost
//!   (line over [`Limits::max_line`], non-synchronizing literal over
//!   [`Limits::literal_drain_limit`]). Never a crash: other connections are unaffected.
//! * Failed AUTHENTICATE: a pause of [`Limits::auth_failure_delay`], and after
//!   [`Limits::max_auth_failures`] (3) on one connection, `* BYE` and close. With
//!   [`Config::require_tls`], no mechanism is offered and AUTHENTICATE gets NO until STARTTLS.
//!   See `SECURITY.md` for the threat model and the tests behind each defense.
//! * Writes: only the `admins` when a list is configured (RFC 7 gives every user full access);
//!   PLAIN authzid different from authcid only for admins.
//! * UPDATE streams every committed change at once with every intermediate state; NOOP on the
//!   stream is a barrier (on a slave it goes through to the master first). A subscriber more
//!   than [`Limits::subscriber_buffer`] changes behind gets `* BYE`.
//! * Pipelined writes of one connection are handed to the store together (one group commit);
//!   every command still sees the effects of the commands before it.

pub mod codec;
pub mod command;
pub mod config;
mod connection;
pub mod faults;
pub mod reply;
pub mod response;
pub mod server;
pub mod session;
mod slave;

pub use config::{Backoff, Limits};
pub use faults::{Fault, Faults};
pub use server::{Config, MasterLink, MupdateError, ServerHandle, start};

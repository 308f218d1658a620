//! `mupdated`: a MUPDATE (RFC 3656) master or slave.
//!
//! Layers, each in its own file:
//! * [`codec`]: bytes to [`codec::RawCommand`]s (sans-IO); [`response`]: responses to bytes.
//! * [`command`]: raw commands to typed [`command::Request`]s.
//! * [`session`]: per-connection protocol state and decisions (sans-IO).
//! * [`config`]: [`Limits`] and the other knobs; [`faults`]: test-only fault switches.

pub mod codec;
pub mod command;
pub mod config;
pub mod faults;
pub mod response;
pub mod session;

pub use config::{Backoff, Limits};
pub use faults::{Fault, Faults};

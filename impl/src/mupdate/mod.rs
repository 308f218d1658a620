//! `mupdated`: a MUPDATE (RFC 3656) master or slave.
//!
//! Layers, each in its own file:
//! * [`codec`]: bytes to [`codec::RawCommand`]s (sans-IO); [`response`]: responses to bytes.
//! * [`command`]: raw commands to typed [`command::Request`]s.
//! * [`session`]: per-connection protocol state and decisions (sans-IO).
//! * `connection`: the tokio driver of one connection (I/O, SASL exchange, STARTTLS, UPDATE
//!   streaming, NOOP barrier).
//! * [`server`]: [`Config`], [`start`], the accept loop; `slave`: a slave's link to its master.
//! * [`config`]: [`Limits`] and the other knobs; [`faults`]: test-only fault switches.
//!
//! Semantics come from the oracle (`murder_model`); durability from [`crate::store`].

pub mod codec;
pub mod command;
pub mod config;
mod connection;
pub mod faults;
pub mod response;
pub mod server;
pub mod session;
mod slave;

pub use config::{Backoff, Limits};
pub use faults::{Fault, Faults};
pub use server::{Config, MasterLink, MupdateError, ServerHandle, start};

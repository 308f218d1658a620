//! murder-server: the reference servers of the project.
//!
//! * [`mupdate`]: `mupdated`, a MUPDATE (RFC 3656) master or slave.
//! * [`imap`]: `imapd`, an IMAP4rev1 subset with MULTIAPPEND (RFC 3502), LITERAL+ and UIDPLUS,
//!   usable as a Murder backend.
//! * [`auth`]: the passwd-file user database and SASL mechanisms both servers share.
//! * [`net`]: transport shared by both servers: listener, connection limits, TLS.
//!
//! Protocol codecs are sans-IO; sessions are separate from the transport; semantics come from
//! the oracle in `murder-model`.

pub mod auth;
pub mod imap;
pub mod mupdate;
pub mod net;
/// The crash-safe MUPDATE database (redb, group commit, UPDATE change stream).
pub mod store;

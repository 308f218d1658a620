//! murder-model: the specification of a Cyrus-style IMAP Murder as code.
//!
//! * [`mailbox_db`]: the MUPDATE database (RFC 3656) as a pure state machine, the **oracle** that
//!   the reference servers, the scenario validator and the conformance runner's stress mode use.
//! * [`session`]: which MUPDATE commands a connection may run in which state.
//! * [`multiappend`]: a mailbox under MULTIAPPEND (RFC 3502 + UIDPLUS), all-or-nothing.
//!
//! Nothing here does I/O. Stateright models of the whole Murder build on these definitions.

pub mod mailbox_db;
pub mod multiappend;
pub mod murder;
pub mod session;

pub use mailbox_db::{Change, Command, MailboxDb, MailboxEntry, Record, Refusal, Reply};

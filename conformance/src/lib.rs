//! `conformance`: the black-box conformance runner for MUPDATE (RFC 3656) and IMAP MULTIAPPEND
//! (RFC 3502) servers.
//!
//! # Layout
//! * [`wire`]: the runner's own reading of server bytes (framing, tokens) and of the commands it
//!   sends. It never uses the reference server's codecs.
//! * [`scenario`]: the `.scn` format (see `scenarios/README.md`): parser, patterns, templates,
//!   and the oracle simulation that validates cases and judges races.
//! * [`corpus`]: the scenario files embedded at build time, or loaded from a directory.
//! * [`run`]: connections, the executor of one case, and the suite runner (parallel, grades).
//! * [`report`]: the human summary, JSON, JUnit and failure bundles.
//! * [`bench`]: `conformance bench`, the black-box load generator.
//! * [`coverage`]: the requirement tables and `--coverage`.
//! * [`verify`]: `conformance verify-copy`, byte-for-byte comparison of a mailbox and its copy.
//! * [`embedded`]: the reference servers started in-process when no `--target` is given.
//! * [`stress`]: `conformance stress`, random concurrent workloads checked against the model.

pub mod bench;
pub mod cli;
pub mod corpus;
pub mod coverage;
pub mod embedded;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stress;
pub mod verify;
pub mod wire;

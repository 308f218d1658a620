//! The reference servers started in-process when no `--target` is given (TODO: wired up when
//! `murder_server::{mupdate, imap}::start` land on main).

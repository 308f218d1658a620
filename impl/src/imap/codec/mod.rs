//! The sans-IO IMAP codec: framing ([`framer`]), a strict argument cursor ([`parser`]), typed
//! commands ([`command`]), dates ([`datetime`]) and response quoting ([`response`]).

pub mod command;
pub mod datetime;
pub mod framer;
pub mod parser;
pub mod response;

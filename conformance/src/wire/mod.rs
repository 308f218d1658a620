//! The runner's own view of the wire, independent of the reference server's codecs.
//!
//! * [`frame`]: split the server's byte stream into logical lines (literals included).
//! * [`token`]: split a logical line into atoms, strings, lists and response codes.
//! * [`command`]: read the MUPDATE commands a scenario sends, for the oracle.
//! * [`visible`]: show bytes in failure reports (`\r\n`, `\xHH`).

pub mod command;
pub mod frame;
pub mod token;
pub mod visible;

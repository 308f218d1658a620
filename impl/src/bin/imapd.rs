//! `imapd`: the IMAP MULTIAPPEND server binary (being written).
fn main() {}

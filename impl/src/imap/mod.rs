//! imap (being written).

//! What was said on every connection of a case, in order, for failure reports and bundles.

use std::fmt::Write as _;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::wire::visible::visible_capped;

/// Longest rendering of one event in a report (the bundle keeps more).
pub const MAX_EVENT_CHARS: usize = 2000;

/// Most bytes of one send kept in the transcript (and so in bundles): a 10 MiB command line is
/// in the scenario already, and its copy would make bundles hundreds of MB of JSON. The rest is
/// replaced by a note saying how much was left out. Received lines are kept whole (`lacks` and
/// `last` judge them).
pub const MAX_SENT_BYTES: usize = 64 * 1024;

/// Direction of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dir {
    /// Client to server.
    Sent,
    /// Server to client (one logical line, with its line ending).
    Received,
    /// A remark by the runner (connect, TLS, close).
    Note,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Connection name.
    pub conn: String,
    /// Direction.
    pub dir: Dir,
    /// The bytes (for notes: UTF-8 text).
    pub bytes: Vec<u8>,
    /// Milliseconds since the case started.
    pub at_ms: u64,
}

/// The events of one case.
#[derive(Clone, Debug)]
pub struct Transcript {
    start: Instant,
    /// Events in order.
    pub events: Vec<Event>,
}

impl Default for Transcript {
    fn default() -> Self {
        Transcript {
            start: Instant::now(),
            events: Vec::new(),
        }
    }
}

impl Transcript {
    /// Record an event.
    pub fn push(&mut self, conn: &str, dir: Dir, bytes: &[u8]) {
        if dir == Dir::Sent
            && let Some(kept) = bytes.get(..MAX_SENT_BYTES)
            && kept.len() < bytes.len()
        {
            self.push_whole(conn, dir, kept);
            let more = bytes.len() - kept.len();
            self.note(conn, &format!("... {more} more bytes sent (not kept)"));
            return;
        }
        self.push_whole(conn, dir, bytes);
    }

    fn push_whole(&mut self, conn: &str, dir: Dir, bytes: &[u8]) {
        let at_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.events.push(Event {
            conn: conn.to_string(),
            dir,
            bytes: bytes.to_vec(),
            at_ms,
        });
    }

    /// Record a note.
    pub fn note(&mut self, conn: &str, text: &str) {
        self.push(conn, Dir::Note, text.as_bytes());
    }
}

/// Render events for humans: `c1 C: ...` / `c1 S: ...` / `c1 -- ...`, bytes made visible.
pub fn render(events: &[Event]) -> String {
    let width = events.iter().map(|e| e.conn.len()).max().unwrap_or(0);
    let mut out = String::new();
    for e in events {
        let arrow = match e.dir {
            Dir::Sent => "C:",
            Dir::Received => "S:",
            Dir::Note => "--",
        };
        let body = match e.dir {
            Dir::Note => String::from_utf8_lossy(&e.bytes).into_owned(),
            _ => visible_capped(&e.bytes, MAX_EVENT_CHARS),
        };
        let _ = writeln!(out, "{:>6}ms {:<width$} {arrow} {body}", e.at_ms, e.conn);
    }
    out
}

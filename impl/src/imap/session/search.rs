//! SEARCH (RFC 3501 section 6.4.4) on the selected mailbox.
//!
//! Keys on flags, sequence numbers, UIDs, sizes and INTERNALDATE are answered from the
//! in-memory metadata. Keys on the message text (HEADER, SUBJECT, FROM, TO, CC, BCC, BODY,
//! TEXT, SENT*) read the message from its segment file, one message at a time, on a blocking
//! thread: the header (bounded by [`MAX_HEADER_SCAN`]) only when a header key is evaluated,
//! and the body streamed in [`SCAN_CHUNK`] pieces for BODY/TEXT, so a search never holds more
//! than one header and one chunk in memory whatever the mailbox size.
//!
//! Policies:
//! - Strings match as case-insensitive substrings with ASCII case folding; with `CHARSET`
//!   US-ASCII or UTF-8 (the only ones supported, others get `NO [BADCHARSET]`) the octets of
//!   the string are compared as given. Encoded words (RFC 2047) and transfer encodings are not
//!   decoded.
//! - BEFORE/ON/SINCE compare the INTERNALDATE's date in the zone it was given in, disregarding
//!   time and timezone; SENT* do the same with the `Date:` field. A message without a readable
//!   `Date:` field matches no SENT* key.
//! - `HEADER name ""` matches every message that has the field.
//! - A message whose file cannot be read matches no text key.
//!
//! [`MAX_HEADER_SCAN`]: crate::imap::message::MAX_HEADER_SCAN

use std::collections::BTreeSet;
use std::io::{Read, Seek};
use std::path::PathBuf;

use super::Session;
use crate::imap::codec::command::SearchKey;
use crate::imap::codec::datetime::parse_header_date;
use crate::imap::mailstore::MessageMeta;
use crate::imap::message::{fields, header_end, read_header};

/// How many octets of a message body are read at a time by BODY/TEXT.
pub const SCAN_CHUNK: usize = 64 * 1024;

impl Session {
    pub(super) async fn search(
        &mut self,
        tag: &str,
        uid: bool,
        charset: Option<&str>,
        keys: &[SearchKey],
    ) {
        if let Some(cs) = charset
            && !cs.eq_ignore_ascii_case("US-ASCII")
            && !cs.eq_ignore_ascii_case("UTF-8")
        {
            self.tagged(
                tag,
                "NO",
                "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset",
            );
            return;
        }
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        let id = sel.id;
        let n = u32::try_from(sel.uids.len()).unwrap_or(u32::MAX);
        let max_uid = sel.uids.last().copied().unwrap_or(0);
        let recent = sel.recent.clone();
        // The metadata of the view's messages (not their text) in sequence order.
        let metas = self.shared.store.with_view(id, |view| {
            sel.uids
                .iter()
                .enumerate()
                .filter_map(|(i, u)| {
                    let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
                    view.messages.get(u).map(|m| (seq, *u, m.clone()))
                })
                .collect::<Vec<_>>()
        });
        let Some(metas) = metas else {
            self.tagged(tag, "NO", "Mailbox was deleted");
            return;
        };
        let store = self.shared.store.clone();
        let keys = keys.to_vec();
        let hits = tokio::task::spawn_blocking(move || {
            let mut hits = Vec::new();
            for (seq, u, meta) in &metas {
                let mut ctx = Ctx {
                    seq: *seq,
                    uid: *u,
                    n,
                    max_uid,
                    meta,
                    recent: &recent,
                    text: Text {
                        path: store.segment_path(id, meta.segment),
                        offset: meta.offset,
                        size: meta.size,
                        header: None,
                    },
                };
                if keys.iter().all(|k| ctx.matches(k)) {
                    hits.push(if uid { *u } else { *seq });
                }
            }
            hits
        })
        .await
        .unwrap_or_default();
        let mut line = String::from("* SEARCH");
        for h in hits {
            line.push_str(&format!(" {h}"));
        }
        self.push_line(&line);
        self.sync_selected(false);
        self.tagged(tag, "OK", "SEARCH completed");
    }
}

/// One message while SEARCH evaluates its keys.
struct Ctx<'a> {
    seq: u32,
    uid: u32,
    n: u32,
    max_uid: u32,
    meta: &'a MessageMeta,
    recent: &'a BTreeSet<u32>,
    text: Text,
}

/// The text of one message on disk; the header is read at most once, on first use.
struct Text {
    path: PathBuf,
    offset: u64,
    size: u64,
    header: Option<Vec<u8>>,
}

impl Text {
    fn header(&mut self) -> &[u8] {
        let (path, offset, size) = (&self.path, self.offset, self.size);
        self.header
            .get_or_insert_with(|| read_header(path, offset, size).unwrap_or_default())
    }

    /// The unfolded values of the fields called `name` (upper-case).
    fn values(&mut self, name: &str) -> Vec<Vec<u8>> {
        fields(self.header())
            .into_iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, raw)| {
                let colon = raw.iter().position(|&b| b == b':')?;
                Some(
                    raw.get(colon + 1..)?
                        .iter()
                        .copied()
                        .filter(|&b| b != b'\r' && b != b'\n')
                        .collect(),
                )
            })
            .collect()
    }

    /// Whether the message from `skip` octets on contains `needle` (ASCII case-insensitive),
    /// streaming the file.
    fn contains_from(&self, skip: u64, needle: &[u8]) -> bool {
        if needle.is_empty() {
            return true;
        }
        let scan = || -> std::io::Result<bool> {
            let mut f = std::fs::File::open(&self.path)?;
            f.seek(std::io::SeekFrom::Start(self.offset + skip))?;
            let mut f = f.take(self.size.saturating_sub(skip));
            let keep = needle.len() - 1;
            let mut window: Vec<u8> = Vec::with_capacity(SCAN_CHUNK + keep);
            let mut chunk = vec![0u8; SCAN_CHUNK];
            loop {
                let got = f.read(&mut chunk)?;
                if got == 0 {
                    return Ok(false);
                }
                window.extend_from_slice(chunk.get(..got).unwrap_or_default());
                if contains_ci(&window, needle) {
                    return Ok(true);
                }
                let drop = window.len().saturating_sub(keep);
                window.drain(..drop);
            }
        };
        scan().unwrap_or(false)
    }

    fn body_contains(&mut self, needle: &[u8]) -> bool {
        let hlen = header_end(self.header()).map_or(self.size, |e| e as u64);
        self.contains_from(hlen.min(self.size), needle)
    }
}

/// ASCII case-insensitive substring test.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

impl Ctx<'_> {
    fn matches(&mut self, k: &SearchKey) -> bool {
        let has = |f: &str| self.meta.flags.iter().any(|x| x.eq_ignore_ascii_case(f));
        let recent = self.recent.contains(&self.uid);
        match k {
            SearchKey::All => true,
            SearchKey::Flag(f) => has(f),
            SearchKey::NotFlag(f) => !has(f),
            SearchKey::New => recent && !has("\\Seen"),
            SearchKey::Recent => recent,
            SearchKey::Old => !recent,
            SearchKey::Seq(s) => s.contains(self.seq, self.n),
            SearchKey::Uid(s) => s.contains(self.uid, self.max_uid),
            SearchKey::Larger(x) => self.meta.size > u64::from(*x),
            SearchKey::Smaller(x) => self.meta.size < u64::from(*x),
            SearchKey::Not(k) => !self.matches(k),
            SearchKey::Or(a, b) => self.matches(a) || self.matches(b),
            SearchKey::And(v) => v.iter().all(|k| self.matches(k)),
            SearchKey::InternalDate(cmp, day) => cmp.matches(self.meta.date.day(), *day),
            SearchKey::SentDate(cmp, day) => self
                .text
                .values("DATE")
                .first()
                .and_then(|v| parse_header_date(v))
                .is_some_and(|d| cmp.matches(d, *day)),
            SearchKey::Header(name, s) => self.text.values(name).iter().any(|v| contains_ci(v, s)),
            SearchKey::Body(s) => self.text.body_contains(s),
            SearchKey::Text(s) => self.text.contains_from(0, s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_substrings() {
        assert!(contains_ci(b"Hello World", b"o wOR"));
        assert!(!contains_ci(b"Hello", b"hello!"));
        assert!(contains_ci(b"", b""));
    }

    #[test]
    fn streamed_scan_finds_needles_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut msg = b"Subject: x\r\n\r\n".to_vec();
        msg.resize(SCAN_CHUNK - 3, b'a');
        msg.extend_from_slice(b"NEEDLE");
        msg.resize(3 * SCAN_CHUNK, b'b');
        let mut file = b"junk".to_vec();
        file.extend_from_slice(&msg);
        file.extend_from_slice(b"needle after the message");
        std::fs::write(&path, &file).unwrap();
        let mut t = Text {
            path,
            offset: 4,
            size: msg.len() as u64,
            header: None,
        };
        assert!(t.body_contains(b"needle"));
        assert!(t.contains_from(0, b"subject: X"));
        assert!(!t.body_contains(b"subject"));
        assert!(!t.contains_from(0, b"after"));
        assert!(!t.contains_from(0, b"junk"));
        assert_eq!(t.values("SUBJECT"), vec![b" x".to_vec()]);
    }
}

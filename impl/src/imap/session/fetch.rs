//! FETCH and STORE on the selected mailbox.

use crate::imap::mailstore::FlagSet;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{Res, Session};
use crate::imap::codec::command::{FetchAttr, Section, SequenceSet, StoreOp};
use crate::imap::codec::response::flag_list;
use crate::imap::mailstore::FlagsStored;
use crate::imap::message::{body_structure, envelope, header_end, header_fields, read_header};

/// Where the octets of a body section come from.
enum Source {
    /// In memory.
    Mem(Vec<u8>),
    /// A byte range of the message file.
    File { offset: u64, len: u64 },
}

impl Session {
    /// The (seq, uid) pairs of the selected view matching `set`.
    pub(super) fn resolve(&self, uid: bool, set: &SequenceSet) -> Vec<(u32, u32)> {
        let Some(sel) = self.selected.as_ref() else {
            return Vec::new();
        };
        let n = u32::try_from(sel.uids.len()).unwrap_or(u32::MAX);
        let max_uid = sel.uids.last().copied().unwrap_or(0);
        sel.uids
            .iter()
            .enumerate()
            .map(|(i, &u)| (u32::try_from(i + 1).unwrap_or(u32::MAX), u))
            .filter(|&(seq, u)| {
                if uid {
                    set.contains(u, max_uid)
                } else {
                    set.contains(seq, n)
                }
            })
            .collect()
    }

    /// This session's own STORE reported `stored`: unless another change came in between,
    /// the flag-change report (see `sync_selected`) can skip it.
    fn flags_reported(&mut self, stored: &FlagsStored) {
        if let Some(sel) = self.selected.as_mut()
            && sel.modseq_seen == stored.modseq_before
        {
            sel.modseq_seen = stored.modseq_after;
        }
    }

    fn flags_of(&self, uid: u32, flags: &FlagSet) -> String {
        let recent = self
            .selected
            .as_ref()
            .is_some_and(|s| s.recent.contains(&uid));
        let mut flags: Vec<&str> = flags.iter().collect();
        if recent {
            flags.push("\\Recent");
        }
        flag_list(flags)
    }

    pub(super) async fn fetch(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        attrs: &[FetchAttr],
    ) -> Res<()> {
        let Some(sel) = self.selected.as_ref() else {
            return Ok(());
        };
        let (id, read_only) = (sel.id, sel.read_only);
        let store = self.shared.store.clone();
        let targets = self.resolve(uid, set);
        let sets_seen = !read_only
            && attrs.iter().any(|a| {
                matches!(
                    a,
                    FetchAttr::Rfc822
                        | FetchAttr::Rfc822Text
                        | FetchAttr::BodySection { peek: false, .. }
                )
            });
        if sets_seen {
            let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
            let seen = vec!["\\Seen".to_string()];
            let s = store.clone();
            let stored =
                tokio::task::spawn_blocking(move || s.store_flags(id, &uids, StoreOp::Add, &seen))
                    .await;
            if let Ok(Ok(stored)) = stored {
                // The FETCH below reports these flags; do not report them again.
                self.flags_reported(&stored);
            }
        }
        // The metadata of the targets only (the mailbox is not copied).
        let metas = store.with_view(id, |view| {
            targets
                .iter()
                .filter_map(|&(seq, u)| view.messages.get(&u).map(|m| (seq, u, m.clone())))
                .collect::<Vec<_>>()
        });
        let Some(metas) = metas else {
            self.tagged(tag, "NO", "Mailbox was deleted");
            return Ok(());
        };
        let mut attrs = attrs.to_vec();
        if uid && !attrs.contains(&FetchAttr::Uid) {
            attrs.insert(0, FetchAttr::Uid);
        }
        if sets_seen && !attrs.contains(&FetchAttr::Flags) {
            attrs.push(FetchAttr::Flags);
        }
        for (seq, u, meta) in &metas {
            let (seq, u) = (*seq, *u);
            let path = store.segment_path(id, meta.segment);
            let base = meta.offset;
            let needs_header = attrs.iter().any(|a| {
                matches!(
                    a,
                    FetchAttr::Envelope
                        | FetchAttr::Body
                        | FetchAttr::BodyStructure
                        | FetchAttr::Rfc822Header
                        | FetchAttr::Rfc822Text
                        | FetchAttr::BodySection { .. }
                )
            });
            let header = if needs_header {
                match read_header(&path, base, meta.size) {
                    Ok(h) => h,
                    Err(_) => continue,
                }
            } else {
                Vec::new()
            };
            let hlen = header_end(&header).map_or(header.len(), |e| e) as u64;
            let hlen = hlen.min(meta.size);
            self.out
                .extend_from_slice(format!("* {seq} FETCH (").as_bytes());
            for (i, a) in attrs.iter().enumerate() {
                if i > 0 {
                    self.out.push(b' ');
                }
                match a {
                    FetchAttr::Flags => {
                        let f = self.flags_of(u, &meta.flags);
                        self.out.extend_from_slice(format!("FLAGS {f}").as_bytes());
                    }
                    FetchAttr::Uid => self.out.extend_from_slice(format!("UID {u}").as_bytes()),
                    FetchAttr::InternalDate => self.out.extend_from_slice(
                        format!("INTERNALDATE \"{}\"", meta.date.format()).as_bytes(),
                    ),
                    FetchAttr::Rfc822Size => self
                        .out
                        .extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes()),
                    FetchAttr::Envelope => {
                        self.out.extend_from_slice(b"ENVELOPE ");
                        self.out.extend_from_slice(&envelope(&header));
                    }
                    FetchAttr::Body | FetchAttr::BodyStructure => {
                        let body_len = meta.size - hlen;
                        let lines = count_lines(&path, base + hlen, body_len).await;
                        let word = if matches!(a, FetchAttr::Body) {
                            "BODY"
                        } else {
                            "BODYSTRUCTURE"
                        };
                        self.out.extend_from_slice(format!("{word} ").as_bytes());
                        self.out
                            .extend_from_slice(&body_structure(&header, body_len, lines));
                    }
                    FetchAttr::Rfc822 => {
                        self.out.extend_from_slice(b"RFC822 ");
                        let src = Source::File {
                            offset: base,
                            len: meta.size,
                        };
                        self.write_source(&path, src).await?;
                    }
                    FetchAttr::Rfc822Header => {
                        self.out.extend_from_slice(b"RFC822.HEADER ");
                        let h = header.get(..hlen as usize).unwrap_or_default().to_vec();
                        self.write_source(&path, Source::Mem(h)).await?;
                    }
                    FetchAttr::Rfc822Text => {
                        self.out.extend_from_slice(b"RFC822.TEXT ");
                        let src = Source::File {
                            offset: base + hlen,
                            len: meta.size - hlen,
                        };
                        self.write_source(&path, src).await?;
                    }
                    FetchAttr::BodySection {
                        section,
                        partial,
                        label,
                        ..
                    } => {
                        let src = match section {
                            Section::Full => Source::File {
                                offset: base,
                                len: meta.size,
                            },
                            Section::Header => Source::Mem(
                                header.get(..hlen as usize).unwrap_or_default().to_vec(),
                            ),
                            Section::HeaderFields { not, fields } => {
                                let h = header.get(..hlen as usize).unwrap_or_default();
                                Source::Mem(header_fields(h, fields, *not))
                            }
                            Section::Text | Section::Part1 => Source::File {
                                offset: base + hlen,
                                len: meta.size - hlen,
                            },
                        };
                        let (src, origin) = match (partial, src) {
                            (None, s) => (s, String::new()),
                            (Some((a, b)), Source::Mem(v)) => {
                                let start = (*a as usize).min(v.len());
                                let end = start.saturating_add(*b as usize).min(v.len());
                                (
                                    Source::Mem(v.get(start..end).unwrap_or_default().to_vec()),
                                    format!("<{a}>"),
                                )
                            }
                            (Some((a, b)), Source::File { offset, len }) => {
                                let start = u64::from(*a).min(len);
                                let n = u64::from(*b).min(len - start);
                                (
                                    Source::File {
                                        offset: offset + start,
                                        len: n,
                                    },
                                    format!("<{a}>"),
                                )
                            }
                        };
                        self.out
                            .extend_from_slice(format!("BODY[{label}]{origin} ").as_bytes());
                        self.write_source(&path, src).await?;
                    }
                }
            }
            self.out.extend_from_slice(b")\r\n");
            if self.out.len() > 256 * 1024 {
                self.flush().await?;
            }
        }
        self.sync_selected(false);
        self.tagged(
            tag,
            "OK",
            if uid {
                "UID FETCH completed"
            } else {
                "FETCH completed"
            },
        );
        Ok(())
    }

    /// Write a literal from memory or from the message file (streamed, bounded memory).
    async fn write_source(&mut self, path: &PathBuf, src: Source) -> Res<()> {
        match src {
            Source::Mem(v) => {
                self.out
                    .extend_from_slice(format!("{{{}}}\r\n", v.len()).as_bytes());
                self.out.extend_from_slice(&v);
            }
            Source::File { offset, len } => {
                // Open first: once the length is announced the octets must follow.
                let file = tokio::fs::File::open(path).await;
                let mut file = match file {
                    Ok(f) => f,
                    Err(_) => {
                        self.out.extend_from_slice(b"NIL");
                        return Ok(());
                    }
                };
                file.seek(std::io::SeekFrom::Start(offset)).await?;
                self.out
                    .extend_from_slice(format!("{{{len}}}\r\n").as_bytes());
                if len <= 256 * 1024 {
                    let mut buf = Vec::with_capacity(len as usize);
                    (&mut file).take(len).read_to_end(&mut buf).await?;
                    buf.resize(len as usize, b' ');
                    self.out.extend_from_slice(&buf);
                } else {
                    self.flush().await?;
                    let copied =
                        tokio::io::copy(&mut (&mut file).take(len), &mut self.conn).await?;
                    if copied < len {
                        // The file shrank underneath us: pad to keep the announced length.
                        let pad = vec![b' '; (len - copied) as usize];
                        self.conn.write_all(&pad).await?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) async fn store(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        op: StoreOp,
        silent: bool,
        flags: &[String],
    ) {
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        if sel.read_only {
            self.tagged(tag, "NO", "Mailbox is read-only");
            return;
        }
        let mut canon = Vec::new();
        for f in flags {
            if f.eq_ignore_ascii_case("\\Recent") {
                continue;
            }
            if f.starts_with('\\') {
                match ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case(f))
                {
                    Some(s) => canon.push(s.to_string()),
                    None => {
                        self.tagged(tag, "BAD", &format!("Unknown system flag {f}"));
                        return;
                    }
                }
            } else {
                canon.push(f.clone());
            }
        }
        let id = sel.id;
        let targets = self.resolve(uid, set);
        let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
        let store = self.shared.store.clone();
        let r = tokio::task::spawn_blocking(move || store.store_flags(id, &uids, op, &canon)).await;
        let Ok(Ok(stored)) = r else {
            self.tagged(tag, "NO", "STORE failed");
            return;
        };
        // Reported below, or deliberately not (.SILENT): either way not as someone else's change.
        self.flags_reported(&stored);
        let changed = stored.flags;
        if !silent {
            for (seq, u) in &targets {
                if let Some((_, f)) = changed.iter().find(|(cu, _)| cu == u) {
                    let fl = self.flags_of(*u, f);
                    let line = if uid {
                        format!("* {seq} FETCH (UID {u} FLAGS {fl})")
                    } else {
                        format!("* {seq} FETCH (FLAGS {fl})")
                    };
                    self.push_line(&line);
                }
            }
        }
        self.sync_selected(false);
        self.tagged(tag, "OK", "STORE completed");
    }
}

/// Lines of the body (after `offset`) for BODYSTRUCTURE; counted by streaming the file.
async fn count_lines(path: &PathBuf, offset: u64, len: u64) -> u64 {
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return 0;
    };
    if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return 0;
    }
    let mut f = f.take(len);
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 0u64;
    loop {
        match f.read(&mut buf).await {
            Ok(0) | Err(_) => return lines,
            Ok(n) => {
                lines += buf
                    .get(..n)
                    .unwrap_or_default()
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u64
            }
        }
    }
}

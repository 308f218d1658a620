//! COPY and UID COPY (RFC 3501 6.4.7) with COPYUID (RFC 4315 3): the source messages are copied
//! into one staging segment and committed to the destination like an APPEND, all or nothing.

use std::io::{Read, Seek, Write};

use murder_model::multiappend::uid_set;

use super::Session;
use crate::imap::codec::command::SequenceSet;
use crate::imap::faults::Fault;
use crate::imap::mailstore::{MailStore, StagedAppend, StagedPart, StagedSegment, StoreError};

/// Copy the byte ranges `(segment file, offset, size)` into a new staging segment (fsynced).
fn stage_copies(
    store: &MailStore,
    sources: &[(std::path::PathBuf, u64, u64)],
) -> std::io::Result<std::path::PathBuf> {
    let path = store.staging_path();
    let result = (|| {
        let mut out = std::fs::File::create(&path)?;
        for (src, offset, size) in sources {
            let mut f = std::fs::File::open(src)?;
            f.seek(std::io::SeekFrom::Start(*offset))?;
            let copied = std::io::copy(&mut f.take(*size), &mut out)?;
            if copied != *size {
                return Err(std::io::Error::other(
                    "source message is shorter than recorded",
                ));
            }
        }
        out.flush()?;
        out.sync_data()
    })();
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

impl Session {
    pub(super) async fn copy(&mut self, tag: &str, uid: bool, set: &SequenceSet, mailbox: &str) {
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        let id = sel.id;
        let user = self.user();
        let store = self.shared.store.clone();
        if self.quarantined(&user, mailbox) {
            self.tagged(tag, "NO", crate::imap::reconcile::QUARANTINED);
            return;
        }
        if !store.exists(&user, mailbox) {
            let text = if self.shared.faults.has(Fault::NoTryCreate) {
                "Mailbox does not exist"
            } else {
                "[TRYCREATE] Mailbox does not exist"
            };
            self.tagged(tag, "NO", text);
            return;
        }
        let targets = self.resolve(uid, set);
        let metas = store.with_view(id, |view| {
            targets
                .iter()
                .filter_map(|&(_, u)| view.messages.get(&u).map(|m| (u, m.clone())))
                .collect::<Vec<_>>()
        });
        let Some(metas) = metas else {
            self.tagged(tag, "NO", "Mailbox was deleted");
            return;
        };
        let mut src_uids = Vec::new();
        let mut sources = Vec::new();
        let mut parts = Vec::new();
        let mut offset = 0;
        for (u, m) in metas {
            src_uids.push(u);
            sources.push((store.segment_path(id, m.segment), m.offset, m.size));
            parts.push(StagedPart {
                offset,
                size: m.size,
                flags: m.flags.to_vec(),
                date: m.date,
            });
            offset += m.size;
        }
        if src_uids.is_empty() {
            self.tagged(tag, "OK", "COPY completed (no messages)");
            return;
        }
        let (to, s) = (mailbox.to_string(), store.clone());
        let result = tokio::task::spawn_blocking(move || {
            let path = stage_copies(&s, &sources)?;
            let staged = StagedAppend {
                segment: StagedSegment::File(path.clone()),
                parts,
            };
            let r = s.append(&user, &to, &staged);
            if r.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            r
        })
        .await;
        match result {
            Ok(Ok(done)) => {
                if self.selected.as_ref().is_some_and(|s| s.name == mailbox) {
                    self.sync_selected_inner(false, true);
                }
                self.tagged(
                    tag,
                    "OK",
                    &format!(
                        "[COPYUID {} {} {}] COPY completed",
                        done.uid_validity,
                        uid_set(&src_uids),
                        uid_set(&done.uids)
                    ),
                );
            }
            Ok(Err(StoreError::NoMailbox)) => {
                self.tagged(tag, "NO", "[TRYCREATE] Mailbox does not exist")
            }
            Ok(Err(e)) => self.tagged(tag, "NO", &format!("COPY failed: {e}")),
            Err(e) => self.tagged(tag, "NO", &format!("COPY failed: {e}")),
        }
    }
}

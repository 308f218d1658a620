//! Group commit: concurrent APPENDs share one directory fsync per mailbox (file-backed
//! segments only) and ONE index transaction (which also carries the inline segments).
//!
//! Each [`MailStore::append`] call queues a [`Job`] and then takes the writer lock. Whoever holds
//! the lock commits every queued job at once; a caller whose job was committed by another
//! thread finds its result waiting when it gets the lock. Each job stays all-or-nothing: its
//! messages go into the same transaction and are published together.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use redb::ReadableTable;

use super::index::{INLINE_SEGMENTS, MAILBOXES, MESSAGES, MailboxRecord, MessageRecord};
use super::{
    Appended, MailStore, MessageMeta, StagedPart, StagedSegment, StoreError, db_err, fsync_dir,
};

/// One queued APPEND.
#[derive(Debug)]
pub(super) struct Job {
    /// Mailbox key.
    pub key: String,
    /// Its segment: a staging file, or inline bytes.
    pub segment: StagedSegment,
    /// Its messages.
    pub parts: Vec<StagedPart>,
    /// Filled in by whoever commits the job.
    pub result: Mutex<Option<Result<Appended, StoreError>>>,
}

impl Job {
    pub(super) fn take_result(&self) -> Option<Result<Appended, StoreError>> {
        self.result.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn set(&self, r: Result<Appended, StoreError>) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }
}

/// A job that got its UIDs and whose segment is in place.
struct Planned {
    job: Arc<Job>,
    id: u64,
    uid_validity: u32,
    uids: Vec<u32>,
    dest: PathBuf,
}

impl MailStore {
    /// Commit `jobs` (caller holds the writer lock); every job gets its result.
    pub(super) fn commit_batch(&self, jobs: Vec<Arc<Job>>) {
        // Plan: UIDs per mailbox in queue order, segments renamed into place.
        let mut next: BTreeMap<String, (u64, u32, u32)> = BTreeMap::new();
        let mut planned: Vec<Planned> = Vec::new();
        let mut dirs = BTreeSet::new();
        for job in jobs {
            let cur = next.get(&job.key).copied().or_else(|| {
                let st = self.state();
                st.mailboxes
                    .get(&job.key)
                    .map(|v| (v.id, v.uid_validity, v.uid_next))
            });
            let Some((id, uid_validity, first)) = cur else {
                job.set(Err(StoreError::NoMailbox));
                continue;
            };
            let n = u32::try_from(job.parts.len()).unwrap_or(u32::MAX);
            let Some(uid_next) = first.checked_add(n) else {
                job.set(Err(StoreError::Index("UID space exhausted".into())));
                continue;
            };
            let dir = self.dir.join("blobs").join(id.to_string());
            let dest = dir.join(first.to_string());
            // An inline segment's cache file is written by its first reader (module docs).
            if let StagedSegment::File(path) = &job.segment {
                if let Err(e) = fs::create_dir_all(&dir).and_then(|()| fs::rename(path, &dest)) {
                    job.set(Err(e.into()));
                    continue;
                }
                dirs.insert(dir);
            }
            next.insert(job.key.clone(), (id, uid_validity, uid_next));
            planned.push(Planned {
                job,
                id,
                uid_validity,
                uids: (first..uid_next).collect(),
                dest,
            });
        }
        if planned.is_empty() {
            return;
        }
        let durable = dirs
            .iter()
            .try_for_each(|d| fsync_dir(d))
            .map_err(StoreError::from)
            .and_then(|()| self.write_batch(&planned, &next));
        if let Err(e) = durable {
            let msg = e.to_string();
            for p in planned {
                // Put the segment back so the caller's cleanup removes it.
                if let StagedSegment::File(path) = &p.job.segment {
                    let _ = fs::rename(&p.dest, path);
                }
                p.job.set(Err(StoreError::Index(msg.clone())));
            }
            return;
        }
        // Inline segments are unwritten before anyone can see their messages.
        {
            let mut unwritten = self.unwritten();
            for p in &planned {
                if matches!(p.job.segment, StagedSegment::Inline(_)) {
                    unwritten.insert((p.id, p.uids.first().copied().unwrap_or(0)));
                }
            }
        }
        // Publish: each job's messages appear in one step.
        let mut st = self.state();
        let mut touched = BTreeSet::new();
        for p in &planned {
            if let Some(m) = st.mailboxes.get_mut(&p.job.key) {
                let segment = p.uids.first().copied().unwrap_or(0);
                for (part, uid) in p.job.parts.iter().zip(&p.uids) {
                    m.messages.insert(
                        *uid,
                        MessageMeta {
                            flags: part.flags.iter().cloned().collect(),
                            size: part.size,
                            date: part.date,
                            segment,
                            offset: part.offset,
                        },
                    );
                }
                if let Some(&(_, _, uid_next)) = next.get(&p.job.key) {
                    m.uid_next = uid_next;
                }
            }
            touched.insert(p.id);
        }
        for id in touched {
            self.notify(&st, id);
        }
        drop(st);
        for p in planned {
            p.job.set(Ok(Appended {
                uid_validity: p.uid_validity,
                uids: p.uids,
            }));
        }
    }

    /// The one durable index transaction of a batch.
    fn write_batch(
        &self,
        planned: &[Planned],
        next: &BTreeMap<String, (u64, u32, u32)>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut msgs = tx.open_table(MESSAGES).map_err(db_err)?;
            let mut inline = tx.open_table(INLINE_SEGMENTS).map_err(db_err)?;
            for p in planned {
                let segment = p.uids.first().copied().unwrap_or(0);
                if let StagedSegment::Inline(bytes) = &p.job.segment {
                    inline
                        .insert((p.id, segment), bytes.as_slice())
                        .map_err(db_err)?;
                }
                for (part, uid) in p.job.parts.iter().zip(&p.uids) {
                    let rec = MessageRecord {
                        size: part.size,
                        segment,
                        offset: part.offset,
                        date: part.date,
                        flags: part.flags.clone(),
                    };
                    msgs.insert((p.id, *uid), rec.encode().as_slice())
                        .map_err(db_err)?;
                }
            }
            let mut t = tx.open_table(MAILBOXES).map_err(db_err)?;
            for (key, &(_, _, uid_next)) in next {
                let Some(rec) = t
                    .get(key.as_str())
                    .map_err(db_err)?
                    .and_then(|v| MailboxRecord::decode(v.value()))
                else {
                    return Err(StoreError::NoMailbox);
                };
                let rec = MailboxRecord { uid_next, ..rec };
                t.insert(key.as_str(), rec.encode().as_slice())
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }
}

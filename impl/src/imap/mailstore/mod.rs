//! The durable mail store behind `imapd`.
//!
//! # Design: one segment per APPEND, one index transaction
//! ```text
//! DATA/index.redb            mailboxes, messages (flags, size, date, segment, offset), counters,
//!                            subscriptions, inline segments
//! DATA/staging/<n>.seg       the message literals of a large APPEND command in progress
//! DATA/blobs/<id>/<uid>      committed segments: the messages of one APPEND, back to back,
//!                            named by the first UID of that APPEND
//! ```
//! A command costs one segment however many messages it has. Where the segment's bytes go
//! depends on the command's total literal size:
//!
//! * **Inline** (at most [`MailStore::inline_segment_limit`], default
//!   [`DEFAULT_INLINE_SEGMENT_LIMIT`] = 256 KiB): the session buffers the literals in memory
//!   ([`StagedSegment::Inline`]) and the commit stores the segment in the `inline_segments`
//!   table of the SAME redb transaction that inserts the message records. The transaction's
//!   fsync is the only one: a small MULTIAPPEND costs one fsync instead of three, and its
//!   bytes are written once. `blobs/<id>/<uid>` is a read cache of that index copy, written
//!   WITHOUT fsync by the first reader ([`MailStore::segment_path`]), so FETCH, SEARCH and
//!   COPY read every segment the same way and a command nobody reads costs no second write
//!   (measured: writing the cache at commit time was a quarter of imapd's CPU under
//!   MULTIAPPEND load). Every inline segment starts "unwritten" after [`MailStore::open`], so a
//!   cache file that a crash left missing or torn is rewritten before anyone reads it.
//! * **File** (larger): the literals stream into ONE staging file while they arrive, so memory
//!   stays bounded whatever the message size (a command that crosses the limit in its middle
//!   moves what it had buffered into the file). The session fsyncs the file, the commit renames
//!   it to `blobs/<id>/<first uid>` and fsyncs that directory before the redb transaction: three
//!   fsyncs, whatever the message count.
//!
//! [`MailStore::append`] holds the single writer lock (concurrent APPENDs are group-committed:
//! whoever holds the lock commits every queued APPEND in the same steps, see `group_commit.rs`):
//! 1. picks the UIDs `uid_next .. uid_next+k` of the mailbox,
//! 2. renames the file-backed segments into place and fsyncs their directories,
//! 3. commits ONE redb write transaction (durable: fsync before return) that inserts the k
//!    message records (segment, offset, size, flags, date), the inline segments, and advances
//!    UIDNEXT,
//! 4. only then publishes the k messages to the in-memory view in one step and wakes the
//!    sessions that have the mailbox selected.
//!
//! The commit point is the redb transaction. A crash before it leaves at most a segment file
//! that no index record names; [`MailStore::open`] deletes it, together with everything under
//! `staging/`. A crash after it leaves the complete command (an inline segment's cache file is
//! restored from the index). So after a restart a command's messages are all there or none is,
//! UIDs are strictly ascending (UIDNEXT is only advanced in the same transaction), and
//! UIDVALIDITY is whatever the index stored. EXPUNGE deletes a segment (file and inline copy,
//! the latter in the EXPUNGE's transaction) once none of its messages is left; DELETE drops the
//! mailbox's inline copies in its transaction.
//!
//! Readers never take the writer lock: the in-memory view ([`MailboxView`]) is behind a short
//! mutex and segments are immutable files.

mod flags;
mod group_commit;
mod index;
mod mailboxes;
mod staging;

pub use flags::FlagSet;

pub use staging::{DIRECT_ALIGN, STAGING_BLOCK, StagingWriter};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::watch;

use self::index::{
    INLINE_SEGMENTS, MAILBOXES, MESSAGES, META, MailboxRecord, MessageRecord, SUBSCRIPTIONS,
    mailbox_key,
};
use super::codec::command::StoreOp;
use super::codec::datetime::InternalDate;
use super::faults::{DiskFault, Fault, Faults};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The mailbox does not exist.
    #[error("no such mailbox")]
    NoMailbox,
    /// The mailbox exists already.
    #[error("mailbox already exists")]
    Exists,
    /// The mailbox name is not acceptable.
    #[error("invalid mailbox name: {0}")]
    InvalidName(&'static str),
    /// A file system error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// An index (redb) error.
    #[error("index error: {0}")]
    Index(String),
}

fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Index(e.into().to_string())
}

/// One message of a mailbox as the sessions see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageMeta {
    /// Flags (never `\Recent`; that is per session).
    pub flags: FlagSet,
    /// Size in octets.
    pub size: u64,
    /// INTERNALDATE.
    pub date: InternalDate,
    /// Segment file (first UID of its APPEND).
    pub segment: u32,
    /// Offset of the message in the segment.
    pub offset: u64,
}

/// The live state of one mailbox.
#[derive(Clone, Debug)]
pub struct MailboxView {
    /// Internal id.
    pub id: u64,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// Messages by UID.
    pub messages: BTreeMap<u32, MessageMeta>,
    /// Highest UID some session has already reported as \Recent.
    pub recent_claimed: u32,
    /// Counts flag changes (in memory only; sessions compare it to what they reported).
    pub modseq: u64,
    /// For each message whose flags changed since start-up: the `modseq` of the last change.
    pub flag_changes: BTreeMap<u32, u64>,
}

/// Page cache of the redb index: 16 MiB. Every record the sessions need is in the in-memory
/// view, so the cache only serves commits; redb's default (1 GiB) let the process grow by the
/// size of every inline segment written (measured: ~950 MiB after 340,000 messages of 2 KB).
pub const INDEX_CACHE_SIZE: usize = 16 << 20;

/// Default of [`MailStore::inline_segment_limit`]: 256 KiB.
pub const DEFAULT_INLINE_SEGMENT_LIMIT: u64 = 256 * 1024;

/// The messages of one APPEND, ready to commit.
#[derive(Debug)]
pub struct StagedAppend {
    /// Where the segment's bytes are.
    pub segment: StagedSegment,
    /// The messages, in order, back to back in the segment.
    pub parts: Vec<StagedPart>,
}

/// The bytes of a staged segment: a fsynced staging file (large commands), or memory (commands
/// of at most [`MailStore::inline_segment_limit`] octets, committed inside the index
/// transaction so that they cost one fsync).
#[derive(Debug)]
pub enum StagedSegment {
    /// A staging file, already fsynced; renamed into `blobs/` by the commit.
    File(PathBuf),
    /// The segment's bytes, stored in the index's inline table by the commit.
    Inline(Vec<u8>),
}

/// One message of a [`StagedAppend`].
#[derive(Clone, Debug)]
pub struct StagedPart {
    /// Offset in the segment.
    pub offset: u64,
    /// Size in octets.
    pub size: u64,
    /// Flags to set.
    pub flags: Vec<String>,
    /// INTERNALDATE.
    pub date: InternalDate,
}

/// The result of a committed APPEND.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// UIDVALIDITY of the mailbox.
    pub uid_validity: u32,
    /// The UIDs assigned, in message order.
    pub uids: Vec<u32>,
}

/// The result of [`MailStore::store_flags`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagsStored {
    /// (uid, new flags) of each message changed.
    pub flags: Vec<(u32, FlagSet)>,
    /// The mailbox's `modseq` before the change.
    pub modseq_before: u64,
    /// And after it.
    pub modseq_after: u64,
}

/// STATUS numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxStatus {
    /// MESSAGES.
    pub messages: u32,
    /// Messages not yet claimed as recent.
    pub recent: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// Messages without \Seen.
    pub unseen: u32,
}

#[derive(Default)]
struct State {
    /// key (`user\0name`) → view.
    mailboxes: BTreeMap<String, MailboxView>,
    /// mailbox id → change notifier (the value counts changes).
    watchers: HashMap<u64, watch::Sender<u64>>,
    subscriptions: BTreeSet<String>,
}

/// The store: a redb index, blob files, and the in-memory view.
pub struct MailStore {
    dir: PathBuf,
    db: Database,
    state: Mutex<State>,
    writer: Mutex<()>,
    /// APPENDs waiting for the next group commit.
    queue: Mutex<Vec<Arc<group_commit::Job>>>,
    staging_seq: AtomicU64,
    faults: Faults,
    /// Test hook: APPEND commits fail while it is on.
    disk_fault: Option<DiskFault>,
    /// Commands whose literals total at most this many octets are kept in memory and committed
    /// inline (see the module docs). Default [`DEFAULT_INLINE_SEGMENT_LIMIT`]; 0 = never.
    inline_segment_limit: u64,
    /// Inline segments (mailbox id, segment) whose cache file this process has not written
    /// yet: [`MailStore::segment_path`] writes it from the index copy on first use.
    unwritten: Mutex<HashSet<(u64, u32)>>,
    /// Staging files of large APPENDs use direct I/O where the filesystem allows it.
    direct_io: bool,
}

impl std::fmt::Debug for MailStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailStore").field("dir", &self.dir).finish()
    }
}

fn fsync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// Recovery of inline segments: the index is their durable copy and `blobs/<id>/<segment>`
/// a cache written without fsync, so a crash may have left that file missing or torn. Every
/// inline segment a live message names (`live`: the segments of each mailbox id) is returned
/// as unwritten (its cache file is rewritten on first use, nothing is written here); index
/// copies no live message names are dropped.
fn inline_segments_to_write(
    db: &Database,
    live: &HashMap<u64, BTreeSet<u32>>,
) -> Result<HashSet<(u64, u32)>, StoreError> {
    let mut dead = Vec::new();
    let mut unwritten = HashSet::new();
    {
        let tx = db.begin_read().map_err(db_err)?;
        let inline = tx.open_table(INLINE_SEGMENTS).map_err(db_err)?;
        for row in inline.iter().map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            let (id, segment) = k.value();
            if live.get(&id).is_some_and(|s| s.contains(&segment)) {
                unwritten.insert((id, segment));
            } else {
                dead.push((id, segment));
            }
        }
    }
    if !dead.is_empty() {
        let tx = db.begin_write().map_err(db_err)?;
        {
            let mut inline = tx.open_table(INLINE_SEGMENTS).map_err(db_err)?;
            for k in dead {
                inline.remove(k).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
    }
    Ok(unwritten)
}

fn validate_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::InvalidName("empty"));
    }
    if name.len() > 1000 {
        return Err(StoreError::InvalidName("longer than 1000 octets"));
    }
    if name.contains(['\0', '\r', '\n', '%', '*']) {
        return Err(StoreError::InvalidName(
            "contains NUL, CR, LF or a wildcard",
        ));
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Err(StoreError::InvalidName("empty hierarchy level"));
    }
    Ok(())
}

impl MailStore {
    /// Install a disk-full test hook (see [`DiskFault`]).
    pub fn set_disk_fault(&mut self, fault: DiskFault) {
        self.disk_fault = Some(fault);
    }

    /// Open (or create) the store in `dir` and recover: remove staging leftovers and blob
    /// files that no committed index record names.
    pub fn open(dir: &Path, faults: Faults) -> Result<MailStore, StoreError> {
        fs::create_dir_all(dir.join("staging"))?;
        fs::create_dir_all(dir.join("blobs"))?;
        for e in fs::read_dir(dir.join("staging"))? {
            let e = e?;
            fs::remove_file(e.path())?;
        }
        let db = redb::Builder::new()
            .set_cache_size(INDEX_CACHE_SIZE)
            .create(dir.join("index.redb"))
            .map_err(db_err)?;
        {
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(MAILBOXES).map_err(db_err)?;
            tx.open_table(MESSAGES).map_err(db_err)?;
            tx.open_table(META).map_err(db_err)?;
            tx.open_table(SUBSCRIPTIONS).map_err(db_err)?;
            tx.open_table(INLINE_SEGMENTS).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
        }
        let mut state = State::default();
        {
            let tx = db.begin_read().map_err(db_err)?;
            let mboxes = tx.open_table(MAILBOXES).map_err(db_err)?;
            let msgs = tx.open_table(MESSAGES).map_err(db_err)?;
            for row in mboxes.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let Some(rec) = MailboxRecord::decode(v.value()) else {
                    return Err(StoreError::Index(format!(
                        "corrupt mailbox {:?}",
                        k.value()
                    )));
                };
                let mut messages = BTreeMap::new();
                for m in msgs
                    .range((rec.id, 0)..=(rec.id, u32::MAX))
                    .map_err(db_err)?
                {
                    let (mk, mv) = m.map_err(db_err)?;
                    let Some(r) = MessageRecord::decode(mv.value()) else {
                        return Err(StoreError::Index("corrupt message record".into()));
                    };
                    messages.insert(
                        mk.value().1,
                        MessageMeta {
                            flags: r.flags.into_iter().collect(),
                            size: r.size,
                            date: r.date,
                            segment: r.segment,
                            offset: r.offset,
                        },
                    );
                }
                state.mailboxes.insert(
                    k.value().to_string(),
                    MailboxView {
                        id: rec.id,
                        uid_validity: rec.uid_validity,
                        uid_next: rec.uid_next,
                        recent_claimed: rec.uid_next.saturating_sub(1),
                        modseq: 0,
                        flag_changes: BTreeMap::new(),
                        messages,
                    },
                );
            }
            let subs = tx.open_table(SUBSCRIPTIONS).map_err(db_err)?;
            for row in subs.iter().map_err(db_err)? {
                let (k, _) = row.map_err(db_err)?;
                state.subscriptions.insert(k.value().to_string());
            }
        }
        // Garbage collection of blobs not named by the index.
        let live: HashMap<u64, BTreeSet<u32>> = state
            .mailboxes
            .values()
            .map(|m| (m.id, m.messages.values().map(|x| x.segment).collect()))
            .collect();
        for e in fs::read_dir(dir.join("blobs"))? {
            let e = e?;
            let id = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok());
            match id.and_then(|id| live.get(&id)) {
                None => fs::remove_dir_all(e.path())?,
                Some(segments) => {
                    for f in fs::read_dir(e.path())? {
                        let f = f?;
                        let seg = f.file_name().to_str().and_then(|s| s.parse::<u32>().ok());
                        if !seg.is_some_and(|u| segments.contains(&u)) {
                            fs::remove_file(f.path())?;
                        }
                    }
                }
            }
        }
        let unwritten = inline_segments_to_write(&db, &live)?;
        Ok(MailStore {
            dir: dir.to_path_buf(),
            db,
            state: Mutex::new(state),
            writer: Mutex::new(()),
            queue: Mutex::new(Vec::new()),
            staging_seq: AtomicU64::new(0),
            faults,
            disk_fault: None,
            inline_segment_limit: DEFAULT_INLINE_SEGMENT_LIMIT,
            unwritten: Mutex::new(unwritten),
            direct_io: true,
        })
    }

    /// Commands whose message literals total at most this many octets are staged in memory and
    /// committed inline ([`StagedSegment::Inline`]); larger ones stream to a staging file.
    pub fn inline_segment_limit(&self) -> u64 {
        self.inline_segment_limit
    }

    /// Change [`MailStore::inline_segment_limit`] (0 = every command is file-backed).
    pub fn set_inline_segment_limit(&mut self, limit: u64) {
        self.inline_segment_limit = limit;
    }

    /// Whether [`MailStore::create_staging`] asks for direct I/O (default true).
    pub fn set_direct_io(&mut self, direct: bool) {
        self.direct_io = direct;
    }

    /// A new staging file for a large APPEND, at a fresh [`MailStore::staging_path`].
    pub async fn create_staging(&self) -> std::io::Result<(PathBuf, StagingWriter)> {
        let path = self.staging_path();
        let writer = StagingWriter::create(&path, self.direct_io).await?;
        Ok((path, writer))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh staging file path (the file is not created).
    pub fn staging_path(&self) -> PathBuf {
        let n = self.staging_seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join("staging").join(format!("{n}.seg"))
    }

    /// The segment file of mailbox `id` named `segment` (the first UID of its APPEND), ready to
    /// read: an inline segment's cache file is written from its index copy on first use
    /// (blocking I/O, like the read that follows). If that fails, the path is still returned and
    /// the caller's read reports the error.
    pub fn segment_path(&self, id: u64, segment: u32) -> PathBuf {
        let path = self.blob_path(id, segment);
        if self.unwritten().contains(&(id, segment)) {
            match self.write_cache_file(id, segment, &path) {
                Ok(()) => {
                    self.unwritten().remove(&(id, segment));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write an inline segment's cache file");
                }
            }
        }
        path
    }

    /// Where the segment file of mailbox `id` named `segment` lives (nothing is written).
    fn blob_path(&self, id: u64, segment: u32) -> PathBuf {
        self.dir
            .join("blobs")
            .join(id.to_string())
            .join(segment.to_string())
    }

    fn unwritten(&self) -> MutexGuard<'_, HashSet<(u64, u32)>> {
        self.unwritten.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write the cache file of inline segment (`id`, `segment`) from the index: into a staging
    /// file, then renamed into place, so a concurrent reader sees the whole file or none. A
    /// segment the index no longer holds (expunged meanwhile) is left alone.
    fn write_cache_file(&self, id: u64, segment: u32, path: &Path) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let inline = tx.open_table(INLINE_SEGMENTS).map_err(db_err)?;
        let Some(bytes) = inline.get((id, segment)).map_err(db_err)? else {
            return Ok(());
        };
        let staged = self.staging_path();
        let written = path
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| fs::write(&staged, bytes.value()))
            .and_then(|()| fs::rename(&staged, path));
        if written.is_err() {
            let _ = fs::remove_file(&staged);
        }
        Ok(written?)
    }

    /// Forget the unwritten cache files of mailbox `id` (`segments`, or all of them).
    fn forget_unwritten(&self, id: u64, segments: Option<&[u32]>) {
        let mut unwritten = self.unwritten();
        match segments {
            Some(segs) => {
                for seg in segs {
                    unwritten.remove(&(id, *seg));
                }
            }
            None => unwritten.retain(|(i, _)| *i != id),
        }
    }

    /// A copy of the mailbox's current state.
    pub fn view(&self, user: &str, name: &str) -> Option<MailboxView> {
        self.state()
            .mailboxes
            .get(&mailbox_key(user, name))
            .cloned()
    }

    /// The mailbox's current state by id (None once deleted).
    pub fn view_by_id(&self, id: u64) -> Option<MailboxView> {
        self.state()
            .mailboxes
            .values()
            .find(|m| m.id == id)
            .cloned()
    }

    /// Run `f` on mailbox `id`'s live state without copying it (None once deleted). `f` must
    /// not call back into the store.
    pub fn with_view<R>(&self, id: u64, f: impl FnOnce(&MailboxView) -> R) -> Option<R> {
        let st = self.state();
        st.mailboxes.values().find(|m| m.id == id).map(f)
    }

    /// Messages above `uid` that no session has reported as \Recent yet become this caller's.
    /// Returns the UIDs claimed.
    pub fn claim_recent(&self, id: u64) -> Vec<u32> {
        let mut st = self.state();
        let Some(m) = st.mailboxes.values_mut().find(|m| m.id == id) else {
            return Vec::new();
        };
        let claimed: Vec<u32> = m
            .messages
            .range(m.recent_claimed.saturating_add(1)..)
            .map(|(u, _)| *u)
            .collect();
        if let Some(&last) = claimed.last() {
            m.recent_claimed = last;
        }
        claimed
    }

    /// STATUS.
    pub fn status(&self, user: &str, name: &str) -> Option<MailboxStatus> {
        let st = self.state();
        let m = st.mailboxes.get(&mailbox_key(user, name))?;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Some(MailboxStatus {
            messages: count(m.messages.len()),
            recent: count(
                m.messages
                    .range(m.recent_claimed.saturating_add(1)..)
                    .count(),
            ),
            uid_next: m.uid_next,
            uid_validity: m.uid_validity,
            unseen: count(
                m.messages
                    .values()
                    .filter(|x| !x.flags.contains("\\Seen"))
                    .count(),
            ),
        })
    }

    /// A receiver that changes whenever mailbox `id` changes.
    pub fn watch(&self, id: u64) -> watch::Receiver<u64> {
        let mut st = self.state();
        st.watchers
            .entry(id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn notify(&self, st: &State, id: u64) {
        if self.faults.has(Fault::NoExistsToOtherSessions) {
            return;
        }
        if let Some(w) = st.watchers.get(&id) {
            w.send_modify(|v| *v += 1);
        }
    }

    /// Commit an APPEND (its segment already fsynced) to `user`'s mailbox `name`, all or
    /// nothing. On error the staging segment is left for the caller to remove.
    pub fn append(
        &self,
        user: &str,
        name: &str,
        staged: &StagedAppend,
    ) -> Result<Appended, StoreError> {
        if let Some(d) = &self.disk_fault {
            d.check()?;
        }
        if self.faults.has(Fault::AutoCreateMailbox) && !self.exists(user, name) {
            match self.create(user, name) {
                Ok(()) | Err(StoreError::Exists) => {}
                Err(e) => return Err(e),
            }
        }
        let key = mailbox_key(user, name);
        if self.faults.has(Fault::AppendNotAtomic) {
            return self.append_one_by_one(&key, staged);
        }
        let job = Arc::new(group_commit::Job {
            key,
            segment: match &staged.segment {
                StagedSegment::File(p) => StagedSegment::File(p.clone()),
                StagedSegment::Inline(b) => StagedSegment::Inline(b.clone()),
            },
            parts: staged.parts.clone(),
            result: Mutex::new(None),
        });
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(job.clone());
        let _w = self.writer();
        if let Some(r) = job.take_result() {
            return r;
        }
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        self.commit_batch(batch);
        job.take_result()
            .unwrap_or_else(|| Err(StoreError::Index("APPEND lost by group commit".into())))
    }

    /// The `AppendNotAtomic` fault: the messages are committed and published one by one.
    fn append_one_by_one(&self, key: &str, staged: &StagedAppend) -> Result<Appended, StoreError> {
        let _w = self.writer();
        let Some(view) = self.state().mailboxes.get(key).cloned() else {
            return Err(StoreError::NoMailbox);
        };
        let n = u32::try_from(staged.parts.len()).unwrap_or(u32::MAX);
        let first = view.uid_next;
        let Some(uid_next) = first.checked_add(n) else {
            return Err(StoreError::Index("UID space exhausted".into()));
        };
        let uids: Vec<u32> = (first..uid_next).collect();
        let dir = self.dir.join("blobs").join(view.id.to_string());
        fs::create_dir_all(&dir)?;
        let dest = dir.join(first.to_string());
        // This fault path always uses a segment file (an inline segment is written to one).
        let (path, temporary) = match &staged.segment {
            StagedSegment::File(p) => (p.clone(), false),
            StagedSegment::Inline(bytes) => {
                let p = self.staging_path();
                let written = fs::File::create(&p).and_then(|mut f| {
                    io::Write::write_all(&mut f, bytes)?;
                    f.sync_data()
                });
                if let Err(e) = written {
                    let _ = fs::remove_file(&p);
                    return Err(e.into());
                }
                (p, true)
            }
        };
        if let Err(e) = fs::rename(&path, &dest) {
            if temporary {
                let _ = fs::remove_file(&path);
            }
            return Err(e.into());
        }
        let synced = fsync_dir(&dir);
        let result = synced.map_err(StoreError::from).and_then(|()| {
            for (i, part) in staged.parts.iter().enumerate() {
                let one = std::slice::from_ref(part);
                let uid = uids.get(i..=i).unwrap_or_default();
                self.commit(key, view.id, first, uid, one)?;
                // Long enough that observers wake between the steps even on a loaded machine.
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Ok(())
        });
        if let Err(e) = result {
            // Put the segment back so the caller's cleanup removes it.
            if temporary {
                let _ = fs::remove_file(&dest);
            } else {
                let _ = fs::rename(&dest, &path);
            }
            return Err(e);
        }
        Ok(Appended {
            uid_validity: view.uid_validity,
            uids,
        })
    }

    /// One index transaction for `parts` (UIDs `uids`, segment `segment`), then publish
    /// (used by the `AppendNotAtomic` fault; the correct path is [`MailStore::commit_batch`]).
    /// Caller holds the writer lock.
    fn commit(
        &self,
        key: &str,
        id: u64,
        segment: u32,
        uids: &[u32],
        parts: &[StagedPart],
    ) -> Result<(), StoreError> {
        let Some(uid_next) = uids.last().and_then(|u| u.checked_add(1)) else {
            return Ok(());
        };
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut msgs = tx.open_table(MESSAGES).map_err(db_err)?;
            for (p, uid) in parts.iter().zip(uids) {
                let rec = MessageRecord {
                    size: p.size,
                    segment,
                    offset: p.offset,
                    date: p.date,
                    flags: p.flags.clone(),
                };
                msgs.insert((id, *uid), rec.encode().as_slice())
                    .map_err(db_err)?;
            }
            let mut t = tx.open_table(MAILBOXES).map_err(db_err)?;
            let Some(rec) = t
                .get(key)
                .map_err(db_err)?
                .and_then(|v| MailboxRecord::decode(v.value()))
            else {
                return Err(StoreError::NoMailbox);
            };
            let rec = MailboxRecord { uid_next, ..rec };
            t.insert(key, rec.encode().as_slice()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        let mut st = self.state();
        if let Some(m) = st.mailboxes.get_mut(key) {
            for (p, uid) in parts.iter().zip(uids) {
                m.messages.insert(
                    *uid,
                    MessageMeta {
                        flags: p.flags.iter().cloned().collect(),
                        size: p.size,
                        date: p.date,
                        segment,
                        offset: p.offset,
                    },
                );
            }
            m.uid_next = uid_next;
        }
        self.notify(&st, id);
        Ok(())
    }

    /// STORE flags on the given UIDs of mailbox `id`: the new flags of each message that still
    /// exists, and the mailbox's `modseq` before and after.
    pub fn store_flags(
        &self,
        id: u64,
        uids: &[u32],
        op: StoreOp,
        flags: &[String],
    ) -> Result<FlagsStored, StoreError> {
        let _w = self.writer();
        let changed = self.with_view(id, |view| {
            let mut changed = Vec::new();
            for uid in uids {
                let Some(m) = view.messages.get(uid) else {
                    continue;
                };
                let mut m = m.clone();
                match op {
                    StoreOp::Replace => m.flags = flags.iter().cloned().collect(),
                    StoreOp::Add => m.flags.extend(flags.iter().cloned()),
                    StoreOp::Remove => {
                        for f in flags {
                            m.flags.remove(f);
                        }
                    }
                }
                changed.push((*uid, m));
            }
            changed
        });
        let Some(changed) = changed else {
            return Err(StoreError::NoMailbox);
        };
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut msgs = tx.open_table(MESSAGES).map_err(db_err)?;
            for (uid, m) in &changed {
                let rec = MessageRecord {
                    size: m.size,
                    segment: m.segment,
                    offset: m.offset,
                    date: m.date,
                    flags: m.flags.to_vec(),
                };
                msgs.insert((id, *uid), rec.encode().as_slice())
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        let mut st = self.state();
        let (mut before, mut after) = (0, 0);
        if let Some(live) = st.mailboxes.values_mut().find(|m| m.id == id) {
            before = live.modseq;
            live.modseq += 1;
            after = live.modseq;
            for (uid, m) in &changed {
                if let Some(x) = live.messages.get_mut(uid) {
                    x.flags = m.flags.clone();
                    live.flag_changes.insert(*uid, after);
                }
            }
        }
        self.notify(&st, id);
        Ok(FlagsStored {
            flags: changed.into_iter().map(|(u, m)| (u, m.flags)).collect(),
            modseq_before: before,
            modseq_after: after,
        })
    }

    /// EXPUNGE: remove the messages flagged \Deleted; returns their UIDs.
    pub fn expunge(&self, id: u64) -> Result<Vec<u32>, StoreError> {
        let _w = self.writer();
        let gone = self.with_view(id, |view| {
            view.messages
                .iter()
                .filter(|(_, m)| m.flags.contains("\\Deleted"))
                .map(|(u, _)| *u)
                .collect::<Vec<u32>>()
        });
        let Some(gone) = gone else {
            return Err(StoreError::NoMailbox);
        };
        if gone.is_empty() {
            return Ok(gone);
        }
        // Segments none of whose messages is left (the writer lock keeps this exact).
        let dead_segments: Vec<u32> = self
            .with_view(id, |view| {
                let gone_set: BTreeSet<u32> = gone.iter().copied().collect();
                let mut candidates = BTreeSet::new();
                let mut still = BTreeSet::new();
                for (uid, m) in &view.messages {
                    if gone_set.contains(uid) {
                        candidates.insert(m.segment);
                    } else {
                        still.insert(m.segment);
                    }
                }
                candidates.difference(&still).copied().collect()
            })
            .unwrap_or_default();
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut msgs = tx.open_table(MESSAGES).map_err(db_err)?;
            for uid in &gone {
                msgs.remove((id, *uid)).map_err(db_err)?;
            }
            let mut inline = tx.open_table(INLINE_SEGMENTS).map_err(db_err)?;
            for seg in &dead_segments {
                inline.remove((id, *seg)).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        {
            let mut st = self.state();
            if let Some(live) = st.mailboxes.values_mut().find(|m| m.id == id) {
                for uid in &gone {
                    live.messages.remove(uid);
                    live.flag_changes.remove(uid);
                }
            }
            self.notify(&st, id);
        }
        self.forget_unwritten(id, Some(&dead_segments));
        for seg in dead_segments {
            let _ = fs::remove_file(self.blob_path(id, seg));
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The segment bytes and parts of `bodies`, back to back, each flagged `\\Seen`.
    fn segment_of(bodies: &[&[u8]]) -> (Vec<u8>, Vec<StagedPart>) {
        let mut all = Vec::new();
        let mut parts = Vec::new();
        for b in bodies {
            parts.push(StagedPart {
                offset: all.len() as u64,
                size: b.len() as u64,
                flags: vec!["\\Seen".into()],
                date: InternalDate::now(),
            });
            all.extend_from_slice(b);
        }
        (all, parts)
    }

    fn stage(store: &MailStore, bodies: &[&[u8]]) -> StagedAppend {
        let path = store.staging_path();
        let (all, parts) = segment_of(bodies);
        fs::write(&path, all).unwrap();
        StagedAppend {
            segment: StagedSegment::File(path),
            parts,
        }
    }

    fn body(store: &MailStore, id: u64, uid: u32) -> Vec<u8> {
        let m = store.view_by_id(id).unwrap().messages[&uid].clone();
        let all = fs::read(store.segment_path(id, m.segment)).unwrap();
        all[m.offset as usize..(m.offset + m.size) as usize].to_vec()
    }

    #[test]
    fn append_reopen_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let (uv, id) = {
            let s = MailStore::open(dir.path(), Faults::default()).unwrap();
            s.create("u", "INBOX").unwrap();
            assert!(matches!(s.create("u", "INBOX"), Err(StoreError::Exists)));
            let r = s.append("u", "INBOX", &stage(&s, &[b"a", b"bb"])).unwrap();
            assert_eq!(r.uids, vec![1, 2]);
            let missing = stage(&s, &[b"c"]);
            assert!(matches!(
                s.append("u", "nope", &missing),
                Err(StoreError::NoMailbox)
            ));
            let StagedSegment::File(path) = &missing.segment else {
                panic!("file-backed")
            };
            assert!(path.exists(), "left for the caller to remove");
            let v = s.view("u", "INBOX").unwrap();
            (v.uid_validity, v.id)
        };
        // Simulate a crash between rename and commit: a stray segment and a staging file.
        fs::write(
            dir.path().join("blobs").join(id.to_string()).join("3"),
            b"x",
        )
        .unwrap();
        fs::write(dir.path().join("staging").join("9.seg"), b"x").unwrap();
        let s = MailStore::open(dir.path(), Faults::default()).unwrap();
        let v = s.view("u", "INBOX").unwrap();
        assert_eq!(v.uid_validity, uv);
        assert_eq!(v.uid_next, 3);
        assert_eq!(v.messages.len(), 2);
        assert!(
            !dir.path()
                .join("blobs")
                .join(id.to_string())
                .join("3")
                .exists()
        );
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
        assert_eq!(body(&s, id, 2), b"bb");
    }

    #[test]
    fn concurrent_appends_are_group_committed_each_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(MailStore::open(dir.path(), Faults::default()).unwrap());
        s.create("u", "a").unwrap();
        s.create("u", "b").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let name = if t % 2 == 0 { "a" } else { "b" };
                    (0..20)
                        .map(|i| {
                            let b1 = format!("{t}-{i}-1");
                            let b2 = format!("{t}-{i}-2");
                            let st = stage(&s, &[b1.as_bytes(), b2.as_bytes()]);
                            (name, s.append("u", name, &st).unwrap().uids, b1, b2)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        drop(s);
        let s = MailStore::open(dir.path(), Faults::default()).unwrap();
        for name in ["a", "b"] {
            let v = s.view("u", name).unwrap();
            assert_eq!(v.messages.len(), 4 * 20 * 2);
            assert_eq!(v.uid_next, 161);
        }
        for (name, uids, b1, b2) in results {
            assert_eq!(uids.len(), 2);
            assert_eq!(uids[1], uids[0] + 1);
            let id = s.view("u", name).unwrap().id;
            assert_eq!(body(&s, id, uids[0]), b1.as_bytes());
            assert_eq!(body(&s, id, uids[1]), b2.as_bytes());
        }
    }

    #[test]
    fn flags_expunge_rename_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = MailStore::open(dir.path(), Faults::default()).unwrap();
        s.create("u", "a").unwrap();
        let id = s.view("u", "a").unwrap().id;
        s.append("u", "a", &stage(&s, &[b"1", b"2"])).unwrap();
        s.store_flags(id, &[1], StoreOp::Add, &["\\Deleted".into()])
            .unwrap();
        assert_eq!(s.expunge(id).unwrap(), vec![1]);
        assert!(s.segment_path(id, 1).exists(), "segment still holds UID 2");
        assert_eq!(body(&s, id, 2), b"2");
        s.store_flags(id, &[2], StoreOp::Add, &["\\Deleted".into()])
            .unwrap();
        assert_eq!(s.expunge(id).unwrap(), vec![2]);
        assert!(!s.segment_path(id, 1).exists(), "empty segment removed");
        s.rename("u", "a", "b").unwrap();
        assert!(!s.exists("u", "a"));
        assert_eq!(s.view("u", "b").unwrap().uid_next, 3);
        s.delete("u", "b").unwrap();
        assert!(s.list("u").is_empty());
        assert!(matches!(
            s.create("u", "x/"),
            Err(StoreError::InvalidName(_))
        ));
    }

    fn inline_rows(store: &MailStore) -> Vec<(u64, u32)> {
        let tx = store.db.begin_read().unwrap();
        let t = tx.open_table(INLINE_SEGMENTS).unwrap();
        t.iter().unwrap().map(|r| r.unwrap().0.value()).collect()
    }

    fn inline(bodies: &[&[u8]]) -> StagedAppend {
        let (all, parts) = segment_of(bodies);
        StagedAppend {
            segment: StagedSegment::Inline(all),
            parts,
        }
    }

    #[test]
    fn inline_and_file_segments_survive_restart_and_torn_cache() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'x'; 300 * 1024];
        let id = {
            let s = MailStore::open(dir.path(), Faults::default()).unwrap();
            assert_eq!(s.inline_segment_limit(), DEFAULT_INLINE_SEGMENT_LIMIT);
            s.create("u", "INBOX").unwrap();
            let id = s.view("u", "INBOX").unwrap().id;
            let r = s
                .append("u", "INBOX", &inline(&[b"one\r\n", b"two"]))
                .unwrap();
            assert_eq!(r.uids, vec![1, 2]);
            let cache = dir.path().join("blobs").join(id.to_string()).join("1");
            assert!(
                !cache.exists(),
                "the commit writes the bytes once, to the index"
            );
            assert_eq!(
                body(&s, id, 2),
                b"two",
                "readable at once from the cache file"
            );
            let r = s.append("u", "INBOX", &stage(&s, &[&big])).unwrap();
            assert_eq!(r.uids, vec![3]);
            assert_eq!(inline_rows(&s), vec![(id, 1)], "only the inline command");
            id
        };
        // A crash may leave the unsynced cache file torn or missing.
        fs::write(
            dir.path().join("blobs").join(id.to_string()).join("1"),
            b"on",
        )
        .unwrap();
        let s = MailStore::open(dir.path(), Faults::default()).unwrap();
        assert_eq!(body(&s, id, 1), b"one\r\n");
        assert_eq!(body(&s, id, 2), b"two");
        assert_eq!(body(&s, id, 3), big);
        drop(s);
        fs::remove_file(dir.path().join("blobs").join(id.to_string()).join("1")).unwrap();
        let s = MailStore::open(dir.path(), Faults::default()).unwrap();
        assert_eq!(body(&s, id, 1), b"one\r\n");
        assert_eq!(s.view("u", "INBOX").unwrap().uid_next, 4);
    }

    #[test]
    fn expunge_and_delete_drop_inline_segments() {
        let dir = tempfile::tempdir().unwrap();
        let s = MailStore::open(dir.path(), Faults::default()).unwrap();
        s.create("u", "a").unwrap();
        let id = s.view("u", "a").unwrap().id;
        s.append("u", "a", &inline(&[b"1", b"2"])).unwrap();
        s.append("u", "a", &inline(&[b"3"])).unwrap();
        s.store_flags(id, &[1], StoreOp::Add, &["\\Deleted".into()])
            .unwrap();
        s.expunge(id).unwrap();
        assert_eq!(
            inline_rows(&s),
            vec![(id, 1), (id, 3)],
            "UID 2 still in segment 1"
        );
        s.store_flags(id, &[2], StoreOp::Add, &["\\Deleted".into()])
            .unwrap();
        s.expunge(id).unwrap();
        assert_eq!(inline_rows(&s), vec![(id, 3)]);
        assert!(!s.segment_path(id, 1).exists());
        assert!(
            !s.unwritten().contains(&(id, 1)),
            "an expunged segment is no longer owed a cache file"
        );
        assert_eq!(body(&s, id, 3), b"3");
        s.append("u", "a", &inline(&[b"4"])).unwrap();
        s.delete("u", "a").unwrap();
        assert!(inline_rows(&s).is_empty());
        assert!(s.unwritten().is_empty(), "DELETE forgets unread segments");
    }

    #[test]
    fn append_not_atomic_fault_accepts_inline_segments() {
        let dir = tempfile::tempdir().unwrap();
        let s = MailStore::open(dir.path(), Faults::default()).unwrap();
        s.create("u", "a").unwrap();
        let id = s.view("u", "a").unwrap().id;
        let key = mailbox_key("u", "a");
        let r = s.append_one_by_one(&key, &inline(&[b"p", b"q"])).unwrap();
        assert_eq!(r.uids, vec![1, 2]);
        assert_eq!(body(&s, id, 2), b"q");
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
    }
}

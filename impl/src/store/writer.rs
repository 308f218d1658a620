//! The group-commit writer: one OS thread owns the redb [`Database`], drains the queue of
//! pending writes, runs a batch of up to `max_batch` of them through the oracle, persists the
//! resulting changes in ONE write transaction (one fsync), publishes them, and only then answers
//! every waiter of the batch.
//!
//! It runs on a dedicated thread rather than a tokio task because every commit blocks on fsync.
//!
//! Memory: the database exists once, as the published snapshot readers share. A batch runs on a
//! *scratch* [`MailboxDb`] holding only the records its operations name (every MUPDATE write
//! reads and changes only its own name), so nothing readers can see changes before the fsync,
//! and nothing needs undoing when the commit fails. After the commit the changes are applied to
//! the published database in place, or, if a reader still holds that snapshot (a LIST or an
//! UPDATE dump being formatted), to a copy made outside the lock readers wait for.
//! A resynchronisation (slave) is diffed against the published state and runs as a batch of its
//! own.
//!
//! Failure handling: if the commit fails, every waiter gets the same [`StoreError`], and the
//! database handle is dropped (redb refuses all work after an I/O error). The next batch reopens
//! the file, and if the file turns out to hold a different state than memory (a commit whose
//! fsync reported an error but landed), the file wins and the difference is published to
//! subscribers as ordinary changes.

use std::path::PathBuf;
use std::sync::Arc;

use murder_model::{Change, Command, MailboxDb, Record, Reply};
use redb::Database;
use tokio::sync::{mpsc, oneshot};

use super::disk;
use super::fault::FaultInjector;
use super::{Shared, StoreError};

/// One queued request for the writer.
#[derive(Debug)]
pub(crate) enum Op {
    /// A write command from a client (ACTIVATE, RESERVE, DEACTIVATE, DELETE).
    Command {
        command: Command,
        reply: oneshot::Sender<Result<Reply, StoreError>>,
    },
    /// A change streamed from the master (slave mode).
    Replicated {
        change: Change,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Replace everything with the master's dump (slave mode).
    Resync {
        records: Vec<Record>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Finish the queue before this, close the file, stop.
    Close { reply: oneshot::Sender<()> },
}

/// How to answer one waiter once the batch's fate is known.
enum Waiter {
    Command(oneshot::Sender<Result<Reply, StoreError>>, Reply),
    Unit(oneshot::Sender<Result<(), StoreError>>),
}

impl Waiter {
    fn answer(self, outcome: Result<(), &StoreError>) {
        // A waiter that went away (client disconnected) does not care: ignore send errors.
        match (self, outcome) {
            (Waiter::Command(tx, reply), Ok(())) => drop(tx.send(Ok(reply))),
            (Waiter::Command(tx, _), Err(e)) => drop(tx.send(Err(e.clone()))),
            (Waiter::Unit(tx), Ok(())) => drop(tx.send(Ok(()))),
            (Waiter::Unit(tx), Err(e)) => drop(tx.send(Err(e.clone()))),
        }
    }
}

/// The writer's state: the only mutator of the file and of the published snapshot.
pub(crate) struct Writer {
    /// `None` after a failed commit, until reopened.
    pub(crate) db: Option<Database>,
    /// The redb file, for reopening after a failure.
    pub(crate) db_file: PathBuf,
    /// Fault switches of the file, if opened for a fault test.
    pub(crate) fault: Option<FaultInjector>,
    /// redb page cache size, for reopening.
    pub(crate) cache_size: usize,
    /// Sequence number of the last committed change.
    pub(crate) seq: u64,
    /// Most operations per batch.
    pub(crate) max_batch: usize,
    /// What readers and subscribers see, the committed state included.
    pub(crate) shared: Arc<Shared>,
    /// The write queue.
    pub(crate) rx: mpsc::Receiver<Op>,
}

impl Writer {
    /// The thread body: batches until closed or every store handle is gone.
    pub(crate) fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        // A resynchronisation taken from the queue while filling a batch: it starts the next.
        let mut carry: Option<Op> = None;
        loop {
            let first = match carry.take() {
                Some(op) => op,
                None => match self.rx.blocking_recv() {
                    Some(op) => op,
                    None => break,
                },
            };
            let alone = matches!(first, Op::Resync { .. });
            batch.push(first);
            while !alone && batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(op @ Op::Resync { .. }) => {
                        carry = Some(op);
                        break;
                    }
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let close_at = batch.iter().position(|op| matches!(op, Op::Close { .. }));
            let rest = close_at.map(|i| batch.split_off(i));
            self.run_batch(std::mem::take(&mut batch));
            if let Some(mut rest) = rest {
                rest.extend(carry.take());
                self.shutdown(rest);
                return;
            }
        }
        self.close_db();
    }

    /// Answers `Closed` to everything still queued, closes the file, then acknowledges closes.
    fn shutdown(&mut self, rest: Vec<Op>) {
        self.rx.close();
        let mut closers = Vec::new();
        let mut pending = rest;
        while let Ok(op) = self.rx.try_recv() {
            pending.push(op);
        }
        for op in pending {
            match op {
                Op::Close { reply } => closers.push(reply),
                Op::Command { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
                Op::Replicated { reply, .. } | Op::Resync { reply, .. } => {
                    drop(reply.send(Err(StoreError::Closed)))
                }
            }
        }
        self.close_db();
        for reply in closers {
            let _ = reply.send(());
        }
    }

    fn close_db(&mut self) {
        if let Some(db) = self.db.take()
            && let Err(e) = db.close()
        {
            tracing::warn!(error = %e, "closing the MUPDATE store");
        }
    }

    /// The records of every name `batch` reads or writes, from the committed state.
    fn scratch_for(&self, batch: &[Op]) -> MailboxDb {
        let published = self.shared.read_published();
        batch
            .iter()
            .filter_map(|op| match op {
                Op::Command { command, .. } => command.name(),
                Op::Replicated { change, .. } => Some(change.name()),
                Op::Resync { .. } | Op::Close { .. } => None,
            })
            .filter_map(|name| {
                published.db.get(name).map(|entry| Record {
                    name: name.to_vec(),
                    entry: entry.clone(),
                })
            })
            .collect()
    }

    /// Applies one batch: oracle on a scratch copy of the names it touches, one durable
    /// commit, publish, answer.
    fn run_batch(&mut self, batch: Vec<Op>) {
        if batch.is_empty() {
            return;
        }
        if self.db.is_none()
            && let Err(e) = self.reopen()
        {
            for op in batch {
                fail_op(op, &e);
            }
            return;
        }
        // Duplicate names collapse in the scratch database (the last record wins; they are
        // equal, all read from the same committed state).
        let mut scratch = self.scratch_for(&batch);
        let mut changes: Vec<Change> = Vec::new();
        let mut waiters: Vec<Waiter> = Vec::with_capacity(batch.len());
        for op in batch {
            match op {
                Op::Command { command, reply } => {
                    let (answer, change) = scratch.apply(&command);
                    changes.extend(change);
                    waiters.push(Waiter::Command(reply, answer));
                }
                Op::Replicated { change, reply } => {
                    // A DELETE of an unknown name changes nothing: nothing to store or forward.
                    if scratch.get(change.name()).is_some() || matches!(change, Change::Upsert(_)) {
                        scratch.apply_change(&change);
                        changes.push(change);
                    }
                    waiters.push(Waiter::Unit(reply));
                }
                Op::Resync { records, reply } => {
                    // Always a batch of its own (see `run`): diff against the committed state.
                    let target: MailboxDb = records.into_iter().collect();
                    changes.extend(diff(&self.shared.read_published().db, &target));
                    waiters.push(Waiter::Unit(reply));
                }
                Op::Close { reply } => {
                    let _ = reply.send(());
                }
            }
        }
        drop(scratch);
        if !changes.is_empty() {
            let seq = self.seq.saturating_add(changes.len() as u64);
            let result = match &self.db {
                Some(db) => disk::persist(db, &changes, seq),
                None => Err(StoreError::Closed),
            };
            let counter = match &result {
                Ok(()) => &self.shared.commits,
                Err(_) => &self.shared.failed_commits,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = result {
                tracing::error!(error = %e, "group commit failed; batch refused");
                // Nothing to undo: the published state was never touched.
                // redb refuses all work after an I/O error: reopen before the next batch.
                self.db = None;
                for w in waiters {
                    w.answer(Err(&e));
                }
                return;
            }
            self.publish(changes);
        }
        for w in waiters {
            w.answer(Ok(()));
        }
    }

    /// Makes committed changes visible: snapshot, sequence numbers and subscribers, atomically
    /// with respect to readers and [`subscribe`](super::MupdateStore::subscribe).
    ///
    /// If nobody else holds the published snapshot, it is updated in place; otherwise (a LIST
    /// or a dump is still reading it) a copy with the changes is made *before* taking the lock,
    /// so readers never wait for a copy.
    fn publish(&mut self, changes: Vec<Change>) {
        let current = Arc::clone(&self.shared.read_published().db);
        // Two references are `published` itself and `current`; more means a reader holds it.
        let replacement = (Arc::strong_count(&current) > 2).then(|| {
            let mut copy = MailboxDb::clone(&current);
            for change in &changes {
                copy.apply_change(change);
            }
            Arc::new(copy)
        });
        drop(current);
        let mut published = self.shared.write_published();
        match replacement {
            Some(db) => published.db = db,
            None => {
                // Someone may have taken the snapshot since: make_mut then copies, still correct.
                let db = Arc::make_mut(&mut published.db);
                for change in &changes {
                    db.apply_change(change);
                }
            }
        }
        for change in changes {
            self.seq = self.seq.saturating_add(1);
            // No subscriber at all is not an error.
            drop(self.shared.changes.send((self.seq, change)));
        }
        published.seq = self.seq;
    }

    /// Reopens the file after a failure and adopts what it holds. Every commit stores the
    /// sequence number it ends at, so an unchanged number means the failed commit did not land
    /// and memory already equals the file: the full reload is needed only otherwise.
    fn reopen(&mut self) -> Result<(), StoreError> {
        let db = disk::open_database(&self.db_file, self.fault.as_ref(), self.cache_size)?;
        if disk::load_seq(&db)? == self.seq {
            self.db = Some(db);
            return Ok(());
        }
        // Sequence numbers stay contiguous for subscribers: the adopted changes get the next
        // ones, whatever number the file holds; the next commit writes the number back.
        let (on_disk, _) = disk::load(&db)?;
        self.db = Some(db);
        let changes = diff(&self.shared.read_published().db, &on_disk);
        if !changes.is_empty() {
            tracing::warn!(
                changes = changes.len(),
                "store file differs from memory after a failed commit; adopting the file"
            );
            self.publish(changes);
        }
        Ok(())
    }
}

/// Answers an operation that could not even be attempted.
fn fail_op(op: Op, e: &StoreError) {
    match op {
        Op::Command { reply, .. } => drop(reply.send(Err(e.clone()))),
        Op::Replicated { reply, .. } | Op::Resync { reply, .. } => drop(reply.send(Err(e.clone()))),
        Op::Close { reply } => {
            let _ = reply.send(());
        }
    }
}

/// The changes that turn `from` into `to`, in Cyrus order of names: an upsert for every name
/// that is new or whose entry differs, a delete for every name that vanished.
pub fn diff(from: &MailboxDb, to: &MailboxDb) -> Vec<Change> {
    use std::cmp::Ordering;
    let mut out = Vec::new();
    let mut old = from.records().peekable();
    let mut new = to.records().peekable();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => murder_model::mailbox_db::cyrus_order(&a.name, &b.name),
        };
        match order {
            Ordering::Less => {
                if let Some(gone) = old.next() {
                    out.push(Change::Delete { name: gone.name });
                }
            }
            Ordering::Greater => {
                if let Some(added) = new.next() {
                    out.push(Change::Upsert(added));
                }
            }
            Ordering::Equal => {
                if let (Some(a), Some(b)) = (old.next(), new.next())
                    && a.entry != b.entry
                {
                    out.push(Change::Upsert(b));
                }
            }
        }
    }
    out
}

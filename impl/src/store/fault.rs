//! Fault injection for tests: a redb [`StorageBackend`] over the real file whose writes can be
//! switched to fail like a full disk. Always compiled (no feature) so integration tests and the
//! server's own tests can use it through [`MupdateStore::open_with_faults`](super::MupdateStore::open_with_faults).

use std::fmt;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Switches shared between a test and the store:
///
/// * fail writes: while on, every write, resize and fsync of the database file fails with
///   "no space left on device"; reads still work.
/// * fail the next sync after doing it: the data reaches the disk but the fsync reports an
///   error, the "unknown outcome" case a server must survive without diverging from its file.
/// * hold syncs: while on, every fsync waits until it is turned off, so a test can make the
///   writer sit in a commit while it queues more work (a deterministic group-commit test).
#[derive(Clone, Debug, Default)]
pub struct FaultInjector {
    inner: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    fail_writes: AtomicBool,
    failures: AtomicU64,
    fail_next_sync_after: AtomicBool,
    /// `(held, syncs waiting)`.
    hold: Mutex<(bool, u64)>,
    released: Condvar,
}

impl FaultInjector {
    /// A switch that starts off (the disk works).
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns the failure on (`true`: the disk is "full") or off.
    pub fn set_fail_writes(&self, fail: bool) {
        self.inner.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// How many backend calls have been failed so far.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::SeqCst)
    }

    /// Makes the next fsync really sync, then report an I/O error anyway (once).
    pub fn fail_next_sync_after_syncing(&self) {
        self.inner
            .fail_next_sync_after
            .store(true, Ordering::SeqCst);
    }

    /// Makes every fsync wait (`true`) until called again with `false`.
    pub fn set_hold_syncs(&self, hold: bool) {
        let mut state = self
            .inner
            .hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.0 = hold;
        self.inner.released.notify_all();
    }

    /// How many fsyncs are waiting right now because of [`set_hold_syncs`](Self::set_hold_syncs).
    pub fn syncs_waiting(&self) -> u64 {
        self.inner
            .hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
    }

    fn wait_while_held(&self) {
        let mut state = self
            .inner
            .hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !state.0 {
            return;
        }
        state.1 += 1;
        while state.0 {
            state = self
                .inner
                .released
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.1 -= 1;
    }

    fn check(&self) -> io::Result<()> {
        if self.inner.fail_writes.load(Ordering::SeqCst) {
            self.inner.failures.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected fault: no space left on device",
            ))
        } else {
            Ok(())
        }
    }
}

/// The real [`FileBackend`] plus a [`FaultInjector`] consulted before every mutation.
pub struct FaultyBackend {
    inner: FileBackend,
    fault: FaultInjector,
}

impl FaultyBackend {
    /// Wraps `inner`.
    pub fn new(inner: FileBackend, fault: FaultInjector) -> Self {
        FaultyBackend { inner, fault }
    }
}

impl fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.fault.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.fault.wait_while_held();
        self.fault.check()?;
        self.inner.sync_data()?;
        if self
            .fault
            .inner
            .fail_next_sync_after
            .swap(false, Ordering::SeqCst)
        {
            self.fault.inner.failures.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::other(
                "injected fault: fsync reported an error after syncing",
            ));
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.fault.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

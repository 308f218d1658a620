//! [`StoreConfig`]: where the database lives and the limits of the store.

use std::path::PathBuf;

/// Default for [`StoreConfig::max_batch`]: at most this many queued operations go into one
/// write transaction (one fsync).
pub const DEFAULT_MAX_BATCH: usize = 1024;

/// Default for [`StoreConfig::subscriber_buffer`]: a subscriber may fall this many changes behind
/// before it is told it [`Lagged`](super::Lagged).
pub const DEFAULT_SUBSCRIBER_BUFFER: usize = 65536;

/// The write queue holds at most this many batches' worth of operations
/// (`QUEUE_BATCHES * max_batch`); further writers wait for room (backpressure, bounded memory).
pub const QUEUE_BATCHES: usize = 4;

/// Default for [`StoreConfig::cache_size`]: 16 MiB of redb page cache. redb's own default
/// (1 GiB) keeps every page read at start-up, about 100 bytes per mailbox on top of the
/// in-memory database; the pages a commit touches stay in the OS page cache anyway.
pub const DEFAULT_CACHE_SIZE: usize = 16 * 1024 * 1024;

/// Name of the redb file inside [`StoreConfig::path`].
pub const DB_FILE_NAME: &str = "mupdate.redb";

/// How to open a [`MupdateStore`](super::MupdateStore).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory of the store; it is created if missing and holds [`DB_FILE_NAME`].
    pub path: PathBuf,
    /// Most queued operations applied in one write transaction. Default [`DEFAULT_MAX_BATCH`].
    pub max_batch: usize,
    /// Changes a subscriber may fall behind before it gets [`Lagged`](super::Lagged).
    /// Default [`DEFAULT_SUBSCRIBER_BUFFER`].
    pub subscriber_buffer: usize,
    /// Bytes of redb page cache. Default [`DEFAULT_CACHE_SIZE`].
    pub cache_size: usize,
}

impl StoreConfig {
    /// A configuration for the store directory `path` with every limit at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            max_batch: DEFAULT_MAX_BATCH,
            subscriber_buffer: DEFAULT_SUBSCRIBER_BUFFER,
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }

    /// The redb file of this store.
    pub fn db_file(&self) -> PathBuf {
        self.path.join(DB_FILE_NAME)
    }
}

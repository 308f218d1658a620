//! [`StoreError`]: why a store operation failed.

use std::fmt::Display;

/// Why the store could not do what was asked. Cloneable because one failed group commit
/// answers every writer of its batch with the same error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The disk refused the operation (full disk, read-only file system, I/O error). Nothing
    /// of the failed batch is acknowledged; earlier acknowledged writes are kept.
    #[error("storage error: {reason}")]
    Storage {
        /// The underlying error, for the NO response text and the logs.
        reason: String,
    },
    /// The file holds data this version cannot read.
    #[error("corrupt store: {reason}")]
    Corrupt {
        /// What is wrong.
        reason: String,
    },
    /// A [`StoreConfig`](super::StoreConfig) value is out of range.
    #[error("invalid store configuration: {reason}")]
    Config {
        /// Which value, and why.
        reason: String,
    },
    /// The store was closed (or its writer stopped); no more writes are accepted.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// A [`StoreError::Storage`] from any underlying error.
    pub(crate) fn storage(err: impl Display) -> Self {
        StoreError::Storage {
            reason: err.to_string(),
        }
    }

    /// A [`StoreError::Corrupt`] with this reason.
    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            reason: reason.into(),
        }
    }
}

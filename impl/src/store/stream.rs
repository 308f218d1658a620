//! [`Subscription`]: the change stream one UPDATE connection follows.
//!
//! Every committed [`Change`] is published once on a `tokio::sync::broadcast` channel of
//! [`StoreConfig::subscriber_buffer`](super::StoreConfig::subscriber_buffer) slots, shared by all
//! subscribers (memory is bounded by that capacity, not by the number of subscribers). A
//! subscriber that falls further behind than that gets [`Lagged`], once and for ever after: it
//! is never silently skipped forward.

use std::sync::Arc;

use murder_model::Change;
use tokio::sync::broadcast;

/// One published change: its sequence number and the change.
pub(crate) type Sequenced = (u64, Change);

/// The subscriber fell more than the buffer behind the committed changes (or saw a sequence
/// gap): its view can no longer be continued. The server must end the UPDATE connection
/// (`* BYE`); the peer resynchronises with a new UPDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("subscriber lagged: {missed} changes were dropped before it read them")]
pub struct Lagged {
    /// How many changes it missed (0 when only a sequence gap was seen).
    pub missed: u64,
}

/// The stream of changes after a [`MupdateStore::subscribe`](super::MupdateStore::subscribe)
/// snapshot: sequence numbers `start_seq() + 1, start_seq() + 2, ...` with no gap and no
/// duplicate.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Sequenced>,
    /// Sequence number of the last change delivered (or of the snapshot).
    last_seq: u64,
    start_seq: u64,
    lagged: Option<Lagged>,
    /// Keeps the sender alive, so the channel never reports "closed": after the store is closed
    /// `recv` simply waits for ever (no more changes will come).
    _keep_open: Arc<broadcast::Sender<Sequenced>>,
}

impl Subscription {
    pub(crate) fn new(
        receiver: broadcast::Receiver<Sequenced>,
        start_seq: u64,
        keep_open: Arc<broadcast::Sender<Sequenced>>,
    ) -> Self {
        Subscription {
            receiver,
            last_seq: start_seq,
            start_seq,
            lagged: None,
            _keep_open: keep_open,
        }
    }

    /// Sequence number of the last change included in the snapshot this stream continues.
    pub fn start_seq(&self) -> u64 {
        self.start_seq
    }

    /// Sequence number of the last change this subscription delivered (the snapshot's if none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Waits for the next committed change. Cancel-safe.
    pub async fn recv(&mut self) -> Result<(u64, Change), Lagged> {
        if let Some(lagged) = self.lagged {
            return Err(lagged);
        }
        loop {
            match self.receiver.recv().await {
                Ok(item) => return self.accept(item),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Err(self.latch(missed));
                }
                // Cannot happen while `_keep_open` holds a sender; wait like an idle store.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }

    /// The next committed change if one is already waiting, `Ok(None)` if none.
    pub fn try_recv(&mut self) -> Result<Option<(u64, Change)>, Lagged> {
        if let Some(lagged) = self.lagged {
            return Err(lagged);
        }
        match self.receiver.try_recv() {
            Ok(item) => self.accept(item).map(Some),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => Err(self.latch(missed)),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                Ok(None)
            }
        }
    }

    fn accept(&mut self, (seq, change): Sequenced) -> Result<(u64, Change), Lagged> {
        if Some(seq) != self.last_seq.checked_add(1) {
            return Err(self.latch(0));
        }
        self.last_seq = seq;
        Ok((seq, change))
    }

    fn latch(&mut self, missed: u64) -> Lagged {
        let lagged = Lagged { missed };
        self.lagged = Some(lagged);
        lagged
    }
}

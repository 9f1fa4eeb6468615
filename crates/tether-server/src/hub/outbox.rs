//! A connection's bounded outgoing queue, as the hub sees it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

/// A connection's id, unique within the process.
pub type ClientId = Arc<str>;

/// The sending side of a connection's queue. Pushing never waits: a full queue
/// marks the connection as a slow consumer, and its session disconnects it, so
/// one slow reader never delays the others.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Bytes>,
    overflow: Arc<Overflow>,
}

/// Set when the queue overflowed; the session waits on it.
#[derive(Debug, Default)]
pub struct Overflow {
    flag: AtomicBool,
    notify: Notify,
}

impl Overflow {
    /// Waits until the queue has overflowed.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.flag.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Outbox {
    /// A queue of `capacity` messages; returns the outbox, its receiver and the
    /// overflow signal.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Bytes>, Arc<Overflow>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Overflow::default());
        (
            Self {
                tx,
                overflow: overflow.clone(),
            },
            rx,
            overflow,
        )
    }

    /// Queues a frame without waiting; on overflow, signals the session.
    pub fn push(&self, frame: Bytes) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflow.flag.swap(true, Ordering::AcqRel) {
                    self.overflow.notify.notify_waiters();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a reply, waiting for room: replies are bounded by the client's own
    /// request rate, so waiting pushes back on the client.
    pub async fn reply(&self, frame: Bytes) -> bool {
        self.tx.send(frame).await.is_ok()
    }
}

//! The clients of one `/broadcast` path, each with a bounded outgoing queue:
//! every message goes to every member, the sender included. A member whose
//! queue is full is dropped, as `tether echo` does, so no server in the
//! comparison can win by buffering without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

/// Messages queued per member, the same bound as `tether echo`.
pub const QUEUE: usize = 4096;

/// The members of a broadcast path.
#[derive(Debug)]
pub struct Room<T> {
    next_id: AtomicU64,
    members: Mutex<HashMap<u64, mpsc::Sender<T>>>,
}

impl<T> Default for Room<T> {
    fn default() -> Self {
        Self {
            next_id: AtomicU64::new(0),
            members: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> Room<T> {
    /// Adds a member; returns its id and the receiving end of its queue.
    pub fn join(&self) -> (u64, mpsc::Receiver<T>) {
        let (queue, inbox) = mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.members.lock().expect("room lock").insert(id, queue);
        (id, inbox)
    }

    /// Removes a member.
    pub fn leave(&self, id: u64) {
        self.members.lock().expect("room lock").remove(&id);
    }

    /// Queues `message` for every member; drops those whose queue is full.
    pub fn send_all(&self, message: T) {
        let mut members = self.members.lock().expect("room lock");
        members.retain(|_, queue| queue.try_send(message.clone()).is_ok());
    }
}

//! Calls between the nodes of a cluster: a node asks another by id and
//! reads the answer in parts, as they come (a long-poll's answer, an SSE
//! stream). This is how a request that lands on a node other than the one
//! holding its session reaches the session (see `transport::forward`).
//!
//! A [`Mesh`] carries single messages between nodes (the Redis engine's
//! does it over pub/sub); the [`Exchange`] numbers calls, routes answers to
//! their callers, and treats the carrier as lossy: an answer with a part
//! missing, or silent for too long, ends with an error rather than with a
//! hole. A caller that drops its answer tells the answering node to stop.

pub mod wire;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};

pub use wire::{valid_node, Message};

/// The parts of one answer the caller has not read yet: past this the
/// answer is broken (the caller reads too slowly).
const PARTS_QUEUED: usize = 256;

/// Calls this node answers at once; more are dropped (their callers time out).
const MAX_SERVING: usize = 65_536;

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MeshError {
    /// The carrier could not send (Redis unreachable, say).
    #[error("cannot reach the other node: {0}")]
    Unavailable(String),
    /// Nothing came for longer than the call allows.
    #[error("no answer from node {node} for {waited:?}")]
    Silent {
        /// The node called.
        node: String,
        /// How long nothing came.
        waited: Duration,
    },
    /// A part went missing (lost on the way, or read too slowly).
    #[error("the answer from node {0} lost a part")]
    Broken(String),
}

/// A future a [`Mesh`] returns.
pub type MeshFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, MeshError>> + Send + 'a>>;

/// Carries messages between the nodes of a cluster, at most once each.
pub trait Mesh: Send + Sync + Debug {
    /// This node's id.
    fn node(&self) -> &str;

    /// Sends `message` to `node`; `false` when no node of that id listens
    /// (it has died, or never was).
    fn send<'a>(&'a self, node: &'a str, message: Bytes) -> MeshFuture<'a, bool>;

    /// The messages sent to this node, in the order each sender sent them;
    /// the first call takes them, later ones get `None`.
    fn incoming(&self) -> Option<mpsc::Receiver<Bytes>>;
}

/// Calls out, answers in: see the module documentation.
#[derive(Debug)]
pub struct Exchange {
    mesh: Arc<dyn Mesh>,
    next_id: AtomicU64,
    /// This node's calls still answering, by id.
    waiting: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    /// Calls this node is answering, by caller and id: what stops each.
    serving: Mutex<HashMap<(String, u64), oneshot::Sender<()>>>,
}

impl Exchange {
    /// Calls over `mesh`.
    pub fn new(mesh: Arc<dyn Mesh>) -> Arc<Self> {
        Arc::new(Self {
            mesh,
            next_id: AtomicU64::new(1),
            waiting: Mutex::default(),
            serving: Mutex::default(),
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        self.mesh.node()
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Message>>> {
        self.waiting.lock().expect("waiting lock")
    }

    fn serving(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), oneshot::Sender<()>>> {
        self.serving.lock().expect("serving lock")
    }

    /// Asks `node`; `None` when it does not listen. The answer fails once
    /// nothing comes for `silence`.
    pub async fn call(
        self: &Arc<Self>,
        node: &str,
        payload: Bytes,
        silence: Duration,
    ) -> Result<Option<Answer>, MeshError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (parts, receiver) = mpsc::channel(PARTS_QUEUED);
        self.waiting().insert(id, parts);
        // Made before sending, so a quick answer finds its way.
        let mut answer = Answer {
            exchange: self.clone(),
            node: node.to_owned(),
            id,
            parts: receiver,
            seq: 0,
            silence,
            finished: false,
        };
        let call = Message::Call {
            from: self.node().to_owned(),
            id,
            payload,
        };
        match self.mesh.send(node, call.encode()).await {
            Ok(true) => Ok(Some(answer)),
            Ok(false) => {
                answer.finished = true;
                Ok(None)
            }
            Err(error) => {
                answer.finished = true;
                Err(error)
            }
        }
    }

    /// Answers the calls made to this node with `answer` (a payload to the
    /// parts of its answer) and hands this node's callers their answers,
    /// until the mesh stops delivering.
    pub async fn run<F, S>(self: Arc<Self>, answer: F)
    where
        F: Fn(Bytes) -> S,
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let Some(mut incoming) = self.mesh.incoming() else {
            tracing::error!("the mesh's incoming messages were taken already");
            return;
        };
        while let Some(bytes) = incoming.recv().await {
            match Message::decode(&bytes) {
                Ok(Message::Call { from, id, payload }) => {
                    self.clone().serve(from, id, answer(payload));
                }
                Ok(part @ Message::Part { .. }) => self.hand_over(part),
                Ok(Message::Cancel { from, id }) => {
                    if let Some(stop) = self.serving().remove(&(from, id)) {
                        let _ = stop.send(());
                    }
                }
                Err(error) => tracing::warn!(%error, "unreadable message from another node"),
            }
        }
    }

    /// Gives a part to the call it answers; a call no one waits for any
    /// more is cancelled at its node.
    fn hand_over(self: &Arc<Self>, part: Message) {
        let Message::Part { ref from, id, .. } = part else {
            return;
        };
        let from = from.clone();
        let mut waiting = self.waiting();
        let delivered = match waiting.get(&id) {
            Some(parts) => match parts.try_send(part) {
                Ok(()) => true,
                Err(_) => {
                    // Full or dropped: the answer is broken, which its
                    // reader sees as the queue ending without a last part.
                    waiting.remove(&id);
                    false
                }
            },
            None => false,
        };
        drop(waiting);
        if !delivered {
            self.cancel(from, id);
        }
    }

    /// Tells `node` to stop answering call `id`.
    fn cancel(self: &Arc<Self>, node: String, id: u64) {
        let exchange = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let message = Message::Cancel {
                from: exchange.node().to_owned(),
                id,
            };
            let _ = exchange.mesh.send(&node, message.encode()).await;
        });
    }

    /// Sends the parts of `answer` to call `id` of `from`, until they end,
    /// the caller cancels, or it is gone.
    fn serve(
        self: Arc<Self>,
        from: String,
        id: u64,
        answer: impl Stream<Item = Bytes> + Send + 'static,
    ) {
        let (stop, mut stopped) = oneshot::channel();
        {
            let mut serving = self.serving();
            if serving.len() >= MAX_SERVING {
                tracing::warn!(%from, "too many calls from other nodes; one dropped");
                return;
            }
            serving.insert((from.clone(), id), stop);
        }
        tokio::spawn(async move {
            let mut answer = std::pin::pin!(answer);
            let mut seq = 0;
            loop {
                let next = tokio::select! {
                    _ = &mut stopped => break,
                    next = answer.next() => next,
                };
                let last = next.is_none();
                let part = Message::Part {
                    from: self.node().to_owned(),
                    id,
                    seq,
                    last,
                    payload: next.unwrap_or_default(),
                };
                // Not there any more (or unreachable): no one to answer.
                if !matches!(self.mesh.send(&from, part.encode()).await, Ok(true)) || last {
                    break;
                }
                seq += 1;
            }
            self.serving().remove(&(from, id));
        });
    }
}

/// The answer to one call, read part by part.
#[derive(Debug)]
pub struct Answer {
    exchange: Arc<Exchange>,
    node: String,
    id: u64,
    parts: mpsc::Receiver<Message>,
    seq: u64,
    silence: Duration,
    /// Its last part read (or it failed): nothing to cancel.
    finished: bool,
}

impl Answer {
    /// The next part; `None` after the last.
    pub async fn next(&mut self) -> Option<Result<Bytes, MeshError>> {
        if self.finished {
            return None;
        }
        let part = tokio::time::timeout(self.silence, self.parts.recv()).await;
        let outcome = match part {
            Err(_) => Err(MeshError::Silent {
                node: self.node.clone(),
                waited: self.silence,
            }),
            Ok(None) => Err(MeshError::Broken(self.node.clone())),
            Ok(Some(Message::Part {
                seq, last, payload, ..
            })) if seq == self.seq => {
                self.seq += 1;
                if last {
                    self.finished = true;
                    self.exchange.waiting().remove(&self.id);
                    return (!payload.is_empty()).then_some(Ok(payload));
                }
                Ok(payload)
            }
            Ok(Some(_)) => Err(MeshError::Broken(self.node.clone())),
        };
        if outcome.is_err() {
            // Told once; the node is asked to stop when this is dropped.
            self.exchange.waiting().remove(&self.id);
        }
        Some(outcome)
    }

    /// The parts as a stream, ending after the last or at the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, MeshError>> + Send {
        futures_util::stream::unfold((self, false), |(mut answer, failed)| async move {
            if failed {
                return None;
            }
            let part = answer.next().await?;
            let failed = part.is_err();
            Some((part, (answer, failed)))
        })
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.exchange.waiting().remove(&self.id);
        if !self.finished {
            self.exchange.cancel(self.node.clone(), self.id);
        }
    }
}

#[cfg(test)]
mod tests;

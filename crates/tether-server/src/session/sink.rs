//! Where a session's delivery writes: the seam between the session layer,
//! which decides what goes out in which order, and the transport, which
//! carries it. A sink takes [`Payload`]s, one at a time or as a channel's
//! [`Feed`]: the HTTP transports take their bytes, into the session's
//! [`EventLog`](super::log::EventLog); a WebSocket connection takes the
//! frame each one was given once for every subscriber, and a channel's
//! frames straight from the stream (its zero-copy path).

use std::future::Future;
use std::task::{Context, Poll};

use bytes::Bytes;
use tether::broadcast::Queued as Progress;
use tether::{Message, PreparedMessage};

pub use super::following::Feed;

/// The sink is gone (the socket failed, or the session's log was closed):
/// nothing more can be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkClosed;

impl From<tether::Error> for SinkClosed {
    fn from(_: tether::Error) -> Self {
        SinkClosed
    }
}

/// One message for the client: the JSON text of a reply or a push, shared
/// by every session it goes to, and never copied on the way.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a>(&'a PreparedMessage);

impl<'a> Payload<'a> {
    /// The message in `prepared`.
    pub(super) fn new(prepared: &'a PreparedMessage) -> Self {
        Self(prepared)
    }

    /// Its length in bytes.
    pub fn len(self) -> usize {
        self.0.message().len()
    }

    /// Whether it is empty (no message the server sends is).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Its bytes, shared.
    pub fn bytes(self) -> Bytes {
        match self.0.message() {
            Message::Text(text) => text.clone().into_bytes(),
            Message::Binary(bytes) => bytes.clone(),
            // Prepared messages are data messages only.
            _ => Bytes::new(),
        }
    }

    /// The same message with its WebSocket frame, made at most once for
    /// every connection that sends it.
    pub fn framed(self) -> &'a PreparedMessage {
        self.0
    }
}

/// A transport's side of delivery: hands out one [`Burst`] at a time.
pub trait Sink: Send + Sync {
    /// What one burst of messages is gathered into before it is flushed.
    type Burst<'a>: Burst + Send
    where
        Self: 'a;

    /// Starts a burst (waiting, for a WebSocket, for the socket's writer).
    fn burst(&self) -> impl Future<Output = Self::Burst<'_>> + Send;
}

/// Messages gathered for one flush.
pub trait Burst {
    /// Whether a message of `len` bytes fits before the next flush.
    fn has_room_for(&self, len: usize) -> bool;

    /// Adds one message (a reply, a conflated publication).
    fn put(&mut self, payload: Payload<'_>) -> Result<(), SinkClosed>;

    /// Adds what a channel's `feed` holds, until the burst is full or the
    /// feed is drained. One [`put`](Self::put) each, unless the transport
    /// has a faster way.
    fn put_feed(&mut self, feed: &mut Feed<'_>) -> Result<Progress, SinkClosed> {
        let mut closed = false;
        let progress = feed.each(|payload| {
            if closed || !self.has_room_for(payload.len()) {
                return false;
            }
            closed = self.put(payload).is_err();
            !closed
        });
        if closed {
            Err(SinkClosed)
        } else {
            Ok(progress)
        }
    }

    /// Writes what the burst holds; pending while the transport has no room
    /// (a full socket, a log the client has not read).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkClosed>>;
}

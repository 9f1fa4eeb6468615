//! Where a session's delivery writes: the seam between the session layer,
//! which decides what goes out in which order, and the transport, which
//! carries it. A WebSocket connection copies each channel frame framed once
//! (the stream's zero-copy path); the HTTP transports take the same
//! publication bytes without WebSocket framing, into the session's
//! [`EventLog`](super::log::EventLog).

use std::future::Future;
use std::task::{Context, Poll};

use bytes::Bytes;
use tether::broadcast::Queued as Progress;
use tether::{Message, PreparedMessage};

use crate::hub::StreamSubscription;

/// The sink is gone (the socket failed, or the session's log was closed):
/// nothing more can be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkClosed;

impl From<tether::Error> for SinkClosed {
    fn from(_: tether::Error) -> Self {
        SinkClosed
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
    /// Whether a message of `len` payload bytes fits before the next flush.
    fn has_room_for(&self, len: usize) -> bool;

    /// Adds one message (a reply, a conflated publication).
    fn put(&mut self, frame: &PreparedMessage) -> Result<(), SinkClosed>;

    /// Adds what `subscription` holds below `until`, passing over (as sent)
    /// what `keep` refuses and calling `on_each` with each one's length and
    /// offset, until the burst is full or the stream is drained.
    fn put_stream(
        &mut self,
        subscription: &mut StreamSubscription,
        until: u64,
        keep: impl FnMut(&Option<u64>) -> bool,
        on_each: impl FnMut(usize, &Option<u64>),
    ) -> Result<Progress, SinkClosed>;

    /// Writes what the burst holds; pending while the transport has no room
    /// (a full socket, a log the client has not read).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkClosed>>;
}

/// The payload of a prepared message, shared, not copied.
pub(crate) fn payload(frame: &PreparedMessage) -> Bytes {
    match frame.message() {
        Message::Text(text) => text.clone().into_bytes(),
        Message::Binary(bytes) => bytes.clone(),
        // Prepared messages are data messages only.
        _ => Bytes::new(),
    }
}

//! The two halves of a split connection.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use tether_proto::{CloseFrame, Message, PreparedMessage};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::Result;
use crate::reader::{Read, Reader};
use crate::websocket::{settle, Duplex, Policy};
use crate::writer::Writer;

use crate::halves::SplitStream;

/// The sending side of a split connection: its half of the stream and the
/// writer state, taken together under one lock.
pub(crate) struct WriteSide<S: SplitStream> {
    pub(crate) io: S::WriteHalf,
    pub(crate) writer: Writer,
}

impl<S: SplitStream> std::fmt::Debug for WriteSide<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSide")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

type SharedWriter<S> = Arc<Mutex<WriteSide<S>>>;

/// The two halves, for the receiving half's automatic replies.
struct Halves<'a, S: SplitStream> {
    read: &'a mut S::ReadHalf,
    write: &'a mut S::WriteHalf,
}

impl<S: SplitStream> Duplex for Halves<'_, S> {
    type Read = S::ReadHalf;
    type Write = S::WriteHalf;
    fn read_half(&mut self) -> &mut S::ReadHalf {
        self.read
    }
    fn write_half(&mut self) -> &mut S::WriteHalf {
        self.write
    }
}

/// What [`WsReader::poll_recv`] found.
#[derive(Debug)]
pub enum Incoming {
    /// A data message or a pong: nothing to answer.
    Message(Message),
    /// A ping, a close, a protocol failure or the end of TCP: hand it to
    /// [`WsReader::settle`], which answers it.
    Settle(Unsettled),
    /// Both close frames have passed: nothing more will come.
    Ended,
}

/// Something read that the connection must answer before the application
/// sees it; see [`WsReader::settle`].
#[derive(Debug)]
pub struct Unsettled(Read);

/// The receiving half of a [`WebSocket`](crate::WebSocket).
pub struct WsReader<S: SplitStream> {
    io: S::ReadHalf,
    reader: Reader,
    writer: SharedWriter<S>,
    policy: Policy,
    protocol: Option<Box<str>>,
}

impl<S: SplitStream> std::fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader")
            .field("reader", &self.reader)
            .field("policy", &self.policy)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<S: SplitStream> WsReader<S> {
    pub(crate) fn new(
        io: S::ReadHalf,
        reader: Reader,
        writer: SharedWriter<S>,
        policy: Policy,
        protocol: Option<Box<str>>,
    ) -> Self {
        Self {
            io,
            reader,
            writer,
            policy,
            protocol,
        }
    }

    /// The next message; see [`WebSocket::recv`](crate::WebSocket::recv).
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        match poll_fn(|cx| self.poll_recv(cx)).await? {
            Incoming::Message(message) => Ok(Some(message)),
            Incoming::Ended => Ok(None),
            Incoming::Settle(unsettled) => self.settle(unsettled).await,
        }
    }

    /// Polls for what comes next, without a future: for a connection driven
    /// by hand, whose idle state should hold no nested futures. Data and
    /// pongs come out at once; what needs an answer (a ping, a close, the
    /// end of the stream) comes out as [`Incoming::Settle`], for
    /// [`WsReader::settle`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Incoming>> {
        if self.reader.closing_done() {
            return Poll::Ready(Ok(Incoming::Ended));
        }
        let read = std::task::ready!(self.reader.poll_next(&mut self.io, cx))?;
        Poll::Ready(Ok(match read {
            // Data needs no reply: do not wait for a writer that may be busy.
            Read::Message(message) if message.is_data() || matches!(message, Message::Pong(_)) => {
                Incoming::Message(message)
            }
            read => Incoming::Settle(Unsettled(read)),
        }))
    }

    /// Answers what [`WsReader::poll_recv`] could not (a ping's pong, a
    /// close's reply, a failure's close frame) and returns what
    /// [`WsReader::recv`] would have: the ping or close message, or `None`
    /// once the stream is over.
    pub async fn settle(&mut self, unsettled: Unsettled) -> Result<Option<Message>> {
        let mut side = self.writer.lock().await;
        let side = &mut *side;
        let io = Halves::<S> {
            read: &mut self.io,
            write: &mut side.io,
        };
        Box::pin(settle(
            unsettled.0,
            &mut self.reader,
            &mut side.writer,
            io,
            self.policy,
        ))
        .await
    }

    /// A sending half of this reader's connection (what [`WebSocket::split`]
    /// returned beside it), for a caller that kept only the reader.
    ///
    /// [`WebSocket::split`]: crate::WebSocket::split
    pub fn writer(&self) -> WsWriter<S> {
        WsWriter::new(self.writer.clone())
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

/// The sending half of a [`WebSocket`](crate::WebSocket). Cheap to clone; clones
/// share one socket and take turns.
pub struct WsWriter<S: SplitStream> {
    writer: SharedWriter<S>,
}

impl<S: SplitStream> std::fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWriter").finish_non_exhaustive()
    }
}

impl<S: SplitStream> Clone for WsWriter<S> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
        }
    }
}

impl<S: SplitStream> WsWriter<S> {
    pub(crate) fn new(writer: SharedWriter<S>) -> Self {
        Self { writer }
    }

    /// Sends a message and waits until the socket has taken it.
    pub async fn send(&self, message: impl Into<Message>) -> Result<()> {
        self.batch().await.send(message).await
    }

    /// Queues a message without flushing (see [`WebSocket::feed`](crate::WebSocket::feed)).
    pub async fn feed(&self, message: impl Into<Message>) -> Result<()> {
        self.batch().await.feed(message).await
    }

    /// Queues a message prepared for many connections (see
    /// [`WebSocket::feed_prepared`](crate::WebSocket::feed_prepared)).
    pub async fn feed_prepared(&self, prepared: &PreparedMessage) -> Result<()> {
        self.batch().await.feed_prepared(prepared).await
    }

    /// Sends a prepared message and waits until the socket has taken it.
    pub async fn send_prepared(&self, prepared: &PreparedMessage) -> Result<()> {
        let mut batch = self.batch().await;
        batch.feed_prepared(prepared).await?;
        batch.flush().await
    }

    /// Takes the writer for a batch: every message fed through the returned
    /// [`Batch`] goes out under one lock, and its `flush` writes them together.
    /// Other clones of this writer (and the reader's automatic replies) wait
    /// until the batch is dropped.
    pub async fn batch(&self) -> Batch<'_, S> {
        Batch {
            side: self.writer.lock().await,
        }
    }

    /// Queues one frame of a fragmented message.
    pub async fn feed_fragment(
        &self,
        message: impl Into<Message>,
        first: bool,
        fin: bool,
    ) -> Result<()> {
        let mut batch = self.batch().await;
        let side = &mut *batch.side;
        side.writer
            .feed_fragment(&mut side.io, &message.into(), first, fin)
            .await
    }

    /// Writes everything queued.
    pub async fn flush(&self) -> Result<()> {
        self.batch().await.flush().await
    }

    /// Sends a close frame; the reading half then receives the peer's answer.
    /// After a close frame the reading half left unanswered
    /// ([`Config::auto_close`](crate::Config::auto_close) off), this is the
    /// answer, and it ends TCP.
    pub async fn close(&self, frame: Option<CloseFrame>) -> Result<()> {
        let mut batch = self.batch().await;
        let side = &mut *batch.side;
        side.writer.send_close(&mut side.io, frame).await
    }
}

/// A [`WsWriter`] held for a batch of messages (see [`WsWriter::batch`]).
pub struct Batch<'a, S: SplitStream> {
    side: MutexGuard<'a, WriteSide<S>>,
}

impl<S: SplitStream> std::fmt::Debug for Batch<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("side", &*self.side).finish()
    }
}

impl<S: SplitStream> Batch<'_, S> {
    /// Queues a message.
    pub async fn feed(&mut self, message: impl Into<Message>) -> Result<()> {
        let side = &mut *self.side;
        side.writer.feed(&mut side.io, &message.into()).await
    }

    /// Queues a prepared message, reusing its shared frame where it can.
    pub async fn feed_prepared(&mut self, prepared: &PreparedMessage) -> Result<()> {
        let side = &mut *self.side;
        side.writer.feed_prepared(&mut side.io, prepared).await
    }

    /// Frames a prepared message into the queue; nothing is written until
    /// [`flush`](Self::flush), however much is queued (see
    /// [`over_high_water`](Self::over_high_water)).
    pub fn queue_prepared(&mut self, prepared: &PreparedMessage) -> Result<()> {
        self.side.writer.queue_prepared(prepared)
    }

    /// Queues `prepared` (of `len` payload bytes) by copying `frame`, its
    /// plain frame, when this connection sends it plain (see
    /// [`PreparedMessage::plain_frame_into`]); otherwise as
    /// [`queue_prepared`](Self::queue_prepared).
    #[inline]
    pub(crate) fn queue_plain(
        &mut self,
        prepared: &PreparedMessage,
        len: usize,
        frame: &[u8],
    ) -> Result<()> {
        self.side.writer.queue_plain(prepared, len, frame)
    }

    /// Whether the queue passed the writer's high-water mark and should be
    /// flushed before more is queued.
    pub fn over_high_water(&self) -> bool {
        self.side.writer.over_high_water()
    }

    /// Whether a message of `len` payload bytes still fits under the writer's
    /// high-water mark (an empty queue takes any message); if not, flush first.
    pub fn has_room_for(&self, len: usize) -> bool {
        self.side.writer.has_room_for(len)
    }

    /// Sends a message and waits until the socket has taken it.
    async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        let side = &mut *self.side;
        side.writer.send(&mut side.io, &message.into()).await
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        let side = &mut *self.side;
        side.writer.flush(&mut side.io).await
    }

    /// Polls writing everything queued (cancel-safe: see [`flush`](Self::flush)).
    pub fn poll_flush(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        let side = &mut *self.side;
        side.writer.poll_flush(&mut side.io, cx)
    }
}

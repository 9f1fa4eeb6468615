//! The two halves of a split connection.

use std::sync::Arc;

use tether_proto::{CloseFrame, Message, PreparedMessage};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

use crate::error::Result;
use crate::reader::{Read, Reader};
use crate::websocket::{settle, Policy};
use crate::writer::Writer;

type SharedWriter<S> = Arc<Mutex<Writer<WriteHalf<S>>>>;

/// The receiving half of a [`WebSocket`](crate::WebSocket).
#[derive(Debug)]
pub struct WsReader<S> {
    reader: Reader<ReadHalf<S>>,
    writer: SharedWriter<S>,
    policy: Policy,
    protocol: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    pub(crate) fn new(
        reader: Reader<ReadHalf<S>>,
        writer: SharedWriter<S>,
        policy: Policy,
        protocol: Option<String>,
    ) -> Self {
        Self {
            reader,
            writer,
            policy,
            protocol,
        }
    }

    /// The next message; see [`WebSocket::recv`](crate::WebSocket::recv).
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        if self.reader.closing_done() {
            return Ok(None);
        }
        let read = self.reader.next().await?;
        // Data needs no reply: do not wait for a writer that may be busy.
        if let Read::Message(message) = read {
            if message.is_data() || matches!(message, Message::Pong(_)) {
                return Ok(Some(message));
            }
            let mut writer = self.writer.lock().await;
            return settle(
                Read::Message(message),
                &mut self.reader,
                &mut writer,
                self.policy,
            )
            .await;
        }
        let mut writer = self.writer.lock().await;
        settle(read, &mut self.reader, &mut writer, self.policy).await
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

/// The sending half of a [`WebSocket`](crate::WebSocket). Cheap to clone; clones
/// share one socket and take turns.
#[derive(Debug)]
pub struct WsWriter<S> {
    writer: SharedWriter<S>,
}

impl<S> Clone for WsWriter<S> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    pub(crate) fn new(writer: SharedWriter<S>) -> Self {
        Self { writer }
    }

    /// Sends a message and waits until the socket has taken it.
    pub async fn send(&self, message: impl Into<Message>) -> Result<()> {
        self.writer.lock().await.send(&message.into()).await
    }

    /// Queues a message without flushing (see [`WebSocket::feed`](crate::WebSocket::feed)).
    pub async fn feed(&self, message: impl Into<Message>) -> Result<()> {
        self.writer.lock().await.feed(&message.into()).await
    }

    /// Queues a message prepared for many connections (see
    /// [`WebSocket::feed_prepared`](crate::WebSocket::feed_prepared)).
    pub async fn feed_prepared(&self, prepared: &PreparedMessage) -> Result<()> {
        self.writer.lock().await.feed_prepared(prepared).await
    }

    /// Sends a prepared message and waits until the socket has taken it.
    pub async fn send_prepared(&self, prepared: &PreparedMessage) -> Result<()> {
        let mut writer = self.writer.lock().await;
        writer.feed_prepared(prepared).await?;
        writer.flush().await
    }

    /// Takes the writer for a batch: every message fed through the returned
    /// [`Batch`] goes out under one lock, and its `flush` writes them together.
    /// Other clones of this writer (and the reader's automatic replies) wait
    /// until the batch is dropped.
    pub async fn batch(&self) -> Batch<'_, S> {
        Batch {
            writer: self.writer.lock().await,
        }
    }

    /// Queues one frame of a fragmented message.
    pub async fn feed_fragment(
        &self,
        message: impl Into<Message>,
        first: bool,
        fin: bool,
    ) -> Result<()> {
        self.writer
            .lock()
            .await
            .feed_fragment(&message.into(), first, fin)
            .await
    }

    /// Writes everything queued.
    pub async fn flush(&self) -> Result<()> {
        self.writer.lock().await.flush().await
    }

    /// Sends a close frame; the reading half then receives the peer's answer.
    pub async fn close(&self, frame: Option<CloseFrame>) -> Result<()> {
        self.writer.lock().await.send_close(frame).await
    }
}

/// A [`WsWriter`] held for a batch of messages (see [`WsWriter::batch`]).
#[derive(Debug)]
pub struct Batch<'a, S> {
    writer: tokio::sync::MutexGuard<'a, Writer<WriteHalf<S>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Batch<'_, S> {
    /// Queues a message.
    pub async fn feed(&mut self, message: impl Into<Message>) -> Result<()> {
        self.writer.feed(&message.into()).await
    }

    /// Queues a prepared message, reusing its shared frame where it can.
    pub async fn feed_prepared(&mut self, prepared: &PreparedMessage) -> Result<()> {
        self.writer.feed_prepared(prepared).await
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        self.writer.flush().await
    }
}

//! A WebSocket connection over any async byte stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use tether_proto::{CloseFrame, Decoder, Encoder, Message, PreparedMessage, Role};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::reader::{Read, Reader};
use crate::split::{WsReader, WsWriter};
use crate::writer::Writer;

/// What the connection does on its own when frames arrive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) role: Role,
    pub(crate) auto_pong: bool,
    pub(crate) close_timeout: Duration,
}

/// Applies RFC 6455's automatic behaviour to one read step: pong for ping, echo
/// the close and end TCP, close with the right code on a protocol error.
pub(crate) async fn settle<R, W>(
    read: Read,
    reader: &mut Reader<R>,
    writer: &mut Writer<W>,
    policy: Policy,
) -> Result<Option<Message>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match read {
        Read::Message(Message::Ping(payload)) => {
            if policy.auto_pong && !writer.close_sent() {
                // Boxed like the endings below: a ping every few seconds does
                // not justify the room in every connection's future.
                let flush = !reader.has_buffered();
                Box::pin(pong(payload.clone(), flush, writer)).await?;
            }
            Ok(Some(Message::Ping(payload)))
        }
        Read::Message(Message::Close(frame)) => {
            Box::pin(settle_close(frame, reader, writer, policy)).await
        }
        Read::Message(message) => Ok(Some(message)),
        // Boxed, like the close: the endings are rare and their futures large;
        // inline they would make every connection's `recv` future larger.
        ending => Box::pin(settle_end(ending, reader, writer)).await,
    }
}

/// Answers a ping, flushing unless more input is already buffered (the answer
/// then goes out with the next batch).
async fn pong<W: AsyncWrite + Unpin>(
    payload: Bytes,
    flush: bool,
    writer: &mut Writer<W>,
) -> Result<()> {
    writer.feed(&Message::Pong(payload)).await?;
    if flush {
        writer.flush().await?;
    }
    Ok(())
}

/// The peer's close frame: answer it, echoing the status code (RFC 6455
/// §5.5.1), and end TCP.
async fn settle_close<R, W>(
    frame: Option<CloseFrame>,
    reader: &mut Reader<R>,
    writer: &mut Writer<W>,
    policy: Policy,
) -> Result<Option<Message>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let reply = frame.as_ref().map(|f| CloseFrame {
        code: f.code,
        reason: Default::default(),
    });
    let _ = writer.send_close(reply).await;
    finish_close(reader, writer, policy).await;
    Ok(Some(Message::Close(frame)))
}

/// A failed stream, a close that timed out, or the end of TCP.
async fn settle_end<R, W>(
    read: Read,
    reader: &mut Reader<R>,
    writer: &mut Writer<W>,
) -> Result<Option<Message>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match read {
        Read::Failed(error) => {
            tracing::debug!(%error, "failing the connection");
            let _ = writer
                .send_close(Some(CloseFrame::new(
                    error.close_code(),
                    &error.to_string(),
                )))
                .await;
            writer.shutdown().await;
            Err(error.into())
        }
        Read::CloseTimedOut => {
            writer.shutdown().await;
            Err(Error::Timeout("closing handshake"))
        }
        Read::Eof => {
            writer.shutdown().await;
            if reader.close_received() {
                Ok(None)
            } else {
                Err(Error::AbnormalClosure)
            }
        }
        Read::Message(message) => Ok(Some(message)),
    }
}

/// After both close frames: the server ends TCP first (RFC 6455 §7.1.1); the client
/// waits for that, within the close timeout, then ends its side.
async fn finish_close<R, W>(reader: &mut Reader<R>, writer: &mut Writer<W>, policy: Policy)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if policy.role == Role::Client {
        let _ = tokio::time::timeout(policy.close_timeout, reader.drain()).await;
    }
    writer.shutdown().await;
}

/// A WebSocket connection: receive with [`WebSocket::recv`], send with
/// [`WebSocket::send`], or [`WebSocket::split`] it to do both from two tasks.
#[derive(Debug)]
pub struct WebSocket<S> {
    reader: Reader<ReadHalf<S>>,
    writer: Writer<WriteHalf<S>>,
    policy: Policy,
    protocol: Option<String>,
    compressed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a stream whose opening handshake is done. `decoder` may already hold
    /// bytes that arrived right behind the handshake.
    pub(crate) fn from_parts(
        stream: S,
        decoder: Decoder,
        encoder: Encoder,
        config: &Config,
        protocol: Option<String>,
        compressed: bool,
    ) -> Self {
        let role = encoder.role();
        let (read, write) = tokio::io::split(stream);
        let writer = Writer::new(write, encoder, config.write_buffer_size);
        Self {
            reader: Reader::new(
                read,
                decoder,
                config.read_chunk,
                writer.close_flag(),
                config.close_timeout,
            ),
            writer,
            policy: Policy {
                role,
                auto_pong: config.auto_pong,
                close_timeout: config.close_timeout,
            },
            protocol,
            compressed,
        }
    }

    /// Wraps a stream on which a WebSocket handshake already happened elsewhere,
    /// without compression.
    pub fn from_raw(stream: S, role: Role, config: &Config) -> Self {
        let decoder = Decoder::new(role, config.protocol.clone(), None);
        let encoder = Encoder::new(role, None, 0);
        Self::from_parts(stream, decoder, encoder, config, None, false)
    }

    /// The next message or control frame; `Ok(None)` once the connection is closed.
    ///
    /// Pings are answered automatically (and still returned, for applications that
    /// watch them). A close frame is answered and returned as [`Message::Close`];
    /// after it, `recv` returns `Ok(None)`. A protocol violation closes the
    /// connection with the matching code and is returned as [`Error::Protocol`].
    ///
    /// Messages queued with [`WebSocket::feed`] are flushed before `recv` waits
    /// for the socket, so a loop that answers each message with `feed` writes
    /// once per batch of input instead of once per message.
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        if self.reader.closing_done() {
            // The closing handshake is over: nothing more will come, and waiting
            // for the end of TCP would only cost a read.
            return Ok(None);
        }
        let read = match self.reader.poll_buffered() {
            Some(read) => read,
            None => {
                if self.writer.has_pending() {
                    self.writer.flush().await?;
                }
                self.reader.next().await?
            }
        };
        match read {
            Read::Message(message) if message.is_data() || matches!(message, Message::Pong(_)) => {
                Ok(Some(message))
            }
            // Control frames and endings: rare, so their (larger) future is boxed
            // rather than carried in every connection's `recv`.
            read => {
                Box::pin(settle(
                    read,
                    &mut self.reader,
                    &mut self.writer,
                    self.policy,
                ))
                .await
            }
        }
    }

    /// Sends a message and waits until the socket has taken it.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        self.writer.send(&message.into()).await
    }

    /// Queues a message, writing only once enough is queued; the next
    /// [`WebSocket::recv`] that has to wait for input, or [`WebSocket::flush`],
    /// writes the rest.
    pub async fn feed(&mut self, message: impl Into<Message>) -> Result<()> {
        self.writer.feed(&message.into()).await
    }

    /// Queues a message prepared once for many connections: its frame bytes
    /// (compressed too, when this connection compresses each message on its own)
    /// are built by the first connection that sends it and copied by the rest.
    /// Call [`WebSocket::flush`] after a batch.
    pub async fn feed_prepared(&mut self, prepared: &PreparedMessage) -> Result<()> {
        self.writer.feed_prepared(prepared).await
    }

    /// Sends a prepared message and waits until the socket has taken it.
    pub async fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<()> {
        self.writer.feed_prepared(prepared).await?;
        self.writer.flush().await
    }

    /// Queues one frame of a fragmented message: `first` for its first frame, `fin`
    /// for its last. Control frames may be sent between fragments.
    pub async fn feed_fragment(
        &mut self,
        message: impl Into<Message>,
        first: bool,
        fin: bool,
    ) -> Result<()> {
        self.writer.feed_fragment(&message.into(), first, fin).await
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        self.writer.flush().await
    }

    /// Starts the closing handshake and waits (up to the close timeout) for the
    /// peer's close frame, discarding messages that arrive meanwhile.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        self.writer.send_close(frame).await?;
        let policy = self.policy;
        let wait = async {
            loop {
                match self.recv().await {
                    Ok(Some(Message::Close(_))) | Ok(None) => return Ok(()),
                    Ok(Some(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        };
        let result = match tokio::time::timeout(policy.close_timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout("closing handshake")),
        };
        self.writer.shutdown().await;
        result
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Whether permessage-deflate was negotiated.
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Splits into a receiving and a sending half for use from two tasks. The
    /// receiving half still answers pings and close frames through the shared writer.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let writer = Arc::new(Mutex::new(self.writer));
        (
            WsReader::new(self.reader, writer.clone(), self.policy, self.protocol),
            WsWriter::new(writer),
        )
    }
}

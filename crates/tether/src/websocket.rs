//! A WebSocket connection over any async byte stream.

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tether_proto::deflate::Negotiated;
use tether_proto::{CloseFrame, Decoder, Encoder, Message, PreparedMessage, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::halves::SplitStream;
use crate::reader::{Read, Reader};
use crate::split::{WriteSide, WsReader, WsWriter};
use crate::writer::Writer;

/// What the connection does on its own when frames arrive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) role: Role,
    pub(crate) auto_pong: bool,
    /// Answer the peer's close at once (else the application does, later).
    pub(crate) auto_close: bool,
}

/// The stream as the automatic replies see it: somewhere to read from and
/// somewhere to write to, used one after the other. An unsplit connection's
/// single stream is both; a split one's are its two halves.
pub(crate) trait Duplex {
    type Read: AsyncRead + Unpin;
    type Write: AsyncWrite + Unpin;
    fn read_half(&mut self) -> &mut Self::Read;
    fn write_half(&mut self) -> &mut Self::Write;
}

/// One stream used for both directions.
pub(crate) struct Whole<'a, S>(pub(crate) &'a mut S);

impl<S: AsyncRead + AsyncWrite + Unpin> Duplex for Whole<'_, S> {
    type Read = S;
    type Write = S;
    fn read_half(&mut self) -> &mut S {
        self.0
    }
    fn write_half(&mut self) -> &mut S {
        self.0
    }
}

/// Applies RFC 6455's automatic behaviour to one read step: pong for ping, echo
/// the close and end TCP, close with the right code on a protocol error.
pub(crate) async fn settle<D: Duplex>(
    read: Read,
    reader: &mut Reader,
    writer: &mut Writer,
    mut io: D,
    policy: Policy,
) -> Result<Option<Message>> {
    match read {
        Read::Message(Message::Ping(payload)) => {
            if policy.auto_pong && !writer.close_sent() {
                let flush = !reader.has_buffered();
                pong(payload.clone(), flush, writer, io.write_half()).await?;
            }
            Ok(Some(Message::Ping(payload)))
        }
        Read::Message(Message::Close(frame)) if !policy.auto_close => {
            // The application answers, once it sent what it still owes.
            writer.peer_closed();
            Ok(Some(Message::Close(frame)))
        }
        Read::Message(Message::Close(frame)) => {
            settle_close(frame, reader, writer, &mut io, policy).await
        }
        Read::Message(message) => Ok(Some(message)),
        ending => settle_end(ending, reader, writer, io.write_half()).await,
    }
}

/// Answers a ping, flushing unless more input is already buffered (the answer
/// then goes out with the next batch).
async fn pong<W: AsyncWrite + Unpin>(
    payload: Bytes,
    flush: bool,
    writer: &mut Writer,
    io: &mut W,
) -> Result<()> {
    writer.feed(io, &Message::Pong(payload)).await?;
    if flush {
        writer.flush(io).await?;
    }
    Ok(())
}

/// The peer's close frame: answer it, echoing the status code (RFC 6455
/// §5.5.1), and end TCP.
async fn settle_close<D: Duplex>(
    frame: Option<CloseFrame>,
    reader: &mut Reader,
    writer: &mut Writer,
    io: &mut D,
    policy: Policy,
) -> Result<Option<Message>> {
    let reply = frame.as_ref().map(|f| CloseFrame {
        code: f.code,
        reason: Default::default(),
    });
    let _ = writer.send_close(io.write_half(), reply).await;
    finish_close(reader, writer, io, policy).await;
    Ok(Some(Message::Close(frame)))
}

/// A failed stream, a close that timed out, or the end of TCP.
async fn settle_end<W: AsyncWrite + Unpin>(
    read: Read,
    reader: &mut Reader,
    writer: &mut Writer,
    io: &mut W,
) -> Result<Option<Message>> {
    match read {
        Read::Failed(error) => {
            tracing::debug!(%error, "failing the connection");
            let _ = writer
                .send_close(
                    io,
                    Some(CloseFrame::new(error.close_code(), &error.to_string())),
                )
                .await;
            writer.shutdown(io).await;
            Err(error.into())
        }
        Read::CloseTimedOut => {
            writer.shutdown(io).await;
            Err(Error::Timeout("closing handshake"))
        }
        Read::Eof => {
            writer.shutdown(io).await;
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
async fn finish_close<D: Duplex>(
    reader: &mut Reader,
    writer: &mut Writer,
    io: &mut D,
    policy: Policy,
) {
    if policy.role == Role::Client {
        let _ = tokio::time::timeout(reader.close_timeout(), reader.drain(io.read_half())).await;
    }
    writer.shutdown(io.write_half()).await;
}

/// A WebSocket connection: receive with [`WebSocket::recv`], send with
/// [`WebSocket::send`], or [`WebSocket::split`] it to do both from two tasks.
#[derive(Debug)]
pub struct WebSocket<S> {
    io: S,
    reader: Reader,
    writer: Writer,
    policy: Policy,
    protocol: Option<Box<str>>,
    compressed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// The `role`'s WebSocket over `stream` once the handshake agreed on
    /// `protocol` and the compression `negotiated` (if any); `read` are the
    /// bytes already read past the handshake. Every opening ends here:
    /// `accept`, `upgrade` and the client, over either HTTP version.
    pub(crate) fn opened(
        stream: S,
        role: Role,
        negotiated: Option<&Negotiated>,
        config: &Config,
        protocol: Option<String>,
        read: &[u8],
    ) -> Self {
        let inflater = negotiated.map(|n| n.inflater());
        let mut decoder = Decoder::new(role, config.protocol.clone(), inflater);
        if !read.is_empty() {
            decoder.receive(read);
        }
        let (deflater, threshold) = match negotiated {
            Some(n) => (n.deflater(), n.threshold),
            None => (None, 0),
        };
        let encoder = Encoder::new(role, deflater, threshold);
        Self::from_parts(
            stream,
            decoder,
            encoder,
            config,
            protocol,
            negotiated.is_some(),
        )
    }

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
        let writer = Writer::new(encoder, config.write_buffer_size);
        Self {
            io: stream,
            reader: Reader::new(
                decoder,
                config.read_chunk,
                writer.close_flag(),
                config.close_timeout,
                config.budget.clone(),
            ),
            writer,
            policy: Policy {
                role,
                auto_pong: config.auto_pong,
                auto_close: config.auto_close,
            },
            protocol: protocol.map(String::into_boxed_str),
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
        // The step is read in a block of its own so the future keeps no room
        // for it while an automatic reply (boxed: rare, and larger) runs.
        let settling = {
            match poll_fn(|cx| self.poll_read_step(cx)).await? {
                Read::Message(message)
                    if message.is_data() || matches!(message, Message::Pong(_)) =>
                {
                    return Ok(Some(message))
                }
                read => Box::pin(settle(
                    read,
                    &mut self.reader,
                    &mut self.writer,
                    Whole(&mut self.io),
                    self.policy,
                )),
            }
        };
        settling.await
    }

    /// One read step: what is buffered, or else (after flushing what was fed)
    /// what the socket brings. A poll function, so a connection waiting here
    /// holds no nested futures.
    fn poll_read_step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Read>> {
        if let Some(read) = self.reader.poll_buffered() {
            return Poll::Ready(Ok(read));
        }
        if self.writer.has_pending() {
            ready!(self.writer.poll_flush(&mut self.io, cx))?;
        }
        self.reader.poll_next(&mut self.io, cx)
    }

    /// Sends a message and waits until the socket has taken it.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        self.writer.send(&mut self.io, &message.into()).await
    }

    /// Queues a message, writing only once enough is queued; the next
    /// [`WebSocket::recv`] that has to wait for input, or [`WebSocket::flush`],
    /// writes the rest.
    ///
    /// The message is framed when `feed` is called; the future only writes (when
    /// the queue is over the mark), so it does not carry the message.
    pub fn feed(&mut self, message: impl Into<Message>) -> impl Future<Output = Result<()>> + '_ {
        let mut queued = Some(self.writer.queue(&message.into()));
        poll_fn(move |cx| {
            if let Some(queued) = queued.take() {
                queued?;
                if !self.writer.over_high_water() {
                    return Poll::Ready(Ok(()));
                }
            }
            self.writer.poll_flush(&mut self.io, cx)
        })
    }

    /// Queues a message prepared once for many connections: its frame bytes
    /// (compressed too, when this connection compresses each message on its own)
    /// are built by the first connection that sends it and copied by the rest.
    /// Call [`WebSocket::flush`] after a batch.
    pub async fn feed_prepared(&mut self, prepared: &PreparedMessage) -> Result<()> {
        self.writer.feed_prepared(&mut self.io, prepared).await
    }

    /// Sends a prepared message and waits until the socket has taken it.
    pub async fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<()> {
        self.writer.feed_prepared(&mut self.io, prepared).await?;
        self.writer.flush(&mut self.io).await
    }

    /// Queues one frame of a fragmented message: `first` for its first frame, `fin`
    /// for its last. Control frames may be sent between fragments.
    pub async fn feed_fragment(
        &mut self,
        message: impl Into<Message>,
        first: bool,
        fin: bool,
    ) -> Result<()> {
        self.writer
            .feed_fragment(&mut self.io, &message.into(), first, fin)
            .await
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        self.writer.flush(&mut self.io).await
    }

    /// Starts the closing handshake and waits (up to the close timeout) for the
    /// peer's close frame, discarding messages that arrive meanwhile. After a
    /// close frame left unanswered ([`Config::auto_close`] off), this is the
    /// answer, and it ends TCP.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        self.writer.send_close(&mut self.io, frame).await?;
        if self.reader.close_received() {
            return Ok(());
        }
        let close_timeout = self.reader.close_timeout();
        let wait = async {
            loop {
                match self.recv().await {
                    Ok(Some(Message::Close(_))) | Ok(None) => return Ok(()),
                    Ok(Some(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        };
        let result = match tokio::time::timeout(close_timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout("closing handshake")),
        };
        self.writer.shutdown(&mut self.io).await;
        result
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The underlying stream (to read its addresses, say). Reading or writing
    /// it directly would corrupt the WebSocket framing.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Whether permessage-deflate was negotiated.
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Splits into a receiving and a sending half for use from two tasks. The
    /// receiving half still answers pings and close frames through the shared
    /// writer. A TCP stream splits without a lock between the halves (see
    /// [`SplitStream`]).
    pub fn split(self) -> (WsReader<S>, WsWriter<S>)
    where
        S: SplitStream,
    {
        let (read, write) = self.io.split_stream();
        let writer = Arc::new(Mutex::new(WriteSide {
            io: write,
            writer: self.writer,
        }));
        (
            WsReader::new(
                read,
                self.reader,
                writer.clone(),
                self.policy,
                self.protocol,
            ),
            WsWriter::new(writer),
        )
    }
}
#[cfg(test)]
mod tests {
    use super::WebSocket;
    use crate::{Config, MaybeTlsStream};
    use tether_proto::{Message, Role};

    /// Every idle connection carries its `WebSocket` and a pending `recv` (or
    /// `feed`) in its task: these sizes are the per-connection memory budget
    /// (under 1 KiB with the task and socket registration), so growth here
    /// should be a decision, not an accident. (336 → 344 on 2026-11-28: the
    /// writer's chunked batches and their sizing, which took a reallocation
    /// and copy of the batch out of most 4 KiB echo batches.)
    #[tokio::test]
    async fn connection_and_its_futures_stay_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut ws =
            WebSocket::from_raw(MaybeTlsStream::Plain(tcp), Role::Server, &Config::default());
        assert!(
            std::mem::size_of_val(&ws) <= 344,
            "WebSocket is {} bytes",
            std::mem::size_of_val(&ws)
        );
        let recv = ws.recv();
        assert!(
            std::mem::size_of_val(&recv) <= 48,
            "recv future is {} bytes",
            std::mem::size_of_val(&recv)
        );
        drop(recv);
        let feed = ws.feed(Message::text("a"));
        assert!(
            std::mem::size_of_val(&feed) <= 64,
            "feed future is {} bytes",
            std::mem::size_of_val(&feed)
        );
    }
}

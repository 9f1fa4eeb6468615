//! The sending half's state: encoder, outgoing buffer, close flag.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tether_proto::{CloseFrame, Encoder, Message, PreparedMessage, ProtocolError, Role};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// The sending state of a connection: encoder, outgoing buffer, close flag. The
/// stream is passed to each write. Sending waits until the socket took the
/// bytes, which is the backpressure: a slow peer slows its sender instead of
/// growing a buffer.
#[derive(Debug)]
pub(crate) struct Writer {
    encoder: Encoder,
    buf: BytesMut,
    /// Queued bytes that trigger a write (`u32`s: every connection carries them).
    high_water: u32,
    /// Shared with the reader, which then bounds its wait for the peer's close.
    close_sent: Arc<AtomicBool>,
    shut_down: bool,
    /// Size of the last batch written (see [`Writer::poll_flush`]).
    batch_hint: u32,
    /// Largest size the batch being written reached.
    peak: u32,
}

impl Writer {
    pub(crate) fn new(encoder: Encoder, high_water: usize) -> Self {
        Self {
            encoder,
            buf: BytesMut::new(),
            high_water: u32::try_from(high_water).unwrap_or(u32::MAX),
            close_sent: Arc::default(),
            shut_down: false,
            batch_hint: 0,
            peak: 0,
        }
    }

    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent.load(Ordering::Acquire)
    }

    /// The flag the reader watches.
    pub(crate) fn close_flag(&self) -> Arc<AtomicBool> {
        self.close_sent.clone()
    }

    /// A fresh masking key for a client's frame; none for a server's.
    #[inline]
    fn mask(&self) -> Option<[u8; 4]> {
        (self.encoder.role() == Role::Client).then(rand::random::<[u8; 4]>)
    }

    /// Queues a message; writes once the queue passes the high-water mark.
    pub(crate) async fn feed<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        message: &Message,
    ) -> Result<()> {
        self.queue(message)?;
        self.flush_over_high_water(io).await
    }

    /// Queues a prepared message, reusing its shared frame bytes when it can.
    pub(crate) async fn feed_prepared<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        prepared: &PreparedMessage,
    ) -> Result<()> {
        self.queue_prepared(prepared)?;
        self.flush_over_high_water(io).await
    }

    /// Frames a prepared message into the queue without writing.
    pub(crate) fn queue_prepared(&mut self, prepared: &PreparedMessage) -> Result<()> {
        if self.close_sent() {
            return Err(Error::AlreadyClosed);
        }
        let mask = self.mask();
        self.reserve_batch();
        self.encoder
            .encode_prepared(prepared, mask, &mut self.buf)?;
        Ok(())
    }

    /// Queues one frame of a fragmented message (see [`Encoder::encode_fragment`]).
    pub(crate) async fn feed_fragment<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        message: &Message,
        first: bool,
        fin: bool,
    ) -> Result<()> {
        if self.close_sent() {
            return Err(Error::AlreadyClosed);
        }
        if !message.is_data() {
            return Err(ProtocolError::FragmentedControlFrame.into());
        }
        let mask = self.mask();
        self.encoder
            .encode_fragment(message, first, fin, mask, &mut self.buf)?;
        self.flush_over_high_water(io).await
    }

    /// Frames a message into the queue without writing.
    pub(crate) fn queue(&mut self, message: &Message) -> Result<()> {
        if self.close_sent() {
            return Err(Error::AlreadyClosed);
        }
        let mask = self.mask();
        self.reserve_batch();
        self.encoder.encode(message, mask, &mut self.buf)?;
        if matches!(message, Message::Close(_)) {
            self.close_sent.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Whether the queue passed the high-water mark and should be written now.
    pub(crate) fn over_high_water(&self) -> bool {
        self.buf.len() >= self.high_water as usize
    }

    /// Whether a message of `len` payload bytes fits under the high-water mark
    /// (an empty queue takes any message). Checking before queueing keeps a
    /// full batch within the buffer reserved for it instead of reallocating
    /// it at twice the size for the one frame that crosses the mark.
    pub(crate) fn has_room_for(&self, len: usize) -> bool {
        // The largest header: 2 bytes, an 8-byte length, a 4-byte mask.
        const MAX_HEADER: usize = 14;
        self.buf.is_empty() || self.buf.len() + len + MAX_HEADER <= self.high_water as usize
    }

    /// Writes the queue out if it passed the high-water mark.
    async fn flush_over_high_water<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> Result<()> {
        if self.over_high_water() {
            self.flush(io).await?;
        }
        Ok(())
    }

    /// Writes everything queued and flushes the socket.
    pub(crate) async fn flush<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> Result<()> {
        poll_fn(|cx| self.poll_flush(io, cx)).await
    }

    /// Polls writing everything queued and flushing the socket.
    ///
    /// Cancel-safe: the buffer only ever holds bytes not yet written, so a
    /// cancelled flush (a timeout, an aborted task) never sends a frame twice or
    /// half; the next write continues exactly where it stopped.
    pub(crate) fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<Result<()>> {
        // Bytes are only added between flushes, so the batch is at its largest
        // when a flush starts.
        self.peak = self
            .peak
            .max(u32::try_from(self.buf.len()).unwrap_or(u32::MAX));
        while !self.buf.is_empty() {
            let written = ready!(Pin::new(&mut *io).poll_write(cx, &self.buf))?;
            if written == 0 {
                return Poll::Ready(Err(
                    std::io::Error::from(std::io::ErrorKind::WriteZero).into()
                ));
            }
            self.buf.advance(written);
        }
        if self.buf.capacity() > 0 {
            // An idle connection keeps no output buffer; the next batch starts
            // with room for one like this one (a batch may pass the high-water
            // mark by one message: room for that too, rather than reallocating
            // and copying the whole batch for its last message).
            let most = self.high_water.saturating_mul(2);
            self.batch_hint = self.peak.min(most);
            self.peak = 0;
            self.buf = BytesMut::new();
        }
        ready!(Pin::new(io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    /// Starts a batch with room for one as large as the last, rather than
    /// growing the buffer step by step.
    fn reserve_batch(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.batch_hint as usize);
        }
    }

    /// Whether fed bytes wait for a flush.
    pub(crate) fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    pub(crate) async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        message: &Message,
    ) -> Result<()> {
        self.feed(io, message).await?;
        self.flush(io).await
    }

    /// Sends a close frame unless one was sent already.
    pub(crate) async fn send_close<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        frame: Option<CloseFrame>,
    ) -> Result<()> {
        if self.close_sent() {
            return Ok(());
        }
        self.send(io, &Message::Close(frame)).await
    }

    /// Ends the TCP stream (FIN). Idempotent; errors are moot at this point.
    pub(crate) async fn shutdown<W: AsyncWrite + Unpin>(&mut self, io: &mut W) {
        if !self.shut_down {
            self.shut_down = true;
            let _ = self.flush(io).await;
            let _ = io.shutdown().await;
        }
    }
}

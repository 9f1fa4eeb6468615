//! The sending half's state: encoder, outgoing buffer, close flag.

use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tether_proto::{CloseFrame, Encoder, Message, PreparedMessage, ProtocolError, Role};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// The largest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// Most chunks one batch is split into (see [`Writer::make_room`]).
const MAX_SLICES: usize = 8;

/// Data messages from this size on go out from their own bytes (a server's,
/// see [`Writer::queue_uncopied`]) instead of copied into the write buffer:
/// an echoed 64 MiB message then costs 64 MiB, not twice that.
const UNCOPIED_FROM: usize = 64 << 10;

/// The sending state of a connection: encoder, outgoing buffer, close flag. The
/// stream is passed to each write. Sending waits until the socket took the
/// bytes, which is the backpressure: a slow peer slows its sender instead of
/// growing a buffer.
#[derive(Debug)]
pub(crate) struct Writer {
    encoder: Encoder,
    /// Full chunks of the queue, oldest first, written before `buf`: a batch
    /// that outgrows its buffer continues in a new one instead of reallocating
    /// (and copying) everything queued so far.
    /// Boxed: most batches fit their first buffer, and every connection
    /// carries this field.
    #[allow(clippy::box_collection)] // a thin pointer instead of a `Vec`'s three words
    sealed: Option<Box<Vec<Bytes>>>,
    buf: BytesMut,
    /// Queued bytes that trigger a write (`u32`s: every connection carries them).
    high_water: u32,
    /// Shared with the reader, which then bounds its wait for the peer's close.
    close_sent: Arc<AtomicBool>,
    shut_down: bool,
    /// The peer's close frame arrived and is not answered yet: our close frame
    /// is the answer, and ends TCP.
    peer_closed: bool,
    /// How large the next batch's first buffer is (see [`BatchSize`]).
    batch: BatchSize,
}

impl Writer {
    pub(crate) fn new(encoder: Encoder, high_water: usize) -> Self {
        Self {
            encoder,
            sealed: None,
            buf: BytesMut::new(),
            high_water: u32::try_from(high_water).unwrap_or(u32::MAX),
            close_sent: Arc::default(),
            shut_down: false,
            peer_closed: false,
            batch: BatchSize::default(),
        }
    }

    #[inline]
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
        self.make_room(prepared.message().len());
        self.encoder
            .encode_prepared(prepared, mask, &mut self.buf)?;
        Ok(())
    }

    /// Queues `prepared` (of `len` payload bytes) as `frame`, its plain frame
    /// framed elsewhere, when this connection sends it plain; otherwise frames
    /// it as [`Self::queue_prepared`] does.
    #[inline]
    pub(crate) fn queue_plain(
        &mut self,
        prepared: &PreparedMessage,
        len: usize,
        frame: &[u8],
    ) -> Result<()> {
        if !self.encoder.sends_plain(len) {
            return self.queue_prepared(prepared);
        }
        if self.close_sent() {
            return Err(Error::AlreadyClosed);
        }
        self.make_room(len);
        self.buf.extend_from_slice(frame);
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
        self.make_room(message.len());
        self.encoder
            .encode_fragment(message, first, fin, mask, &mut self.buf)?;
        self.flush_over_high_water(io).await
    }

    /// Frames a message into the queue without writing.
    pub(crate) fn queue(&mut self, message: &Message) -> Result<()> {
        if self.close_sent() {
            return Err(Error::AlreadyClosed);
        }
        if message.len() >= UNCOPIED_FROM && self.queue_uncopied(message)? {
            return Ok(());
        }
        let mask = self.mask();
        self.make_room(message.len());
        self.encoder.encode(message, mask, &mut self.buf)?;
        if matches!(message, Message::Close(_)) {
            self.close_sent.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Queues a large data message as its header and its own payload bytes,
    /// two chunks of the vectored write, when the encoder can frame it so
    /// (a server's frames; a client's are masked, which needs the copy).
    /// False, having queued nothing, when it cannot or the batch has too
    /// many chunks already.
    fn queue_uncopied(&mut self, message: &Message) -> Result<bool> {
        if self.sealed().len() + 2 >= MAX_SLICES {
            return Ok(false);
        }
        // The header ends the buffer in progress, which is then sealed (at
        // most a few bytes are moved to make room: not `grow`, which would
        // size a new buffer for everything queued).
        self.buf.reserve(MAX_HEADER);
        let Some(payload) = self.encoder.encode_split(message, &mut self.buf)? else {
            return Ok(false);
        };
        let head = std::mem::take(&mut self.buf).freeze();
        let sealed = self.sealed.get_or_insert_with(Box::default);
        sealed.push(head);
        sealed.push(payload);
        Ok(true)
    }

    /// Whether the queue passed the high-water mark and should be written now.
    #[inline]
    pub(crate) fn over_high_water(&self) -> bool {
        self.queued() >= self.high_water as usize
    }

    /// Bytes queued and not yet written.
    #[inline]
    fn queued(&self) -> usize {
        let sealed = match &self.sealed {
            None => 0,
            Some(chunks) => chunks.iter().map(Bytes::len).sum(),
        };
        self.buf.len() + sealed
    }

    /// The full chunks queued before `buf`.
    #[inline]
    fn sealed(&self) -> &[Bytes] {
        self.sealed.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Whether a message of `len` payload bytes fits under the high-water mark
    /// (an empty queue takes any message). Checking before queueing keeps a
    /// full batch within the buffer reserved for it instead of reallocating
    /// it at twice the size for the one frame that crosses the mark.
    #[inline]
    pub(crate) fn has_room_for(&self, len: usize) -> bool {
        !self.has_pending() || self.queued() + len + MAX_HEADER <= self.high_water as usize
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
        // when a flush starts. It passes the high-water mark by at most one
        // message.
        let most = self.high_water.saturating_mul(2);
        self.batch.flushing(self.queued(), most);
        while self.has_pending() {
            let written = if self.sealed().is_empty() {
                ready!(Pin::new(&mut *io).poll_write(cx, &self.buf))?
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let chunks = self.sealed().iter().map(|b| &b[..]);
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(chunks.chain([&self.buf[..]])) {
                    *slot = IoSlice::new(chunk);
                    count += 1;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            };
            if written == 0 {
                return Poll::Ready(Err(
                    std::io::Error::from(std::io::ErrorKind::WriteZero).into()
                ));
            }
            self.consume(written);
        }
        // An idle connection keeps no output buffer (an empty one may still
        // hold its allocation, even with no capacity left past its end).
        self.buf = BytesMut::new();
        self.sealed = None;
        ready!(Pin::new(io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    /// Makes room for a frame of about `payload` bytes. A batch starts with
    /// room for the largest recent one ([`BatchSize`]); one that outgrows its buffer seals
    /// it and continues in a new one at least as large as everything queued
    /// so far (so a batch has few chunks), and the chunks go out in one
    /// vectored write. Nothing queued is copied again.
    #[inline]
    fn make_room(&mut self, payload: usize) {
        let frame = payload.saturating_add(self.header_len(payload));
        if self.buf.capacity() - self.buf.len() < frame {
            self.grow(frame);
        }
    }

    /// [`Self::make_room`] when the buffer is short of `frame` bytes: once a
    /// batch, and again each time it outgrows a chunk.
    #[inline(never)]
    fn grow(&mut self, frame: usize) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(frame.max(self.batch.hint as usize));
        } else {
            if self.sealed().len() + 1 >= MAX_SLICES {
                // Rare (a batch of hundreds of times its first buffer): grow
                // in place rather than write more slices than one call takes.
                self.buf.reserve(frame);
                return;
            }
            let next = frame.max(self.queued());
            let full = std::mem::replace(&mut self.buf, BytesMut::with_capacity(next));
            self.sealed
                .get_or_insert_with(Box::default)
                .push(full.freeze());
        }
    }

    /// The header length of an uncompressed frame of `payload` bytes.
    #[inline]
    fn header_len(&self, payload: usize) -> usize {
        let length = match payload {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        let mask = if self.encoder.role() == Role::Client {
            4
        } else {
            0
        };
        2 + length + mask
    }

    /// Drops `written` bytes from the front of the queue.
    fn consume(&mut self, mut written: usize) {
        if let Some(sealed) = &mut self.sealed {
            let mut done = 0;
            for chunk in sealed.iter_mut() {
                if written < chunk.len() {
                    chunk.advance(written);
                    written = 0;
                    break;
                }
                written -= chunk.len();
                done += 1;
            }
            sealed.drain(..done);
            if sealed.is_empty() {
                // `has_pending` reads a present list as bytes waiting.
                self.sealed = None;
            }
        }
        self.buf.advance(written);
    }

    /// Whether fed bytes wait for a flush.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        !self.buf.is_empty() || self.sealed.is_some()
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
        self.send(io, &Message::Close(frame)).await?;
        if self.peer_closed {
            // Both close frames have passed: the closing handshake is over.
            self.shutdown(io).await;
        }
        Ok(())
    }

    /// Notes that the peer's close frame arrived and waits for our answer.
    pub(crate) fn peer_closed(&mut self) {
        self.peer_closed = true;
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

/// Sizes a batch's first buffer from the batches before it: the largest of the
/// last 64 to 128, so batches of varying size rarely need a second chunk while
/// one burst long ago stops costing a large buffer per batch.
#[derive(Debug, Default)]
struct BatchSize {
    /// Room reserved for a new batch.
    hint: u32,
    /// Largest batch of the window in progress.
    window: u32,
    /// Batches in the window so far.
    batches: u8,
}

impl BatchSize {
    /// Batches per window.
    const WINDOW: u8 = 64;

    /// Notes a batch about to be written (again, if an earlier write of it
    /// stopped short: it then counts twice, which only shortens the window).
    fn flushing(&mut self, queued: usize, most: u32) {
        if queued == 0 {
            return;
        }
        let size = u32::try_from(queued).unwrap_or(u32::MAX).min(most);
        self.window = self.window.max(size);
        self.hint = self.hint.max(size);
        self.batches += 1;
        if self.batches == Self::WINDOW {
            self.hint = self.window;
            self.window = 0;
            self.batches = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::{Config, Decoder};

    /// A socket that takes at most `per_call` bytes a write, across slices.
    struct Trickle {
        out: Vec<u8>,
        per_call: usize,
        vectored_calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.per_call);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.vectored_calls += 1;
            let mut left = self.per_call;
            for buf in bufs {
                let n = buf.len().min(left);
                self.out.extend_from_slice(&buf[..n]);
                left -= n;
            }
            Poll::Ready(Ok(self.per_call - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn batch(seed: usize) -> Vec<Message> {
        (0..40)
            .map(|i| Message::binary(vec![(seed + i) as u8; (i * 97) % 3000]))
            .collect()
    }

    /// A batch that outgrows its first buffer continues in new chunks, goes
    /// out whole and in order however the socket splits the writes, and the
    /// next batch like it fits one buffer.
    #[tokio::test]
    async fn a_batch_past_its_buffer_goes_out_whole_in_order() {
        let mut writer = Writer::new(Encoder::new(Role::Server, None, 0), 1 << 20);
        let mut socket = Trickle {
            out: Vec::new(),
            per_call: 1000,
            vectored_calls: 0,
        };
        let mut sent = Vec::new();
        for round in 0..3 {
            for message in batch(round) {
                writer.queue(&message).unwrap();
                sent.push(message);
            }
            if round == 0 {
                assert!(
                    writer.sealed().len() > 1,
                    "the first batch had no size to go by"
                );
            } else {
                assert!(writer.sealed().is_empty(), "sized from the batch before");
            }
            writer.flush(&mut socket).await.unwrap();
            assert!(!writer.has_pending());
        }
        assert!(socket.vectored_calls > 0);
        let mut decoder = Decoder::new(Role::Client, Config::default(), None);
        decoder.receive(&socket.out);
        for message in sent {
            assert_eq!(decoder.poll().unwrap(), Some(message));
        }
        assert_eq!(decoder.buffered(), 0);
    }

    /// Large messages go out from their own bytes, among small ones copied
    /// into the buffer, whole and in order; past the slices one write takes,
    /// they are copied like the rest.
    #[tokio::test]
    async fn large_messages_are_written_from_their_own_bytes_in_order() {
        let mut writer = Writer::new(Encoder::new(Role::Server, None, 0), 64 << 20);
        let mut socket = Trickle {
            out: Vec::new(),
            per_call: 100_000,
            vectored_calls: 0,
        };
        let mut sent = Vec::new();
        for i in 0..10u8 {
            let small = Message::text(format!("small {i}"));
            let large = Message::binary(vec![i; UNCOPIED_FROM + usize::from(i)]);
            writer.queue(&small).unwrap();
            writer.queue(&large).unwrap();
            if i == 0 {
                let Message::Binary(bytes) = &large else {
                    unreachable!()
                };
                let chunks = writer.sealed();
                assert_eq!(chunks.len(), 2, "the header, then the payload itself");
                assert_eq!(chunks[1].as_ptr(), bytes.as_ptr(), "not copied");
            }
            sent.extend([small, large]);
        }
        assert!(writer.sealed().len() < MAX_SLICES);
        writer.flush(&mut socket).await.unwrap();
        assert!(!writer.has_pending());
        let mut decoder = Decoder::new(Role::Client, Config::default(), None);
        decoder.receive(&socket.out);
        for message in sent {
            assert_eq!(decoder.poll().unwrap(), Some(message));
        }
        assert_eq!(decoder.buffered(), 0);
    }
}

//! The receiving half's state: decoder and socket reads.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tether_proto::{Decoder, Message, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

use crate::error::Result;

/// Reads shorter than this are copied into the decoder and leave the read
/// block free: copying a few hundred bytes costs about what sharing does, and a
/// kept message from a short read should not hold a block many times its size.
const COPY_READ_MAX: usize = 4 << 10;

/// Largest single read reservation while a big frame is in progress.
const MAX_READ_RESERVE: usize = 1 << 20;

thread_local! {
    /// Where reads land, shared by the connections of a thread, so one waiting
    /// for input holds no read buffer. A long read is handed to the decoder as
    /// it lies, without a copy (see [`Decoder::receive_bytes`]); once every
    /// message read into the block is gone it is reused from its start, while
    /// some are kept, reads move on to a new one.
    static BLOCK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The receiving state of a connection: decoder, end-of-stream and the close
/// deadline. The stream itself is passed to each read, so an unsplit connection
/// owns its socket directly (no shared halves, no lock per read).
#[derive(Debug)]
pub(crate) struct Reader {
    decoder: Decoder,
    /// Bytes per read (a `u32`: every connection carries it).
    read_chunk: u32,
    eof: bool,
    /// Set by the writer once our close frame is out.
    close_sent: Arc<AtomicBool>,
    close_timeout: Duration,
    /// When the peer's close frame must have arrived by. Boxed: only a closing
    /// connection has one, and a timer inline would enlarge every connection.
    close_deadline: Option<Pin<Box<Sleep>>>,
}

/// One step of reading.
pub(crate) enum Read {
    /// A message or control frame.
    Message(Message),
    /// The peer broke the protocol; the connection must be failed.
    Failed(ProtocolError),
    /// TCP ended.
    Eof,
    /// The peer did not answer our close frame within the close timeout.
    CloseTimedOut,
}

impl Reader {
    pub(crate) fn new(
        decoder: Decoder,
        read_chunk: usize,
        close_sent: Arc<AtomicBool>,
        close_timeout: Duration,
    ) -> Self {
        Self {
            decoder,
            read_chunk: u32::try_from(read_chunk).unwrap_or(u32::MAX),
            eof: false,
            close_sent,
            close_timeout,
            close_deadline: None,
        }
    }

    /// Whether a close frame was received (or the stream failed).
    pub(crate) fn close_received(&self) -> bool {
        self.decoder.is_finished()
    }

    /// How long to wait for the peer's close frame once ours is out.
    pub(crate) fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// Whether both close frames have passed (or the stream failed after ours):
    /// nothing more is to be read.
    pub(crate) fn closing_done(&self) -> bool {
        self.decoder.is_finished() && self.close_sent.load(Ordering::Acquire)
    }

    /// Whether more decoded input is already buffered, so a reply can wait for a
    /// batched flush.
    pub(crate) fn has_buffered(&self) -> bool {
        self.decoder.buffered() > 0
    }

    /// The next read step from `io`.
    pub(crate) async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Read> {
        poll_fn(|cx| self.poll_next(io, cx)).await
    }

    /// Polls for the next read step: decodes what is buffered, reads when more
    /// is needed. Kept as a poll function so a waiting connection's future holds
    /// only references, not the state of nested futures.
    pub(crate) fn poll_next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Read>> {
        loop {
            if let Some(read) = self.poll_buffered() {
                return Poll::Ready(Ok(read));
            }
            if self.close_deadline.is_none() && self.close_sent.load(Ordering::Acquire) {
                let deadline = Instant::now() + self.close_timeout;
                self.close_deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
            }
            match self.poll_read_more(io, cx) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {
                    if let Some(deadline) = &mut self.close_deadline {
                        if deadline.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Ok(Read::CloseTimedOut));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Decodes what is already buffered, without reading: `None` when more bytes
    /// are needed.
    pub(crate) fn poll_buffered(&mut self) -> Option<Read> {
        match self.decoder.poll() {
            Ok(Some(message)) => Some(Read::Message(message)),
            Err(e) => Some(Read::Failed(e)),
            Ok(None) if self.eof => Some(Read::Eof),
            Ok(None) => None,
        }
    }

    /// Reads more bytes into the decoder; returns how many (0: EOF).
    ///
    /// Reads go into this thread's read block and the bytes that arrived are
    /// handed to the decoder as they lie, so a connection waiting for input
    /// holds no read buffer (idle connections stay small) while one read can
    /// still take a large burst. A frame larger than a chunk is read straight
    /// into the decoder's buffer, reserved for it.
    fn poll_read_more<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        let chunk = self.read_chunk as usize;
        if self.decoder.frame_remaining() > chunk {
            let want = self
                .decoder
                .frame_remaining()
                .clamp(chunk, MAX_READ_RESERVE.max(chunk));
            let buf = self.decoder.buffer_mut();
            let start = buf.len();
            // Zero-filled rather than read into uninitialised capacity: no
            // `unsafe` for a path that already moves a large frame.
            buf.resize(start + want, 0);
            let mut read = ReadBuf::new(&mut buf[start..]);
            let polled = Pin::new(io).poll_read(cx, &mut read);
            let filled = match &polled {
                Poll::Ready(Ok(())) => read.filled().len(),
                _ => 0,
            };
            buf.truncate(start + filled);
            return polled.map_ok(|()| filled);
        }
        let decoder = &mut self.decoder;
        BLOCK.with(|block| {
            let mut block = block.borrow_mut();
            // Reclaims the block when nothing read into it is alive any more,
            // or starts a new one.
            block.reserve(chunk);
            let polled = poll_read_buf(Pin::new(io), cx, &mut (&mut *block).limit(chunk));
            match polled {
                Poll::Ready(Ok(read)) if read >= COPY_READ_MAX => {
                    decoder.receive_bytes(block.split());
                }
                Poll::Ready(Ok(_)) => {
                    decoder.receive(&block);
                    block.clear();
                }
                _ => {}
            }
            polled
        })
    }

    /// Reads and discards until EOF, for a client waiting for the server to drop TCP.
    pub(crate) async fn drain<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<()> {
        let mut sink = [0u8; 1024];
        while !self.eof {
            if io.read(&mut sink).await? == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }
}

//! The receiving half's state: decoder and socket reads.

use std::cell::RefCell;
use std::future::Future;
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

use crate::budget::{Budget, Share};
use crate::error::Result;

/// Reads shorter than this are copied into the decoder and leave the read
/// block free: copying a few hundred bytes costs about what sharing does, and a
/// kept message from a short read should not hold a block many times its size.
const COPY_READ_MAX: usize = 4 << 10;

/// Largest single read reservation while a big frame is in progress.
const MAX_READ_RESERVE: usize = 1 << 20;

/// How often a connection waiting for room looks again, at least; a long
/// budget wait is split into at most [`MAX_ROOM_TICKS`] looks.
const ROOM_RETRY: Duration = Duration::from_millis(10);
const MAX_ROOM_TICKS: u32 = 1000;

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
    /// The close timeout in milliseconds (a `u32` beside `read_chunk`
    /// rather than a 16-byte `Duration`).
    close_timeout_ms: u32,
    /// What this connection holds of the budget, if there is one.
    share: Share,
    eof: bool,
    /// Set by the writer once our close frame is out.
    close_sent: Arc<AtomicBool>,
    /// One timer, boxed (an inline one would enlarge every connection, and
    /// few need one): once our close frame is out, when the peer's must have
    /// arrived by; before that, while the budget is full, the next look for
    /// room. A closing connection does not wait for room.
    timer: Option<Pin<Box<Sleep>>>,
    /// Looks for room taken in the current wait (0: not waiting); a `u16`
    /// beside `eof`, with the wait's length counted in looks, not stored.
    room_ticks: u16,
    /// The process-wide budget this connection shares, if there is one.
    budget: Option<Budget>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            self.share.shrink_to(budget, 0);
        }
    }
}

/// One step of reading.
#[derive(Debug)]
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
        mut decoder: Decoder,
        read_chunk: usize,
        close_sent: Arc<AtomicBool>,
        close_timeout: Duration,
        budget: Option<Budget>,
    ) -> Self {
        let share = Share::default();
        if budget.is_some() {
            decoder.set_hold_limit(share.allowance());
        }
        Self {
            decoder,
            read_chunk: u32::try_from(read_chunk).unwrap_or(u32::MAX),
            close_timeout_ms: u32::try_from(close_timeout.as_millis()).unwrap_or(u32::MAX),
            eof: false,
            close_sent,
            timer: None,
            room_ticks: 0,
            share,
            budget,
        }
    }

    /// Whether a close frame was received (or the stream failed).
    pub(crate) fn close_received(&self) -> bool {
        self.decoder.is_finished()
    }

    /// How long to wait for the peer's close frame once ours is out.
    pub(crate) fn close_timeout(&self) -> Duration {
        Duration::from_millis(self.close_timeout_ms.into())
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
            if self.budget.is_some() {
                match self.poll_room(cx) {
                    Poll::Ready(Ok(())) if self.decoder.wants_room() => continue,
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Ok(Read::Failed(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let closing = self.close_sent.load(Ordering::Acquire);
            if closing && (self.timer.is_none() || self.room_ticks > 0) {
                // The close deadline takes the timer (from a wait for room too).
                self.room_ticks = 0;
                let deadline = Instant::now() + self.close_timeout();
                self.timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
            }
            match self.poll_read_more(io, cx) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {
                    if let Some(deadline) = self.timer.as_mut().filter(|_| closing) {
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
        let read = match self.decoder.poll() {
            Ok(Some(message)) => Read::Message(message),
            Err(e) => Read::Failed(e),
            Ok(None) if self.eof => Read::Eof,
            Ok(None) => return None,
        };
        if let Some(budget) = &self.budget {
            // A message is out (or the stream over): give back what it held.
            self.share.shrink_to(budget, self.decoder.held());
            self.decoder.set_hold_limit(self.share.allowance());
        }
        Some(read)
    }

    /// Makes sure the budget covers what the next step may hold, waiting
    /// while it is full; fails the connection once it has waited as long as
    /// the budget allows.
    ///
    /// A message that outgrows the free allowance reserves all it may come
    /// to ([`Decoder::message_bound`]) in one step: a connection then either
    /// has room for its whole message or holds nothing charged while it
    /// waits, so connections never each hold part of what they need and stall
    /// one another until all time out.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProtocolError>> {
        let budget = self.budget.as_ref().expect("called with a budget");
        let chunk = self.read_chunk as usize;
        let need = match self.decoder.message_bound() {
            // Room for the message and for the next read beyond its end.
            Some(bound) => bound.saturating_add(chunk),
            None => self.decoder.held() + chunk,
        };
        if self.share.cover(budget, need) {
            self.decoder.set_hold_limit(
                self.share
                    .allowance()
                    .saturating_sub(self.decoder.buffered()),
            );
            if self.room_ticks > 0 {
                self.room_ticks = 0;
                self.timer = None;
            }
            return Poll::Ready(Ok(()));
        }
        let wait = budget.wait_time();
        let retry = ROOM_RETRY.max(wait / MAX_ROOM_TICKS);
        let closing = self.close_sent.load(Ordering::Acquire);
        if !closing && self.room_ticks == 0 {
            budget.count_wait();
            self.room_ticks = 1;
            self.timer = Some(Box::pin(tokio::time::sleep(retry)));
        }
        // Look again in a moment: a wake-up from the timer, not from whoever
        // frees room (simpler, and only connections that wait pay for it).
        // A closing connection does not wait.
        if !closing {
            let timer = self.timer.as_mut().expect("set while waiting for room");
            // `room_ticks` counts from 1: the looks so far, plus one.
            while retry * u32::from(self.room_ticks - 1) < wait {
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.room_ticks += 1;
                // From the last deadline, not from now: late wake-ups do not
                // stretch the wait (several looks may then be due at once).
                let next = timer.deadline() + retry;
                timer.as_mut().reset(next);
            }
        }
        let waited = retry * u32::from(self.room_ticks.saturating_sub(1));
        budget.count_refusal();
        self.decoder.abandon();
        self.share.shrink_to(budget, 0);
        if self.room_ticks > 0 {
            self.room_ticks = 0;
            self.timer = None;
        }
        Poll::Ready(Err(ProtocolError::NoRoom {
            waited_ms: waited.as_millis() as u64,
        }))
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
            let remaining = self.decoder.frame_remaining();
            let buf = self.decoder.buffer_mut();
            let start = buf.len();
            // Room for the whole frame at once (its length is checked against
            // the limits already): growing by doubling would copy it each
            // time and keep the old copies resident until the allocator gives
            // them back. Capacity not yet read into costs no memory.
            if buf.capacity() - start < remaining {
                buf.reserve(remaining);
            }
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

//! The receiving half's state: decoder and socket reads.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tether_proto::{Decoder, Message, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::time::Instant;

use crate::error::Result;

/// Largest single read reservation while a big frame is in progress.
const MAX_READ_RESERVE: usize = 1 << 20;

thread_local! {
    /// Where reads land when a connection has nothing partial buffered. A
    /// `poll_read` borrows it only for the call, so every connection served by
    /// this thread shares it.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads frames from `R` and decodes them; protocol policy (replies) is the
/// caller's.
#[derive(Debug)]
pub(crate) struct Reader<R> {
    io: R,
    decoder: Decoder,
    read_chunk: usize,
    eof: bool,
    /// Set by the writer once our close frame is out.
    close_sent: Arc<AtomicBool>,
    close_timeout: Duration,
    /// When the peer's close frame must have arrived by.
    close_deadline: Option<Instant>,
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

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(
        io: R,
        decoder: Decoder,
        read_chunk: usize,
        close_sent: Arc<AtomicBool>,
        close_timeout: Duration,
    ) -> Self {
        Self {
            io,
            decoder,
            read_chunk,
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

    pub(crate) async fn next(&mut self) -> Result<Read> {
        loop {
            match self.decoder.poll() {
                Ok(Some(message)) => return Ok(Read::Message(message)),
                Err(e) => return Ok(Read::Failed(e)),
                Ok(None) if self.eof => return Ok(Read::Eof),
                Ok(None) => {}
            }
            if self.close_deadline.is_none() && self.close_sent.load(Ordering::Acquire) {
                self.close_deadline = Some(Instant::now() + self.close_timeout);
            }
            let read = match self.close_deadline {
                // Boxed: only a closing connection waits with a deadline, and
                // the timer inline would enlarge every connection's future.
                Some(deadline) => {
                    match Box::pin(tokio::time::timeout_at(deadline, self.read_more())).await {
                        Ok(read) => read?,
                        Err(_) => return Ok(Read::CloseTimedOut),
                    }
                }
                None => self.read_more().await?,
            };
            if read == 0 {
                self.eof = true;
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
    /// Reads go into this thread's scratch buffer and only the bytes that
    /// arrived are appended to the decoder's, so a connection waiting for input
    /// holds no read buffer (idle connections stay small) while one read can
    /// still take a large burst. A frame larger than a chunk is read straight
    /// into the decoder's buffer, reserved for it.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        let chunk = self.read_chunk;
        if self.decoder.frame_remaining() > chunk {
            let want = self
                .decoder
                .frame_remaining()
                .clamp(chunk, MAX_READ_RESERVE.max(chunk));
            let buf = self.decoder.buffer_mut();
            buf.reserve(want);
            return self.io.read_buf(buf).await;
        }
        let (io, decoder) = (&mut self.io, &mut self.decoder);
        std::future::poll_fn(|cx| {
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                if scratch.len() < chunk {
                    scratch.resize(chunk, 0);
                }
                let mut buf = ReadBuf::new(&mut scratch[..chunk]);
                match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        decoder.receive(buf.filled());
                        Poll::Ready(Ok(buf.filled().len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
        })
        .await
    }

    /// Reads and discards until EOF, for a client waiting for the server to drop TCP.
    pub(crate) async fn drain(&mut self) -> Result<()> {
        let mut sink = [0u8; 1024];
        while !self.eof {
            if self.io.read(&mut sink).await? == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }
}

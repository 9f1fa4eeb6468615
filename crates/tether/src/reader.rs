//! The receiving half's state: decoder and socket reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether_proto::{Decoder, Message, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::error::Result;

/// Largest single read reservation while a big frame is in progress.
const MAX_READ_RESERVE: usize = 1 << 20;

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
            let want = self
                .decoder
                .frame_remaining()
                .clamp(self.read_chunk, MAX_READ_RESERVE.max(self.read_chunk));
            let buf = self.decoder.buffer_mut();
            buf.reserve(want);
            if self.close_deadline.is_none() && self.close_sent.load(Ordering::Acquire) {
                self.close_deadline = Some(Instant::now() + self.close_timeout);
            }
            let read = match self.close_deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.io.read_buf(buf)).await {
                        Ok(read) => read?,
                        Err(_) => return Ok(Read::CloseTimedOut),
                    }
                }
                None => self.io.read_buf(buf).await?,
            };
            if read == 0 {
                self.eof = true;
            }
        }
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

//! The sending half's state: encoder, outgoing buffer, close flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tether_proto::{CloseFrame, Encoder, Message, PreparedMessage, ProtocolError, Role};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// Writes frames to `W`. Sending waits until the socket took the bytes, which is
/// the backpressure: a slow peer slows its sender instead of growing a buffer.
#[derive(Debug)]
pub(crate) struct Writer<W> {
    io: W,
    encoder: Encoder,
    buf: BytesMut,
    high_water: usize,
    /// Shared with the reader, which then bounds its wait for the peer's close.
    close_sent: Arc<AtomicBool>,
    shut_down: bool,
    /// Capacity of the last batch written (see [`Writer::flush`]).
    batch_hint: usize,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub(crate) fn new(io: W, encoder: Encoder, high_water: usize) -> Self {
        Self {
            io,
            encoder,
            buf: BytesMut::new(),
            high_water,
            close_sent: Arc::default(),
            shut_down: false,
            batch_hint: 0,
        }
    }

    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent.load(Ordering::Acquire)
    }

    /// The flag the reader watches.
    pub(crate) fn close_flag(&self) -> Arc<AtomicBool> {
        self.close_sent.clone()
    }

    fn mask(&self) -> Option<[u8; 4]> {
        (self.encoder.role() == Role::Client).then(rand::random::<[u8; 4]>)
    }

    /// Queues a message; writes once the queue passes the high-water mark.
    pub(crate) async fn feed(&mut self, message: &Message) -> Result<()> {
        if self.close_sent() {
            return Err(Error::AlreadyClosed);
        }
        let mask = self.mask();
        self.reserve_batch();
        self.encoder.encode(message, mask, &mut self.buf)?;
        if matches!(message, Message::Close(_)) {
            self.close_sent.store(true, Ordering::Release);
        }
        if self.buf.len() >= self.high_water {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues a prepared message, reusing its shared frame bytes when it can.
    pub(crate) async fn feed_prepared(&mut self, prepared: &PreparedMessage) -> Result<()> {
        if self.close_sent() {
            return Err(Error::AlreadyClosed);
        }
        let mask = self.mask();
        self.reserve_batch();
        self.encoder
            .encode_prepared(prepared, mask, &mut self.buf)?;
        if self.buf.len() >= self.high_water {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues one frame of a fragmented message (see [`Encoder::encode_fragment`]).
    pub(crate) async fn feed_fragment(
        &mut self,
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
        if self.buf.len() >= self.high_water {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes everything queued and flushes the socket.
    ///
    /// Cancel-safe: the buffer only ever holds bytes not yet written, so a
    /// cancelled flush (a timeout, an aborted task) never sends a frame twice or
    /// half; the next write continues exactly where it stopped.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        while !self.buf.is_empty() {
            let written = self.io.write_buf(&mut self.buf).await?;
            if written == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
        }
        if self.buf.capacity() > 0 {
            // An idle connection keeps no output buffer; the next batch starts
            // with room for one like this one.
            self.batch_hint = self.buf.capacity().min(self.high_water);
            self.buf = BytesMut::new();
        }
        self.io.flush().await?;
        Ok(())
    }

    /// Starts a batch with room for one as large as the last, rather than
    /// growing the buffer step by step.
    fn reserve_batch(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.batch_hint);
        }
    }

    /// Whether fed bytes wait for a flush.
    pub(crate) fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    pub(crate) async fn send(&mut self, message: &Message) -> Result<()> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Sends a close frame unless one was sent already.
    pub(crate) async fn send_close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        if self.close_sent() {
            return Ok(());
        }
        self.send(&Message::Close(frame)).await
    }

    /// Ends the TCP stream (FIN). Idempotent; errors are moot at this point.
    pub(crate) async fn shutdown(&mut self) {
        if !self.shut_down {
            self.shut_down = true;
            let _ = self.flush().await;
            let _ = self.io.shutdown().await;
        }
    }
}

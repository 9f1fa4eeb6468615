//! A message framed once and sent to many connections.
//!
//! Broadcasting the same message to thousands of connections should not
//! compress it thousands of times. A [`PreparedMessage`] caches the server's
//! finished compressed frame, one per LZ77 window size, built by the first
//! connection that sends it. A compressed frame can be shared only between
//! connections that compress every message on its own
//! (`server_no_context_takeover`, tether's default); with context takeover, or
//! as a client (frames are masked with a fresh key), each connection still
//! encodes its own copy. The uncompressed server frame of a small message is
//! cached too, so each further connection copies one slice instead of framing
//! again; large messages are framed per connection (a header and a copy) rather
//! than kept twice.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::config::Role;
use crate::encoder::Encoder;
use crate::message::Message;
use crate::utf8::Utf8Bytes;

/// Window sizes 2^9 to 2^15, one cached compressed frame each.
const WINDOWS: usize = 7;

/// Largest payload whose uncompressed server frame is cached.
pub(crate) const PLAIN_CACHE_LIMIT: usize = 8 << 10;

/// A text or binary message whose compressed frame is computed at most once
/// per window size and shared by every connection that sends it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    inner: Arc<Inner>,
}

/// The fields a plain send reads (the frame and the message's length) come
/// first and share a cache line or two: a broadcast walks thousands of these
/// per subscriber, so their size is what it costs in cache. The compressed
/// frames, which most messages never get, live behind one pointer.
#[derive(Debug)]
#[repr(C)]
struct Inner {
    /// The unmasked, uncompressed frame (small messages only).
    plain: OnceLock<Bytes>,
    message: Message,
    compressed: OnceLock<Box<[OnceLock<Bytes>; WINDOWS]>>,
}

impl PreparedMessage {
    /// Prepares a data message. Control frames are rejected: they are tiny and
    /// belong to one connection. A payload that is a slice of a larger shared
    /// buffer is copied ([`Message::detached`]): a prepared message is kept
    /// while many connections send it, and should keep only its own bytes.
    pub fn new(message: Message) -> Option<Self> {
        message.is_data().then(|| Self {
            inner: Arc::new(Inner {
                plain: OnceLock::new(),
                message: message.detached(),
                compressed: OnceLock::new(),
            }),
        })
    }

    /// A prepared text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::new(Message::Text(text.into())).expect("text is data")
    }

    /// A prepared binary message.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Self::new(Message::Binary(bytes.into())).expect("binary is data")
    }

    /// The message itself.
    pub fn message(&self) -> &Message {
        &self.inner.message
    }

    /// The compressed frame for a window of 2^`window_bits`, if already built.
    pub(crate) fn compressed_frame(&self, window_bits: u8) -> Option<&Bytes> {
        self.inner.compressed.get()?[slot(window_bits)].get()
    }

    /// Stores the compressed frame for a window of 2^`window_bits` and returns
    /// the stored one (another connection may have raced us to it; both are
    /// valid encodings of the same message).
    pub(crate) fn store_compressed(&self, window_bits: u8, frame: Bytes) -> &Bytes {
        self.inner.compressed.get_or_init(Default::default)[slot(window_bits)].get_or_init(|| frame)
    }

    /// The uncompressed server frame, if already built.
    /// Frames this message as a server sends it uncompressed, at the end of
    /// `arena`, and splits the frame off: a broadcast lays the frames of
    /// consecutive messages side by side this way, so a member sending a run
    /// of them reads one stretch of memory. `None` for a payload over the
    /// plain-frame limit (8 KiB), which senders frame themselves.
    pub fn plain_frame_into(&self, arena: &mut BytesMut) -> Option<Bytes> {
        if self.message().len() > PLAIN_CACHE_LIMIT {
            return None;
        }
        if let Some(frame) = self.plain_frame() {
            return Some(frame.clone());
        }
        Encoder::new(Role::Server, None, 0)
            .encode(self.message(), None, arena)
            .ok()?;
        Some(arena.split().freeze())
    }

    pub(crate) fn plain_frame(&self) -> Option<&Bytes> {
        self.inner.plain.get()
    }

    /// Stores the uncompressed server frame.
    pub(crate) fn store_plain(&self, frame: Bytes) {
        let _ = self.inner.plain.set(frame);
    }

    /// Whether a compressed frame for 2^`window_bits` has been built.
    pub fn is_compressed_for(&self, window_bits: u8) -> bool {
        self.compressed_frame(window_bits).is_some()
    }
}

fn slot(window_bits: u8) -> usize {
    usize::from(window_bits.clamp(9, 15) - 9)
}

impl From<Utf8Bytes> for PreparedMessage {
    fn from(text: Utf8Bytes) -> Self {
        Self::text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_part_stays_small_and_the_plain_frame_comes_first() {
        // A broadcast ring and a channel's history hold thousands of these;
        // with the compressed frames inline it was 360 bytes.
        let size = std::mem::size_of::<Inner>();
        assert!(size <= 104, "{size} bytes");
        assert_eq!(std::mem::offset_of!(Inner, plain), 0);
    }

    #[test]
    fn plain_frames_are_laid_out_in_the_arena_one_after_the_other() {
        let mut arena = BytesMut::with_capacity(64);
        let one = PreparedMessage::text("one");
        let two = PreparedMessage::binary(vec![2u8; 3]);
        let first = one.plain_frame_into(&mut arena).unwrap();
        let second = two.plain_frame_into(&mut arena).unwrap();
        assert_eq!(&first[..], b"\x81\x03one");
        assert_eq!(&second[..], b"\x82\x03\x02\x02\x02");
        assert_eq!(
            first.as_ptr() as usize + first.len(),
            second.as_ptr() as usize
        );
        let large = PreparedMessage::binary(vec![0u8; PLAIN_CACHE_LIMIT + 1]);
        assert!(large.plain_frame_into(&mut arena).is_none());
    }
}

//! The compressor and inflater of one connection.

use bytes::BytesMut;
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use super::pool;

use crate::error::{InflateError, ProtocolError};
use crate::grow;

/// RFC 7692 §7.2.1: a sync flush ends with these bytes; the sender strips them and
/// the receiver appends them back before inflating the message's end.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Output grows by at most this much per step, so a bomb is caught before it costs
/// more than one step beyond the limit.
const STEP: usize = 32 << 10;
/// Most output one compression step writes.
const COMPRESS_STEP: usize = 256 << 10;

/// Compresses outgoing messages of one connection.
pub struct Deflater {
    state: Option<Compress>,
    level: u32,
    window_bits: u8,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("allocated", &self.state.is_some())
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

impl Deflater {
    /// A compressor with an LZ77 window of 2^`window_bits` (9–15) bytes.
    pub fn new(level: u32, window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            state: None,
            level,
            window_bits: window_bits.clamp(9, 15),
            no_context_takeover,
        }
    }

    /// Whether the zlib state is currently allocated.
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    /// The LZ77 window, as a power of two.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether every message is compressed on its own (no context takeover), so
    /// its compressed form does not depend on what was sent before.
    pub fn is_stateless(&self) -> bool {
        self.no_context_takeover
    }

    /// Appends the compressed form of `input` (one whole message) to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), ProtocolError> {
        let (level, bits) = (self.level, self.window_bits);
        let state = self
            .state
            .get_or_insert_with(|| pool::take_compressor(level, bits));
        let start = out.len();
        // The most deflate can write: stored blocks of incompressible input
        // plus the flush. The buffer grows as a message's does (sized for
        // this at once past 1 MiB: no copy), and only the room the next step
        // may fill is zeroed, so a large message that compresses well costs
        // what it compresses to, not half its size.
        let bound = start + input.len() + input.len() / 1000 + 64;
        let mut consumed = 0;
        loop {
            let room = ((input.len() - consumed) / 2 + 64).min(COMPRESS_STEP);
            let filled = out.len();
            grow::reserve(out, room, bound);
            out.resize(filled + room, 0);
            let (in_before, out_before) = (state.total_in(), state.total_out());
            state
                .compress(&input[consumed..], &mut out[filled..], FlushCompress::Sync)
                .map_err(|e| ProtocolError::Deflate(e.into()))?;
            consumed += (state.total_in() - in_before) as usize;
            let written = (state.total_out() - out_before) as usize;
            out.truncate(filled + written);
            // Done once all input is in and the flush left spare room in the output.
            if consumed == input.len() && written < room {
                break;
            }
        }
        if out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(out.len() - SYNC_TAIL.len());
        }
        if self.no_context_takeover {
            // Give the state back: an idle connection then holds no compressor.
            if let Some(state) = self.state.take() {
                pool::give_compressor(level, bits, state);
            }
        }
        Ok(())
    }
}

/// Inflates incoming compressed messages of one connection, enforcing the size limit
/// on the inflated output.
pub struct Inflater {
    state: Option<Decompress>,
    window_bits: u8,
    no_context_takeover: bool,
    /// The peer ended the deflate stream (BFINAL) inside the current message.
    stream_ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("allocated", &self.state.is_some())
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

impl Inflater {
    /// An inflater for a peer compressing with at most 2^`window_bits` bytes of
    /// window. zlib inflates with at least 2^9, which also reads 2^8 streams.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            state: None,
            window_bits: window_bits.clamp(9, 15),
            no_context_takeover,
            stream_ended: false,
        }
    }

    /// Whether the zlib state is currently allocated.
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    /// Inflates the next piece of a message's compressed data onto `out`, failing as
    /// soon as `out` would grow past `max` bytes.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        max: usize,
    ) -> Result<(), ProtocolError> {
        self.inflate_until(input, out, max, usize::MAX).map(|_| ())
    }

    /// As [`Self::inflate`], but stops once `out` holds `pause_at` bytes or
    /// more, for a caller that must find room before taking more: returns how
    /// much of `input` was consumed (the rest is to be given again).
    pub fn inflate_until(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        max: usize,
        pause_at: usize,
    ) -> Result<usize, ProtocolError> {
        if self.stream_ended {
            return match input.is_empty() {
                true => Ok(0),
                false => Err(InflateError::TrailingData.into()),
            };
        }
        let bits = self.window_bits;
        let state = self.state.get_or_insert_with(|| pool::take_inflater(bits));
        let mut consumed = 0;
        loop {
            let filled = out.len();
            if filled >= pause_at {
                return Ok(consumed);
            }
            // One byte beyond the limit shows whether the output really exceeds it.
            let room = STEP.min(max.saturating_add(1) - filled.min(max));
            grow::reserve(out, room, max.saturating_add(1));
            out.resize(filled + room, 0);
            let (in_before, out_before) = (state.total_in(), state.total_out());
            let status = state
                .decompress(
                    &input[consumed..],
                    &mut out[filled..],
                    FlushDecompress::Sync,
                )
                .map_err(InflateError::from)?;
            consumed += (state.total_in() - in_before) as usize;
            let written = (state.total_out() - out_before) as usize;
            out.truncate(filled + written);
            if out.len() > max {
                return Err(ProtocolError::MessageTooLong {
                    size: out.len() as u64,
                    max_size: max,
                });
            }
            if status == Status::StreamEnd {
                // A final block ends this deflate stream; the next message starts a new one.
                self.stream_ended = true;
                if let Some(state) = self.state.take() {
                    pool::give_inflater(self.window_bits, state);
                }
                if consumed < input.len() {
                    return Err(InflateError::TrailingData.into());
                }
                return Ok(consumed);
            }
            let stalled = written == 0 && (state.total_in() - in_before) == 0;
            if (consumed == input.len() && written < room) || stalled {
                return Ok(consumed);
            }
        }
    }

    /// Ends a message: inflates the stripped sync-flush tail, then frees or keeps the
    /// window as negotiated.
    pub fn finish(&mut self, out: &mut BytesMut, max: usize) -> Result<(), ProtocolError> {
        if self.stream_ended {
            self.stream_ended = false;
            return Ok(());
        }
        self.inflate(&SYNC_TAIL, out, max)?;
        if self.no_context_takeover {
            if let Some(state) = self.state.take() {
                pool::give_inflater(self.window_bits, state);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate_all(
        inflater: &mut Inflater,
        data: &[u8],
        max: usize,
    ) -> Result<BytesMut, ProtocolError> {
        let mut out = BytesMut::new();
        inflater.inflate(data, &mut out, max)?;
        inflater.finish(&mut out, max)?;
        Ok(out)
    }

    #[test]
    fn pooled_states_start_every_message_afresh() {
        // Without context takeover the same message compresses to the same bytes
        // every time, whether the state is new or borrowed back from the pool.
        let text = b"a message that repeats a message that repeats";
        let mut deflater = Deflater::new(1, 15, true);
        let mut first = BytesMut::new();
        deflater.compress(text, &mut first).unwrap();
        assert!(!deflater.is_allocated(), "given back after the message");
        for _ in 0..3 {
            let mut again = BytesMut::new();
            deflater.compress(text, &mut again).unwrap();
            assert_eq!(again, first);
        }
        let mut inflater = Inflater::new(9, true);
        for _ in 0..3 {
            assert_eq!(&inflate_all(&mut inflater, &first, 1000).unwrap()[..], text);
            assert!(!inflater.is_allocated());
        }
    }

    #[test]
    fn pooled_inflaters_keep_their_window_size() {
        // A 2^9 inflater given back must not serve a 2^15 stream, whose
        // back-references reach further than its window.
        let mut small = BytesMut::new();
        Deflater::new(1, 9, true)
            .compress(b"small window", &mut small)
            .unwrap();
        let far: Vec<u8> = (0..6000u32).map(|i| (i * 7 % 251) as u8).collect();
        let text = [far.as_slice(), far.as_slice()].concat();
        let mut large = BytesMut::new();
        Deflater::new(1, 15, true)
            .compress(&text, &mut large)
            .unwrap();
        for _ in 0..2 {
            let mut narrow = Inflater::new(9, true);
            assert_eq!(
                &inflate_all(&mut narrow, &small, 100).unwrap()[..],
                b"small window"
            );
            let mut wide = Inflater::new(15, true);
            assert_eq!(inflate_all(&mut wide, &large, 1 << 20).unwrap(), text);
        }
    }

    #[test]
    fn inflates_rfc7692_hello_examples() {
        // RFC 7692 §7.2.3.1: "Hello" compressed without context takeover.
        let mut inflater = Inflater::new(15, false);
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(
            &inflate_all(&mut inflater, &hello, 100).unwrap()[..],
            b"Hello"
        );
        // §7.2.3.2: the second "Hello" with context takeover refers back to the first.
        let again = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(
            &inflate_all(&mut inflater, &again, 100).unwrap()[..],
            b"Hello"
        );
    }

    #[test]
    fn inflates_rfc7692_uncompressed_block() {
        // §7.2.3.3: "Hello" in a deflate block with no compression.
        let block = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        let mut inflater = Inflater::new(15, true);
        assert_eq!(
            &inflate_all(&mut inflater, &block, 100).unwrap()[..],
            b"Hello"
        );
    }

    #[test]
    fn inflates_rfc7692_fragmented_message() {
        // §7.2.3.4 splits one compressed "Hello" over two frames.
        let mut inflater = Inflater::new(15, false);
        let mut out = BytesMut::new();
        inflater
            .inflate(&[0xf2, 0x48, 0xcd], &mut out, 100)
            .unwrap();
        inflater
            .inflate(&[0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        inflater.finish(&mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn compresses_hello_like_the_rfc() {
        let mut deflater = Deflater::new(6, 15, false);
        let mut out = BytesMut::new();
        deflater.compress(b"Hello", &mut out).unwrap();
        assert_eq!(&out[..], &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn round_trips_with_context_takeover() {
        let mut deflater = Deflater::new(1, 15, false);
        let mut inflater = Inflater::new(15, false);
        let text = b"the same words again and again and again".repeat(50);
        let mut sizes = vec![];
        for _ in 0..3 {
            let mut wire = BytesMut::new();
            deflater.compress(&text, &mut wire).unwrap();
            sizes.push(wire.len());
            assert_eq!(
                &inflate_all(&mut inflater, &wire, 1 << 20).unwrap()[..],
                &text[..]
            );
        }
        // Later messages reuse the window, so they shrink.
        assert!(sizes[1] < sizes[0]);
    }

    #[test]
    fn frees_state_without_context_takeover() {
        let mut deflater = Deflater::new(1, 9, true);
        let mut inflater = Inflater::new(9, true);
        let mut wire = BytesMut::new();
        deflater.compress(&[7u8; 5000], &mut wire).unwrap();
        assert!(!deflater.is_allocated());
        assert_eq!(
            inflate_all(&mut inflater, &wire, 10_000).unwrap().len(),
            5000
        );
        assert!(!inflater.is_allocated());
    }

    #[test]
    fn stops_a_deflate_bomb_at_the_limit() {
        let mut deflater = Deflater::new(9, 15, false);
        let mut wire = BytesMut::new();
        deflater.compress(&vec![0u8; 50 << 20], &mut wire).unwrap();
        assert!(
            wire.len() < 100 << 10,
            "50 MiB of zeros compress to {} bytes",
            wire.len()
        );
        let mut inflater = Inflater::new(15, false);
        let mut out = BytesMut::new();
        let err = inflater.inflate(&wire, &mut out, 1 << 20).unwrap_err();
        assert!(
            matches!(err, ProtocolError::MessageTooLong { max_size, .. } if max_size == 1 << 20)
        );
        // Growth is geometric, so the buffer never holds more than twice the limit.
        assert!(
            out.capacity() <= 2 << 20,
            "buffer grew to {}",
            out.capacity()
        );
    }

    #[test]
    fn accepts_a_message_of_exactly_the_limit() {
        let mut deflater = Deflater::new(1, 15, false);
        let mut wire = BytesMut::new();
        deflater.compress(&[1u8; 4096], &mut wire).unwrap();
        let mut inflater = Inflater::new(15, false);
        assert_eq!(inflate_all(&mut inflater, &wire, 4096).unwrap().len(), 4096);
    }

    #[test]
    fn rejects_corrupt_data() {
        let mut inflater = Inflater::new(15, false);
        let mut out = BytesMut::new();
        let err = inflater
            .inflate(&[0xff, 0xff, 0xff, 0xff], &mut out, 100)
            .unwrap_err();
        // zlib's own error is kept, not flattened to text.
        let ProtocolError::Inflate(InflateError::Corrupt(zlib)) = &err else {
            panic!("{err:?}");
        };
        let inflate = std::error::Error::source(&err).expect("a source");
        let source = inflate.source().expect("zlib's error");
        assert!(source.downcast_ref::<flate2::DecompressError>().is_some());
        assert_eq!(source.to_string(), zlib.to_string());
        assert_eq!(err.close_code(), crate::CloseCode::INVALID_PAYLOAD);
    }
}

//! The read side: bytes in, messages out, every RFC 6455 rule checked on the way.
//!
//! Payloads are unmasked and UTF-8-checked in place as they arrive, so invalid text
//! fails before the rest of its frame is even read, and a single-frame message is
//! handed out as a slice of the read buffer without a copy. Compressed data is
//! inflated as it arrives and its buffer released, so memory is bounded by the
//! inflated-size limit, never by what the peer claims.

use bytes::{Buf, Bytes, BytesMut};

use crate::close::CloseFrame;
use crate::config::{Config, Role};
use crate::deflate::Inflater;
use crate::error::ProtocolError;
use crate::frame::{apply_mask, FrameHeader, OpCode};
use crate::grow;
use crate::message::Message;
use crate::utf8::{Utf8Bytes, Utf8Validator};

/// The frame being read.
#[derive(Debug)]
struct FrameState {
    header: FrameHeader,
    len: usize,
    /// Payload bytes already unmasked and checked (and, when inflating, consumed).
    done: usize,
}

/// The data message being assembled from one or more frames.
#[derive(Debug)]
struct MessageState {
    text: bool,
    compressed: bool,
    payload: BytesMut,
    fragments: usize,
    utf8: Utf8Validator,
}

/// The limits the decoder enforces: the part of [`Config`] it needs, kept
/// instead of the whole so every connection's decoder stays small.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_frame_size: usize,
    max_message_size: usize,
    /// `u32`s, so the two share a word: a larger fragment limit means none in
    /// practice, and the hold limit is kept in KiB (`u32::MAX`: none).
    max_fragments: u32,
    /// Inflated KiB a message may hold before inflating pauses
    /// ([`Decoder::set_hold_limit`]).
    hold_limit_kib: u32,
}

/// Payloads up to this size are copied out of a shared read block rather than
/// sliced from it (see [`Decoder::receive_bytes`]).
const COPY_OUT_MAX: usize = 1024;

/// See [`Decoder::take_payload`]; a function so it can borrow the buffer while
/// the message in progress is borrowed too.
fn take_payload(buf: &mut BytesMut, borrowed: bool, len: usize) -> BytesMut {
    if borrowed && len <= COPY_OUT_MAX {
        let own = BytesMut::from(&buf[..len]);
        buf.advance(len);
        own
    } else {
        buf.split_to(len)
    }
}

/// Decodes one connection's incoming byte stream into [`Message`]s.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: Limits,
    buf: BytesMut,
    frame: Option<FrameState>,
    /// Boxed: an idle connection has none, nor does a message of one whole
    /// frame (the fast path); the others pay a small allocation per message.
    message: Option<Box<MessageState>>,
    /// Boxed: most connections do not compress, and they should not pay for it.
    inflater: Option<Box<Inflater>>,
    /// A close frame was received or an error found: nothing more is decoded.
    finished: bool,
    /// Inflating paused at `hold_limit` with input waiting.
    wants_room: bool,
    /// `buf` is a slice of a read block other connections' reads share
    /// ([`Self::receive_bytes`]): a partial frame left in it is copied out
    /// rather than keep the whole block alive while it waits.
    borrowed: bool,
}

impl Decoder {
    /// A decoder for `role`, inflating with `inflater` when permessage-deflate was
    /// negotiated.
    pub fn new(role: Role, config: Config, inflater: Option<Inflater>) -> Self {
        Self {
            role,
            limits: Limits {
                max_frame_size: config.max_frame_size,
                max_message_size: config.max_message_size,
                max_fragments: u32::try_from(config.max_fragments).unwrap_or(u32::MAX),
                hold_limit_kib: u32::MAX,
            },
            buf: BytesMut::new(),
            frame: None,
            message: None,
            inflater: inflater.map(Box::new),
            finished: false,
            wants_room: false,
            borrowed: false,
        }
    }

    /// Bytes of the peer's data this decoder holds: input not yet consumed
    /// plus the message being assembled (inflated, when compressed).
    pub fn held(&self) -> usize {
        self.buf.len() + self.message.as_ref().map_or(0, |m| m.payload.len())
    }

    /// The most bytes the message in progress may yet make this decoder hold
    /// (input buffered beyond it aside): the frame's length for a message of
    /// one uncompressed frame, the message size limit for a compressed or
    /// fragmented one, whose size is not known until it ends. `None` between
    /// messages. A caller that shares memory between connections can reserve
    /// this much before reading on, so no two connections each hold part of
    /// what they need and wait for each other.
    pub fn message_bound(&self) -> Option<usize> {
        let message = self.message.as_ref()?;
        match &self.frame {
            Some(frame) if !message.compressed && frame.header.fin => {
                Some(message.payload.len() + frame.len)
            }
            _ => Some(self.limits.max_message_size),
        }
    }

    /// Lets a compressed message grow to `bytes` inflated before decoding
    /// pauses with [`Self::wants_room`] (default: no limit but the message
    /// size). A caller sharing memory between connections raises it as it
    /// finds room; uncompressed data grows only as fast as it is read, so the
    /// caller bounds that by reading.
    pub fn set_hold_limit(&mut self, bytes: usize) {
        self.limits.hold_limit_kib = u32::try_from(bytes >> 10).unwrap_or(u32::MAX);
    }

    /// The hold limit in bytes (a multiple of 1 KiB, at most the one set).
    fn hold_limit(&self) -> usize {
        match self.limits.hold_limit_kib {
            u32::MAX => usize::MAX,
            kib => (kib as usize) << 10,
        }
    }

    /// Stops decoding and lets go of everything held: the caller is failing
    /// the connection for a reason of its own (no room, a timeout).
    pub fn abandon(&mut self) {
        self.finished = true;
        self.frame = None;
        self.message = None;
        self.buf = BytesMut::new();
        self.borrowed = false;
        self.wants_room = false;
    }

    /// Whether the last [`Self::poll`] stopped at the hold limit with
    /// compressed input still waiting: poll again once the limit is raised.
    pub fn wants_room(&self) -> bool {
        self.wants_room
    }

    /// The buffer to read socket bytes into (append at the end).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes the frame in progress needs, as a hint for read sizes.
    pub fn frame_remaining(&self) -> usize {
        match &self.frame {
            Some(frame) if !self.streams(frame) => frame.len.saturating_sub(self.buf.len()),
            _ => 0,
        }
    }

    /// Whether a close frame arrived or the stream failed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Appends received bytes (for callers that do not read into [`Self::buffer_mut`]).
    pub fn receive(&mut self, data: &[u8]) {
        if !self.buf.is_empty() && self.buf.capacity() - self.buf.len() < data.len() {
            // The unconsumed tail of an earlier read (a partial frame) sits
            // behind everything already handed out; growing that buffer in
            // place would copy the consumed bytes too. Start a new one with
            // just the tail.
            let mut fresh = BytesMut::with_capacity(self.buf.len() + data.len());
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
            self.borrowed = false;
        }
        self.buf.extend_from_slice(data);
    }

    /// Appends received bytes given as a buffer of their own, taken without a
    /// copy when nothing is buffered (the usual case: a read that starts at a
    /// frame boundary). `data` may be a slice of a larger block shared with
    /// other buffers: messages over 1 KiB decoded from it share it too (keep
    /// one for long and it keeps the block; copy it to let go), smaller ones
    /// are copied out, and so is a partial frame left over (by [`Self::poll`]).
    pub fn receive_bytes(&mut self, data: BytesMut) {
        if self.buf.is_empty() {
            self.buf = data;
            self.borrowed = true;
        } else {
            self.receive(&data);
        }
    }

    /// Decodes the next message or control frame. `Ok(None)` means more bytes are
    /// needed (or the stream is finished). An error is final: close the connection
    /// with [`ProtocolError::close_code`].
    pub fn poll(&mut self) -> Result<Option<Message>, ProtocolError> {
        if self.finished {
            return Ok(None);
        }
        self.wants_room = false;
        let result = self.poll_inner();
        if result.is_err() {
            self.finished = true;
            self.frame = None;
            self.message = None;
        }
        if self.buf.is_empty() {
            // Everything was consumed: let go of the spare capacity, so an
            // idle connection holds no input buffer. Even with none left
            // the buffer may be the tail of a delivered message's
            // allocation (a frame read into room reserved for exactly it),
            // which it would keep alive for as long as the connection is
            // open; a fresh empty buffer holds nothing.
            self.buf = BytesMut::new();
            self.borrowed = false;
        } else if self.borrowed && matches!(result, Ok(None)) {
            // Waiting for the rest of a frame: keep just its start.
            self.buf = BytesMut::from(&self.buf[..]);
            self.borrowed = false;
        }
        result
    }

    fn poll_inner(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            if self.frame.is_none() {
                if let Some(message) = self.take_whole_frame()? {
                    return Ok(Some(message));
                }
                let Some((header, header_len)) = FrameHeader::parse(&self.buf)? else {
                    return Ok(None);
                };
                self.check_header(&header)?;
                self.buf.advance(header_len);
                self.frame = Some(FrameState {
                    header,
                    len: header.len as usize,
                    done: 0,
                });
            }
            if !self.advance_payload()? {
                return Ok(None);
            }
            let frame = self.frame.take().expect("frame in progress");
            if let Some(message) = self.finish_frame(frame)? {
                return Ok(Some(message));
            }
        }
    }

    /// The common case in one step: a final, uncompressed text or binary frame
    /// under 64 KiB, wholly buffered, with no fragmented message in progress,
    /// is unmasked, checked and handed out without the per-frame bookkeeping
    /// of the general path (its header read straight from the bytes). `Ok(None)`
    /// leaves everything else (a rule broken included) to that path, which
    /// reports it, so both agree on every error.
    fn take_whole_frame(&mut self) -> Result<Option<Message>, ProtocolError> {
        let buf = &self.buf[..];
        // FIN set, RSV bits clear, opcode text or binary.
        let text = match buf.first() {
            Some(0x81) => true,
            Some(0x82) => false,
            _ => return Ok(None),
        };
        let Some(&second) = buf.get(1) else {
            return Ok(None);
        };
        let masked = second & 0x80 != 0;
        if masked != (self.role == Role::Server) || self.message.is_some() {
            return Ok(None);
        }
        let (len, mut header_len) = match second & 0x7f {
            126 => match buf.get(2..4) {
                Some(&[high, low]) => (usize::from(u16::from_be_bytes([high, low])), 4),
                _ => return Ok(None),
            },
            127 => return Ok(None),
            short => (usize::from(short), 2),
        };
        let key = if masked {
            let Some(&[a, b, c, d]) = buf.get(header_len..header_len + 4) else {
                return Ok(None);
            };
            header_len += 4;
            Some([a, b, c, d])
        } else {
            None
        };
        if len > self.limits.max_frame_size.min(self.limits.max_message_size)
            || header_len + len > buf.len()
        {
            return Ok(None);
        }
        self.buf.advance(header_len);
        let mut payload = self.take_payload(len);
        if let Some(key) = key {
            apply_mask(&mut payload, key, 0);
        }
        let payload = payload.freeze();
        if !text {
            return Ok(Some(Message::Binary(payload)));
        }
        // Most text is ASCII, and checking that is a word at a time.
        if !payload.is_ascii() && simdutf8::basic::from_utf8(&payload).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(Some(Message::Text(Utf8Bytes::from_validated(payload))))
    }

    /// Whether this frame's payload is consumed as it arrives rather than kept
    /// in the buffer until the frame is complete: compressed data (inflated
    /// as it comes), and the frames of a fragmented message, appended to it
    /// as they come. A fragment kept whole and then appended would briefly
    /// need room for itself twice (in the buffer, and in the message grown
    /// for it): two halves of a 60 MiB message cost 120 MiB that way.
    /// A message of one uncompressed frame is kept whole and handed out
    /// without a copy.
    fn streams(&self, frame: &FrameState) -> bool {
        !frame.header.opcode.is_control()
            && self
                .message
                .as_ref()
                .is_some_and(|m| m.compressed || m.fragments > 1 || !frame.header.fin)
    }

    fn check_header(&mut self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let opcode = header.opcode;
        if header.rsv & 0b011 != 0 {
            return Err(ProtocolError::ReservedBits { rsv: header.rsv });
        }
        let compressed = header.rsv & FrameHeader::RSV1 != 0;
        if compressed {
            match opcode {
                OpCode::Continuation => return Err(ProtocolError::CompressedContinuation),
                OpCode::Text | OpCode::Binary if self.inflater.is_some() => {}
                _ => return Err(ProtocolError::ReservedBits { rsv: header.rsv }),
            }
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            // RFC 6455 §5.5: control frame payloads are at most 125 bytes.
            if header.len > 125 {
                return Err(ProtocolError::ControlFrameTooLong { len: header.len });
            }
            return Ok(());
        }
        if header.len > self.limits.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLong {
                size: header.len,
                max_size: self.limits.max_frame_size,
            });
        }
        match (opcode, &mut self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(message)) => {
                message.fragments += 1;
                if message.fragments > self.limits.max_fragments as usize {
                    return Err(ProtocolError::TooManyFragments {
                        max: self.limits.max_fragments as usize,
                    });
                }
            }
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (_, None) => {
                self.message = Some(Box::new(MessageState {
                    text: opcode == OpCode::Text,
                    compressed,
                    payload: BytesMut::new(),
                    fragments: 1,
                    utf8: Utf8Validator::new(),
                }))
            }
        }
        let message = self.message.as_ref().expect("message in progress");
        let size = message.payload.len() as u64 + header.len;
        if !message.compressed && size > self.limits.max_message_size as u64 {
            return Err(ProtocolError::MessageTooLong {
                size,
                max_size: self.limits.max_message_size,
            });
        }
        Ok(())
    }

    /// Processes the payload bytes that have arrived; true once the frame is whole.
    fn advance_payload(&mut self) -> Result<bool, ProtocolError> {
        let frame = self.frame.as_ref().expect("frame in progress");
        let streams = self.streams(frame);
        let hold_limit = self.hold_limit();
        let frame = self.frame.as_mut().expect("frame in progress");
        if streams {
            let n = self.buf.len().min(frame.len - frame.done);
            if let Some(key) = frame.header.mask {
                apply_mask(&mut self.buf[..n], key, frame.done);
            }
            let message = self.message.as_mut().expect("message in progress");
            if !message.compressed {
                let before = message.payload.len();
                grow::reserve(&mut message.payload, n, self.limits.max_message_size);
                message.payload.extend_from_slice(&self.buf[..n]);
                if message.text {
                    message.utf8.feed(&message.payload[before..])?;
                }
                self.buf.advance(n);
                frame.done += n;
                return Ok(frame.done == frame.len);
            }
            let inflater = self.inflater.as_mut().expect("compression negotiated");
            let before = message.payload.len();
            let consumed = inflater.inflate_until(
                &self.buf[..n],
                &mut message.payload,
                self.limits.max_message_size,
                hold_limit,
            )?;
            if message.text {
                message.utf8.feed(&message.payload[before..])?;
            }
            if consumed < n {
                if message.payload.len() < hold_limit {
                    return Err(crate::error::InflateError::Stalled.into());
                }
                // Paused for room: mask the rest again (the mask is its own
                // inverse), so it is unmasked afresh when decoding resumes
                // and a frame in progress needs no more state than before.
                if let Some(key) = frame.header.mask {
                    apply_mask(&mut self.buf[consumed..n], key, frame.done + consumed);
                }
                self.wants_room = true;
            }
            self.buf.advance(consumed);
            frame.done += consumed;
            return Ok(frame.done == frame.len);
        }
        let available = self.buf.len().min(frame.len);
        if available > frame.done {
            let fresh = &mut self.buf[frame.done..available];
            if let Some(key) = frame.header.mask {
                apply_mask(fresh, key, frame.done);
            }
            if let Some(message) = self
                .message
                .as_mut()
                .filter(|m| m.text && !frame.header.opcode.is_control())
            {
                message.utf8.feed(fresh)?;
            }
            frame.done = available;
        }
        Ok(frame.done == frame.len)
    }

    /// Takes the next `len` buffered bytes as a payload. A small one taken
    /// from a shared read block gets an allocation of its own: a copy that
    /// costs about what sharing does, and a kept message then holds its own
    /// bytes, not the block.
    fn take_payload(&mut self, len: usize) -> BytesMut {
        take_payload(&mut self.buf, self.borrowed, len)
    }

    fn finish_frame(&mut self, frame: FrameState) -> Result<Option<Message>, ProtocolError> {
        let opcode = frame.header.opcode;
        if opcode.is_control() {
            let payload = self.take_payload(frame.len).freeze();
            return Ok(Some(match opcode {
                OpCode::Ping => Message::Ping(payload),
                OpCode::Pong => Message::Pong(payload),
                _ => {
                    let close = CloseFrame::parse(&payload)?;
                    self.finished = true;
                    Message::Close(close)
                }
            }));
        }
        let streamed = self.streams(&frame);
        let message = self.message.as_mut().expect("message in progress");
        if !streamed {
            // A message of one frame: keep its bytes without copying.
            message.payload = take_payload(&mut self.buf, self.borrowed, frame.len);
        }
        if !frame.header.fin {
            return Ok(None);
        }
        let mut message = self.message.take().expect("message in progress");
        if message.compressed {
            let before = message.payload.len();
            let inflater = self.inflater.as_mut().expect("compression negotiated");
            inflater.finish(&mut message.payload, self.limits.max_message_size)?;
            if message.text {
                message.utf8.feed(&message.payload[before..])?;
            }
        }
        let payload: Bytes = message.payload.freeze();
        Ok(Some(if message.text {
            message.utf8.finish()?;
            Message::Text(Utf8Bytes::from_validated(payload))
        } else {
            Message::Binary(payload)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseCode;
    use crate::deflate::Deflater;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame: header with mask, masked payload.
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let header = FrameHeader {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 7,
            opcode: OpCode::from_u8(first & 0xf).unwrap(),
            mask: Some(KEY),
            len: payload.len() as u64,
        };
        header.encode(&mut out);
        let mut body = payload.to_vec();
        apply_mask(&mut body, KEY, 0);
        out.extend_from_slice(&body);
        out.to_vec()
    }

    fn server() -> Decoder {
        Decoder::new(Role::Server, Config::default(), None)
    }

    fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Result<Vec<Message>, ProtocolError> {
        decoder.receive(bytes);
        let mut out = vec![];
        while let Some(message) = decoder.poll()? {
            out.push(message);
        }
        Ok(out)
    }

    #[test]
    fn decodes_rfc_masked_hello() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(&mut server(), &bytes).unwrap(),
            vec![Message::text("Hello")]
        );
    }

    #[test]
    fn decodes_rfc_unmasked_hello_as_client() {
        let mut client = Decoder::new(Role::Client, Config::default(), None);
        assert_eq!(
            decode_all(&mut client, b"\x81\x05Hello").unwrap(),
            vec![Message::text("Hello")]
        );
    }

    /// Decodes `bytes` fed one at a time, so no frame is ever whole on arrival
    /// and only the general path runs.
    fn decode_piecewise(
        decoder: &mut Decoder,
        bytes: &[u8],
    ) -> Result<Vec<Message>, ProtocolError> {
        let mut out = vec![];
        for byte in bytes {
            out.extend(decode_all(decoder, std::slice::from_ref(byte))?);
        }
        Ok(out)
    }

    #[test]
    fn whole_frames_and_piecewise_input_decode_alike() {
        let small = || Decoder::new(Role::Server, Config::default().max_message_size(8), None);
        let mut unmasked = b"\x81\x02hi".to_vec();
        unmasked.splice(0..0, masked(0x82, b"ok"));
        type NewDecoder = fn() -> Decoder;
        let cases: Vec<(Vec<u8>, NewDecoder)> = vec![
            (masked(0x81, b"Hello"), server),
            (masked(0x82, &[0, 1, 2, 0xff]), server),
            (masked(0x81, b""), server),
            (masked(0x81, "h\u{e9}llo \u{20ac}".as_bytes()), server),
            (masked(0x81, &[b'a', 0xff, b'b']), server),
            // A code point cut off by the end of the message.
            (masked(0x81, &[b'a', 0xe2, 0x82]), server),
            (unmasked, server),
            (masked(0xa1, b"rsv2"), server),
            (masked(0xc1, b"rsv1 without deflate"), server),
            (masked(0x81, b"nine byte"), small),
            (
                [masked(0x01, b"frag"), masked(0x81, b"new")].concat(),
                server,
            ),
            (
                [masked(0x81, b"one"), masked(0x82, b"two")].concat(),
                server,
            ),
        ];
        for (bytes, decoder) in cases {
            assert_eq!(
                decode_all(&mut decoder(), &bytes),
                decode_piecewise(&mut decoder(), &bytes),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn adopts_a_read_block_and_copies_out_small_payloads_and_a_partial_frame() {
        let large = vec![7u8; COPY_OUT_MAX + 1];
        let second = masked(0x82, b"second message");
        let split = 5;
        let mut block = BytesMut::from(&masked(0x82, &large)[..]);
        block.extend_from_slice(&masked(0x82, b"small"));
        block.extend_from_slice(&second[..split]);
        let range = block.as_ptr_range();
        let mut decoder = server();
        decoder.receive_bytes(block);
        let Ok(Some(Message::Binary(payload))) = decoder.poll() else {
            panic!("the whole frame decodes");
        };
        assert_eq!(payload, large);
        assert!(range.contains(&payload.as_ptr()), "taken without a copy");
        let kept = crate::PreparedMessage::new(Message::Binary(payload)).unwrap();
        let Message::Binary(kept) = kept.message() else {
            unreachable!()
        };
        assert!(
            !range.contains(&kept.as_ptr()),
            "a prepared message owns its bytes"
        );
        assert_eq!(kept, &large);
        let Ok(Some(Message::Binary(payload))) = decoder.poll() else {
            panic!("the whole frame decodes");
        };
        assert_eq!(&payload[..], b"small");
        assert!(
            !range.contains(&payload.as_ptr()),
            "a small payload is its own"
        );
        assert!(matches!(decoder.poll(), Ok(None)));
        assert_eq!(decoder.buffered(), split);
        assert!(
            !range.contains(&decoder.buffer_mut().as_ptr()),
            "the partial frame no longer holds the block"
        );
        decoder.receive_bytes(BytesMut::from(&second[split..]));
        assert_eq!(
            decoder.poll().unwrap(),
            Some(Message::Binary(Bytes::from_static(b"second message")))
        );
        assert!(matches!(decoder.poll(), Ok(None)));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn decodes_byte_by_byte() {
        let mut bytes = masked(0x01, b"Hel");
        bytes.extend(masked(0x89, b"ping"));
        bytes.extend(masked(0x80, b"lo"));
        let mut decoder = server();
        let mut out = vec![];
        for byte in bytes {
            out.extend(decode_all(&mut decoder, &[byte]).unwrap());
        }
        assert_eq!(
            out,
            vec![
                Message::Ping(Bytes::from_static(b"ping")),
                Message::text("Hello")
            ]
        );
    }

    #[test]
    fn reassembles_fragments_with_interleaved_control_frames() {
        // RFC 6455 §5.4: control frames may be injected in the middle of a fragmented message.
        let mut bytes = masked(0x02, b"ab");
        bytes.extend(masked(0x8a, b""));
        bytes.extend(masked(0x00, b"cd"));
        bytes.extend(masked(0x80, b"ef"));
        let out = decode_all(&mut server(), &bytes).unwrap();
        assert_eq!(
            out,
            vec![Message::Pong(Bytes::new()), Message::binary(&b"abcdef"[..])]
        );
    }

    #[test]
    fn rejects_unmasked_client_frame() {
        assert_eq!(
            decode_all(&mut server(), b"\x81\x05Hello"),
            Err(ProtocolError::UnmaskedFrame)
        );
    }

    #[test]
    fn rejects_masked_server_frame() {
        let mut client = Decoder::new(Role::Client, Config::default(), None);
        assert_eq!(
            decode_all(&mut client, &masked(0x81, b"hi")),
            Err(ProtocolError::MaskedFrame)
        );
    }

    #[test]
    fn rejects_rsv_bits_without_extension() {
        for first in [0xc1, 0xa1, 0x91, 0xf1] {
            let err = decode_all(&mut server(), &masked(first, b"x")).unwrap_err();
            assert!(
                matches!(err, ProtocolError::ReservedBits { .. }),
                "{first:#x}"
            );
            assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            let bytes = [0x80 | op, 0x80, 1, 2, 3, 4];
            assert_eq!(
                decode_all(&mut server(), &bytes),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn rejects_fragmented_and_oversized_control_frames() {
        assert_eq!(
            decode_all(&mut server(), &masked(0x09, b"")),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            decode_all(&mut server(), &masked(0x89, &[0; 126])),
            Err(ProtocolError::ControlFrameTooLong { len: 126 })
        );
        assert_eq!(
            decode_all(&mut server(), &masked(0x89, &[0; 125]))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn rejects_continuation_without_start_and_start_without_continuation() {
        assert_eq!(
            decode_all(&mut server(), &masked(0x80, b"x")),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut bytes = masked(0x01, b"a");
        bytes.extend(masked(0x81, b"b"));
        assert_eq!(
            decode_all(&mut server(), &bytes),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn fails_fast_on_invalid_utf8_before_the_frame_ends() {
        let bytes = masked(0x81, b"valid then \xff and much more text to come");
        let mut decoder = server();
        // Only the first 20 payload bytes have arrived: the invalid byte is among them.
        assert_eq!(
            decode_all(&mut decoder, &bytes[..6 + 20]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn rejects_invalid_utf8_across_fragments() {
        let mut bytes = masked(0x01, b"\xce");
        bytes.extend(masked(0x80, b"\x28"));
        let err = decode_all(&mut server(), &bytes).unwrap_err();
        assert_eq!(
            (err.clone(), err.close_code()),
            (ProtocolError::InvalidUtf8, CloseCode::INVALID_PAYLOAD)
        );
    }

    #[test]
    fn accepts_utf8_split_across_fragments() {
        let text = "κόσμε".as_bytes();
        let mut bytes = masked(0x01, &text[..3]);
        bytes.extend(masked(0x80, &text[3..]));
        assert_eq!(
            decode_all(&mut server(), &bytes).unwrap(),
            vec![Message::text("κόσμε")]
        );
    }

    #[test]
    fn enforces_frame_message_and_fragment_limits() {
        let config = Config::default()
            .max_frame_size(10)
            .max_message_size(15)
            .max_fragments(3);
        let mut decoder = Decoder::new(Role::Server, config.clone(), None);
        let err = decode_all(&mut decoder, &masked(0x82, &[0; 11])).unwrap_err();
        assert_eq!(
            (err.clone(), err.close_code()),
            (
                ProtocolError::FrameTooLong {
                    size: 11,
                    max_size: 10
                },
                CloseCode::TOO_BIG
            )
        );

        let mut decoder = Decoder::new(Role::Server, config.clone(), None);
        let mut bytes = masked(0x02, &[0; 10]);
        bytes.extend(masked(0x80, &[0; 6]));
        assert_eq!(
            decode_all(&mut decoder, &bytes),
            Err(ProtocolError::MessageTooLong {
                size: 16,
                max_size: 15
            })
        );

        let mut decoder = Decoder::new(Role::Server, config, None);
        let mut bytes = masked(0x02, b"");
        for _ in 0..3 {
            bytes.extend(masked(0x00, b""));
        }
        assert_eq!(
            decode_all(&mut decoder, &bytes),
            Err(ProtocolError::TooManyFragments { max: 3 })
        );
    }

    #[test]
    fn rejects_a_64_bit_length_above_the_limit_before_reading_it() {
        let bytes = [
            0x82, 0xff, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 1, 2, 3, 4,
        ];
        assert!(matches!(
            decode_all(&mut server(), &bytes),
            Err(ProtocolError::FrameTooLong { .. })
        ));
    }

    #[test]
    fn parses_close_frames_and_stops() {
        let mut bytes = masked(0x88, b"\x03\xe8bye");
        bytes.extend(masked(0x81, b"after close"));
        let out = decode_all(&mut server(), &bytes).unwrap();
        assert_eq!(
            out,
            vec![Message::Close(Some(CloseFrame::new(1000, "bye")))]
        );
    }

    #[test]
    fn rejects_bad_close_payloads() {
        assert_eq!(
            decode_all(&mut server(), &masked(0x88, b"\x03")),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            decode_all(&mut server(), &masked(0x88, b"\x03\xed")),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            decode_all(&mut server(), &masked(0x88, b"\x03\xe8\xff")),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    fn compressed_server() -> Decoder {
        Decoder::new(
            Role::Server,
            Config::default().max_message_size(1 << 20),
            Some(Inflater::new(15, false)),
        )
    }

    #[test]
    fn inflates_compressed_messages_split_over_fragments() {
        let mut deflater = Deflater::new(6, 15, false);
        let mut wire = BytesMut::new();
        let text = "compress me ".repeat(100);
        deflater.compress(text.as_bytes(), &mut wire).unwrap();
        let (a, b) = wire.split_at(wire.len() / 2);
        let mut bytes = masked(0x41, a);
        bytes.extend(masked(0x80, b));
        bytes.extend(masked(0x81, b"plain"));
        let out = decode_all(&mut compressed_server(), &bytes).unwrap();
        assert_eq!(
            out,
            vec![Message::text(text.as_str()), Message::text("plain")]
        );
    }

    #[test]
    fn rejects_rsv1_on_continuation_and_control_frames() {
        let mut bytes = masked(0x01, b"a");
        bytes.extend(masked(0xc0, b"b"));
        assert_eq!(
            decode_all(&mut compressed_server(), &bytes),
            Err(ProtocolError::CompressedContinuation)
        );
        assert!(matches!(
            decode_all(&mut compressed_server(), &masked(0xc9, b"")),
            Err(ProtocolError::ReservedBits { .. })
        ));
    }

    #[test]
    fn stops_a_deflate_bomb_with_1009() {
        let mut deflater = Deflater::new(9, 15, false);
        let mut wire = BytesMut::new();
        deflater.compress(&vec![b'a'; 20 << 20], &mut wire).unwrap();
        let mut decoder = compressed_server();
        let err = decode_all(&mut decoder, &masked(0xc2, &wire)).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::TOO_BIG);
    }

    #[test]
    fn stays_small() {
        let size = std::mem::size_of::<Decoder>();
        assert!(size <= 152, "Decoder is {size} bytes");
    }

    #[test]
    fn pauses_inflating_at_the_hold_limit_until_it_is_raised() {
        let mut deflater = Deflater::new(6, 15, false);
        let mut wire = BytesMut::new();
        let text: String = (0..200_000u32)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        deflater.compress(text.as_bytes(), &mut wire).unwrap();
        let mut decoder = compressed_server();
        decoder.set_hold_limit(64 << 10);
        decoder.receive(&masked(0xc1, &wire));
        assert_eq!(decoder.poll(), Ok(None));
        assert!(decoder.wants_room());
        let held = decoder.held();
        assert!(
            held >= 64 << 10 && held < (64 << 10) + wire.len() + (32 << 10),
            "{held}"
        );
        let mut raised = 64 << 10;
        let message = loop {
            raised += 64 << 10;
            decoder.set_hold_limit(raised);
            if let Some(message) = decoder.poll().unwrap() {
                break message;
            }
            assert!(decoder.wants_room(), "paused only for room");
        };
        assert_eq!(message, Message::text(text.as_str()));
        assert!(!decoder.wants_room());
        assert_eq!(decoder.held(), 0);
    }

    /// A frame read into room reserved for exactly it leaves the input buffer
    /// empty with no capacity; that buffer must not keep the delivered
    /// message's allocation alive for the life of the connection.
    #[test]
    fn a_delivered_message_owns_its_allocation_alone() {
        let message = Message::binary(vec![5u8; 200_000]);
        let mut frame = BytesMut::new();
        crate::encoder::Encoder::new(Role::Client, None, 0)
            .encode(&message, Some([1, 2, 3, 4]), &mut frame)
            .unwrap();
        let mut decoder = Decoder::new(Role::Server, Config::default(), None);
        let buf = decoder.buffer_mut();
        buf.reserve(frame.len());
        buf.extend_from_slice(&frame);
        let Some(Message::Binary(payload)) = decoder.poll().unwrap() else {
            panic!("a binary message");
        };
        assert_eq!(payload.len(), 200_000);
        assert!(
            payload.try_into_mut().is_ok(),
            "the decoder still shares the message's allocation"
        );
    }

    /// The frames of a fragmented message are appended to it as they arrive,
    /// so reads go in chunks (no frame is kept whole first) and the message
    /// comes out whole, checked as UTF-8 across the fragments.
    #[test]
    fn fragments_stream_into_their_message() {
        let text = "ünïcödé ".repeat(40_000);
        let bytes = text.as_bytes();
        let (first, rest) = bytes.split_at(100_001); // inside a character
        let mut wire = masked(0x01, first);
        wire.extend(masked(0x80, rest));
        let mut decoder = Decoder::new(Role::Server, Config::default(), None);
        let mut out = None;
        for chunk in wire.chunks(4096) {
            decoder.receive(chunk);
            if let Some(message) = decoder.poll().unwrap() {
                out = Some(message);
            }
            assert_eq!(decoder.frame_remaining(), 0, "no frame is read whole");
            assert!(decoder.buffered() < 4096 + 14);
        }
        assert_eq!(out, Some(Message::text(text.clone())));
        let mut bad = masked(0x01, first);
        bad.extend(masked(0x80, b"\xff"));
        let mut decoder = Decoder::new(Role::Server, Config::default(), None);
        decoder.receive(&bad);
        assert_eq!(decoder.poll(), Err(ProtocolError::InvalidUtf8));
    }
}

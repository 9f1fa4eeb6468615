//! The write side: messages in, frame bytes out.

use bytes::{Bytes, BytesMut};

use crate::close::MAX_CLOSE_REASON;
use crate::config::Role;
use crate::deflate::Deflater;
use crate::error::ProtocolError;
use crate::frame::{apply_mask, FrameHeader, OpCode};
use crate::message::Message;
use crate::prepared::PreparedMessage;

/// Encodes one connection's outgoing messages, compressing them when
/// permessage-deflate was negotiated.
#[derive(Debug)]
pub struct Encoder {
    role: Role,
    /// Boxed: most connections do not compress, and they should not pay for it.
    deflater: Option<Box<Deflater>>,
    /// Smallest payload compressed (a `u32`: every connection carries it).
    threshold: u32,
}

impl Encoder {
    /// An encoder for `role`; `deflater` and `threshold` come from the negotiation.
    pub fn new(role: Role, deflater: Option<Deflater>, threshold: usize) -> Self {
        Self {
            role,
            deflater: deflater.map(Box::new),
            threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
        }
    }

    /// The side this encoder writes for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether a data message of `len` payload bytes goes out as its plain
    /// (unmasked, uncompressed) frame: the server side, below the
    /// compression threshold or without compression. Such a frame is the same
    /// bytes on every connection, so a sender may copy one framed elsewhere
    /// ([`PreparedMessage::plain_frame_into`]).
    #[inline]
    pub fn sends_plain(&self, len: usize) -> bool {
        self.role == Role::Server && (self.deflater.is_none() || len < self.threshold as usize)
    }

    /// Appends `message` to `out` as one frame. A client passes a fresh random
    /// masking key per frame in `mask` (RFC 6455 §5.3); a server passes `None`.
    pub fn encode(
        &mut self,
        message: &Message,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let mask = match self.role {
            Role::Client => Some(mask.unwrap_or_default()),
            Role::Server => None,
        };
        if self.write_plain_data(message, mask, out) {
            return Ok(());
        }
        self.encode_fragment(message, true, true, mask, out)
    }

    /// The common case in one step: a whole text or binary message under
    /// 64 KiB that goes out uncompressed is one frame with a short header,
    /// appended without the general path's header builder. Returns false,
    /// having written nothing, for anything else.
    #[inline]
    fn write_plain_data(
        &self,
        message: &Message,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> bool {
        let (opcode, payload): (OpCode, &[u8]) = match message {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
            _ => return false,
        };
        let len = payload.len();
        if self.deflater.is_some() && len >= self.threshold as usize {
            return false;
        }
        let first = 0x80 | opcode.as_u8();
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let key_len = if mask.is_some() { 4 } else { 0 };
        match len {
            0..=125 => {
                out.reserve(2 + key_len + len);
                out.extend_from_slice(&[first, mask_bit | len as u8]);
            }
            126..=0xffff => {
                out.reserve(4 + key_len + len);
                let [high, low] = (len as u16).to_be_bytes();
                out.extend_from_slice(&[first, mask_bit | 126, high, low]);
            }
            _ => return false,
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                let start = out.len();
                out.extend_from_slice(payload);
                apply_mask(&mut out[start..], key, 0);
            }
            None => out.extend_from_slice(payload),
        }
        true
    }

    /// Appends one frame of a message that may span several: `first` picks the data
    /// opcode (else continuation), `fin` ends the message. Compression applies only
    /// to whole messages sent with `first && fin`; control messages must be whole.
    pub fn encode_fragment(
        &mut self,
        message: &Message,
        first: bool,
        fin: bool,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let mask = match self.role {
            Role::Client => Some(mask.unwrap_or_default()),
            Role::Server => None,
        };
        let (opcode, payload): (OpCode, &[u8]) = match message {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
            Message::Ping(bytes) => (OpCode::Ping, bytes),
            Message::Pong(bytes) => (OpCode::Pong, bytes),
            Message::Close(frame) => {
                let mut body = BytesMut::new();
                if let Some(frame) = frame {
                    if !frame.code.is_allowed_on_wire() {
                        return Err(ProtocolError::InvalidCloseCode(frame.code.0));
                    }
                    if frame.reason.len() > MAX_CLOSE_REASON {
                        return Err(ProtocolError::ControlFrameTooLong {
                            len: 2 + frame.reason.len() as u64,
                        });
                    }
                    frame.encode(&mut body);
                }
                return self.write_frame(OpCode::Close, true, 0, &body, mask, out);
            }
        };
        if opcode.is_control() {
            if payload.len() > 125 {
                return Err(ProtocolError::ControlFrameTooLong {
                    len: payload.len() as u64,
                });
            }
            return self.write_frame(opcode, true, 0, payload, mask, out);
        }
        let opcode = if first { opcode } else { OpCode::Continuation };
        match self.deflater.as_mut() {
            Some(deflater) if first && fin && payload.len() >= self.threshold as usize => {
                // A fresh buffer each time: kept between messages, it would hold
                // the largest compressed message for the life of the connection.
                let mut compressed = BytesMut::new();
                deflater.compress(payload, &mut compressed)?;
                self.write_frame(opcode, true, FrameHeader::RSV1, &compressed, mask, out)
            }
            _ => self.write_frame(opcode, fin, 0, payload, mask, out),
        }
    }

    /// Appends `prepared` to `out` as one frame, reusing the compressed frame
    /// another connection already built when this connection's settings allow
    /// (server role, compression without context takeover). Otherwise encodes
    /// as [`Encoder::encode`] does.
    pub fn encode_prepared(
        &mut self,
        prepared: &PreparedMessage,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let message = prepared.message();
        if self.role == Role::Client {
            return self.encode(message, mask, out);
        }
        let compress = message.len() >= self.threshold as usize;
        match self.deflater.as_ref() {
            Some(deflater) if compress && !deflater.is_stateless() => {
                self.encode(message, None, out)
            }
            Some(deflater) if compress => {
                let bits = deflater.window_bits();
                let frame = match prepared.compressed_frame(bits) {
                    Some(frame) => frame,
                    None => {
                        let mut frame = BytesMut::new();
                        self.encode(message, None, &mut frame)?;
                        prepared.store_compressed(bits, frame.freeze())
                    }
                };
                out.extend_from_slice(frame);
                Ok(())
            }
            _ => match prepared.plain_frame() {
                Some(frame) => {
                    out.extend_from_slice(frame);
                    Ok(())
                }
                None => {
                    let start = out.len();
                    self.encode(message, None, out)?;
                    if message.len() <= crate::prepared::PLAIN_CACHE_LIMIT {
                        prepared.store_plain(Bytes::copy_from_slice(&out[start..]));
                    }
                    Ok(())
                }
            },
        }
    }

    /// Frames a whole text or binary message as a header and a payload kept
    /// apart, for a sender that writes large payloads without copying them:
    /// appends the header to `out` and returns the bytes that follow it (the
    /// message's own, shared, or its compressed form). Returns `None`,
    /// having written nothing, for what must be framed in one piece: control
    /// frames, and a client's frames, whose payload is masked in the copy.
    pub fn encode_split(
        &mut self,
        message: &Message,
        out: &mut BytesMut,
    ) -> Result<Option<Bytes>, ProtocolError> {
        if self.role != Role::Server {
            return Ok(None);
        }
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.clone().into_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes.clone()),
            _ => return Ok(None),
        };
        let (rsv, payload) = match self.deflater.as_mut() {
            Some(deflater) if payload.len() >= self.threshold as usize => {
                let mut compressed = BytesMut::new();
                deflater.compress(&payload, &mut compressed)?;
                (FrameHeader::RSV1, compressed.freeze())
            }
            _ => (0, payload),
        };
        let (header, header_len) = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask: None,
            len: payload.len() as u64,
        }
        .to_bytes();
        out.extend_from_slice(&header[..header_len]);
        Ok(Some(payload))
    }

    fn write_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let (header, header_len) = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            len: payload.len() as u64,
        }
        .to_bytes();
        out.reserve(header_len + payload.len());
        out.extend_from_slice(&header[..header_len]);
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseFrame;
    use crate::config::Config;
    use crate::decoder::Decoder;
    use crate::deflate::Inflater;
    use bytes::Bytes;

    #[test]
    fn encodes_rfc_unmasked_hello() {
        let mut out = BytesMut::new();
        Encoder::new(Role::Server, None, 0)
            .encode(&Message::text("Hello"), None, &mut out)
            .unwrap();
        assert_eq!(&out[..], b"\x81\x05Hello");
    }

    #[test]
    fn plain_data_frames_match_the_general_path() {
        for len in [0, 1, 125, 126, 127, 4096, 65_535, 65_536, 70_000] {
            let messages = [
                Message::text("x".repeat(len)),
                Message::binary(vec![7u8; len]),
            ];
            for message in &messages {
                // A deflater that compresses only from 100 bytes: below that
                // the fast path applies, from there on the general one.
                for (role, mask, deflater) in [
                    (Role::Server, None, None),
                    (Role::Server, None, Some(Deflater::new(1, 15, true))),
                    (Role::Client, Some([9, 8, 7, 6]), None),
                    (
                        Role::Client,
                        Some([1, 2, 3, 4]),
                        Some(Deflater::new(1, 15, true)),
                    ),
                ] {
                    let compressing = deflater.is_some() && len >= 100;
                    let mut encoder = Encoder::new(role, deflater, 100);
                    let (mut fast, mut general) = (BytesMut::new(), BytesMut::new());
                    encoder.encode(message, mask, &mut fast).unwrap();
                    encoder
                        .encode_fragment(message, true, true, mask, &mut general)
                        .unwrap();
                    if compressing {
                        assert_eq!(fast[0] & 0x40, 0x40, "compressed, RSV1 set");
                    } else {
                        assert_eq!(fast, general, "{len} bytes");
                    }
                    let peer = match role {
                        Role::Server => Role::Client,
                        Role::Client => Role::Server,
                    };
                    let mut decoder = Decoder::new(peer, Config::default(), None);
                    if !compressing {
                        decoder.receive(&fast);
                        assert_eq!(decoder.poll().unwrap().as_ref(), Some(message));
                    }
                }
            }
        }
    }

    #[test]
    fn encodes_rfc_masked_hello() {
        let mut out = BytesMut::new();
        let key = [0x37, 0xfa, 0x21, 0x3d];
        Encoder::new(Role::Client, None, 0)
            .encode(&Message::text("Hello"), Some(key), &mut out)
            .unwrap();
        assert_eq!(
            &out[..],
            &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn encodes_rfc_unmasked_ping() {
        let mut out = BytesMut::new();
        Encoder::new(Role::Server, None, 0)
            .encode(&Message::Ping(Bytes::from_static(b"Hello")), None, &mut out)
            .unwrap();
        assert_eq!(&out[..], b"\x89\x05Hello");
    }

    #[test]
    fn refuses_oversized_control_payloads_and_reserved_close_codes() {
        let mut encoder = Encoder::new(Role::Server, None, 0);
        let mut out = BytesMut::new();
        let ping = Message::Ping(Bytes::from(vec![0; 126]));
        assert!(matches!(
            encoder.encode(&ping, None, &mut out),
            Err(ProtocolError::ControlFrameTooLong { .. })
        ));
        let close = Message::Close(Some(CloseFrame {
            code: 1005.into(),
            reason: "".into(),
        }));
        assert_eq!(
            encoder.encode(&close, None, &mut out),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
    }

    #[test]
    fn round_trips_compressed_messages_through_the_decoder() {
        let mut encoder = Encoder::new(Role::Client, Some(Deflater::new(1, 15, false)), 10);
        let mut decoder = Decoder::new(
            Role::Server,
            Config::default(),
            Some(Inflater::new(15, false)),
        );
        let messages = [
            Message::text("short"),
            Message::text("long enough to compress ".repeat(20)),
            Message::binary(vec![9u8; 3000]),
        ];
        for message in &messages {
            let mut out = BytesMut::new();
            encoder
                .encode(message, Some([1, 2, 3, 4]), &mut out)
                .unwrap();
            decoder.receive(&out);
            assert_eq!(decoder.poll().unwrap().as_ref(), Some(message));
        }
    }

    #[test]
    fn prepared_frames_are_compressed_once_and_match_direct_encoding() {
        let prepared = PreparedMessage::text("shared ".repeat(50));
        for compressed in [false, true] {
            let connection = || {
                Encoder::new(
                    Role::Server,
                    compressed.then(|| Deflater::new(1, 15, true)),
                    0,
                )
            };
            let (mut first, mut second) = (connection(), connection());
            let (mut a, mut b, mut direct) = (BytesMut::new(), BytesMut::new(), BytesMut::new());
            first.encode_prepared(&prepared, None, &mut a).unwrap();
            assert_eq!(prepared.is_compressed_for(15), compressed);
            assert!(prepared.plain_frame().is_some(), "the plain frame is kept");
            second.encode_prepared(&prepared, None, &mut b).unwrap();
            first.encode(prepared.message(), None, &mut direct).unwrap();
            assert_eq!(a, b);
            assert_eq!(a, direct);
            let mut decoder = Decoder::new(
                Role::Client,
                Config::default(),
                compressed.then(|| Inflater::new(15, false)),
            );
            decoder.receive(&a);
            assert_eq!(decoder.poll().unwrap().as_ref(), Some(prepared.message()));
        }
        assert!(!prepared.is_compressed_for(12), "one frame per window size");
    }

    #[test]
    fn large_prepared_messages_are_framed_per_connection_not_kept_twice() {
        let prepared = PreparedMessage::binary(vec![7u8; crate::prepared::PLAIN_CACHE_LIMIT + 1]);
        let mut encoder = Encoder::new(Role::Server, None, 0);
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        encoder.encode_prepared(&prepared, None, &mut a).unwrap();
        encoder.encode_prepared(&prepared, None, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(prepared.plain_frame().is_none());
    }

    #[test]
    fn prepared_messages_are_encoded_per_connection_with_context_takeover() {
        let prepared = PreparedMessage::text("stream ".repeat(50));
        let mut encoder = Encoder::new(Role::Server, Some(Deflater::new(1, 15, false)), 0);
        let mut decoder = Decoder::new(
            Role::Client,
            Config::default(),
            Some(Inflater::new(15, false)),
        );
        for _ in 0..3 {
            let mut out = BytesMut::new();
            encoder.encode_prepared(&prepared, None, &mut out).unwrap();
            decoder.receive(&out);
            assert_eq!(decoder.poll().unwrap().as_ref(), Some(prepared.message()));
        }
        assert!(!prepared.is_compressed_for(15));
        // A client masks every frame with its own key: nothing is shared.
        let mut client = Encoder::new(Role::Client, None, 0);
        let mut out = BytesMut::new();
        client
            .encode_prepared(&prepared, Some([1, 2, 3, 4]), &mut out)
            .unwrap();
        let mut server = Decoder::new(Role::Server, Config::default(), None);
        server.receive(&out);
        assert_eq!(server.poll().unwrap().as_ref(), Some(prepared.message()));
    }

    #[test]
    fn fragments_round_trip() {
        let mut encoder = Encoder::new(Role::Server, None, 0);
        let mut decoder = Decoder::new(Role::Client, Config::default(), None);
        let mut out = BytesMut::new();
        encoder
            .encode_fragment(&Message::text("Hel"), true, false, None, &mut out)
            .unwrap();
        encoder
            .encode_fragment(&Message::text("lo"), false, true, None, &mut out)
            .unwrap();
        assert_eq!(&out[..], b"\x01\x03Hel\x80\x02lo");
        decoder.receive(&out);
        assert_eq!(decoder.poll().unwrap(), Some(Message::text("Hello")));
    }

    #[test]
    fn a_split_frame_is_the_same_bytes_as_a_whole_one() {
        let payload = Bytes::from(vec![7u8; 70_000]);
        let message = Message::Binary(payload.clone());
        let mut whole = BytesMut::new();
        Encoder::new(Role::Server, None, 0)
            .encode(&message, None, &mut whole)
            .unwrap();
        let mut head = BytesMut::new();
        let body = Encoder::new(Role::Server, None, 0)
            .encode_split(&message, &mut head)
            .unwrap()
            .expect("a server's data frame splits");
        assert_eq!(body.as_ptr(), payload.as_ptr(), "the payload is not copied");
        head.extend_from_slice(&body);
        assert_eq!(head, whole);
        let mut client = Encoder::new(Role::Client, None, 0);
        assert!(client.encode_split(&message, &mut head).unwrap().is_none());
        let mut server = Encoder::new(Role::Server, None, 0);
        assert!(server
            .encode_split(&Message::Ping(Bytes::new()), &mut head)
            .unwrap()
            .is_none());
    }
}

//! The frame header (RFC 6455 §5.2): 2 to 14 bytes in front of every payload.

use bytes::BytesMut;

use super::OpCode;
use crate::error::ProtocolError;

/// The largest header: 2 bytes, an 8-byte extended length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = `0b100`).
    pub rsv: u8,
    /// Frame type.
    pub opcode: OpCode,
    /// Masking key, present on frames a client sends.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub len: u64,
}

impl FrameHeader {
    /// RSV1: set on the first frame of a permessage-deflate compressed message.
    pub const RSV1: u8 = 0b100;

    /// Parses a header from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not hold the whole header yet (nothing is
    /// consumed), or the header and its length in bytes. Only structural rules are
    /// checked here (opcode, length encoding); role and state rules belong to the
    /// decoder. Non-minimal length encodings are accepted, as the RFC's receivers must.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let (len, mut pos) = match b1 & 0x7f {
            126 => {
                let Some(ext) = buf.get(2..4) else {
                    return Ok(None);
                };
                (u16::from_be_bytes([ext[0], ext[1]]) as u64, 4)
            }
            127 => {
                let Some(ext) = buf.get(2..10) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(ext.try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                (len, 10)
            }
            short => (short as u64, 2),
        };
        let mask = if masked {
            let Some(key) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some(key.try_into().expect("4 bytes"))
        } else {
            None
        };
        let header = Self {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode,
            mask,
            len,
        };
        Ok(Some((header, pos)))
    }

    /// Writes the header with the shortest length encoding.
    pub fn encode(&self, out: &mut BytesMut) {
        let (bytes, len) = self.to_bytes();
        out.extend_from_slice(&bytes[..len]);
    }

    /// The header with the shortest length encoding: the bytes and how many of
    /// them are used. Built on the stack, so a frame is appended with one
    /// reservation for header and payload together.
    pub fn to_bytes(&self) -> ([u8; MAX_HEADER_LEN], usize) {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = (self.fin as u8) << 7 | (self.rsv & 0x07) << 4 | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.len {
            0..=125 => {
                bytes[1] = mask_bit | self.len as u8;
                2
            }
            126..=0xffff => {
                bytes[1] = mask_bit | 126;
                bytes[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = mask_bit | 127;
                bytes[2..10].copy_from_slice(&self.len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            bytes[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        (bytes, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            len,
        }
    }

    #[test]
    fn parses_rfc_single_frame_unmasked_text() {
        // RFC 6455 §5.7: "Hello", unmasked.
        let bytes = b"\x81\x05Hello";
        let (h, n) = FrameHeader::parse(bytes).unwrap().unwrap();
        assert_eq!((h, n), (header(OpCode::Text, 5, None), 2));
    }

    #[test]
    fn parses_rfc_masked_text() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!((h.len, n), (5, 6));
    }

    #[test]
    fn parses_rfc_fragmented_text_first_frame() {
        let (h, _) = FrameHeader::parse(b"\x01\x03Hel").unwrap().unwrap();
        assert!(!h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        let (h, _) = FrameHeader::parse(b"\x80\x02lo").unwrap().unwrap();
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Continuation);
    }

    #[test]
    fn parses_rfc_16_and_64_bit_lengths() {
        // RFC 6455 §5.7: 256 bytes and 64 KiB binary messages.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7e, 0x01, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!((h.len, n), (256, 4));
        let (h, n) = FrameHeader::parse(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.len, n), (65536, 10));
    }

    #[test]
    fn needs_more_bytes_without_consuming() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..cut]), Ok(None), "cut {cut}");
        }
        assert!(FrameHeader::parse(&full).unwrap().is_some());
    }

    #[test]
    fn accepts_non_minimal_length_encoding() {
        let (h, _) = FrameHeader::parse(&[0x82, 0x7e, 0x00, 0x05])
            .unwrap()
            .unwrap();
        assert_eq!(h.len, 5);
    }

    #[test]
    fn rejects_length_with_high_bit() {
        let bytes = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            FrameHeader::parse(&bytes),
            Err(ProtocolError::InvalidLength)
        );
    }

    #[test]
    fn rejects_reserved_opcode() {
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x00]),
            Err(ProtocolError::ReservedOpcode(3))
        );
    }

    #[test]
    fn reads_rsv_bits() {
        let (h, _) = FrameHeader::parse(&[0xc1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, FrameHeader::RSV1);
        let (h, _) = FrameHeader::parse(&[0xb1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b011);
    }

    #[test]
    fn encodes_minimal_lengths() {
        for (len, size) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = BytesMut::new();
            header(OpCode::Binary, len, None).encode(&mut out);
            assert_eq!(out.len(), size, "len {len}");
            assert_eq!(
                FrameHeader::parse(&out).unwrap().unwrap(),
                (header(OpCode::Binary, len, None), size)
            );
        }
        let mut out = BytesMut::new();
        header(OpCode::Text, 5, Some([1, 2, 3, 4])).encode(&mut out);
        assert_eq!(&out[..], &[0x81, 0x85, 1, 2, 3, 4]);
    }
}

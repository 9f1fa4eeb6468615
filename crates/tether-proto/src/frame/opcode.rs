//! Frame opcodes (RFC 6455 §5.2).

use crate::error::ProtocolError;

/// The opcode carried in the low nibble of a frame's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: continues a fragmented message.
    Continuation,
    /// `0x1`: first frame of a UTF-8 text message.
    Text,
    /// `0x2`: first frame of a binary message.
    Binary,
    /// `0x8`: connection close.
    Close,
    /// `0x9`: ping.
    Ping,
    /// `0xA`: pong.
    Pong,
}

impl OpCode {
    /// Decodes an opcode nibble; `0x3`–`0x7` and `0xB`–`0xF` are reserved and rejected.
    pub fn from_u8(value: u8) -> Result<Self, ProtocolError> {
        Ok(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The opcode nibble as sent on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) have the high bit of the opcode set.
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_defined_opcode() {
        for op in [0x0, 0x1, 0x2, 0x8, 0x9, 0xA] {
            assert_eq!(OpCode::from_u8(op).unwrap().as_u8(), op);
        }
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for op in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(OpCode::from_u8(op), Err(ProtocolError::ReservedOpcode(op)));
        }
    }

    #[test]
    fn classifies_control_frames() {
        assert!(OpCode::Close.is_control());
        assert!(OpCode::Ping.is_control());
        assert!(OpCode::Pong.is_control());
        assert!(!OpCode::Text.is_control());
        assert!(!OpCode::Continuation.is_control());
    }
}

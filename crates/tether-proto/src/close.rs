//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::utf8::Utf8Bytes;

/// A close status code. Constants name the codes registered with IANA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: Self = Self(1003);
    /// 1005: no code was present. Reserved: never sent on the wire.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: closed without a close frame. Reserved: never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: payload inconsistent with its type (invalid UTF-8).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: policy violation.
    pub const POLICY: Self = Self(1008);
    /// 1009: message too big to process.
    pub const TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway got an invalid response upstream.
    pub const BAD_GATEWAY: Self = Self(1014);

    /// Whether this code may appear in a close frame: 1000–1003, 1007–1014 and the
    /// application/private range 3000–4999. 1004–1006, 1015 and everything else
    /// (unassigned or reserved) fail the connection.
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The payload of a close frame that carries a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// Status code.
    pub code: CloseCode,
    /// UTF-8 reason, at most 123 bytes so the frame stays within 125.
    pub reason: Utf8Bytes,
}

/// RFC 6455 §5.5: a control payload is at most 125 bytes, 2 of which hold the code.
pub const MAX_CLOSE_REASON: usize = 123;

impl CloseFrame {
    /// A close frame with `code` and `reason`; the reason is cut at a character
    /// boundary to fit in [`MAX_CLOSE_REASON`] bytes.
    pub fn new(code: impl Into<CloseCode>, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            code: code.into(),
            reason: Utf8Bytes::from(reason[..end].to_owned()),
        }
    }

    /// Parses a received close payload: empty means no code (`None`); otherwise a
    /// code allowed on the wire and a UTF-8 reason.
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::InvalidClosePayload),
            _ => {
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_allowed_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = Utf8Bytes::try_from(Bytes::copy_from_slice(&payload[2..]))?;
                Ok(Some(Self { code, reason }))
            }
        }
    }

    /// Writes the code and reason as a close frame payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.code.0);
        out.put_slice(self.reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_registered_and_private_codes() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(CloseCode(code).is_allowed_on_wire(), "{code}");
        }
    }

    #[test]
    fn rejects_reserved_and_unassigned_codes() {
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(code).is_allowed_on_wire(), "{code}");
        }
    }

    #[test]
    fn parses_empty_payload_as_no_code() {
        assert_eq!(CloseFrame::parse(b""), Ok(None));
    }

    #[test]
    fn rejects_one_byte_payload() {
        assert_eq!(
            CloseFrame::parse(&[0x03]),
            Err(ProtocolError::InvalidClosePayload)
        );
    }

    #[test]
    fn rejects_invalid_utf8_reason() {
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, 0xff]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn rejects_code_1005_on_the_wire() {
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xed]),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
    }

    #[test]
    fn round_trips_code_and_reason() {
        let frame = CloseFrame::new(4001, "bye");
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        assert_eq!(&out[..], b"\x0f\xa1bye");
        assert_eq!(CloseFrame::parse(&out), Ok(Some(frame)));
    }

    #[test]
    fn truncates_long_reason_at_char_boundary() {
        let reason = "é".repeat(100);
        let frame = CloseFrame::new(1000, &reason);
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert_eq!(frame.reason.len() % 2, 0);
    }
}

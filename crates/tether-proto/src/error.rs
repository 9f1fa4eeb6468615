//! Errors of the protocol layer, each mapped to the close code or HTTP status the
//! peer should see.

use crate::close::CloseCode;

/// A violation of RFC 6455 / RFC 7692 or of a configured limit, found while decoding
/// or encoding frames. Each one fails the connection with [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV bits set that no negotiated extension defines.
    #[error("reserved bits {rsv:#05b} set without an extension that defines them")]
    ReservedBits {
        /// The three RSV bits, RSV1 as the most significant.
        rsv: u8,
    },
    /// Opcode `0x3`–`0x7` or `0xB`–`0xF`.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame without FIN (RFC 6455 §5.5).
    #[error("control frame is fragmented")]
    FragmentedControlFrame,
    /// A control frame payload over 125 bytes (RFC 6455 §5.5).
    #[error("control frame payload is {len} bytes, more than 125")]
    ControlFrameTooLong {
        /// Declared payload length.
        len: u64,
    },
    /// A client frame without a mask (RFC 6455 §5.1).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A server frame with a mask (RFC 6455 §5.1).
    #[error("server frame is masked")]
    MaskedFrame,
    /// A continuation frame when no fragmented message is in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    /// A 64-bit payload length with its most significant bit set (RFC 6455 §5.2).
    #[error("64-bit payload length has its most significant bit set")]
    InvalidLength,
    /// A frame longer than [`Config::max_frame_size`](crate::Config).
    #[error("frame of {size} bytes exceeds the limit of {max_size}")]
    FrameTooLong {
        /// Declared frame payload length.
        size: u64,
        /// Configured limit.
        max_size: usize,
    },
    /// A message (after decompression) longer than the configured limit.
    #[error("message of at least {size} bytes exceeds the limit of {max_size}")]
    MessageTooLong {
        /// Bytes seen so far when the limit was crossed.
        size: u64,
        /// Configured limit.
        max_size: usize,
    },
    /// A message split into more frames than the configured limit.
    #[error("message has more than {max} fragments")]
    TooManyFragments {
        /// Configured limit.
        max: usize,
    },
    /// A text message or close reason that is not valid UTF-8.
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// A close frame with a 1-byte payload.
    #[error("close frame payload of 1 byte")]
    InvalidClosePayload,
    /// A close code that must not appear on the wire (RFC 6455 §7.4).
    #[error("close code {0} is not allowed on the wire")]
    InvalidCloseCode(u16),
    /// RSV1 on a continuation frame: only a message's first frame says "compressed".
    #[error("RSV1 set on a continuation frame")]
    CompressedContinuation,
    /// The permessage-deflate data of a message could not be inflated.
    #[error("compressed message is corrupt: {0}")]
    Inflate(#[from] InflateError),
    /// Compressing an outgoing message failed.
    #[error("compression failed: {0}")]
    Deflate(#[from] DeflateError),
    /// A message was sent after this side sent its close frame.
    #[error("cannot send after the close frame")]
    SendAfterClose,
    /// The process's memory for peers' messages stayed full for longer than
    /// this connection may wait (fails the connection with 1013, try again later).
    #[error(
        "no room for this message: the process's buffer budget stayed full for {waited_ms} ms"
    )]
    NoRoom {
        /// How long the connection waited for room.
        waited_ms: u64,
    },
}

impl ProtocolError {
    /// The close code that fails the connection for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::Inflate(_) => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooLong { .. }
            | Self::MessageTooLong { .. }
            | Self::TooManyFragments { .. } => CloseCode::TOO_BIG,
            Self::Deflate(_) => CloseCode::INTERNAL_ERROR,
            Self::NoRoom { .. } => CloseCode::TRY_AGAIN_LATER,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// Why an opening handshake was refused or could not be completed.
///
/// Server-side variants carry the HTTP status to answer with ([`HandshakeError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes are not an HTTP/1.1 message.
    #[error("malformed HTTP: {0}")]
    Malformed(String),
    /// The header block is larger than the configured limit.
    #[error("handshake headers exceed {max} bytes")]
    HeadersTooLarge {
        /// Configured limit.
        max: usize,
    },
    /// Request method other than GET.
    #[error("method {0} is not GET")]
    NotGet(String),
    /// HTTP version below 1.1.
    #[error("HTTP version must be 1.1 or later")]
    HttpVersion,
    /// No `Host` header.
    #[error("missing Host header")]
    MissingHost,
    /// No `websocket` token in `Upgrade`.
    #[error("Upgrade header does not name websocket")]
    NotWebSocketUpgrade,
    /// No `upgrade` token in `Connection`.
    #[error("Connection header does not include upgrade")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` absent or not 16 base64-encoded bytes.
    #[error("Sec-WebSocket-Key missing or not 16 base64 bytes")]
    InvalidKey,
    /// `Sec-WebSocket-Version` absent or not 13.
    #[error("unsupported Sec-WebSocket-Version {0:?}, only 13 is supported")]
    UnsupportedVersion(Option<String>),
    /// The application refused the request (bad Origin, unknown path, auth).
    #[error("refused with status {status}: {reason}")]
    Refused {
        /// HTTP status sent to the client.
        status: u16,
        /// Human-readable reason (also the response body).
        reason: String,
    },
    /// The server did not answer `101 Switching Protocols` (client side).
    #[error("server answered {0} instead of 101")]
    UnexpectedStatus(u16),
    /// `Sec-WebSocket-Accept` does not match the key (client side).
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    /// The server selected a subprotocol the client did not offer (client side).
    #[error("server selected subprotocol {0:?} that was not offered")]
    UnexpectedProtocol(String),
    /// The server answered with an extension or parameter the client did not offer.
    #[error("server answered with an unoffered or invalid extension: {0}")]
    UnexpectedExtension(String),
    /// The peer closed the connection during the handshake.
    #[error("connection closed during the handshake")]
    ConnectionClosed,
    /// An HTTP/2 extended CONNECT (RFC 8441) without `:protocol`: a plain
    /// CONNECT, which a WebSocket endpoint does not serve.
    #[error("CONNECT without :protocol is not a WebSocket request")]
    MissingProtocol,
    /// An extended CONNECT for a protocol other than `websocket`.
    #[error("extended CONNECT for protocol {0:?}, only websocket is served")]
    UnknownProtocol(String),
    /// An extended CONNECT carrying `Sec-WebSocket-Key`, which RFC 8441 §5
    /// leaves out (the stream, not a key, proves the handshake).
    #[error("Sec-WebSocket-Key is not used over HTTP/2")]
    KeyOverConnect,
}

impl HandshakeError {
    /// The HTTP status a server answers with; `None` for client-side failures.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            Self::Malformed(_)
            | Self::HttpVersion
            | Self::MissingHost
            | Self::NotWebSocketUpgrade
            | Self::MissingConnectionUpgrade
            | Self::InvalidKey
            | Self::KeyOverConnect => 400,
            Self::MissingProtocol => 405,
            Self::UnknownProtocol(_) => 501,
            Self::HeadersTooLarge { .. } => 431,
            Self::NotGet(_) => 405,
            Self::UnsupportedVersion(_) => 426,
            Self::Refused { status, .. } => *status,
            Self::UnexpectedStatus(_)
            | Self::BadAccept
            | Self::UnexpectedProtocol(_)
            | Self::UnexpectedExtension(_)
            | Self::ConnectionClosed => return None,
        })
    }
}

/// Why a message's permessage-deflate data could not be inflated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum InflateError {
    /// zlib found the data corrupt (shared, so the error stays `Clone`).
    Corrupt(std::sync::Arc<flate2::DecompressError>),
    /// Data followed the block that ended the deflate stream.
    TrailingData,
    /// The inflater stopped taking input while it had room to write.
    Stalled,
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Corrupt(zlib) => zlib.fmt(f),
            Self::TrailingData => f.write_str("data after the final deflate block"),
            Self::Stalled => f.write_str("inflater stopped taking input"),
        }
    }
}

/// zlib's error is the source, as itself (not the `Arc` around it).
impl std::error::Error for InflateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Corrupt(zlib) => Some(&**zlib),
            _ => None,
        }
    }
}

impl From<flate2::DecompressError> for InflateError {
    fn from(error: flate2::DecompressError) -> Self {
        Self::Corrupt(std::sync::Arc::new(error))
    }
}

/// Equal when of the same kind and, for zlib's errors, saying the same.
impl PartialEq for InflateError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Corrupt(a), Self::Corrupt(b)) => a.to_string() == b.to_string(),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for InflateError {}

/// Why compressing a message failed: zlib's error, kept as the source
/// (shared, so the error stays `Clone`).
#[derive(Debug, Clone)]
pub struct DeflateError(std::sync::Arc<flate2::CompressError>);

impl std::fmt::Display for DeflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// zlib's error is the source, as itself (not the `Arc` around it).
impl std::error::Error for DeflateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl From<flate2::CompressError> for DeflateError {
    fn from(error: flate2::CompressError) -> Self {
        Self(std::sync::Arc::new(error))
    }
}

/// Equal when zlib said the same.
impl PartialEq for DeflateError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for DeflateError {}

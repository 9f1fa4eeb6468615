//! Messages as the application sees them.

use bytes::Bytes;

use crate::close::CloseFrame;
use crate::utf8::Utf8Bytes;

/// A complete WebSocket message, or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A UTF-8 text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; its payload is at most 125 bytes.
    Ping(Bytes),
    /// A pong; its payload is at most 125 bytes.
    Pong(Bytes),
    /// A close frame, with a code and reason or without (`None`).
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Self::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Self::Binary(b.into())
    }

    /// Whether this is a text or binary message (not a control frame).
    pub fn is_data(&self) -> bool {
        matches!(self, Self::Text(_) | Self::Binary(_))
    }

    /// The message with a payload that holds no buffer beyond its own bytes:
    /// copied when it is a slice of a larger shared buffer (a long read's block,
    /// see `Decoder::receive_bytes`), as it is when kept for long.
    pub fn detached(self) -> Self {
        fn own(bytes: Bytes) -> Bytes {
            if bytes.is_unique() {
                bytes
            } else {
                Bytes::copy_from_slice(&bytes)
            }
        }
        match self {
            Self::Text(t) => Self::Text(Utf8Bytes::from_validated(own(t.into_bytes()))),
            Self::Binary(b) => Self::Binary(own(b)),
            Self::Ping(b) => Self::Ping(own(b)),
            Self::Pong(b) => Self::Pong(own(b)),
            Self::Close(frame) => Self::Close(frame),
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b.len(),
            Self::Close(Some(f)) => 2 + f.reason.len(),
            Self::Close(None) => 0,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Self::Text(s.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Self {
        Self::Binary(v.into())
    }
}

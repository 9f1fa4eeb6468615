//! Errors of the I/O layer.

use tether_proto::{CloseCode, HandshakeError, ProtocolError};

/// Anything that ends a connection or keeps it from opening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol or a limit; the connection was closed with
    /// [`ProtocolError::close_code`].
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// TLS setup failed (certificates, keys, server name).
    #[error("TLS: {0}")]
    Tls(String),
    /// The URL is not a usable `ws://` or `wss://` URL.
    #[error("invalid URL: {0}")]
    Url(String),
    /// A deadline passed (handshake or close).
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The peer dropped TCP without a close frame (what browsers report as 1006).
    #[error("connection closed without a close frame")]
    AbnormalClosure,
    /// The connection is already closed; nothing more can be sent.
    #[error("connection already closed")]
    AlreadyClosed,
}

impl Error {
    /// The close code that describes this failure to the peer, where one applies.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Protocol(e) => Some(e.close_code()),
            _ => None,
        }
    }

    /// Whether a deadline caused this error.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

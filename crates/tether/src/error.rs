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
    /// TLS setup failed (certificates, keys, server name). Boxed, as every
    /// rarely seen error here, so that the `Result`s of the hot path stay small.
    #[error("TLS: {0}")]
    Tls(#[source] Box<TlsError>),
    /// The URL is not a usable `ws://` or `wss://` URL.
    #[error("invalid URL: {0}")]
    Url(#[source] Box<UrlError>),
    /// The HTTP/2 connection under a WebSocket failed or could not carry one.
    #[error("HTTP/2: {0}")]
    Http2(#[source] Box<Http2Error>),
    /// A header given to the client builder is not a valid HTTP header.
    #[error("invalid header {0}")]
    InvalidHeader(String),
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

/// Why TLS could not be set up; each keeps the error it came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// PEM input could not be read.
    #[error("reading {what}: {source}")]
    Pem {
        /// What was being read: certificates, a private key.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// PEM input held none of what was needed.
    #[error("no {0} in PEM input")]
    Missing(&'static str),
    /// rustls refused the configuration (a key that does not match, a bad
    /// certificate, no usable protocol version).
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// The host is not a name a certificate can be checked against.
    #[error("server name {name}: {source}")]
    ServerName {
        /// The host of the URL.
        name: String,
        /// Why.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
}

/// Why an HTTP/2 connection could not open or carry a WebSocket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Http2Error {
    /// The TLS server did not choose `h2` by ALPN (it speaks only HTTP/1.1).
    #[error("the server did not agree to HTTP/2 (ALPN)")]
    NotNegotiated,
    /// The server's SETTINGS never allowed extended CONNECT (RFC 8441 §3):
    /// it cannot take WebSockets over HTTP/2.
    #[error("the server does not allow extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)")]
    NoExtendedConnect,
    /// hyper's HTTP/2 layer failed: the connection, a stream reset, a
    /// refused stream.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// Why a URL is not a usable `ws://` or `wss://` URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// It is not a URL.
    #[error("{url}: {source}")]
    Parse {
        /// The text given.
        url: String,
        /// Why.
        #[source]
        source: url::ParseError,
    },
    /// Its scheme is neither `ws` nor `wss`.
    #[error("scheme {0} is not ws or wss")]
    Scheme(String),
    /// It names no host.
    #[error("{0}: no host")]
    NoHost(String),
    /// It has a fragment, meaningless in a WebSocket URI (RFC 6455 §3).
    #[error("{0}: fragments are not allowed")]
    Fragment(String),
}

impl From<TlsError> for Error {
    fn from(error: TlsError) -> Self {
        Self::Tls(Box::new(error))
    }
}

impl From<Http2Error> for Error {
    fn from(error: Http2Error) -> Self {
        Self::Http2(Box::new(error))
    }
}

impl From<hyper::Error> for Error {
    fn from(error: hyper::Error) -> Self {
        Http2Error::Hyper(error).into()
    }
}

impl From<UrlError> for Error {
    fn from(error: UrlError) -> Self {
        Self::Url(Box::new(error))
    }
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

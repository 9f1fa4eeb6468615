//! What a call on the client can fail with.

use std::time::Duration;

/// An error from the server (its numbered codes, 100 and up) or from the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server answered with an error (see docs/PROTOCOL.md for the codes).
    #[error("error {code}: {message}")]
    Server {
        /// The server's error code (103 permission denied, 111 unauthorized, ...).
        code: u16,
        /// Its message.
        message: String,
    },
    /// The client was closed, or the server told it not to reconnect.
    #[error("the client is closed")]
    Closed,
    /// No reply within the request timeout. A publish may still have been
    /// delivered: publishing again with the same idempotency key is safe.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// This client already has a live [`Subscription`](crate::Subscription) to the channel.
    #[error("already subscribed to {0}")]
    AlreadySubscribed(String),
    /// Data that could not be written or read as JSON.
    #[error("JSON: {0}")]
    Json(String),
}

impl Error {
    /// The server's error code, for a server error.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<tether_protocol::ErrorBody> for Error {
    fn from(body: tether_protocol::ErrorBody) -> Self {
        Error::Server {
            code: body.code,
            message: body.message,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Json(error.to_string())
    }
}

//! Transports that carry sessions. Each turns its connection into frames for a
//! [`Session`](crate::session::Session) and drains the session's outbox.

pub mod websocket;
mod writer;

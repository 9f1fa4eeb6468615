//! Sans-IO WebSocket protocol: RFC 6455 with RFC 7692 permessage-deflate.
//!
//! This crate never touches a socket, an executor or a clock. Bytes go in and
//! messages come out ([`Decoder`]); messages go in and bytes come out ([`Encoder`]);
//! handshakes are parsed and built as `http` types ([`handshake`]). That makes it
//! testable with byte literals, fuzzable, and usable under any runtime; the `tether`
//! crate runs it over tokio.
//!
//! # Layout
//! - [`frame`]: opcodes, frame headers, masking.
//! - [`decoder`]: incoming bytes to messages, with every framing rule and limit.
//! - [`encoder`]: outgoing messages to frame bytes.
//! - [`prepared`]: a message framed once for many connections (broadcast).
//! - [`handshake`]: the opening handshake for both roles.
//! - [`deflate`]: permessage-deflate negotiation and codec.
//! - [`close`]: close codes and close payloads.
//! - [`utf8`]: incremental UTF-8 validation and validated text bytes.
//! - [`config`]: limits and their defaults.
//! - [`error`]: protocol and handshake errors with their close codes and statuses.

#![deny(missing_docs)]

pub mod close;
pub mod config;
pub mod decoder;
pub mod deflate;
pub mod encoder;
pub mod error;
pub mod frame;
mod grow;
pub mod handshake;
pub mod message;
pub mod prepared;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, ConfigError, Role};
pub use decoder::Decoder;
pub use deflate::DeflateConfig;
pub use encoder::Encoder;
pub use error::{DeflateError, HandshakeError, InflateError, ProtocolError};
pub use message::Message;
pub use prepared::PreparedMessage;
pub use utf8::Utf8Bytes;

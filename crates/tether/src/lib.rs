//! Async WebSocket client and server over tokio, built on the sans-IO
//! [`tether_proto`] core: RFC 6455 with RFC 7692 permessage-deflate, `ws://` and
//! `wss://` (rustls), over HTTP/1.1 or as streams of an HTTP/2 connection
//! (RFC 8441) in both roles.
//!
//! ```no_run
//! # async fn run() -> tether::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let mut ws = tether::accept(tcp).await?;
//!         while let Some(message) = ws.recv().await? {
//!             if message.is_data() {
//!                 ws.send(message).await?;
//!             }
//!         }
//!         Ok::<_, tether::Error>(())
//!     });
//! }
//! # }
//! ```
//!
//! # Layout
//! - [`accept`](mod@accept): server handshake on a raw TCP or TLS stream.
//! - [`connect`](mod@connect): client connections to `ws://` and `wss://` URLs.
//! - [`http2`]: client WebSockets as streams of one HTTP/2 connection (RFC 8441).
//! - [`upgrade`](mod@upgrade): upgrading a request inside hyper or axum.
//! - [`broadcast`]: one message to many connections, framed once, from a shared ring.
//! - `websocket`: the connection type; `split`: its two halves for two tasks.
//! - `reader` / `writer`: socket reads into the decoder, encoder output to the socket.
//! - [`stream`]: plain-or-TLS stream; [`tls`]: rustls configuration helpers.
//! - [`config`]: timeouts, buffer sizes and protocol limits; [`error`]: errors.
//! - [`budget`]: a process-wide bound on the bytes held for peers.
//! - [`runtime`](mod@runtime): the tokio runtime for a process of WebSocket connections.
//! - [`listen`]: accept loops that back off while the process is out of descriptors.

#![deny(missing_docs)]

pub mod accept;
pub mod broadcast;
pub mod budget;
pub mod config;
pub mod connect;
pub mod error;
mod halves;
pub mod http2;
pub mod http2_server;
pub mod listen;
mod reader;
pub mod runtime;
mod split;
pub mod stream;
pub mod tls;
pub mod upgrade;
mod websocket;
mod writer;

pub use accept::{accept, accept_with, Accept};
pub use broadcast::{Broadcast, BroadcastConfig, Subscription};
pub use budget::Budget;
pub use config::Config;
pub use connect::{connect, ClientBuilder};
pub use error::{Error, Http2Error, Result, TlsError, UrlError};
pub use halves::{Locked, MaybeTlsReadHalf, MaybeTlsWriteHalf, SplitStream};
pub use http2::Http2Connection;
pub use runtime::runtime;
pub use split::{Batch, Incoming, Unsettled, WsReader, WsWriter};
pub use stream::MaybeTlsStream;
pub use tether_proto::{
    CloseCode, CloseFrame, DeflateConfig, HandshakeError, Message, PreparedMessage, ProtocolError,
    Role, Utf8Bytes,
};
pub use upgrade::{upgrade, Finished, PendingUpgrade, UpgradedStream};
pub use websocket::WebSocket;

pub use tether_proto as proto;

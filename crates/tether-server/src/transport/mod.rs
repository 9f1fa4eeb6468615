//! Transports that carry sessions: each turns its requests into commands for
//! a [`Session`](crate::session::Session) and is delivered to through a
//! [`Sink`](crate::session::sink::Sink). None of them touches a channel.
//!
//! - [`websocket`]: one connection per session, framed once per publication.
//! - [`sse`]: Server-Sent Events, a stream per attach of a resumable session.
//! - [`longpoll`]: long-polling by cursor.
//! - [`commands`]: the POSTs that carry an HTTP session's requests, and its close.
//! - [`forward`]: an HTTP session's requests that land on another node of a
//!   cluster, forwarded to the node holding it.

pub mod commands;
pub mod forward;
pub mod longpoll;
pub mod sse;
pub mod websocket;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;

/// The client's address, when the server recorded it (for per-IP limits
/// and the log).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Peer(peer.map(|info| info.0)))
    }
}

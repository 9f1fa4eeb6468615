//! tether's real-time server: channels with offsets, history and recovery,
//! presence, a JSON wire protocol over WebSocket, and an HTTP API.
//!
//! # Layout
//! - [`protocol`]: the wire types (requests, replies, pushes, error and disconnect
//!   codes), from the `tether-protocol` crate that clients share.
//! - [`hub`]: this node's channels: local subscribers, their streams, delivery order.
//! - [`engine`]: what channels share across nodes (offsets, history, presence,
//!   fan-out); [`engine::memory`] is the default.
//! - [`mesh`]: calls between the nodes of a cluster (a request forwarded to
//!   the node holding its session).
//! - [`metrics`]: Prometheus metrics.
//! - [`ratelimit`]: the per-connection token bucket.
//! - [`registry`]: live sessions, connection limits, disconnect by id.
//! - [`alarm`]: what tells a session's task to end (overflow, kick, shutdown).
//! - [`session`]: one client's requests and subscriptions, whatever the transport,
//!   and [`AppState`], what the sessions of a server share.
//! - [`transport`]: WebSocket, Server-Sent Events and long-polling, and the
//!   POSTs that carry the HTTP transports' requests.
//! - [`auth`]: JWT verification and channel claims.
//! - [`api`]: HTTP publish and inspection endpoints, health checks.
//! - [`demo`]: the embedded demo page (chat and live leaderboard).
//! - [`server`]: the router and the serve loop.
//! - [`tls`]: TLS for the serve loop, its certificate reloaded while it runs.
//! - [`config`]: settings, each declared once with its default, and the
//!   layers (file, environment, flags) over them.

#![deny(missing_docs)]

pub mod alarm;
pub mod api;
pub mod auth;
pub mod config;
pub mod demo;
pub mod engine;
pub mod hub;
pub mod mesh;
pub mod metrics;
pub mod ratelimit;
pub mod registry;
pub mod server;
pub mod session;
pub mod tls;
pub mod transport;

pub use tether_protocol as protocol;

pub use config::{
    Access, EngineConfig, EngineKind, Http2Config, HttpConfig, NamespaceOptions, ServerConfig,
    SlowConsumerPolicy, TlsConfig, WebSocketConfig,
};
pub use server::{router, run};
pub use session::state::AppState;

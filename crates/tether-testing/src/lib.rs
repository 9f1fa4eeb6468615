//! What the tests of every tether crate share, written once: free ports and
//! child processes killed by PID, raw HTTP requests, the request/reply
//! protocol client of `tether serve` (replies sorted from pushes), deflate
//! bombs, memory readings of a process, and a relay that pulls the network.
//!
//! # Layout
//! - [`process`]: free loopback ports, a child killed when dropped, starting
//!   a server binary and waiting until it listens.
//! - [`http`]: one HTTP/1.1 request on its own connection, its status and body.
//! - [`conversation`]: the protocol's requests and replies, over any link.
//! - [`deflate`]: raw deflate data that inflates to a great many zero bytes.
//! - [`frame`]: client frames written by hand.
//! - [`raw`]: a WebSocket opened by hand.
//! - [`memory`]: the resident memory of a process.
//! - [`relay`]: a TCP relay that can cut, refuse and redirect connections.
//! - [`redis`]: Debian's `redis-server` on a free port, without persistence.
//! - [`wait`]: waiting for a condition to hold, instead of sleeping.

pub mod conversation;
pub mod deflate;
pub mod frame;
pub mod http;
pub mod memory;
pub mod process;
pub mod raw;
pub mod redis;
pub mod relay;
pub mod wait;

pub use conversation::{Conversation, Sorted};
pub use deflate::deflate_bomb;
pub use frame::masked_frame;
pub use http::{http, http_raw};
pub use memory::{rss_anon_bytes, rss_bytes_of_self, Peak};
pub use process::{free_port, spawn_listening, Child};
pub use raw::raw_websocket;
pub use redis::RedisServer;
pub use relay::Relay;
pub use wait::eventually;

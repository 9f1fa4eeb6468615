//! The Rust client for `tether serve`: subscribe, publish, presence and
//! history over one WebSocket, for services, bots and devices, with the same
//! rules as the JavaScript client: reconnection with exponential backoff and
//! full jitter (or the server's advised delay), every subscription resumed
//! from its last offset and epoch, each publication delivered once and in
//! order, unanswered requests sent again (publishes carry idempotency keys),
//! a heartbeat that replaces a silent connection, and tokens refreshed
//! before they expire.
//!
//! ```no_run
//! # async fn run() -> Result<(), tether_client::Error> {
//! use tether_client::{Client, ClientConfig, SubscriptionEvent};
//!
//! let client = Client::new(ClientConfig::new("ws://127.0.0.1:8080").token("eyJ..."));
//! let mut chat = client.subscribe("chat:lobby").await?;
//! client.publish("chat:lobby", &serde_json::json!({"text": "hello"})).await?;
//! while let Some(event) = chat.next().await {
//!     match event {
//!         SubscriptionEvent::Publication(p) => println!("{} {}", p.offset, p.data),
//!         SubscriptionEvent::Unrecovered { .. } => println!("missed some: reload"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`client`](mod@client): the handle and its calls; [`subscription`]: one channel's events.
//! - `actor`: the connection task that keeps the link (`actor/mod.rs`), the
//!   channels against the server's view (`channels.rs`), what the server
//!   sends (`messages.rs`) and tokens (`tokens.rs`).
//! - [`config`]: settings and defaults; [`events`]: what is reported; [`error`]: errors.
//! - [`backoff`](mod@backoff): reconnect delays.

#![deny(missing_docs)]

mod actor;
pub mod backoff;
pub mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod subscription;
mod token;

pub use backoff::backoff;
pub use client::{Client, Handler, PublishOptions};
pub use config::{ClientConfig, TokenSource};
pub use error::Error;
pub use events::{Event, Publication, State, SubscriptionEvent};
pub use subscription::Subscription;
pub use tether_protocol::{HistoryPage, PresenceEntry, PresenceList, Published};

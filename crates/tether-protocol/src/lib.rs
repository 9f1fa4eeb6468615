//! The pub/sub wire protocol of `tether serve`: JSON requests from clients,
//! replies and pushes from the server, the numbered error and disconnect
//! codes, and the bodies of the HTTP API. Every type is typed both ways
//! (serialised and parsed), so the server, `tether bench`, the tests and the
//! JavaScript client (through the generated [`schema`]) follow one source.
//! docs/PROTOCOL.md describes the same messages for people.
//!
//! Every client request carries an `id` and gets exactly one reply with that
//! id, holding `result` or `error`. Server-initiated messages carry `push`.
//!
//! # Layout
//! - [`request`]: [`Request`] and its [`Command`]s, parsed with a reply for bad ones.
//! - [`reply`]: [`Reply`] and the result of each operation.
//! - [`push`]: [`Push`]es: publications, presence, disconnects.
//! - [`codes`]: [`ErrorCode`] and [`DisconnectCode`], with HTTP and close-code maps.
//! - [`api`]: the HTTP API's request and answer bodies.
//! - [`http`]: the bodies of the SSE and long-polling transports.
//! - [`schema`]: the JSON Schema of all of it (docs/protocol.schema.json).

#![deny(missing_docs)]

pub mod api;
pub mod codes;
pub mod http;
pub mod push;
pub mod reply;
pub mod request;
pub mod schema;

pub use codes::{DisconnectCode, ErrorCode};
pub use push::{Push, StreamPosition};
pub use reply::{
    Connected, Empty, ErrorBody, HistoryPage, PresenceEntry, PresenceList, Publication, Published,
    Reply, Subscribed,
};
pub use request::{nesting_depth, Command, ParseError, Request};

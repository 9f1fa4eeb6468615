//! The bodies of the HTTP transports (Server-Sent Events and long-polling):
//! what opens a session, what a poll answers, what a command POST answers.
//! The messages they carry are the same requests, replies and pushes as
//! over WebSocket.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Answer of `POST /connection/longpoll`, and the data of the `session`
/// event that starts every SSE stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionOpened {
    /// The session's secret key: what its polls, commands and close carry.
    /// Never shown to others (presence shows `client`).
    pub session: String,
    /// The client id, as presence shows it.
    pub client: String,
}

/// Answer of a poll (`GET /connection/longpoll/{session}?cursor=N`).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PollAnswer {
    /// The sequence number of the last message here (the cursor given, if
    /// none): the next poll carries it, which acknowledges these messages.
    pub cursor: u64,
    /// Replies and pushes, in order, numbered `cursor - len + 1` to `cursor`.
    #[schemars(with = "Vec<serde_json::Value>")]
    pub messages: Vec<Box<RawValue>>,
    /// The session has ended: the last message is its `disconnect` push
    /// (when it was told why), and the next poll gets 404.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
}

/// Answer of `POST /connection/session/{session}`: how many requests the
/// body held. Their replies come on the stream or in the polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Accepted {
    /// Requests read from the body.
    pub accepted: usize,
}

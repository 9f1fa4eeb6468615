//! What the client and its subscriptions report.

use std::time::Duration;

use serde_json::value::RawValue;

use crate::error::Error;

/// The client's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Opening a connection, or waiting to reconnect.
    Connecting,
    /// Connected and authenticated.
    Connected,
    /// Closed for good: [`Client::close`](crate::Client::close), or a server
    /// that said not to reconnect.
    Disconnected,
}

/// A change in the client's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Opening a connection.
    Connecting,
    /// Connected: the server's id for this connection and the token's user.
    Connected {
        /// The client id, as presence shows it.
        client: String,
        /// The token's `sub`, when a token was given.
        user: Option<String>,
    },
    /// The connection ended; whether the client will reconnect.
    Disconnected {
        /// The server's disconnect code, or the WebSocket close code.
        code: u16,
        /// Why.
        reason: String,
        /// False when the client stops here.
        reconnect: bool,
    },
    /// Waiting `delay` before reconnect attempt `attempt` (from 1).
    Reconnecting {
        /// The attempt about to be made.
        attempt: u32,
        /// Backoff with jitter, or the server's advice.
        delay: Duration,
    },
}

/// One publication, delivered once and in order.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Its offset in the channel.
    pub offset: u64,
    /// The JSON value, as it was published.
    pub data: Box<RawValue>,
}

impl Publication {
    /// The data read as `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_str(self.data.get())?)
    }
}

/// What a subscription reports, in order.
#[derive(Debug, Clone)]
pub enum SubscriptionEvent {
    /// Subscribed (again): from a recovery, or from now.
    Subscribed {
        /// The channel's epoch.
        epoch: String,
        /// The channel's offset when the subscription began.
        offset: u64,
        /// Whether this was a resubscription from a known position.
        recovering: bool,
        /// Whether every missed publication was delivered.
        recovered: bool,
    },
    /// A publication.
    Publication(Publication),
    /// History no longer reaches back to the last position (or the channel
    /// was recreated): publications were missed, reload the state.
    Unrecovered {
        /// The channel's new epoch.
        epoch: String,
        /// The offset publications continue from.
        offset: u64,
    },
    /// A client joined the channel (presence).
    Join {
        /// Its client id.
        client: String,
        /// Its user.
        user: Option<String>,
    },
    /// A client left the channel (presence).
    Leave {
        /// Its client id.
        client: String,
        /// Its user.
        user: Option<String>,
    },
    /// The server refused the subscription (permission, bad channel, ...);
    /// nothing follows.
    Failed(Error),
}

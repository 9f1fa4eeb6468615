//! Per-namespace channel options: history, presence, access, the slow-consumer policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for [`NamespaceOptions::history_size`]: publications kept per channel.
pub const DEFAULT_HISTORY_SIZE: usize = 100;
/// Default for [`NamespaceOptions::history_ttl`]: publications older than this
/// leave history, and a channel without subscribers or history is forgotten.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(600);

/// What happens when a subscriber's queue is full.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SlowConsumerPolicy {
    /// Close the connection (4001, reconnect advised); the client recovers what
    /// it missed from history. Nothing is silently lost.
    #[default]
    Disconnect,
    /// Drop the oldest queued publication to make room; the client sees a gap in
    /// offsets and may fetch history.
    DropOldest,
    /// Keep only the newest queued publication per key (conflation, for prices,
    /// positions, scores); when full, drop the oldest.
    LatestPerKey,
}

/// Which connections may do something in a namespace.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Any connection the server accepted: anonymous ones too when anonymous
    /// access is on. A token with a `channels` claim still limits its holder to
    /// those channels.
    #[default]
    Anyone,
    /// Connections that presented a valid token (within its `channels` claim,
    /// if it has one).
    Authenticated,
    /// Connections whose token grants the channel explicitly in its `channels`
    /// claim; a token without the claim is not enough.
    Granted,
    /// No client connection: publishing is left to the HTTP API.
    Nobody,
}

/// Options of every channel (`[channels]`), and of the channels of one
/// namespace, the part before the first `:` (`[namespaces.chat]` for
/// `chat:lobby`), where a key not given keeps its `[channels]` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NamespaceOptions {
    /// Publications retained per channel for history and recovery (0: none).
    /// Default: [`DEFAULT_HISTORY_SIZE`].
    #[schemars(extend("x-alias" = "history-size"))]
    pub history_size: usize,
    /// How long a publication stays in history (`"0s"`, `None` in code:
    /// until newer ones push it out). A channel with no subscribers, history
    /// or live idempotency keys is forgotten (checked every
    /// `engine.sweep_interval`) and comes back with a new epoch.
    /// Default: [`DEFAULT_HISTORY_TTL`].
    #[serde(with = "super::duration::limit")]
    #[schemars(with = "String", extend("format" = "duration", "x-alias" = "history-ttl"))]
    pub history_ttl: Option<Duration>,
    /// Track who is subscribed: join/leave pushes and presence queries.
    /// Default: `true`.
    pub presence: bool,
    /// Who may subscribe, and read presence and history: `anyone` (anonymous
    /// clients too, when allowed), `authenticated` (a valid token), `granted`
    /// (the token's `channels` claim lists the channel), `nobody`.
    /// Default: [`Access::Anyone`].
    pub subscribe: Access,
    /// Which clients may publish, with the same values; `nobody` leaves
    /// publishing to the HTTP API, which always may. Default: [`Access::Anyone`].
    pub publish: Access,
    /// What a full subscriber queue does: `disconnect` (4001, the client
    /// recovers from history), `drop-oldest` (the client sees an offset gap),
    /// or `latest-per-key` (a publication that finds the queue full replaces
    /// the queued one with the same publish `key`, or else the oldest). Below
    /// `outbound_queue` every policy delivers every publication.
    /// Default: [`SlowConsumerPolicy::Disconnect`].
    pub slow_consumer: SlowConsumerPolicy,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        Self {
            history_size: DEFAULT_HISTORY_SIZE,
            history_ttl: Some(DEFAULT_HISTORY_TTL),
            presence: true,
            subscribe: Access::Anyone,
            publish: Access::Anyone,
            slow_consumer: SlowConsumerPolicy::Disconnect,
        }
    }
}

impl NamespaceOptions {
    /// Sets [`NamespaceOptions::history_size`].
    pub fn history_size(mut self, size: usize) -> Self {
        self.history_size = size;
        self
    }

    /// Sets [`NamespaceOptions::presence`].
    pub fn presence(mut self, on: bool) -> Self {
        self.presence = on;
        self
    }

    /// Sets [`NamespaceOptions::slow_consumer`].
    pub fn slow_consumer(mut self, policy: SlowConsumerPolicy) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// Sets [`NamespaceOptions::history_ttl`].
    pub fn history_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.history_ttl = ttl;
        self
    }

    /// Sets [`NamespaceOptions::subscribe`].
    pub fn subscribe(mut self, access: Access) -> Self {
        self.subscribe = access;
        self
    }

    /// Sets [`NamespaceOptions::publish`].
    pub fn publish(mut self, access: Access) -> Self {
        self.publish = access;
        self
    }
}

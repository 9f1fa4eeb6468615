//! The transports' settings: `[websocket]` and `[http]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for [`WebSocketConfig::max_message_size`].
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default for [`WebSocketConfig::ping_interval`]: well under the 60 s idle cut-off
/// of common proxies and load balancers.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Default for [`WebSocketConfig::pong_timeout`].
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`HttpConfig::session_ttl`].
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(30);
/// Default [`HttpConfig::sse_heartbeat`]: well under the 60 s idle cut of
/// nginx and most load balancers.
pub const DEFAULT_SSE_HEARTBEAT: Duration = Duration::from_secs(15);
/// Default [`HttpConfig::poll_timeout`]: below nginx's 60 s `proxy_read_timeout`.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(25);
/// Default [`HttpConfig::max_poll_bytes`].
pub const DEFAULT_MAX_POLL_BYTES: usize = 1 << 20;
/// Default [`HttpConfig::max_command_body`]: as large as a WebSocket message.
pub const DEFAULT_MAX_COMMAND_BODY: usize = 1 << 20;

/// The WebSocket transport (`/connection/websocket`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// Serve WebSocket connections at `/connection/websocket`; when off, an
    /// upgrade there is answered 404 and clients fall back to SSE or
    /// long-polling. Default: `true`.
    pub enabled: bool,
    /// Largest message (and frame), in bytes; a larger one closes with 1009.
    /// A compressed message counts inflated. Default: [`DEFAULT_MAX_MESSAGE_SIZE`].
    #[schemars(extend("x-alias" = "max-message-size"))]
    pub max_message_size: usize,
    /// Accept permessage-deflate from clients that offer it. Default: `true`.
    #[schemars(extend("x-alias" = "compression"))]
    pub compression: bool,
    /// How often the server pings each connection, well under the 60 s idle
    /// cut-off of common proxies. Default: [`DEFAULT_PING_INTERVAL`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration", "x-alias" = "ping-interval"))]
    pub ping_interval: Duration,
    /// A connection silent (no pong, no message) for `ping_interval +
    /// pong_timeout` is closed (4002) and leaves its channels.
    /// Default: [`DEFAULT_PONG_TIMEOUT`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration", "x-alias" = "pong-timeout"))]
    pub pong_timeout: Duration,
    /// How long to wait for the client's close frame once ours is sent.
    /// Default: [`tether::config::DEFAULT_CLOSE_TIMEOUT`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub close_timeout: Duration,
    /// How long a client may take to send its opening handshake (slowloris
    /// clients are cut off here). Default: [`tether::config::DEFAULT_HANDSHAKE_TIMEOUT`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub handshake_timeout: Duration,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            compression: true,
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            close_timeout: tether::config::DEFAULT_CLOSE_TIMEOUT,
            handshake_timeout: tether::config::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl WebSocketConfig {
    /// Each connection's settings: these limits and timeouts over
    /// [`tether::Config`]'s defaults.
    pub fn connection(&self) -> tether::Config {
        let mut connection = tether::Config::default()
            .max_message_size(self.max_message_size)
            .max_frame_size(self.max_message_size)
            .compression(self.compression);
        connection.close_timeout = self.close_timeout;
        connection.handshake_timeout = self.handshake_timeout;
        connection
    }

    /// Sets [`WebSocketConfig::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`WebSocketConfig::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`WebSocketConfig::handshake_timeout`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

/// The HTTP fallbacks: Server-Sent Events (`/connection/sse`) and
/// long-polling (`/connection/longpoll`), whose sessions outlive the requests
/// that carry them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Serve Server-Sent Events sessions at `/connection/sse` (404 when off).
    /// Default: `true`.
    pub sse: bool,
    /// Serve long-polling sessions at `/connection/longpoll` (404 when off).
    /// Default: `true`.
    pub longpoll: bool,
    /// A session with no SSE stream or poll attached for this long ends and
    /// leaves its channels (presence `leave`); while it lives, a client that
    /// comes back resumes with nothing lost, and a session the server ends
    /// keeps its last messages this long for the client to read. Default:
    /// [`DEFAULT_SESSION_TTL`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration", "x-alias" = "session-ttl"))]
    pub session_ttl: Duration,
    /// How often an idle SSE stream gets a comment line, so proxies do not
    /// cut it. Default: [`DEFAULT_SSE_HEARTBEAT`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration", "x-alias" = "sse-heartbeat"))]
    pub sse_heartbeat: Duration,
    /// How long a poll waits for messages before answering with none; keep
    /// it below the proxy's read timeout (nginx: 60 s).
    /// Default: [`DEFAULT_POLL_TIMEOUT`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration", "x-alias" = "poll-timeout"))]
    pub poll_timeout: Duration,
    /// Most bytes of messages in one poll answer or SSE write (at least 1024;
    /// one message is always sent whole). Default: [`DEFAULT_MAX_POLL_BYTES`].
    pub max_poll_bytes: usize,
    /// Largest command request body; larger ones get 413.
    /// Default: [`DEFAULT_MAX_COMMAND_BODY`].
    pub max_command_body: usize,
    /// An SSE stream is ended by the server once it has written this many
    /// bytes, and `EventSource` reconnects with `Last-Event-ID` (the session
    /// goes on): for proxies that hold a response until it ends. 0: never.
    /// Default: 0.
    pub max_stream_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            sse: true,
            longpoll: true,
            session_ttl: DEFAULT_SESSION_TTL,
            sse_heartbeat: DEFAULT_SSE_HEARTBEAT,
            poll_timeout: DEFAULT_POLL_TIMEOUT,
            max_poll_bytes: DEFAULT_MAX_POLL_BYTES,
            max_command_body: DEFAULT_MAX_COMMAND_BODY,
            max_stream_bytes: 0,
        }
    }
}

impl HttpConfig {
    /// Sets [`HttpConfig::session_ttl`].
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Sets [`HttpConfig::sse_heartbeat`].
    pub fn sse_heartbeat(mut self, every: Duration) -> Self {
        self.sse_heartbeat = every;
        self
    }

    /// Sets [`HttpConfig::poll_timeout`].
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Sets [`HttpConfig::max_poll_bytes`].
    pub fn max_poll_bytes(mut self, bytes: usize) -> Self {
        self.max_poll_bytes = bytes;
        self
    }

    /// Sets [`HttpConfig::max_stream_bytes`].
    pub fn max_stream_bytes(mut self, bytes: usize) -> Self {
        self.max_stream_bytes = bytes;
        self
    }

    /// Sets [`HttpConfig::max_command_body`].
    pub fn max_command_body(mut self, bytes: usize) -> Self {
        self.max_command_body = bytes;
        self
    }
}

//! The transports' settings: `[websocket]` and `[http]` in the file.

use std::time::Duration;

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

/// The WebSocket transport's settings: `[websocket]` in the file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// Each connection's protocol limits, compression and timeouts. Default:
    /// [`tether::Config::default`] with a 1 MiB message and frame limit.
    pub connection: tether::Config,
    /// How often the server pings each connection. Default: [`DEFAULT_PING_INTERVAL`].
    pub ping_interval: Duration,
    /// A connection silent (no pong, no message) for `ping_interval + pong_timeout`
    /// is closed and leaves its channels. Default: [`DEFAULT_PONG_TIMEOUT`].
    pub pong_timeout: Duration,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            connection: tether::Config::default()
                .max_message_size(1 << 20)
                .max_frame_size(1 << 20),
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
        }
    }
}

/// The HTTP fallback transports (Server-Sent Events and long-polling), whose
/// sessions outlive the requests that carry them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// A session with no SSE stream or poll attached for this long ends and
    /// leaves its channels. Default: [`DEFAULT_SESSION_TTL`].
    pub session_ttl: Duration,
    /// How often an idle SSE stream gets a comment line, so proxies do not
    /// cut it. Default: [`DEFAULT_SSE_HEARTBEAT`].
    pub sse_heartbeat: Duration,
    /// How long a poll waits for messages before answering with none.
    /// Default: [`DEFAULT_POLL_TIMEOUT`].
    pub poll_timeout: Duration,
    /// Most bytes of messages in one poll answer or SSE write (one message is
    /// always sent whole). Default: [`DEFAULT_MAX_POLL_BYTES`].
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

//! The server's configuration: one typed tree, with a section per transport
//! ([`WebSocketConfig`], [`HttpConfig`]), the engine's ([`EngineConfig`]),
//! the channels' ([`NamespaceOptions`]) and tokens' ([`AuthConfig`]), TLS's
//! ([`TlsConfig`]) and HTTP/2's ([`Http2Config`]).
//!
//! Each setting is declared once, as a documented field with its default in
//! its section's struct. Everything else follows from that declaration:
//! [`settings`] lists them (key, doc, default, kind) from the structs' JSON
//! Schema; [`load`] lays a TOML file, `TETHER_*` variables and flags over the
//! defaults; [`example`] writes the commented file; `tether serve --help` and
//! docs/CONFIG.md's table are made from [`settings`].
//!
//! # Layout
//! - [`duration`]: how durations are written (`"25s"`, `"500ms"`).
//! - `settings`: the list of settings, from the structs' schema.
//! - `layers`: defaults, file, environment and flags, merged and checked.
//! - `example`: `tether config example` and docs/CONFIG.md's table.
//! - `namespace`, `transport`, `engine`, `tls`, `http2`: the sections.

pub mod duration;
mod engine;
mod example;
mod http2;
mod layers;
mod namespace;
mod settings;
mod tls;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use engine::*;
pub use http2::*;
pub use namespace::*;
pub use tls::TlsConfig;
pub use transport::*;

pub use example::{example, reference};
pub use layers::{load, LoadError, Loaded, Source};
pub use settings::{sections, settings, Section, Setting, SettingKind};

use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;

/// Default for [`ServerConfig::listen`].
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default for [`ServerConfig::max_subscriptions`] per connection.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 128;
/// Default for [`ServerConfig::outbound_queue`]: messages queued per connection
/// before it counts as a slow consumer.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
/// Default for [`ServerConfig::max_queued_bytes`]: room for a few large
/// replies (a history page of 64 KiB publications is several MiB, and one
/// reply of any size always fits an empty queue).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 << 20;
/// Default for [`ServerConfig::idempotency_window`].
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(60);
/// Default for [`ServerConfig::max_channel_name`], in bytes.
pub const DEFAULT_MAX_CHANNEL_NAME: usize = 255;
/// Default for [`ServerConfig::max_publish_size`], in bytes of JSON.
pub const DEFAULT_MAX_PUBLISH_SIZE: usize = 64 << 10;
/// Default for [`ServerConfig::max_data_depth`]: how deeply arrays and objects
/// may nest in published `data`, far below what JSON parsers refuse (serde_json
/// stops at 128 levels, the reply's envelope included).
pub const DEFAULT_MAX_DATA_DEPTH: usize = 32;
/// Default for [`ServerConfig::max_api_body`], in bytes: room for a
/// [`DEFAULT_MAX_PUBLISH_SIZE`] publication and a long list of channels.
pub const DEFAULT_MAX_API_BODY: usize = 1 << 20;
/// Default for [`ServerConfig::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ServerConfig::rate_limit`]: requests per second per connection.
pub const DEFAULT_RATE_LIMIT: f64 = 1000.0;
/// Default for [`ServerConfig::rate_burst`].
pub const DEFAULT_RATE_BURST: u32 = 2000;
/// Default for [`ServerConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Default for [`ServerConfig::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 10_000;
/// Default for [`ServerConfig::buffer_wait`].
pub const DEFAULT_BUFFER_WAIT: Duration = tether::budget::DEFAULT_WAIT;
/// Default for [`ServerConfig::reconnect_window`].
pub const DEFAULT_RECONNECT_WINDOW: Duration = Duration::from_secs(5);

/// Everything `tether serve` can be told. Each field is one setting, named
/// alike in the file (`key`, or `key` under `[section]`), the environment
/// (`TETHER_KEY`, `TETHER_SECTION__KEY`) and on the command line (`--key`,
/// `--section.key`, with `-` for `_`); see [`load`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on. Default: [`DEFAULT_LISTEN`].
    pub listen: SocketAddr,
    /// Channels one connection may subscribe to.
    /// Default: [`DEFAULT_MAX_SUBSCRIPTIONS`].
    pub max_subscriptions: usize,
    /// How far a connection may fall behind, in messages: the depth of each
    /// connection's reply queue and of each channel's stream (the frames a
    /// channel keeps until every subscriber's writer has sent them); past it
    /// the channel's `slow_consumer` policy applies and other subscribers are
    /// not delayed. Default: [`DEFAULT_OUTBOUND_QUEUE`].
    pub outbound_queue: usize,
    /// Payload bytes queued for one connection: its replies (history pages,
    /// presence lists) and `latest-per-key` publications (0: no bound). One
    /// reply of any size fits an empty queue; past the bound a reply waits,
    /// so a client that asks and does not read stops being read. Bytes past
    /// 64 KiB per connection also count against `max_buffered_bytes`.
    /// Default: [`DEFAULT_MAX_QUEUED_BYTES`].
    pub max_queued_bytes: usize,
    /// How long a publish idempotency key is remembered.
    /// Default: [`DEFAULT_IDEMPOTENCY_WINDOW`].
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub idempotency_window: Duration,
    /// Longest channel name, in bytes. Default: [`DEFAULT_MAX_CHANNEL_NAME`].
    pub max_channel_name: usize,
    /// Largest published `data`, in bytes of JSON; more is error 108 (HTTP
    /// 413). Default: [`DEFAULT_MAX_PUBLISH_SIZE`].
    pub max_publish_size: usize,
    /// Deepest nesting of arrays and objects in published `data` (at most
    /// 120); deeper is error 100 (HTTP 400), so whatever is accepted can be
    /// read back by every JSON parser. Default: [`DEFAULT_MAX_DATA_DEPTH`].
    pub max_data_depth: usize,
    /// Largest HTTP API request body, in bytes (at least `max_publish_size`);
    /// larger ones get 413. Default: [`DEFAULT_MAX_API_BODY`].
    pub max_api_body: usize,
    /// Key required by the HTTP API (`Authorization: apikey KEY`); unset
    /// leaves the API open, for local use only. Default: unset.
    pub api_key: Option<String>,
    /// Browser origins allowed to open connections
    /// (`https://app.example.com`); others are refused with 403, the defence
    /// against Cross-Site WebSocket Hijacking. Requests without `Origin`
    /// (non-browser clients) are allowed. Empty allows every origin.
    /// Default: empty.
    #[schemars(extend("x-alias" = "allowed-origin"))]
    pub allowed_origins: Vec<String>,
    /// Requests per second a connection may make, steady state (token
    /// bucket); over it a request is refused with error 109.
    /// Default: [`DEFAULT_RATE_LIMIT`].
    pub rate_limit: f64,
    /// Requests a connection may make at once above the steady rate; a
    /// client refused more than this many times in a row gets a `disconnect`
    /// push (4502) and is closed with 1008. Default: [`DEFAULT_RATE_BURST`].
    pub rate_burst: u32,
    /// Connections the server holds at once; more are refused with 503 (0: no
    /// limit). Default: [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Connections from one IP address; more are refused with 429 (0: no limit).
    /// Default: [`DEFAULT_MAX_CONNECTIONS_PER_IP`].
    pub max_connections_per_ip: usize,
    /// Bytes all connections together may hold for messages being read or
    /// inflated (a [`tether::Budget`]), and every session's queued replies
    /// past 64 KiB; past it a connection stops being read until room frees,
    /// and after `buffer_wait` is closed with 1013. Unset: a quarter of the
    /// machine's memory, or of the control group's limit when lower
    /// ([`tether::budget::machine_default`]); 0: no bound. Default: unset.
    pub max_buffered_bytes: Option<usize>,
    /// How long a connection waits for room under `max_buffered_bytes`
    /// before it is closed with 1013 (try again later).
    /// Default: [`DEFAULT_BUFFER_WAIT`].
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub buffer_wait: Duration,
    /// On SIGTERM/SIGINT, how long queued messages may take to flush before
    /// the process exits anyway. Default: [`DEFAULT_SHUTDOWN_TIMEOUT`].
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub shutdown_timeout: Duration,
    /// On shutdown each client is told to wait a random delay below this
    /// (`reconnect_after_ms`) before reconnecting, so a deploy does not cause
    /// a reconnect storm. Default: [`DEFAULT_RECONNECT_WINDOW`].
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub reconnect_window: Duration,
    /// Options of every channel, unless its namespace says otherwise.
    /// Default: [`NamespaceOptions::default`].
    pub channels: NamespaceOptions,
    /// Options per namespace (`[namespaces.scores]` for channels
    /// `scores:*`): each key not given keeps its `[channels]` value.
    /// Default: none.
    pub namespaces: HashMap<String, NamespaceOptions>,
    /// Token verification and anonymous access. Default: [`AuthConfig::default`].
    pub auth: AuthConfig,
    /// The WebSocket transport. Default: [`WebSocketConfig::default`].
    pub websocket: WebSocketConfig,
    /// Server-Sent Events and long-polling. Default: [`HttpConfig::default`].
    pub http: HttpConfig,
    /// The engine. Default: [`EngineConfig::default`].
    pub engine: EngineConfig,
    /// TLS (and with it HTTP/2). Default: [`TlsConfig::default`], off.
    pub tls: TlsConfig,
    /// HTTP/2's limits per connection. Default: [`Http2Config::default`].
    pub http2: Http2Config,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            channels: NamespaceOptions::default(),
            namespaces: HashMap::new(),
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            max_channel_name: DEFAULT_MAX_CHANNEL_NAME,
            max_publish_size: DEFAULT_MAX_PUBLISH_SIZE,
            max_data_depth: DEFAULT_MAX_DATA_DEPTH,
            max_api_body: DEFAULT_MAX_API_BODY,
            api_key: None,
            allowed_origins: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_buffered_bytes: None,
            buffer_wait: DEFAULT_BUFFER_WAIT,
            auth: AuthConfig::default(),
            rate_limit: DEFAULT_RATE_LIMIT,
            rate_burst: DEFAULT_RATE_BURST,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            reconnect_window: DEFAULT_RECONNECT_WINDOW,
            websocket: WebSocketConfig::default(),
            http: HttpConfig::default(),
            engine: EngineConfig::default(),
            tls: TlsConfig::default(),
            http2: Http2Config::default(),
        }
    }
}

/// A setting that cannot work, named by its key (as the file spells it,
/// sections joined with `.`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value}: {why}")]
pub struct InvalidSetting {
    /// The setting, e.g. `websocket.ping_interval` or `namespaces.chat.history_ttl`.
    pub key: String,
    /// The value it was given.
    pub value: String,
    /// What it must be instead.
    pub why: String,
}

impl InvalidSetting {
    /// `key` set to `value`, which is wrong because `why`.
    pub fn new(
        key: impl Into<String>,
        value: impl std::fmt::Display,
        why: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
            why: why.into(),
        }
    }
}

/// The options for `channel`: its namespace's (the part before the first
/// `:`) when `namespaces` has it, else `channels`.
pub fn namespace_of<'a>(
    channels: &'a NamespaceOptions,
    namespaces: &'a HashMap<String, NamespaceOptions>,
    channel: &str,
) -> &'a NamespaceOptions {
    channel
        .split_once(':')
        .and_then(|(namespace, _)| namespaces.get(namespace))
        .unwrap_or(channels)
}

/// Deepest nesting [`ServerConfig::max_data_depth`] may allow: what a client
/// parsing with serde_json (128 levels) can read inside a reply's envelope.
pub const MAX_DATA_DEPTH_LIMIT: usize = 120;

impl ServerConfig {
    /// Checks every setting once, before the server starts: the first one
    /// that cannot work is named with its value. Zero durations where time
    /// must pass, empty limits, and combinations that contradict each other
    /// are refused.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let at_least_one = |key: &str, value: usize| {
            if value == 0 {
                Err(InvalidSetting::new(key, value, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        let positive = |key: &str, value: Duration| {
            if value.is_zero() {
                Err(InvalidSetting::new(
                    key,
                    duration::display(value),
                    "must be above 0",
                ))
            } else {
                Ok(())
            }
        };
        at_least_one("outbound_queue", self.outbound_queue)?;
        at_least_one("max_subscriptions", self.max_subscriptions)?;
        at_least_one("max_channel_name", self.max_channel_name)?;
        at_least_one("max_publish_size", self.max_publish_size)?;
        at_least_one(
            "websocket.max_message_size",
            self.websocket.max_message_size,
        )?;
        at_least_one("max_data_depth", self.max_data_depth)?;
        if self.max_data_depth > MAX_DATA_DEPTH_LIMIT {
            return Err(InvalidSetting::new(
                "max_data_depth",
                self.max_data_depth,
                format!(
                    "at most {MAX_DATA_DEPTH_LIMIT}, or clients could not parse what is accepted"
                ),
            ));
        }
        if self.max_api_body < self.max_publish_size {
            return Err(InvalidSetting::new(
                "max_api_body",
                self.max_api_body,
                format!(
                    "must be at least max_publish_size ({}), or the API could not publish what clients can",
                    self.max_publish_size
                ),
            ));
        }
        positive("websocket.ping_interval", self.websocket.ping_interval)?;
        positive("buffer_wait", self.buffer_wait)?;
        positive("websocket.pong_timeout", self.websocket.pong_timeout)?;
        positive("idempotency_window", self.idempotency_window)?;
        positive("http.session_ttl", self.http.session_ttl)?;
        positive("http.sse_heartbeat", self.http.sse_heartbeat)?;
        positive("http.poll_timeout", self.http.poll_timeout)?;
        positive("engine.sweep_interval", self.engine.sweep_interval)?;
        positive(
            "engine.redis_command_timeout",
            self.engine.redis_command_timeout,
        )?;
        positive(
            "engine.redis_connect_timeout",
            self.engine.redis_connect_timeout,
        )?;
        positive("engine.redis_presence_ttl", self.engine.redis_presence_ttl)?;
        if !(1..=engine::MAX_REDIS_POOL_SIZE).contains(&self.engine.redis_pool_size) {
            return Err(InvalidSetting::new(
                "engine.redis_pool_size",
                self.engine.redis_pool_size,
                format!("must be 1 to {}", engine::MAX_REDIS_POOL_SIZE),
            ));
        }
        if self.engine.kind == EngineKind::Redis && self.engine.redis_urls.is_empty() {
            return Err(InvalidSetting::new(
                "engine.redis_urls",
                "[]",
                "must name at least one Redis",
            ));
        }
        at_least_one("http.max_command_body", self.http.max_command_body)?;
        if self.http.max_poll_bytes < 1024 {
            return Err(InvalidSetting::new(
                "http.max_poll_bytes",
                self.http.max_poll_bytes,
                "must be at least 1024",
            ));
        }
        if !(self.rate_limit.is_finite() && self.rate_limit > 0.0) {
            return Err(InvalidSetting::new(
                "rate_limit",
                self.rate_limit,
                "must be a number above 0",
            ));
        }
        if self.rate_burst == 0 {
            return Err(InvalidSetting::new("rate_burst", 0, "must be at least 1"));
        }
        self.http2.validate()?;
        let namespaces = std::iter::once(("channels".to_owned(), &self.channels)).chain(
            self.namespaces
                .iter()
                .map(|(name, options)| (format!("namespaces.{name}"), options)),
        );
        for (section, options) in namespaces {
            if options.history_ttl.is_some_and(|ttl| ttl.is_zero()) {
                return Err(InvalidSetting::new(
                    format!("{section}.history_ttl"),
                    "0s",
                    "must be above 0 (None in code, \"0s\" in the file, for no age limit)",
                ));
            }
        }
        Ok(())
    }

    /// The options for `channel`, by its namespace (the part before the first `:`).
    pub fn namespace_of(&self, channel: &str) -> &NamespaceOptions {
        namespace_of(&self.channels, &self.namespaces, channel)
    }

    /// Sets [`ServerConfig::listen`].
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Sets [`ServerConfig::channels`].
    pub fn channels(mut self, options: NamespaceOptions) -> Self {
        self.channels = options;
        self
    }

    /// Adds a namespace.
    pub fn namespace(mut self, name: impl Into<String>, options: NamespaceOptions) -> Self {
        self.namespaces.insert(name.into(), options);
        self
    }

    /// Sets [`ServerConfig::outbound_queue`].
    pub fn outbound_queue(mut self, messages: usize) -> Self {
        self.outbound_queue = messages;
        self
    }

    /// Sets [`ServerConfig::max_queued_bytes`].
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// Sets [`ServerConfig::allowed_origins`].
    pub fn allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.allowed_origins = origins;
        self
    }

    /// Sets [`WebSocketConfig::ping_interval`] and [`WebSocketConfig::pong_timeout`].
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.websocket.ping_interval = interval;
        self.websocket.pong_timeout = timeout;
        self
    }

    /// Sets [`ServerConfig::http`].
    pub fn http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// Sets [`ServerConfig::http2`].
    pub fn http2(mut self, http2: Http2Config) -> Self {
        self.http2 = http2;
        self
    }

    /// Sets [`ServerConfig::tls`].
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// Sets [`ServerConfig::rate_limit`] and [`ServerConfig::rate_burst`].
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> Self {
        self.rate_limit = per_second;
        self.rate_burst = burst;
        self
    }

    /// Sets [`ServerConfig::shutdown_timeout`] and [`ServerConfig::reconnect_window`].
    pub fn shutdown(mut self, timeout: Duration, reconnect_window: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self.reconnect_window = reconnect_window;
        self
    }

    /// Whether a browser page from `origin` may connect.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(origin) => {
                self.allowed_origins.is_empty()
                    || self
                        .allowed_origins
                        .iter()
                        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
            }
        }
    }

    /// Sets [`ServerConfig::max_connections`] and [`ServerConfig::max_connections_per_ip`].
    pub fn connection_limits(mut self, total: usize, per_ip: usize) -> Self {
        self.max_connections = total;
        self.max_connections_per_ip = per_ip;
        self
    }

    /// Sets [`ServerConfig::auth`].
    pub fn auth(mut self, auth: AuthConfig) -> Self {
        self.auth = auth;
        self
    }

    /// Sets [`ServerConfig::api_key`].
    pub fn api_key(mut self, key: Option<String>) -> Self {
        self.api_key = key;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn names_the_first_setting_that_cannot_work() {
        let key = |config: ServerConfig| config.validate().unwrap_err().key;
        assert_eq!(
            key(ServerConfig::default().outbound_queue(0)),
            "outbound_queue"
        );
        let silent = ServerConfig::default().heartbeat(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(key(silent), "websocket.ping_interval");
        assert_eq!(
            key(ServerConfig::default().rate_limit(f64::NAN, 10)),
            "rate_limit"
        );
        let tight = ServerConfig {
            max_api_body: 10,
            ..ServerConfig::default()
        };
        let error = tight.validate().unwrap_err();
        assert_eq!(error.key, "max_api_body");
        assert!(
            error
                .to_string()
                .starts_with("max_api_body = 10: must be at least"),
            "{error}"
        );
        let ageless = NamespaceOptions::default().history_ttl(Some(Duration::ZERO));
        let config = ServerConfig::default().namespace("chat", ageless);
        assert_eq!(key(config), "namespaces.chat.history_ttl");
    }
}

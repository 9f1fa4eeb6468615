//! The TOML configuration file: every [`ServerConfig`] setting, all optional, laid
//! over the defaults. Command-line flags and `TETHER_*` variables go on top.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{
    self, EngineKind, InvalidSetting, NamespaceOptions, ServerConfig, WebSocketConfig,
};

/// The file's shape. Durations are in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    max_subscriptions: Option<usize>,
    outbound_queue: Option<usize>,
    max_queued_bytes: Option<usize>,
    idempotency_window_secs: Option<f64>,
    max_channel_name: Option<usize>,
    max_publish_size: Option<usize>,
    max_data_depth: Option<usize>,
    max_api_body: Option<usize>,
    api_key: Option<String>,
    allowed_origins: Option<Vec<String>>,
    shutdown_timeout_secs: Option<f64>,
    reconnect_window_secs: Option<f64>,
    rate_limit: Option<f64>,
    rate_burst: Option<u32>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_buffered_bytes: Option<usize>,
    buffer_wait_secs: Option<f64>,
    #[serde(default)]
    channels: NamespaceFile,
    #[serde(default)]
    namespaces: HashMap<String, NamespaceFile>,
    #[serde(default)]
    auth: AuthFile,
    #[serde(default)]
    websocket: WebSocketFile,
    #[serde(default)]
    http: HttpFile,
    #[serde(default)]
    engine: EngineFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineFile {
    kind: Option<EngineKind>,
    sweep_interval_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebSocketFile {
    max_message_size: Option<usize>,
    compression: Option<bool>,
    ping_interval_secs: Option<f64>,
    pong_timeout_secs: Option<f64>,
    close_timeout_secs: Option<f64>,
    handshake_timeout_secs: Option<f64>,
}

impl WebSocketFile {
    fn apply(self, websocket: &mut WebSocketConfig) -> Result<(), FileError> {
        let connection = &mut websocket.connection;
        if let Some(size) = self.max_message_size {
            *connection = connection
                .clone()
                .max_message_size(size)
                .max_frame_size(size);
        }
        if let Some(on) = self.compression {
            *connection = connection.clone().compression(on);
        }
        secs(
            "websocket.close_timeout_secs",
            self.close_timeout_secs,
            &mut connection.close_timeout,
        )?;
        secs(
            "websocket.handshake_timeout_secs",
            self.handshake_timeout_secs,
            &mut connection.handshake_timeout,
        )?;
        secs(
            "websocket.ping_interval_secs",
            self.ping_interval_secs,
            &mut websocket.ping_interval,
        )?;
        secs(
            "websocket.pong_timeout_secs",
            self.pong_timeout_secs,
            &mut websocket.pong_timeout,
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    session_ttl_secs: Option<f64>,
    sse_heartbeat_secs: Option<f64>,
    poll_timeout_secs: Option<f64>,
    max_poll_bytes: Option<usize>,
    max_command_body: Option<usize>,
    max_stream_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceFile {
    history_size: Option<usize>,
    history_ttl_secs: Option<f64>,
    presence: Option<bool>,
    subscribe: Option<config::Access>,
    publish: Option<config::Access>,
    slow_consumer: Option<config::SlowConsumerPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    anonymous: Option<bool>,
    hmac_secret: Option<String>,
    rsa_public_key_file: Option<String>,
    ec_public_key_file: Option<String>,
}

/// A file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A setting has a value that cannot work.
    #[error("{0}")]
    Invalid(#[from] InvalidSetting),
    /// It is not valid TOML for this schema.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
}

/// A number of seconds from the file: finite and not negative, or an error
/// naming `key`.
fn seconds(key: &str, secs: f64) -> Result<Duration, FileError> {
    if (0.0..1e12).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(FileError::Invalid(InvalidSetting::new(
            key,
            secs,
            "must be a number of seconds, 0 or more",
        )))
    }
}

fn secs(key: &str, value: Option<f64>, into: &mut Duration) -> Result<(), FileError> {
    if let Some(secs) = value {
        *into = seconds(key, secs)?;
    }
    Ok(())
}

fn set<T>(value: Option<T>, into: &mut T) {
    if let Some(value) = value {
        *into = value;
    }
}

impl NamespaceFile {
    fn apply(self, section: &str, options: &mut NamespaceOptions) -> Result<(), FileError> {
        set(self.history_size, &mut options.history_size);
        if let Some(secs) = self.history_ttl_secs {
            let ttl = seconds(&format!("{section}.history_ttl_secs"), secs)?;
            // 0: no age limit.
            options.history_ttl = (!ttl.is_zero()).then_some(ttl);
        }
        set(self.presence, &mut options.presence);
        set(self.subscribe, &mut options.subscribe);
        set(self.publish, &mut options.publish);
        set(self.slow_consumer, &mut options.slow_consumer);
        Ok(())
    }
}

impl FileConfig {
    /// Parses TOML text.
    pub fn parse(text: &str, path: &str) -> Result<Self, FileError> {
        toml::from_str(text).map_err(|source| FileError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Lays the file's settings over `config`. Key files are read here.
    pub fn apply(self, config: &mut ServerConfig) -> Result<(), FileError> {
        set(self.listen, &mut config.listen);
        set(self.max_subscriptions, &mut config.max_subscriptions);
        set(self.outbound_queue, &mut config.outbound_queue);
        set(self.max_queued_bytes, &mut config.max_queued_bytes);
        secs(
            "idempotency_window_secs",
            self.idempotency_window_secs,
            &mut config.idempotency_window,
        )?;
        set(self.max_channel_name, &mut config.max_channel_name);
        set(self.max_publish_size, &mut config.max_publish_size);
        set(self.max_data_depth, &mut config.max_data_depth);
        set(self.max_api_body, &mut config.max_api_body);
        if self.api_key.is_some() {
            config.api_key = self.api_key;
        }
        set(self.allowed_origins, &mut config.allowed_origins);
        secs(
            "shutdown_timeout_secs",
            self.shutdown_timeout_secs,
            &mut config.shutdown_timeout,
        )?;
        secs(
            "reconnect_window_secs",
            self.reconnect_window_secs,
            &mut config.reconnect_window,
        )?;
        set(self.rate_limit, &mut config.rate_limit);
        set(self.rate_burst, &mut config.rate_burst);
        set(self.max_connections, &mut config.max_connections);
        set(
            self.max_connections_per_ip,
            &mut config.max_connections_per_ip,
        );
        if let Some(bytes) = self.max_buffered_bytes {
            config.max_buffered_bytes = Some(bytes);
        }
        secs(
            "buffer_wait_secs",
            self.buffer_wait_secs,
            &mut config.buffer_wait,
        )?;
        self.websocket.apply(&mut config.websocket)?;
        let http = &mut config.http;
        secs(
            "http.session_ttl_secs",
            self.http.session_ttl_secs,
            &mut http.session_ttl,
        )?;
        secs(
            "http.sse_heartbeat_secs",
            self.http.sse_heartbeat_secs,
            &mut http.sse_heartbeat,
        )?;
        secs(
            "http.poll_timeout_secs",
            self.http.poll_timeout_secs,
            &mut http.poll_timeout,
        )?;
        set(self.http.max_poll_bytes, &mut http.max_poll_bytes);
        set(self.http.max_command_body, &mut http.max_command_body);
        set(self.http.max_stream_bytes, &mut http.max_stream_bytes);
        set(self.engine.kind, &mut config.engine.kind);
        secs(
            "engine.sweep_interval_secs",
            self.engine.sweep_interval_secs,
            &mut config.engine.sweep_interval,
        )?;
        self.channels
            .apply("channels", &mut config.default_namespace)?;
        for (name, file) in self.namespaces {
            let mut options = config.default_namespace.clone();
            file.apply(&format!("namespaces.{name}"), &mut options)?;
            config.namespaces.insert(name, options);
        }
        let read = |path: String| {
            std::fs::read_to_string(&path).map_err(|source| FileError::Read { path, source })
        };
        if let Some(secret) = self.auth.hmac_secret {
            config.auth = config.auth.clone().hmac_secret(secret);
        }
        if let Some(path) = self.auth.rsa_public_key_file {
            config.auth = config.auth.clone().rsa_public_key_pem(read(path)?);
        }
        if let Some(path) = self.auth.ec_public_key_file {
            config.auth = config.auth.clone().ec_public_key_pem(read(path)?);
        }
        if let Some(anonymous) = self.auth.anonymous {
            config.auth = config.auth.clone().allow_anonymous(anonymous);
        }
        Ok(())
    }
}

/// A commented configuration file with every setting at its default, as
/// `tether config example` prints it.
pub fn example() -> String {
    let d = ServerConfig::default();
    format!(
        r#"# tether serve configuration. Every setting is optional; shown at its default.
# Precedence: defaults < this file (--config) < TETHER_* environment < flags.

# Address to listen on.
listen = "{listen}"

# Messages queued per connection before it is closed as a slow consumer (4001).
outbound_queue = {queue}
# Payload bytes queued per connection (replies); past it the connection's
# requests wait (0: no bound).
max_queued_bytes = {queued_bytes}
# Channels one connection may subscribe to.
max_subscriptions = {subs}
# How long publish idempotency keys are remembered, seconds.
idempotency_window_secs = {idem}
# Longest channel name, bytes.
max_channel_name = {name}
# Largest published data, bytes of JSON.
max_publish_size = {publish}
# Deepest nesting of arrays and objects in published data (deeper: error 100).
max_data_depth = {depth}
# Largest HTTP API request body, bytes (larger: 413).
max_api_body = {api_body}
# Browser origins allowed to connect; empty allows all. Others get 403.
allowed_origins = []
# Key for /api/* (Authorization: apikey KEY); unset leaves the API open.
# api_key = "change-me"

# Requests per second per connection (token bucket) and the burst above it.
rate_limit = {rate}
rate_burst = {burst}

# Connections at once, and from one IP (0: no limit).
max_connections = {max_conn}
max_connections_per_ip = {per_ip}

# Bytes all connections together may hold for messages being read or inflated;
# past it a connection stops being read, and after buffer_wait_secs is closed
# with 1013. Unset: a quarter of the machine's memory (or of the control
# group's limit); 0: no bound.
# max_buffered_bytes = 268435456
buffer_wait_secs = {buffer_wait}

# On SIGTERM/SIGINT: time to flush queues, and the window clients spread their
# reconnections over.
shutdown_timeout_secs = {shutdown}
reconnect_window_secs = {window}

# Options of every channel, unless its namespace (the part before ':') says otherwise.
[channels]
history_size = {history}
# Seconds a publication stays in history (0: until newer ones push it out).
history_ttl_secs = {ttl}
presence = true
# Who may subscribe (and read presence and history), and which clients may
# publish: "anyone" (anonymous too, when allowed), "authenticated" (a valid
# token), "granted" (the token's channels claim lists the channel), "nobody"
# (for publish: only the HTTP API).
subscribe = "anyone"
publish = "anyone"
# A full subscriber queue: "disconnect" (4001, the client recovers from history),
# "drop-oldest", or "latest-per-key" (conflation by the publish key).
slow_consumer = "disconnect"

# Per-namespace overrides, e.g. channels "scores:*":
# [namespaces.scores]
# history_size = 1000
# publish = "nobody"
# subscribe = "authenticated"

[auth]
# JWT verification keys; with any of them set, anonymous access is off by default.
# hmac_secret = "..."
# rsa_public_key_file = "/etc/tether/rs256.pem"
# ec_public_key_file = "/etc/tether/es256.pem"
# anonymous = false

# The WebSocket transport (/connection/websocket).
[websocket]
# Largest message (and frame), bytes; a larger one closes with 1009. For a
# compressed message this counts the inflated bytes.
max_message_size = {message}
# Accept permessage-deflate from clients that offer it.
compression = true
# Heartbeat: ping every ping_interval_secs; silent past pong_timeout_secs more:
# disconnect 4002.
ping_interval_secs = {ping}
pong_timeout_secs = {pong}
# Seconds to wait for the peer's close frame once ours is sent, and for a
# client's opening handshake.
close_timeout_secs = {close}
handshake_timeout_secs = {handshake}

# The HTTP fallbacks: Server-Sent Events (/connection/sse) and long-polling
# (/connection/longpoll), whose sessions outlive each request.
[http]
# A session with no stream or poll attached for this long ends, seconds.
session_ttl_secs = {session_ttl}
# Comment line on an idle SSE stream, seconds (under proxies' idle cut).
sse_heartbeat_secs = {heartbeat}
# How long a poll waits for messages, seconds (below nginx's 60 s).
poll_timeout_secs = {poll}
# Most bytes of messages per poll answer or SSE write.
max_poll_bytes = {poll_bytes}
# Largest command body POSTed to a session, bytes (larger: 413).
max_command_body = {command_body}
# End an SSE stream after this many bytes (EventSource resumes; 0: never),
# for proxies that hold a response until it ends.
max_stream_bytes = {stream_bytes}

# Where the state a cluster would share lives: offsets and epochs, history,
# idempotency keys, presence.
[engine]
# "memory": this process (the only engine so far).
kind = "{engine}"
# How often expired history and idempotency keys and unused channels are
# forgotten, seconds.
sweep_interval_secs = {sweep}
"#,
        listen = d.listen,
        queue = d.outbound_queue,
        queued_bytes = d.max_queued_bytes,
        subs = d.max_subscriptions,
        idem = d.idempotency_window.as_secs_f64(),
        name = d.max_channel_name,
        publish = d.max_publish_size,
        depth = d.max_data_depth,
        api_body = d.max_api_body,
        message = d.websocket.connection.protocol.max_message_size,
        ping = d.websocket.ping_interval.as_secs_f64(),
        pong = d.websocket.pong_timeout.as_secs_f64(),
        close = d.websocket.connection.close_timeout.as_secs_f64(),
        handshake = d.websocket.connection.handshake_timeout.as_secs_f64(),
        rate = d.rate_limit,
        burst = d.rate_burst,
        max_conn = d.max_connections,
        per_ip = d.max_connections_per_ip,
        buffer_wait = d.buffer_wait.as_secs_f64(),
        shutdown = d.shutdown_timeout.as_secs_f64(),
        window = d.reconnect_window.as_secs_f64(),
        history = config::DEFAULT_HISTORY_SIZE,
        ttl = config::DEFAULT_HISTORY_TTL.as_secs_f64(),
        session_ttl = d.http.session_ttl.as_secs_f64(),
        heartbeat = d.http.sse_heartbeat.as_secs_f64(),
        poll = d.http.poll_timeout.as_secs_f64(),
        poll_bytes = d.http.max_poll_bytes,
        command_body = d.http.max_command_body,
        stream_bytes = d.http.max_stream_bytes,
        engine = d.engine.kind.as_str(),
        sweep = d.engine.sweep_interval.as_secs_f64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_to_the_defaults() {
        let mut config = ServerConfig::default();
        FileConfig::parse(&example(), "example")
            .unwrap()
            .apply(&mut config)
            .unwrap();
        let defaults = ServerConfig::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.default_namespace, defaults.default_namespace);
        assert_eq!(
            config.websocket.ping_interval,
            defaults.websocket.ping_interval
        );
        assert_eq!(
            config.websocket.connection.close_timeout,
            defaults.websocket.connection.close_timeout
        );
        assert_eq!(config.rate_limit, defaults.rate_limit);
        assert_eq!(
            config.max_connections_per_ip,
            defaults.max_connections_per_ip
        );
        assert_eq!(
            config.websocket.connection.protocol,
            defaults.websocket.connection.protocol
        );
        assert!(config.auth.anonymous());
        assert_eq!(config.engine.kind, defaults.engine.kind);
        assert_eq!(config.engine.sweep_interval, defaults.engine.sweep_interval);
    }

    #[test]
    fn the_engine_section_names_a_known_engine_and_a_positive_sweep() {
        let mut config = ServerConfig::default();
        let file = FileConfig::parse("[engine]\nsweep_interval_secs = 0.5\n", "t").unwrap();
        file.apply(&mut config).unwrap();
        assert_eq!(config.engine.sweep_interval, Duration::from_millis(500));
        config.validate().unwrap();
        // An engine this build does not have is refused, naming the value.
        let error = FileConfig::parse("[engine]\nkind = \"redis\"\n", "t").unwrap_err();
        assert!(error.to_string().contains("redis"), "{error}");
        let file = FileConfig::parse("[engine]\nsweep_interval_secs = 0\n", "t").unwrap();
        let mut config = ServerConfig::default();
        file.apply(&mut config).unwrap();
        let error = config.validate().unwrap_err();
        assert_eq!(error.key, "engine.sweep_interval_secs", "{error}");
    }

    #[test]
    fn applies_namespaces_over_the_channel_defaults() {
        let text = "[channels]\nhistory_size = 10\nhistory_ttl_secs = 0\n[namespaces.scores]\npublish = \"nobody\"\nslow_consumer = \"latest-per-key\"\n";
        let mut config = ServerConfig::default();
        FileConfig::parse(text, "t")
            .unwrap()
            .apply(&mut config)
            .unwrap();
        assert_eq!(config.namespace_of("chat:x").history_size, 10);
        let scores = config.namespace_of("scores:1");
        assert_eq!((scores.history_size, scores.history_ttl), (10, None));
        assert_eq!(scores.publish, config::Access::Nobody);
        assert_eq!(
            scores.slow_consumer,
            config::SlowConsumerPolicy::LatestPerKey
        );
    }

    #[test]
    fn names_a_negative_duration_instead_of_ignoring_it() {
        let mut config = ServerConfig::default();
        let file = FileConfig::parse("[websocket]\nping_interval_secs = -5\n", "t").unwrap();
        let error = file.apply(&mut config).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("websocket.ping_interval_secs = -5:"),
            "{error}"
        );
        let file = FileConfig::parse("[namespaces.chat]\nhistory_ttl_secs = -1\n", "t").unwrap();
        let error = file.apply(&mut config).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("namespaces.chat.history_ttl_secs"),
            "{error}"
        );
    }

    #[test]
    fn docs_config_md_describes_every_setting_of_the_example() {
        let docs = include_str!("../../../docs/CONFIG.md");
        for line in example().lines() {
            let line = line.trim_start_matches("# ");
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            if key.contains(' ') || key.starts_with('[') {
                continue;
            }
            // The file spells durations `_secs` and key files `_file`;
            // docs/CONFIG.md names the option (`ping_interval`, `rsa_public_key_pem`).
            let option = key.trim_end_matches("_secs").trim_end_matches("_file");
            let named = docs.contains(&format!("`{option}`"))
                || docs.contains(&format!(".{option}`"))
                || docs.contains(&format!(".{option}_pem`"));
            assert!(named, "docs/CONFIG.md does not describe `{key}`");
        }
    }

    /// The first number in a CONFIG.md default cell, in the file's unit
    /// (bytes for `KiB`/`MiB`, seconds for `s`), or a bare word (`true`).
    fn documented_value(cell: &str) -> Option<String> {
        let cell = cell.replace('`', "");
        let mut words = cell.split_whitespace();
        let first = words.next()?;
        let Ok(number) = first.parse::<f64>() else {
            return Some(first.to_owned());
        };
        let scale = match words.next() {
            Some("KiB") => 1024.0,
            Some("MiB") => 1024.0 * 1024.0,
            _ => 1.0,
        };
        Some(format!("{}", number * scale))
    }

    #[test]
    fn docs_config_md_gives_the_defaults_in_code() {
        let docs = include_str!("../../../docs/CONFIG.md");
        // The server's table (the library's settings follow in a section of their own).
        let server = docs.split_once("## Server").expect("a server section").1;
        let docs = server.split("\n## ").next().unwrap_or(server);
        let mut checked = 0;
        for line in example().lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(" = ") else {
                continue;
            };
            let value = value.trim_matches('"');
            let option = key.trim_end_matches("_secs");
            let row = docs.lines().find(|row| {
                let first = row.split('|').nth(1).unwrap_or_default().trim();
                first == format!("`{option}`") || first.ends_with(&format!(".{option}`"))
            });
            let Some(row) = row else { continue };
            let cell = row.split('|').nth(3).unwrap_or_default();
            let Some(documented) = documented_value(cell) else {
                continue;
            };
            let in_code = value
                .parse::<f64>()
                .map_or(value.to_owned(), |n| format!("{n}"));
            // Numbers and switches are compared; lists, addresses and
            // "none" are described in words.
            let comparable =
                in_code.parse::<f64>().is_ok() || in_code == "true" || in_code == "false";
            if !comparable {
                continue;
            }
            assert_eq!(
                documented, in_code,
                "docs/CONFIG.md gives another default for `{key}`: {row}"
            );
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} defaults checked");
    }

    #[test]
    fn rejects_unknown_settings() {
        let err = FileConfig::parse("lisen = \"127.0.0.1:1\"\n", "typo.toml").unwrap_err();
        assert!(err.to_string().contains("typo.toml"), "{err}");
    }

    #[test]
    fn websocket_settings_live_in_their_section() {
        let text = "[websocket]\nmax_message_size = 4096\ncompression = false\nping_interval_secs = 3\nclose_timeout_secs = 2\n";
        let mut config = ServerConfig::default();
        FileConfig::parse(text, "t")
            .unwrap()
            .apply(&mut config)
            .unwrap();
        let websocket = &config.websocket;
        assert_eq!(websocket.connection.protocol.max_message_size, 4096);
        assert_eq!(websocket.connection.protocol.max_frame_size, 4096);
        assert!(!websocket.connection.protocol.deflate.enabled);
        assert_eq!(websocket.ping_interval, Duration::from_secs(3));
        assert_eq!(websocket.connection.close_timeout, Duration::from_secs(2));
        let flat = FileConfig::parse("max_message_size = 4096\n", "old.toml").unwrap_err();
        assert!(flat.to_string().contains("max_message_size"), "{flat}");
    }
}

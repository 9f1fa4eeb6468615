//! The TOML configuration file: every [`ServerConfig`] setting, all optional, laid
//! over the defaults. Command-line flags and `TETHER_*` variables go on top.

mod example;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use example::example;

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

#[cfg(test)]
mod tests {
    use super::*;

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

//! `tether serve`: the real-time server on the embedded in-memory hub.
//! Settings: defaults, then the `--config` TOML file, then `TETHER_*` variables and
//! flags (clap merges those two).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tether_server::file::FileConfig;
use tether_server::EngineKind;
use tether_server::ServerConfig;
use tokio::net::TcpListener;

/// Arguments of `tether serve`. Unset ones keep the file's value or the default
/// (see `tether config example` and docs/CONFIG.md).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (`tether config example` prints one).
    #[arg(long, env = "TETHER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "TETHER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Publications kept per channel for history and recovery [default: 100].
    #[arg(long, env = "TETHER_HISTORY_SIZE")]
    history_size: Option<usize>,
    /// Messages queued per connection before it is disconnected as a slow consumer
    /// [default: 1024].
    #[arg(long, env = "TETHER_OUTBOUND_QUEUE")]
    outbound_queue: Option<usize>,
    /// Payload bytes queued per connection (replies); past it the connection's
    /// requests wait; 0: no bound [default: 4194304].
    #[arg(long, env = "TETHER_MAX_QUEUED_BYTES")]
    max_queued_bytes: Option<usize>,
    /// Key the HTTP API requires (`Authorization: apikey KEY`); unset leaves it open.
    #[arg(long, env = "TETHER_API_KEY")]
    api_key: Option<String>,
    /// Origin allowed to open WebSocket connections (repeatable, or comma-separated
    /// in the environment); others get 403. None given: every origin is allowed.
    #[arg(
        long = "allowed-origin",
        env = "TETHER_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Shared secret for HS256 client tokens.
    #[arg(long, env = "TETHER_JWT_HMAC_SECRET")]
    jwt_hmac_secret: Option<String>,
    /// PEM file with the RSA public key for RS256 client tokens.
    #[arg(long, env = "TETHER_JWT_RSA_PUBLIC_KEY")]
    jwt_rsa_public_key: Option<PathBuf>,
    /// PEM file with the P-256 public key for ES256 client tokens.
    #[arg(long, env = "TETHER_JWT_EC_PUBLIC_KEY")]
    jwt_ec_public_key: Option<PathBuf>,
    /// Let clients without a token in (the default only when no key is given).
    #[arg(long, env = "TETHER_ALLOW_ANONYMOUS")]
    allow_anonymous: Option<bool>,
    /// Seconds a publication stays in history, 0 for no limit [default: 600].
    #[arg(long, env = "TETHER_HISTORY_TTL")]
    history_ttl: Option<f64>,
    /// Channels one connection may subscribe to [default: 128].
    #[arg(long, env = "TETHER_MAX_SUBSCRIPTIONS")]
    max_subscriptions: Option<usize>,
    /// Largest WebSocket message in bytes; larger ones close with 1009
    /// [default: 1048576].
    #[arg(long, env = "TETHER_MAX_MESSAGE_SIZE")]
    max_message_size: Option<usize>,
    /// Accept permessage-deflate from clients that offer it [default: true].
    #[arg(long, env = "TETHER_COMPRESSION")]
    compression: Option<bool>,
    /// Connections at once, 0 for no limit; more get 503 [default: 100000].
    #[arg(long, env = "TETHER_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Connections from one IP address, 0 for no limit; more get 429
    /// [default: 10000].
    #[arg(long, env = "TETHER_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Bytes all connections together may hold for messages being read or
    /// inflated, 0 for no bound; past it a connection waits, then gets 1013
    /// [default: a quarter of the machine's memory].
    #[arg(long, env = "TETHER_MAX_BUFFERED_BYTES")]
    max_buffered_bytes: Option<usize>,
    /// Seconds a connection waits for room under --max-buffered-bytes
    /// [default: 5].
    #[arg(long, env = "TETHER_BUFFER_WAIT")]
    buffer_wait: Option<f64>,
    /// Requests per second per connection (token bucket) [default: 1000].
    #[arg(long, env = "TETHER_RATE_LIMIT")]
    rate_limit: Option<f64>,
    /// Requests at once above the steady rate [default: 2000].
    #[arg(long, env = "TETHER_RATE_BURST")]
    rate_burst: Option<u32>,
    /// Seconds between server pings [default: 25].
    #[arg(long, env = "TETHER_PING_INTERVAL")]
    ping_interval: Option<f64>,
    /// Seconds of silence past a ping before the connection is closed (4002)
    /// [default: 10].
    #[arg(long, env = "TETHER_PONG_TIMEOUT")]
    pong_timeout: Option<f64>,
    /// Seconds queues may take to flush on shutdown [default: 10].
    #[arg(long, env = "TETHER_SHUTDOWN_TIMEOUT")]
    shutdown_timeout: Option<f64>,
    /// Seconds over which clients spread their reconnections after a shutdown
    /// [default: 5].
    #[arg(long, env = "TETHER_RECONNECT_WINDOW")]
    reconnect_window: Option<f64>,
    /// Seconds an SSE or long-poll session lives with nothing attached
    /// [default: 30].
    #[arg(long, env = "TETHER_SESSION_TTL")]
    session_ttl: Option<f64>,
    /// Seconds a long-poll waits for messages [default: 25].
    #[arg(long, env = "TETHER_POLL_TIMEOUT")]
    poll_timeout: Option<f64>,
    /// Seconds between comment lines on an idle SSE stream [default: 15].
    #[arg(long, env = "TETHER_SSE_HEARTBEAT")]
    sse_heartbeat: Option<f64>,
    /// Where history, presence, offsets and idempotency keys live: `memory`
    /// (this process) [default: memory].
    #[arg(long, env = "TETHER_ENGINE")]
    engine: Option<EngineKind>,
}

/// A non-negative, finite number of seconds.
fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        value.is_finite() && value >= 0.0,
        "--{flag} takes a number of seconds, not {value}"
    );
    Ok(Duration::from_secs_f64(value))
}

/// Builds the configuration: defaults, file, then flags and environment.
pub fn config(args: ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::default();
    if let Some(path) = &args.config {
        FileConfig::load(path)?.apply(&mut config)?;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(size) = args.history_size {
        config.default_namespace.history_size = size;
    }
    if let Some(queue) = args.outbound_queue {
        config.outbound_queue = queue;
    }
    if let Some(bytes) = args.max_queued_bytes {
        config.max_queued_bytes = bytes;
    }
    if args.api_key.is_some() {
        config.api_key = args.api_key;
    }
    if !args.allowed_origins.is_empty() {
        config.allowed_origins = args.allowed_origins;
    }
    if let Some(secret) = args.jwt_hmac_secret {
        config.auth = config.auth.hmac_secret(secret);
    }
    if let Some(path) = &args.jwt_rsa_public_key {
        config.auth = config
            .auth
            .rsa_public_key_pem(std::fs::read_to_string(path)?);
    }
    if let Some(path) = &args.jwt_ec_public_key {
        config.auth = config
            .auth
            .ec_public_key_pem(std::fs::read_to_string(path)?);
    }
    if let Some(allowed) = args.allow_anonymous {
        config.auth = config.auth.allow_anonymous(allowed);
    }
    if let Some(ttl) = args.history_ttl {
        let ttl = seconds(ttl, "history-ttl")?;
        config.default_namespace.history_ttl = (!ttl.is_zero()).then_some(ttl);
    }
    if let Some(max) = args.max_subscriptions {
        config.max_subscriptions = max;
    }
    if let Some(size) = args.max_message_size {
        let connection = &mut config.websocket.connection;
        *connection = connection
            .clone()
            .max_message_size(size)
            .max_frame_size(size);
    }
    if let Some(on) = args.compression {
        let connection = &mut config.websocket.connection;
        *connection = connection.clone().compression(on);
    }
    if let Some(max) = args.max_connections {
        config.max_connections = max;
    }
    if let Some(max) = args.max_connections_per_ip {
        config.max_connections_per_ip = max;
    }
    if let Some(bytes) = args.max_buffered_bytes {
        config.max_buffered_bytes = Some(bytes);
    }
    if let Some(secs) = args.buffer_wait {
        config.buffer_wait = seconds(secs, "buffer-wait")?;
    }
    if let Some(rate) = args.rate_limit {
        anyhow::ensure!(rate > 0.0, "--rate-limit must be above 0");
        config.rate_limit = rate;
    }
    if let Some(burst) = args.rate_burst {
        config.rate_burst = burst;
    }
    if let Some(secs) = args.ping_interval {
        config.websocket.ping_interval = seconds(secs, "ping-interval")?;
        anyhow::ensure!(
            !config.websocket.ping_interval.is_zero(),
            "--ping-interval must be above 0"
        );
    }
    if let Some(secs) = args.pong_timeout {
        config.websocket.pong_timeout = seconds(secs, "pong-timeout")?;
    }
    if let Some(secs) = args.shutdown_timeout {
        config.shutdown_timeout = seconds(secs, "shutdown-timeout")?;
    }
    if let Some(secs) = args.reconnect_window {
        config.reconnect_window = seconds(secs, "reconnect-window")?;
    }
    if let Some(secs) = args.session_ttl {
        config.http.session_ttl = seconds(secs, "session-ttl")?;
    }
    if let Some(secs) = args.poll_timeout {
        config.http.poll_timeout = seconds(secs, "poll-timeout")?;
    }
    if let Some(secs) = args.sse_heartbeat {
        config.http.sse_heartbeat = seconds(secs, "sse-heartbeat")?;
    }
    if let Some(kind) = args.engine {
        config.engine.kind = kind;
    }
    // Once, over the merged result: a file value and a flag can contradict.
    config.validate()?;
    Ok(config)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    let listener = TcpListener::bind(config.listen).await?;
    tether_server::run(listener, config, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: super::ServeArgs,
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let path =
            std::env::temp_dir().join(format!("tether-serve-test-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\noutbound_queue = 7\n[channels]\nhistory_size = 3\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--history-size",
            "5",
            "--ping-interval",
            "2.5",
            "--history-ttl",
            "0",
            "--compression",
            "false",
        ]);
        let config = super::config(cli.serve).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(config.listen.port(), 9999, "from the file");
        assert_eq!(config.outbound_queue, 7, "from the file");
        assert_eq!(config.default_namespace.history_size, 5, "the flag wins");
        assert_eq!(config.websocket.ping_interval, Duration::from_millis(2500));
        assert_eq!(
            config.default_namespace.history_ttl, None,
            "0: no age limit"
        );
        assert!(!config.websocket.connection.protocol.deflate.enabled);
        assert_eq!(
            config.max_subscriptions,
            tether_server::config::DEFAULT_MAX_SUBSCRIPTIONS,
            "default"
        );
    }
}

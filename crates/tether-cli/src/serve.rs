//! `tether serve`: the real-time server on the embedded in-memory hub.
//! Settings: defaults, then the `--config` TOML file, then `TETHER_*` variables and
//! flags (clap merges those two).

use std::net::SocketAddr;
use std::path::PathBuf;

use tether_server::file::FileConfig;
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
        ]);
        let config = super::config(cli.serve).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(config.listen.port(), 9999, "from the file");
        assert_eq!(config.outbound_queue, 7, "from the file");
        assert_eq!(config.default_namespace.history_size, 5, "the flag wins");
        assert_eq!(
            config.max_subscriptions,
            tether_server::config::DEFAULT_MAX_SUBSCRIPTIONS,
            "default"
        );
    }
}

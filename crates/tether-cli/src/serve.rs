//! `tether serve`: the real-time server on the embedded in-memory hub.

use std::net::SocketAddr;
use std::path::PathBuf;

use tether_server::auth::AuthConfig;

use tether_server::{NamespaceOptions, ServerConfig};
use tokio::net::TcpListener;

/// Arguments of `tether serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TETHER_LISTEN", default_value = tether_server::config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Publications kept per channel for history and recovery.
    #[arg(long, env = "TETHER_HISTORY_SIZE", default_value_t = tether_server::config::DEFAULT_HISTORY_SIZE)]
    history_size: usize,
    /// Messages queued per connection before it is disconnected as a slow consumer.
    #[arg(long, env = "TETHER_OUTBOUND_QUEUE", default_value_t = tether_server::config::DEFAULT_OUTBOUND_QUEUE)]
    outbound_queue: usize,
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

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut auth = AuthConfig::default();
    if let Some(secret) = args.jwt_hmac_secret {
        auth = auth.hmac_secret(secret);
    }
    if let Some(path) = &args.jwt_rsa_public_key {
        auth = auth.rsa_public_key_pem(std::fs::read_to_string(path)?);
    }
    if let Some(path) = &args.jwt_ec_public_key {
        auth = auth.ec_public_key_pem(std::fs::read_to_string(path)?);
    }
    if let Some(allowed) = args.allow_anonymous {
        auth = auth.allow_anonymous(allowed);
    }
    let config = ServerConfig::default()
        .auth(auth)
        .listen(args.listen)
        .default_namespace(NamespaceOptions::default().history_size(args.history_size))
        .outbound_queue(args.outbound_queue)
        .api_key(args.api_key)
        .allowed_origins(args.allowed_origins);
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

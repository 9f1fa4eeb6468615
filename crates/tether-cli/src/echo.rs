//! `tether echo`: an echo server on any path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tether::{Accept, Config, DeflateConfig, Message};
use tokio::net::{TcpListener, TcpStream};

/// Arguments of `tether echo`.
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Refuse permessage-deflate even when a client offers it.
    #[arg(long)]
    no_compression: bool,
    /// Keep the deflate context across messages (both ways): better ratio on
    /// similar messages, about 350 KiB more per connection.
    #[arg(long)]
    context_takeover: bool,
    /// Largest message accepted, in bytes (after decompression).
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// PEM certificate chain: serve wss:// instead of ws://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub async fn run(args: EchoArgs) -> anyhow::Result<()> {
    let deflate = DeflateConfig::default()
        .enabled(!args.no_compression)
        .server_no_context_takeover(!args.context_takeover)
        .client_no_context_takeover(!args.context_takeover);
    let config = Config::default()
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_message_size)
        .deflate(deflate);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = tether::tls::server_config(&std::fs::read(cert)?, &std::fs::read(key)?)?;
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
        _ => None,
    };
    let listener = TcpListener::bind(args.listen).await?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    tracing::info!(
        "echo server listening on {scheme}://{}",
        listener.local_addr()?
    );
    let config = Arc::new(config);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = config.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                Some(tls) => match tls.accept(tcp).await {
                    Ok(stream) => {
                        serve(tether::MaybeTlsStream::ServerTls(Box::new(stream)), &config).await
                    }
                    Err(e) => Err(e.into()),
                },
                None => serve_tcp(tcp, &config).await,
            };
            match result {
                Ok(()) => tracing::debug!(%peer, "connection closed"),
                Err(e) => tracing::debug!(%peer, error = %e, "connection ended"),
            }
        });
    }
}

async fn serve_tcp(tcp: TcpStream, config: &Config) -> tether::Result<()> {
    tcp.set_nodelay(true)?;
    serve(tether::MaybeTlsStream::Plain(tcp), config).await
}

async fn serve(stream: tether::MaybeTlsStream, config: &Config) -> tether::Result<()> {
    let mut ws = tether::accept_with(stream, config, |_, _| Ok(Accept::default())).await?;
    while let Some(message) = ws.recv().await? {
        if let Message::Text(_) | Message::Binary(_) = message {
            ws.send(message).await?;
        }
    }
    Ok(())
}

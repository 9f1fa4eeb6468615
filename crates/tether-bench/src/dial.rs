//! Opening client connections, many at a time.
//!
//! One source address reaches a server port from at most ~28 000 ephemeral
//! ports, so against a loopback server the dialer spreads its connections over
//! 127.0.0.1, 127.0.0.2, … ([`PER_SOURCE_ADDRESS`] each), all of which are
//! loopback on Linux.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tether::{MaybeTlsStream, WebSocket};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

use crate::error::{BenchError, Result};
use crate::progress::Progress;

/// Connections per loopback source address before the next one is used.
pub const PER_SOURCE_ADDRESS: usize = 20_000;

/// A client connection as the scenarios use it: over TCP, or over a stream
/// of an HTTP/2 connection of its own ([`Options::http2`](crate::Options::http2)).
pub type Connection = WebSocket<MaybeTlsStream>;

/// Opens connections to one URL.
#[derive(Debug)]
pub struct Dialer {
    url: String,
    addr: SocketAddr,
    compress: bool,
    /// The largest message (and frame) a connection accepts from the server,
    /// when raised past the library's default.
    max_message: Option<usize>,
    /// Each WebSocket over an HTTP/2 connection of its own (h2c).
    http2: bool,
    opened: AtomicUsize,
}

impl Dialer {
    /// A dialer for `url` (`ws://HOST:PORT/PATH`; the host must resolve).
    pub async fn new(url: &str, compress: bool) -> Result<Self> {
        let bad = |reason: &str| BenchError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "ws" {
            return Err(bad("the load generator speaks ws:// only"));
        }
        let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| bad("the host does not resolve"))?;
        Ok(Self {
            url: url.to_owned(),
            addr,
            compress,
            max_message: None,
            http2: false,
            opened: AtomicUsize::new(0),
        })
    }

    /// A dialer for the scenario's URL, compression and HTTP version.
    pub async fn for_options(options: &crate::Options) -> Result<Self> {
        let mut dialer = Self::new(&options.url, options.compress).await?;
        dialer.http2 = options.http2;
        Ok(dialer)
    }

    /// Lets connections accept messages and frames up to `bytes` from the
    /// server (the library's default limits them to 64 MiB and 16 MiB).
    pub fn accept_up_to(mut self, bytes: usize) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// The URL's path.
    pub fn path(&self) -> String {
        url::Url::parse(&self.url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default()
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The source address for the `n`th connection.
    fn source(&self, n: usize) -> Option<SocketAddr> {
        match self.addr {
            SocketAddr::V4(target) if target.ip().is_loopback() => {
                let spread = (n / PER_SOURCE_ADDRESS) as u32;
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + spread);
                Some(SocketAddr::from((ip, 0)))
            }
            _ => None,
        }
    }

    /// Opens one connection and completes the WebSocket handshake.
    pub async fn connect(&self) -> Result<Connection> {
        let n = self.opened.fetch_add(1, Ordering::Relaxed);
        let connect = async {
            let socket = match self.addr {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            if let Some(source) = self.source(n) {
                socket.bind(source)?;
            }
            let tcp = socket.connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            let mut client = tether::ClientBuilder::new(self.url.clone());
            if let Some(bytes) = self.max_message {
                let config = tether::Config::default()
                    .max_message_size(bytes)
                    .max_frame_size(bytes);
                client = client.config(config);
            }
            let client = client.compression(self.compress);
            let (ws, _) = if self.http2 {
                let connection = client.open_http2_on(tcp).await?;
                client.connect_over(&connection).await?
            } else {
                client.connect_on(MaybeTlsStream::Plain(tcp)).await?
            };
            Ok::<_, tether::Error>(ws)
        };
        connect.await.map_err(|source| BenchError::Connect {
            url: self.url.clone(),
            source,
        })
    }

    /// Opens `n` connections, `concurrency` at a time.
    pub async fn connect_many(
        self: &Arc<Self>,
        n: usize,
        concurrency: usize,
        progress: &Progress,
    ) -> Result<Vec<Connection>> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            let dialer = self.clone();
            tasks.spawn(async move {
                let result = dialer.connect().await;
                drop(permit);
                result
            });
        }
        let mut connections = Vec::with_capacity(n);
        while let Some(joined) = tasks.join_next().await {
            let ws = joined.map_err(|e| BenchError::Protocol(e.to_string()))??;
            progress.inc(1);
            connections.push(ws);
        }
        Ok(connections)
    }
}

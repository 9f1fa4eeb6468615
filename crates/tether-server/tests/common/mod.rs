//! Shared by the server's integration tests: an in-process server on a free
//! loopback port, a protocol client, a raw HTTP call, a slow reader.
#![allow(dead_code)] // each test binary uses a different subset

pub mod transports;

#[allow(unused_imports)] // each test binary uses a different subset
pub use tether_testing::{http, http_raw, Conversation, Sorted};

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tether::{MaybeTlsStream, Message, WebSocket};
use tether_server::ServerConfig;
use tokio::net::{TcpListener, TcpStream};

pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Begins a graceful shutdown (as SIGTERM does) and waits up to
    /// `within` for the server to finish it.
    pub async fn shut_down(mut self, within: Duration) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(within, &mut self.task)
            .await
            .expect("server stopped in time")
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(config: ServerConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            // A dropped sender (the test ended) is not a shutdown.
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tether_server::run(listener, config, shutdown)
            .await
            .unwrap();
    });
    Server {
        addr,
        task,
        stop: Some(stop),
    }
}

/// A protocol client over WebSocket.
pub struct Client {
    pub ws: WebSocket<MaybeTlsStream>,
    sorted: Sorted,
}

impl Client {
    pub async fn connect(server: &Server) -> Self {
        Self::connect_with(server, true).await
    }

    /// A client with permessage-deflate offered (`compress`) or not.
    pub async fn connect_with(server: &Server, compress: bool) -> Self {
        let url = format!("ws://{}/connection/websocket", server.addr);
        let (ws, _) = tether::ClientBuilder::new(url)
            .compression(compress)
            .connect()
            .await
            .unwrap();
        assert_eq!(ws.is_compressed(), compress);
        Self {
            ws,
            sorted: Sorted::default(),
        }
    }
}

impl Conversation for Client {
    async fn send(&mut self, request: &Value) {
        self.ws.send(request.to_string()).await.unwrap();
    }

    async fn next_message(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.ws.recv())
                .await
                .expect("message in time");
            match message {
                Ok(Some(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    fn sorted(&mut self) -> &mut Sorted {
        &mut self.sorted
    }
}

/// A client with a tiny receive buffer and no compression, so a burst of
/// publications backs up in the server's queue while it is not reading.
pub async fn slow_client(server: &Server) -> WebSocket<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let url = format!("ws://{}/connection/websocket", server.addr);
    tether::ClientBuilder::new(url)
        .compression(false)
        .connect_on(tcp)
        .await
        .unwrap()
        .0
}

/// Seconds since the Unix epoch, for token claims.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token over `claims`, signed with `secret`.
pub fn hs256(secret: &str, claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &key,
    )
    .unwrap()
}

/// Checks the exposition format line by line: `# HELP`/`# TYPE`/`# EOF` comments,
/// and `name{labels} value` samples with a numeric value.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF",
                "{line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample without value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

/// The server's metrics, parsed.
pub async fn metrics(server: &Server) -> std::collections::HashMap<String, f64> {
    let (status, body) = http_raw(server.addr, "GET", "/metrics", "", "").await;
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}

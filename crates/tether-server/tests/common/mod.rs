//! Shared by the server's integration tests: an in-process server on a free
//! loopback port, a protocol client, a raw HTTP call, a slow reader.
#![allow(dead_code)] // each test binary uses a different subset

pub mod transports;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tether::{MaybeTlsStream, Message, WebSocket};
use tether_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// A protocol client that sorts replies from pushes.
pub struct Client {
    pub ws: WebSocket<MaybeTlsStream>,
    next_id: u64,
    pushes: std::collections::VecDeque<Value>,
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
            next_id: 0,
            pushes: Default::default(),
        }
    }

    pub async fn next_value(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.ws.recv())
                .await
                .expect("message in time")
                .unwrap()
                .expect("connection open");
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Sends a request and returns its reply; pushes that arrive first are kept.
    pub async fn call(&mut self, mut request: Value) -> Value {
        self.next_id += 1;
        request["id"] = json!(self.next_id);
        self.ws.send(request.to_string()).await.unwrap();
        self.reply_to(self.next_id).await
    }

    pub async fn reply_to(&mut self, id: u64) -> Value {
        loop {
            let value = self.next_value().await;
            if value.get("push").is_some() {
                self.pushes.push_back(value);
            } else {
                assert_eq!(value["id"], json!(id), "reply out of order: {value}");
                return value;
            }
        }
    }

    /// The next push, from the kept ones first.
    pub async fn push(&mut self) -> Value {
        match self.pushes.pop_front() {
            Some(push) => push,
            None => self.next_value().await,
        }
    }

    /// The next publication push, skipping join/leave.
    pub async fn publication(&mut self) -> Value {
        loop {
            let push = self.push().await;
            if push["push"] == "publication" {
                return push;
            }
        }
    }
}

pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, Value) {
    let head = format!("Content-Type: application/json\r\n{headers}");
    let (status, body) = http_raw(addr, method, path, body, &head).await;
    (
        status,
        serde_json::from_str(body.trim()).unwrap_or(Value::Null),
    )
}

/// An HTTP/1.1 request with exactly the extra `headers` lines given (each
/// ending in CRLF; no Content-Type unless there is one): (status, body text).
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
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

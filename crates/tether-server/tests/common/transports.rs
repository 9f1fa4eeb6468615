//! One protocol client over any of the three transports, so a scenario is
//! written once and run on each: WebSocket, Server-Sent Events (a raw
//! HTTP/1.0 stream, read as an `EventSource` would) and long-polling (polls
//! by cursor). Requests go as frames, or as POSTs to the session.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tether::{MaybeTlsStream, Message, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use tether_testing::{Conversation, Sorted};

use super::{http_raw, Server};

/// What carries a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Sse,
    LongPoll,
}

/// Runs a scenario `async fn name(transport: Transport)` once per transport,
/// as three tests in a module named after it.
#[macro_export]
macro_rules! on_every_transport {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::common::transports::Transport;
            #[tokio::test]
            async fn websocket() {
                super::$scenario(Transport::WebSocket).await
            }
            #[tokio::test]
            async fn sse() {
                super::$scenario(Transport::Sse).await
            }
            #[tokio::test]
            async fn longpoll() {
                super::$scenario(Transport::LongPoll).await
            }
        }
    )*};
}

enum Link {
    Ws(Box<WebSocket<MaybeTlsStream>>),
    Http {
        addr: SocketAddr,
        key: String,
        /// The messages the stream or the polls brought, in order; closed
        /// when the session's last message came (or the stream ended).
        incoming: mpsc::UnboundedReceiver<Value>,
        reader: tokio::task::JoinHandle<()>,
        /// The SSE stream's last event id (for a resume), or the last poll's cursor.
        last_event_id: Arc<Mutex<Option<String>>>,
        /// While true, the stream is not read and no poll is made.
        paused: tokio::sync::watch::Sender<bool>,
        /// Where every stream of the session sends, so a reconnect loses
        /// nothing that was read before it (weak: the channel closes when
        /// the last reader ends).
        tx: mpsc::WeakUnboundedSender<Value>,
    },
}

/// How a client opens its session.
#[derive(Debug, Default, Clone)]
pub struct Opening {
    /// `Origin` header.
    pub origin: Option<String>,
}

/// A protocol client that sorts replies from pushes, over any transport.
pub struct AnyClient {
    pub transport: Transport,
    link: Link,
    sorted: Sorted,
    /// The client id the session got (HTTP transports; WebSocket learns it from `connect`).
    pub client: Option<String>,
}

/// Why a session could not open: the HTTP status.
#[derive(Debug)]
pub struct Refused(pub u16);

impl AnyClient {
    pub async fn open(server: &Server, transport: Transport) -> Self {
        Self::open_with(server, transport, Opening::default())
            .await
            .expect("session opens")
    }

    pub async fn open_with(
        server: &Server,
        transport: Transport,
        opening: Opening,
    ) -> Result<Self, Refused> {
        let addr = server.addr;
        let origin = opening
            .origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        let (link, client) = match transport {
            Transport::WebSocket => {
                let url = format!("ws://{addr}/connection/websocket");
                let mut builder = tether::ClientBuilder::new(url).compression(false);
                if let Some(origin) = origin.strip_prefix("Origin: ") {
                    builder = builder.header("Origin", origin.trim_end());
                }
                // A small receive buffer, so a client that pauses backs up
                // the server's queue soon, as a slow one over a network would.
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_recv_buffer_size(16 << 10).unwrap();
                let tcp = socket.connect(addr).await.unwrap();
                match builder.connect_on(MaybeTlsStream::Plain(tcp)).await {
                    Ok((ws, _)) => (Link::Ws(Box::new(ws)), None),
                    Err(tether::Error::Handshake(tether::HandshakeError::UnexpectedStatus(s))) => {
                        return Err(Refused(s))
                    }
                    Err(e) => panic!("connect: {e}"),
                }
            }
            Transport::LongPoll => {
                let (status, body) =
                    http_raw(addr, "POST", "/connection/longpoll", "", &origin).await;
                if status != 200 {
                    return Err(Refused(status));
                }
                let opened: Value = serde_json::from_str(&body).unwrap();
                let key = opened["session"].as_str().unwrap().to_owned();
                let (tx, incoming) = mpsc::unbounded_channel();
                let last_event_id = Arc::new(Mutex::new(None));
                let paused = tokio::sync::watch::Sender::new(false);
                let reader = tokio::spawn(poll_loop(
                    addr,
                    key.clone(),
                    tx.clone(),
                    last_event_id.clone(),
                    paused.subscribe(),
                ));
                let link = Link::Http {
                    addr,
                    key,
                    incoming,
                    reader,
                    last_event_id,
                    paused,
                    tx: tx.downgrade(),
                };
                (link, opened["client"].as_str().map(str::to_owned))
            }
            Transport::Sse => return Self::open_sse(server, "/connection/sse", &origin).await,
        };
        Ok(Self {
            transport,
            link,
            sorted: Sorted::default(),
            client,
        })
    }

    /// An SSE client opened at `path` (with its query) and extra `headers`.
    pub async fn open_sse(server: &Server, path: &str, headers: &str) -> Result<Self, Refused> {
        let last_event_id = Arc::new(Mutex::new(None));
        let paused = tokio::sync::watch::Sender::new(false);
        let (tx, incoming) = mpsc::unbounded_channel();
        let (opened, reader) = sse_stream(
            server.addr,
            path,
            headers,
            tx.clone(),
            last_event_id.clone(),
            paused.subscribe(),
        )
        .await?;
        let link = Link::Http {
            addr: server.addr,
            key: opened["session"].as_str().unwrap().to_owned(),
            incoming,
            reader,
            last_event_id,
            paused,
            tx: tx.downgrade(),
        };
        Ok(Self {
            transport: Transport::Sse,
            link,
            sorted: Sorted::default(),
            client: opened["client"].as_str().map(str::to_owned),
        })
    }

    /// The SSE stream's last event id.
    pub fn last_event_id(&self) -> Option<String> {
        match &self.link {
            Link::Http { last_event_id, .. } => last_event_id.lock().unwrap().clone(),
            Link::Ws(_) => None,
        }
    }

    /// The session key (HTTP transports).
    pub fn key(&self) -> &str {
        match &self.link {
            Link::Http { key, .. } => key,
            Link::Ws(_) => panic!("a WebSocket session has no key"),
        }
    }

    /// Everything up to the end of the session (its last message first if a
    /// push was kept).
    pub async fn rest(&mut self) -> Vec<Value> {
        let mut rest = self.sorted.take_pushes();
        while let Some(message) = self.next_message().await {
            rest.push(message);
        }
        rest
    }

    /// Sends several requests at once: WebSocket frames back to back, or one
    /// POST holding them all.
    pub async fn send_all(&mut self, requests: &[Value]) {
        match &mut self.link {
            Link::Ws(ws) => {
                for request in requests {
                    if ws.send(request.to_string()).await.is_err() {
                        return;
                    }
                }
            }
            Link::Http { addr, key, .. } => {
                let path = format!("/connection/session/{key}");
                let body = Value::Array(requests.to_vec()).to_string();
                let (status, body) = http_raw(*addr, "POST", &path, &body, "").await;
                assert_eq!(status, 202, "{body}");
            }
        }
    }

    /// Stops taking messages, as a slow reader does: the socket or stream
    /// is left unread (a small receive buffer fills), no more polls are made.
    pub fn pause(&mut self) {
        if let Link::Http { paused, .. } = &self.link {
            paused.send_replace(true);
        }
    }

    /// Takes messages again from where it stopped.
    pub async fn resume(&mut self) {
        if let Link::Http { paused, .. } = &self.link {
            paused.send_replace(false);
        }
    }

    /// Goes away without a word: the socket or stream is dropped, polls stop.
    pub fn vanish(self) {
        if let Link::Http { reader, .. } = &self.link {
            reader.abort();
        }
    }

    /// For SSE: drops the stream (as a network failure would) and opens a
    /// new one with the last event id, as `EventSource` does; messages go on
    /// arriving in order.
    pub async fn reconnect_sse(&mut self) -> Value {
        let Link::Http {
            addr,
            incoming,
            reader,
            last_event_id,
            paused,
            tx,
            ..
        } = &mut self.link
        else {
            panic!("not an SSE client");
        };
        reader.abort();
        let id = last_event_id.lock().unwrap().clone();
        let header = id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let sender = tx.upgrade().unwrap_or_else(|| {
            // The last stream ended and its channel closed: a new one.
            let (sender, receiver) = mpsc::unbounded_channel();
            *incoming = receiver;
            *tx = sender.downgrade();
            sender
        });
        let (opened, task) = sse_stream(
            *addr,
            "/connection/sse",
            &header,
            sender,
            last_event_id.clone(),
            paused.subscribe(),
        )
        .await
        .expect("stream reopens");
        *reader = task;
        opened
    }
}

impl Conversation for AnyClient {
    /// Sends one request as it is.
    async fn send(&mut self, request: &Value) {
        match &mut self.link {
            Link::Ws(ws) => ws.send(request.to_string()).await.unwrap(),
            Link::Http { addr, key, .. } => {
                let path = format!("/connection/session/{key}");
                let (status, body) = http_raw(*addr, "POST", &path, &request.to_string(), "").await;
                assert_eq!(status, 202, "{body}");
            }
        }
    }

    /// The next message, or `None` once the session is over.
    async fn next_message(&mut self) -> Option<Value> {
        let wait = Duration::from_secs(10);
        match &mut self.link {
            Link::Ws(ws) => loop {
                let message = tokio::time::timeout(wait, ws.recv())
                    .await
                    .expect("message in time");
                match message {
                    Ok(Some(Message::Text(text))) => {
                        return Some(serde_json::from_str(&text).unwrap())
                    }
                    Ok(Some(Message::Close(_))) | Ok(None) | Err(_) => return None,
                    Ok(Some(_)) => {}
                }
            },
            Link::Http { incoming, .. } => tokio::time::timeout(wait, incoming.recv())
                .await
                .expect("message in time"),
        }
    }

    fn sorted(&mut self) -> &mut Sorted {
        &mut self.sorted
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Link::Http { reader, .. } = self {
            reader.abort();
        }
    }
}

/// Polls from `cursor` on, sending each message to `out` (and noting the
/// cursor where a pause resumes), until the session ends or is gone.
async fn poll_loop(
    addr: SocketAddr,
    key: String,
    out: mpsc::UnboundedSender<Value>,
    noted: Arc<Mutex<Option<String>>>,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    let mut cursor = 0;
    loop {
        let _ = paused.wait_for(|paused| !paused).await;
        let path = format!("/connection/longpoll/{key}?cursor={cursor}");
        let (status, body) = http_raw(addr, "GET", &path, "", "").await;
        if status != 200 {
            return;
        }
        let answer: Value = serde_json::from_str(&body).unwrap();
        for message in answer["messages"].as_array().unwrap() {
            if out.send(message.clone()).is_err() {
                return;
            }
        }
        cursor = answer["cursor"].as_u64().unwrap();
        *noted.lock().unwrap() = Some(cursor.to_string());
        if answer["ended"] == true {
            return;
        }
    }
}

/// Opens an SSE stream (HTTP/1.0, so the body ends with the connection):
/// returns the `session` event's data and the task that sends each message
/// event's data to `out`, noting its id.
async fn sse_stream(
    addr: SocketAddr,
    path: &str,
    headers: &str,
    out: mpsc::UnboundedSender<Value>,
    last_event_id: Arc<Mutex<Option<String>>>,
    paused: tokio::sync::watch::Receiver<bool>,
) -> Result<(Value, tokio::task::JoinHandle<()>), Refused> {
    // A small receive buffer, so a paused reader backs the server up soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: test\r\nAccept: text/event-stream\r\n{headers}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "stream ended in its head");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let status: u16 = head[9..12].parse().unwrap();
    if status != 200 {
        return Err(Refused(status));
    }
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/event-stream"), "{head}");
    assert!(lower.contains("cache-control: no-cache"), "{head}");
    assert!(lower.contains("x-accel-buffering: no"), "{head}");
    let mut events = EventReader {
        buffer: buffer[head_end + 4..].to_vec(),
        tcp,
        paused,
    };
    let (name, data, _) = events.next().await.expect("a session event");
    assert_eq!(name.as_deref(), Some("session"));
    let opened: Value = serde_json::from_str(&data).unwrap();
    let task = tokio::spawn(async move {
        while let Some((name, data, id)) = events.next().await {
            assert_eq!(name, None, "only message events follow");
            if let Some(id) = id {
                *last_event_id.lock().unwrap() = Some(id);
            }
            if out.send(serde_json::from_str(&data).unwrap()).is_err() {
                return;
            }
        }
    });
    Ok((opened, task))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads events as the SSE format defines them (comments skipped).
struct EventReader {
    buffer: Vec<u8>,
    tcp: TcpStream,
    paused: tokio::sync::watch::Receiver<bool>,
}

impl EventReader {
    /// The next event: its name, its data lines joined, its id.
    async fn next(&mut self) -> Option<(Option<String>, String, Option<String>)> {
        loop {
            while let Some(at) = find(&self.buffer, b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..at + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut name, mut data, mut id) = (None, Vec::new(), None);
                for line in text.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push(value);
                    } else if let Some(value) = line.strip_prefix("id: ") {
                        id = Some(value.to_owned());
                    }
                }
                if !data.is_empty() {
                    return Some((name, data.join("\n"), id));
                }
            }
            let _ = self.paused.wait_for(|paused| !paused).await;
            let mut chunk = [0u8; 16384];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

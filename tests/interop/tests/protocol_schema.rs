//! Every message of a real session with `tether serve`, in both directions,
//! checked against docs/protocol.schema.json by Python `jsonschema`, and each
//! reply's result against its operation's result type: the schema the
//! JavaScript client follows describes what the server really sends.

use std::time::Duration;

use serde_json::{json, Value};
use tether::Message;
use tether_interop::{repo_root, run_python_script};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A client that records what it sends and receives.
struct Recorder {
    ws: tether::WebSocket<tether::MaybeTlsStream>,
    lines: Vec<Value>,
    next: u64,
}

impl Recorder {
    async fn connect(url: &str) -> Self {
        let (ws, _) = tether::connect(url).await.unwrap();
        Self {
            ws,
            lines: Vec::new(),
            next: 0,
        }
    }

    /// The next text message, recorded as a server message.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.ws.recv())
                .await
                .expect("in time")
                .unwrap();
            match message {
                Some(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    self.lines.push(json!({"kind": "server", "message": value}));
                    return Some(value);
                }
                Some(Message::Close(_)) | None => return None,
                Some(_) => {}
            }
        }
    }

    /// Sends `request` (given an id) and returns its reply, recording both and
    /// the reply's result against `op`.
    async fn call(&mut self, request: Value) -> Value {
        self.call_as("client", request).await
    }

    /// [`call`](Self::call) for a request the schema must refuse (it is still
    /// answered: with an error reply, which must match).
    async fn call_invalid(&mut self, request: Value) -> Value {
        self.call_as("invalid", request).await
    }

    async fn call_as(&mut self, kind: &str, mut request: Value) -> Value {
        self.next += 1;
        request["id"] = json!(self.next);
        let op = request["op"].clone();
        self.lines.push(json!({"kind": kind, "message": request}));
        self.ws.send(request.to_string()).await.unwrap();
        loop {
            let value = self.next().await.expect("a reply");
            if value["id"] == json!(self.next) {
                if let Some(result) = value.get("result") {
                    let line = json!({"kind": "result", "op": op, "message": result});
                    self.lines.push(line);
                }
                return value;
            }
        }
    }
}

#[tokio::test]
async fn a_whole_session_matches_the_protocol_schema() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = tether_server::ServerConfig::default();
    let server = tokio::spawn(tether_server::run(listener, config, std::future::pending()));
    let url = format!("ws://{addr}/connection/websocket");
    let mut alice = Recorder::connect(&url).await;
    let mut bob = Recorder::connect(&url).await;
    let client = alice.call(json!({"op": "connect"})).await["result"]["client"].clone();
    let subscribed = alice
        .call(json!({"op": "subscribe", "channel": "chat:x"}))
        .await;
    let epoch = subscribed["result"]["epoch"].clone();
    bob.call(json!({"op": "subscribe", "channel": "chat:x"}))
        .await;
    for n in 0..3 {
        let data = json!({"text": "hi", "n": n, "tags": ["a", null, 1.5]});
        bob.call(json!({"op": "publish", "channel": "chat:x", "data": data, "idempotency_key": format!("k{n}")}))
            .await;
    }
    alice
        .call(json!({"op": "presence", "channel": "chat:x"}))
        .await;
    alice
        .call(json!({"op": "history", "channel": "chat:x", "limit": 2}))
        .await;
    alice
        .call(json!({"op": "unsubscribe", "channel": "chat:x"}))
        .await;
    let recover = json!({"offset": 1, "epoch": epoch});
    let recovered = alice
        .call(json!({"op": "subscribe", "channel": "chat:x", "recover": recover}))
        .await;
    assert_eq!(recovered["result"]["recovered"], true, "{recovered}");
    alice.call(json!({"op": "ping"})).await;
    let refused = alice.call_invalid(json!({"op": "teleport"})).await;
    assert_eq!(refused["error"]["code"], 101);
    bob.call(json!({"op": "unsubscribe", "channel": "chat:x"}))
        .await;
    // Kicked through the API: a disconnect push ends alice's session.
    let body = json!({"client": client}).to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /api/disconnect HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    while alice.next().await.is_some() {}
    let mut lines = alice.lines;
    lines.extend(bob.lines);
    let pushes: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["message"]["push"].as_str())
        .collect();
    for kind in ["publication", "join", "leave", "disconnect"] {
        assert!(pushes.contains(&kind), "a {kind} push was seen: {pushes:?}");
    }
    let input: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let schema = repo_root().join("docs/protocol.schema.json");
    let output = run_python_script("check_schema.py", &[&schema], &input).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), format!("ok {}", lines.len()));
    server.abort();
}

//! Running the server: the embedded demo and JavaScript client, transports
//! switched off, dead connections dropped by the
//! heartbeat, graceful shutdown with reconnect advice, Prometheus metrics.

mod common;

use std::time::Duration;

use common::{metrics, start, Client};
use serde_json::{json, Value};
use tether::Message;
use tether_server::ServerConfig;
use tether_testing::Conversation;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One `GET` on a fresh connection: the whole answer, head and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn serves_the_embedded_demo_and_the_javascript_client() {
    let server = start(ServerConfig::default()).await;
    let page = get(server.addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html") && page.contains("/app.js"));
    // The demo runs on the JavaScript client, as an application would.
    let script = get(server.addr, "/app.js").await;
    assert!(script.contains("from '/tether.js'"));
    // The client, every module byte for byte as clients/js has it, as
    // module scripts.
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/js");
    let mut modules = vec!["tether.js".to_string()];
    for entry in std::fs::read_dir(js.join("tether")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        modules.push(format!("tether/{name}"));
    }
    assert!(modules.len() > 2, "{modules:?}");
    for module in &modules {
        let answer = get(server.addr, &format!("/{module}")).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{module}: {answer}");
        assert!(answer
            .to_ascii_lowercase()
            .contains("content-type: text/javascript"));
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            body,
            std::fs::read_to_string(js.join(module)).unwrap(),
            "{module}"
        );
    }
    assert!(get(server.addr, "/tether.js")
        .await
        .contains("export { Client }"));
    let missing = get(server.addr, "/tether/nothing.js").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

#[tokio::test]
async fn a_transport_switched_off_is_not_served() {
    let mut config = ServerConfig::default();
    config.websocket.enabled = false;
    config.http.sse = false;
    let server = start(config).await;
    let upgrade = "GET /connection/websocket HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 404");
    assert!(get(server.addr, "/connection/sse")
        .await
        .starts_with("HTTP/1.1 404"));
    // Long-polling is still on, with the session endpoint it shares.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"POST /connection/longpoll HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""session":"#), "{answer}");
}

#[tokio::test]
async fn drops_a_dead_connection_and_its_presence() {
    let config =
        ServerConfig::default().heartbeat(Duration::from_millis(200), Duration::from_millis(200));
    let server = start(config).await;
    let mut watcher = Client::connect(&server).await;
    watcher
        .call(json!({"op": "subscribe", "channel": "room"}))
        .await;
    // This client subscribes and then never reads again, so it never answers a ping.
    let mut dead = Client::connect(&server).await;
    dead.call(json!({"op": "subscribe", "channel": "room"}))
        .await;
    assert_eq!(watcher.push().await["push"], "join");
    let started = std::time::Instant::now();
    let leave = watcher.push().await;
    assert_eq!(leave["push"], "leave");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The watcher itself answers pings (it is reading), so it stays.
    let presence = watcher
        .call(json!({"op": "presence", "channel": "room"}))
        .await;
    assert_eq!(presence["result"]["clients"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn shuts_down_with_1001_and_a_jittered_reconnect_delay() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig::default().shutdown(Duration::from_secs(5), Duration::from_secs(3));
    let server = tokio::spawn(async move {
        tether_server::run(listener, config, async {
            let _ = stopped.await;
        })
        .await
    });
    let url = format!("ws://{addr}/connection/websocket");
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (mut ws, _) = tether::connect(&url).await.unwrap();
        ws.send(r#"{"id":1,"op":"subscribe","channel":"c"}"#)
            .await
            .unwrap();
        ws.recv().await.unwrap();
        clients.push(ws);
    }
    stop.send(()).unwrap();
    for mut ws in clients {
        let mut advice = None;
        let mut code = None;
        while let Ok(Some(message)) = ws.recv().await {
            match message {
                Message::Text(text) if text.contains("disconnect") => {
                    advice = Some(text.to_string())
                }
                Message::Close(Some(frame)) => code = Some(frame.code.0),
                _ => {}
            }
        }
        assert_eq!(code, Some(1001));
        let advice: Value = serde_json::from_str(&advice.expect("disconnect push")).unwrap();
        assert_eq!(advice["code"], 4000);
        assert!(advice["reconnect_after_ms"].as_u64().unwrap() < 3000);
    }
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stopped")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn exposes_prometheus_metrics() {
    let server =
        start(ServerConfig::default().allowed_origins(vec!["http://ok.example".into()])).await;
    let mut client = Client::connect(&server).await;
    client
        .call(json!({"op": "subscribe", "channel": "m"}))
        .await;
    client
        .call(json!({"op": "publish", "channel": "m", "data": 1}))
        .await;
    client.publication().await;
    let url = format!("ws://{}/connection/websocket", server.addr);
    let _ = tether::ClientBuilder::new(&url)
        .header("Origin", "http://evil.example")
        .connect()
        .await;
    let samples = metrics(&server).await;
    assert_eq!(samples[r#"tether_connections{transport="websocket"}"#], 1.0);
    assert_eq!(samples["tether_subscriptions"], 1.0);
    assert_eq!(samples["tether_publications_total"], 1.0);
    assert!(samples["tether_messages_in_total"] >= 2.0);
    assert!(samples["tether_messages_out_total"] >= 3.0);
    assert_eq!(
        samples["tether_rejected_handshakes_total{reason=\"origin\"}"],
        1.0
    );
    assert_eq!(samples["tether_fanout_seconds_count"], 1.0);
}

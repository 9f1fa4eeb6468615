//! The server over real sockets: pub/sub, recovery, idempotency, bad requests,
//! the HTTP API, slow consumers.

mod common;

use std::time::Duration;

use common::{hs256, http, now, slow_client, start, Client};
use serde_json::{json, Value};
use tether::{Message, WebSocket};
use tether_server::{NamespaceOptions, ServerConfig};
use tether_testing::Conversation;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn delivers_publications_with_increasing_offsets() {
    let server = start(ServerConfig::default()).await;
    let mut subscriber = Client::connect(&server).await;
    let mut publisher = Client::connect(&server).await;
    let reply = subscriber
        .call(json!({"op": "subscribe", "channel": "scores:match-42"}))
        .await;
    assert_eq!(reply["result"]["offset"], 0);
    for n in 1..=3 {
        let ack = publisher
            .call(json!({"op": "publish", "channel": "scores:match-42", "data": {"home": n}}))
            .await;
        assert_eq!(ack["result"]["offset"], n);
        let push = subscriber.publication().await;
        assert_eq!(
            push,
            json!({"push": "publication", "channel": "scores:match-42", "offset": n, "data": {"home": n}})
        );
    }
}

#[tokio::test]
async fn fans_out_to_500_subscribers_in_order() {
    let server = start(ServerConfig::default()).await;
    let mut subscribers = Vec::new();
    for n in 0..500 {
        // Half compressed, half plain: each kind shares one frame per publication.
        let mut client = Client::connect_with(&server, n % 2 == 0).await;
        client
            .call(json!({"op": "subscribe", "channel": "feed"}))
            .await;
        subscribers.push(client);
    }
    let mut publisher = Client::connect(&server).await;
    const COUNT: u64 = 20;
    for n in 1..=COUNT {
        publisher
            .call(json!({"op": "publish", "channel": "feed", "data": n}))
            .await;
    }
    let checks = subscribers.into_iter().map(|mut client| {
        tokio::spawn(async move {
            for n in 1..=COUNT {
                let push = client.publication().await;
                assert_eq!(
                    (push["offset"].as_u64(), push["data"].as_u64()),
                    (Some(n), Some(n))
                );
            }
        })
    });
    for check in checks {
        check.await.unwrap();
    }
}

#[tokio::test]
async fn recovers_exactly_the_missed_publications() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    let reply = client
        .call(json!({"op": "subscribe", "channel": "chat:lobby"}))
        .await;
    let epoch = reply["result"]["epoch"].as_str().unwrap().to_owned();
    let mut publisher = Client::connect(&server).await;
    for n in 1..=3 {
        publisher
            .call(json!({"op": "publish", "channel": "chat:lobby", "data": n}))
            .await;
    }
    for n in 1..=3 {
        assert_eq!(client.publication().await["offset"], n);
    }
    drop(client); // a lost connection
    for n in 4..=6 {
        publisher
            .call(json!({"op": "publish", "channel": "chat:lobby", "data": n}))
            .await;
    }
    let mut back = Client::connect(&server).await;
    let reply = back
        .call(json!({"op": "subscribe", "channel": "chat:lobby", "recover": {"offset": 3, "epoch": epoch}}))
        .await;
    assert_eq!(reply["result"]["recovered"], true);
    let offsets: Vec<u64> = reply["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [4, 5, 6]);
    publisher
        .call(json!({"op": "publish", "channel": "chat:lobby", "data": 7}))
        .await;
    assert_eq!(back.publication().await["offset"], 7);
}

#[tokio::test]
async fn says_not_recovered_when_history_no_longer_covers_the_gap() {
    let config = ServerConfig::default().channels(NamespaceOptions::default().history_size(2));
    let server = start(config).await;
    let mut publisher = Client::connect(&server).await;
    let first = publisher
        .call(json!({"op": "publish", "channel": "c", "data": 1}))
        .await;
    let epoch = first["result"]["epoch"].as_str().unwrap().to_owned();
    for n in 2..=6 {
        publisher
            .call(json!({"op": "publish", "channel": "c", "data": n}))
            .await;
    }
    let mut client = Client::connect(&server).await;
    let reply = client
        .call(json!({"op": "subscribe", "channel": "c", "recover": {"offset": 1, "epoch": epoch}}))
        .await;
    assert_eq!(reply["result"]["recovered"], false);
    assert_eq!(reply["result"]["offset"], 6);
    let mut other = Client::connect(&server).await;
    let reply = other
        .call(
            json!({"op": "subscribe", "channel": "c", "recover": {"offset": 6, "epoch": "stale"}}),
        )
        .await;
    assert_eq!(
        reply["result"]["recovered"], false,
        "a different epoch cannot be recovered"
    );
}

#[tokio::test]
async fn delivers_an_idempotent_publish_once() {
    let server = start(ServerConfig::default()).await;
    let mut subscriber = Client::connect(&server).await;
    subscriber
        .call(json!({"op": "subscribe", "channel": "orders"}))
        .await;
    let mut publisher = Client::connect(&server).await;
    let mut offsets = Vec::new();
    for _ in 0..3 {
        let ack = publisher
            .call(json!({"op": "publish", "channel": "orders", "data": {"id": 9}, "idempotency_key": "order-9"}))
            .await;
        offsets.push(ack["result"]["offset"].as_u64().unwrap());
    }
    assert_eq!(offsets, [1, 1, 1]);
    publisher
        .call(json!({"op": "publish", "channel": "orders", "data": "next"}))
        .await;
    assert_eq!(subscriber.publication().await["offset"], 1);
    assert_eq!(
        subscriber.publication().await["data"],
        "next",
        "the retries were not delivered"
    );
}

#[tokio::test]
async fn answers_malformed_requests_and_stays_up() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    client.ws.send("{not json").await.unwrap();
    let reply = client.next_value().await;
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!(0), json!(100))
    );
    let reply = client.call(json!({"op": "teleport"})).await;
    assert_eq!(reply["error"]["code"], 101);
    let reply = client.call(json!({"op": "subscribe"})).await;
    assert_eq!(reply["error"]["code"], 100);
    let reply = client
        .call(json!({"op": "subscribe", "channel": "has space"}))
        .await;
    assert_eq!(reply["error"]["code"], 102);
    client
        .ws
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(client.next_value().await["error"]["code"], 110);
    let reply = client.call(json!({"op": "ping"})).await;
    assert_eq!(reply["result"], json!({}));
}

#[tokio::test]
async fn tracks_presence_with_join_and_leave() {
    let server = start(ServerConfig::default()).await;
    let mut alice = Client::connect(&server).await;
    alice
        .call(json!({"op": "subscribe", "channel": "room"}))
        .await;
    let mut bob = Client::connect(&server).await;
    bob.call(json!({"op": "subscribe", "channel": "room"}))
        .await;
    let join = alice.push().await;
    assert_eq!(join["push"], "join");
    let presence = alice
        .call(json!({"op": "presence", "channel": "room"}))
        .await;
    assert_eq!(presence["result"]["clients"].as_array().unwrap().len(), 2);
    drop(bob);
    let leave = alice.push().await;
    assert_eq!(
        (leave["push"].clone(), leave["client"].clone()),
        (json!("leave"), join["client"].clone())
    );
}

#[tokio::test]
async fn http_api_publish_reaches_websocket_subscribers() {
    let server = start(ServerConfig::default().api_key(Some("secret".into()))).await;
    let mut client = Client::connect(&server).await;
    client
        .call(json!({"op": "subscribe", "channel": "news"}))
        .await;
    let body = r#"{"channel":"news","data":{"headline":"tether ships"}}"#;
    let (status, _) = http(server.addr, "POST", "/api/publish", body, "").await;
    assert_eq!(status, 401, "the API key is required");
    let (status, reply) = http(
        server.addr,
        "POST",
        "/api/publish",
        body,
        "Authorization: apikey secret\r\n",
    )
    .await;
    assert_eq!((status, reply["offset"].clone()), (200, json!(1)));
    assert_eq!(
        client.publication().await["data"]["headline"],
        "tether ships"
    );
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/publish",
        "{oops",
        "Authorization: apikey secret\r\n",
    )
    .await;
    assert_eq!(status, 400);
    let (status, history) = http(
        server.addr,
        "GET",
        "/api/history/news",
        "",
        "Authorization: apikey secret\r\n",
    )
    .await;
    assert_eq!((status, history["offset"].clone()), (200, json!(1)));
    let (status, _) = http(server.addr, "GET", "/healthz", "", "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn disconnects_a_slow_consumer_without_delaying_others() {
    // The publisher is not what this test limits.
    const COUNT: u64 = 1000;
    let mut config = ServerConfig::default()
        .outbound_queue(16)
        .rate_limit(1e6, 1 << 20)
        .channels(NamespaceOptions::default().history_size(COUNT as usize));
    // Long enough for the goodbye to wait until the slow client reads again below.
    config.websocket.close_timeout = Duration::from_secs(60);
    let server = start(config).await;
    // The slow client subscribes and then stops reading. A small receive buffer
    // keeps the kernel (which autotunes up to 32 MiB here) from absorbing it all.
    let slow_url = format!("ws://{}/connection/websocket", server.addr);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    // Uncompressed, or the repetitive payload would shrink to nothing on the wire.
    let (mut slow, _) = tether::ClientBuilder::new(slow_url)
        .compression(false)
        .connect_on(tcp)
        .await
        .unwrap();
    slow.send(r#"{"id":1,"op":"subscribe","channel":"firehose"}"#)
        .await
        .unwrap();
    let mut fast = Client::connect(&server).await;
    fast.call(json!({"op": "subscribe", "channel": "firehose"}))
        .await;
    let mut publisher = Client::connect(&server).await;
    let big = "x".repeat(16 << 10);
    let reader = tokio::spawn(async move {
        for n in 1..=COUNT {
            assert_eq!(fast.publication().await["offset"], n);
        }
    });
    for _ in 1..=COUNT {
        publisher
            .call(json!({"op": "publish", "channel": "firehose", "data": big}))
            .await;
    }
    // The server gives up on the slow client while it still is not reading:
    // its writer, stuck on a full socket, notices the lag.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let samples = metrics(&server).await;
        if samples
            .get("tether_disconnects_total{code=\"4001\"}")
            .is_some_and(|n| *n >= 1.0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no slow-consumer disconnect while the client was stalled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The slow client wakes up: it reads its backlog, then the disconnect advice
    // and a 4001 close frame.
    let mut advice = None;
    let mut code = None;
    let mut received = 0;
    let mut epoch = String::new();
    let mut last_offset = 0;
    let drain = async {
        loop {
            let message = match slow.recv().await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(e) => panic!("slow client failed after {received} messages: {e}"),
            };
            received += 1;
            match message {
                Message::Text(text) if text.contains("\"disconnect\"") => {
                    advice = Some(text.to_string())
                }
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if let Some(subscribed) = value["result"]["epoch"].as_str() {
                        epoch = subscribed.to_owned();
                    }
                    if let Some(offset) = value["offset"].as_u64() {
                        assert_eq!(offset, last_offset + 1, "in order, no gap");
                        last_offset = offset;
                    }
                }
                Message::Close(Some(frame)) => code = Some(frame.code.0),
                _ => {}
            }
        }
    };
    let drained = tokio::time::timeout(Duration::from_secs(30), drain).await;
    assert!(
        drained.is_ok(),
        "slow client still reading after 30 s ({received} messages)"
    );
    assert_eq!(code, Some(4001));
    let advice: Value = serde_json::from_str(&advice.expect("disconnect push")).unwrap();
    assert_eq!(
        (advice["code"].clone(), advice["reconnect"].clone()),
        (json!(4001), json!(true))
    );
    // The advice says where the client stands: exactly the last publication it got.
    let position = &advice["positions"]["firehose"];
    assert_eq!(
        *position,
        json!({"offset": last_offset, "epoch": epoch}),
        "{advice}"
    );
    assert!(last_offset < COUNT, "the slow client was cut off early");
    // Coming back with that position recovers the rest: no gap, no duplicate.
    let mut back = Client::connect(&server).await;
    let reply = back
        .call(json!({"op": "subscribe", "channel": "firehose", "recover": position}))
        .await;
    assert_eq!(reply["result"]["recovered"], true);
    let offsets: Vec<u64> = reply["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, ((last_offset + 1)..=COUNT).collect::<Vec<_>>());
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("fast subscriber kept up")
        .unwrap();
}

#[tokio::test]
async fn serves_the_embedded_demo() {
    let server = start(ServerConfig::default()).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    tcp.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html") && page.contains("/app.js"));
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /app.js HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut script = String::new();
    tcp.read_to_string(&mut script).await.unwrap();
    assert!(script.contains("/connection/websocket"));
}

#[tokio::test]
async fn refuses_a_foreign_origin_with_403() {
    let config = ServerConfig::default().allowed_origins(vec!["http://app.example".into()]);
    let server = start(config).await;
    let url = format!("ws://{}/connection/websocket", server.addr);
    let refused = tether::ClientBuilder::new(&url)
        .header("Origin", "http://evil.example")
        .connect()
        .await;
    assert!(
        matches!(
            refused,
            Err(tether::Error::Handshake(
                tether::HandshakeError::UnexpectedStatus(403)
            ))
        ),
        "{refused:?}"
    );
    let allowed = tether::ClientBuilder::new(&url)
        .header("Origin", "http://app.example")
        .connect()
        .await;
    assert!(allowed.is_ok());
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
async fn rejects_an_oversize_message_with_1009() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    let huge = "x".repeat(2 << 20);
    let _ = client
        .ws
        .send(format!(
            r#"{{"id":1,"op":"publish","channel":"c","data":"{huge}"}}"#
        ))
        .await;
    match client.ws.recv().await {
        Ok(Some(Message::Close(Some(frame)))) => assert_eq!(frame.code.0, 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
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

/// Checks the exposition format line by line: `# HELP`/`# TYPE`/`# EOF` comments,
/// and `name{labels} value` samples with a numeric value.
fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
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
async fn metrics(server: &common::Server) -> std::collections::HashMap<String, f64> {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    parse_metrics(response.split("\r\n\r\n").nth(1).unwrap())
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

#[tokio::test]
async fn a_message_without_room_in_the_buffer_budget_is_closed_with_1013_and_counted() {
    let mut config = ServerConfig::default();
    config.max_buffered_bytes = Some(512 << 10);
    config.buffer_wait = Duration::from_millis(200);
    let server = start(config).await;
    let mut client = Client::connect(&server).await;
    // A 900 KiB frame (under the 1 MiB message limit) needs more room than
    // the budget has: the connection waits, then gets 1013.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(
        b"GET /connection/websocket HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend(((900u64) << 10).to_be_bytes());
    frame.extend([0; 4]);
    frame.extend(vec![b' '; 64 << 10]);
    tcp.write_all(&frame).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    // A close frame: 0x88, its length, then the code.
    assert_eq!(answer.first(), Some(&0x88), "{answer:?}");
    assert_eq!(u16::from_be_bytes([answer[2], answer[3]]), 1013);
    // The other client goes on, and the metrics tell what happened.
    client.call(json!({"op": "ping"})).await;
    let samples = metrics(&server).await;
    assert_eq!(samples["tether_buffer_budget_bytes"], 524288.0);
    assert_eq!(samples["tether_buffer_budget_used_bytes"], 0.0);
    assert_eq!(samples["tether_buffer_budget_waits_total"], 1.0);
    assert_eq!(samples["tether_buffer_budget_refusals_total"], 1.0);
    assert_eq!(
        samples["tether_queued_frames"], 0.0,
        "the ping's reply went out"
    );
    assert!(samples["tether_runtime_tasks"] >= 1.0, "{samples:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_without_room_in_the_buffer_budget_cut_their_session_off_as_slow() {
    let mut config = ServerConfig::default()
        .max_queued_bytes(0)
        .channels(tether_server::NamespaceOptions::default().history_size(40));
    config.max_buffered_bytes = Some(4 << 20);
    config.buffer_wait = Duration::from_millis(300);
    let server = start(config).await;
    let mut client = Client::connect(&server).await;
    let payload = "x".repeat(60 << 10);
    for _ in 0..40 {
        client
            .call(json!({"op": "publish", "channel": "pages", "data": payload}))
            .await;
    }
    // Pages of about 2.4 MiB, asked for and not read: past what the kernel
    // takes, the queued replies need more than the 4 MiB budget.
    let mut slow = common::slow_client(&server).await;
    for id in 1..=12 {
        let request = json!({"id": id, "op": "history", "channel": "pages"}).to_string();
        if tokio::time::timeout(Duration::from_secs(1), slow.send(request))
            .await
            .is_err()
        {
            break;
        }
    }
    // The well-behaved client goes on meanwhile.
    client.call(json!({"op": "ping"})).await;
    let mut cut_off = false;
    for _ in 0..200 {
        let samples = metrics(&server).await;
        if samples.get("tether_disconnects_total{code=\"4001\"}") == Some(&1.0) {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cut_off, "the session whose replies did not fit was cut off");
    // Reading now, the slow client finds its connection ended.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match slow.recv().await {
                Ok(Some(tether::Message::Close(frame))) => return frame.map(|f| f.code.0),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    })
    .await
    .expect("the slow connection ends");
    assert!(matches!(ended, None | Some(4001)), "{ended:?}");
    client.call(json!({"op": "ping"})).await;
    let samples = metrics(&server).await;
    assert_eq!(samples["tether_buffer_budget_used_bytes"], 0.0);
}

#[tokio::test]
async fn refuses_a_flood_with_109_then_closes_with_1008() {
    let server = start(ServerConfig::default().rate_limit(5.0, 5)).await;
    let mut client = Client::connect(&server).await;
    for id in 1..=40 {
        if client
            .ws
            .send(format!(r#"{{"id":{id},"op":"ping"}}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    let (mut ok, mut limited, mut code, mut push) = (0, 0, None, None);
    let read = async {
        loop {
            let message = match client.ws.recv().await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(e) => panic!("connection failed instead of closing: {e}"),
            };
            match message {
                Message::Text(text) => {
                    let reply: Value = serde_json::from_str(&text).unwrap();
                    if reply.get("push").is_some() {
                        push = Some(reply);
                        continue;
                    }
                    match reply["error"]["code"].as_u64() {
                        Some(109) => limited += 1,
                        None => ok += 1,
                        other => panic!("unexpected error {other:?}"),
                    }
                }
                Message::Close(Some(frame)) => code = Some(frame.code.0),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("closed in time");
    assert_eq!(ok, 5, "the burst is served");
    assert!(limited >= 1, "then requests are refused with 109");
    assert_eq!(code, Some(1008), "and a client that keeps going is closed");
    let push = push.expect("a disconnect push says why");
    assert_eq!(
        (&push["push"], &push["code"]),
        (&json!("disconnect"), &json!(4502))
    );
}

#[tokio::test]
async fn authenticates_with_jwt_and_enforces_channel_claims() {
    let auth = tether_server::auth::AuthConfig::default().hmac_secret("s3cret");
    let server = start(ServerConfig::default().auth(auth)).await;

    let mut anonymous = Client::connect(&server).await;
    let reply = anonymous
        .call(json!({"op": "subscribe", "channel": "chat:lobby"}))
        .await;
    assert_eq!(
        reply["error"]["code"], 111,
        "anonymous access is off once a key is set"
    );

    let mut expired = Client::connect(&server).await;
    let token = hs256("s3cret", json!({"sub": "alice", "exp": now() - 3600}));
    let reply = expired.call(json!({"op": "connect", "token": token})).await;
    assert_eq!(reply["error"]["code"], 111, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Expired"),
        "{reply}"
    );

    let mut forged = Client::connect(&server).await;
    let token = hs256("wrong key", json!({"sub": "mallory", "exp": now() + 3600}));
    let reply = forged.call(json!({"op": "connect", "token": token})).await;
    assert_eq!(reply["error"]["code"], 111, "{reply}");

    let mut alice = Client::connect(&server).await;
    let token = hs256(
        "s3cret",
        json!({"sub": "alice", "exp": now() + 3600, "channels": ["chat:*"]}),
    );
    let reply = alice.call(json!({"op": "connect", "token": token})).await;
    assert_eq!(reply["result"]["user"], "alice");
    let reply = alice
        .call(json!({"op": "subscribe", "channel": "chat:lobby"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
    let presence = alice
        .call(json!({"op": "presence", "channel": "chat:lobby"}))
        .await;
    assert_eq!(
        presence["result"]["clients"][0]["user"], "alice",
        "presence shows the token's user"
    );
    let reply = alice
        .call(json!({"op": "subscribe", "channel": "admin:secrets"}))
        .await;
    assert_eq!(
        reply["error"]["code"], 103,
        "the token's channel claims are enforced"
    );
    let reply = alice
        .call(json!({"op": "publish", "channel": "admin:secrets", "data": 1}))
        .await;
    assert_eq!(reply["error"]["code"], 103);
}

#[tokio::test]
async fn accepts_es256_tokens() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let auth = tether_server::auth::AuthConfig::default().ec_public_key_pem(key.public_key_pem());
    let server = start(ServerConfig::default().auth(auth)).await;
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    let claims = json!({"sub": "bob", "exp": now() + 600});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &encoding,
    )
    .unwrap();
    let mut bob = Client::connect(&server).await;
    let reply = bob.call(json!({"op": "connect", "token": token})).await;
    assert_eq!(reply["result"]["user"], "bob", "{reply}");
    let hs = hs256("any", json!({"sub": "eve", "exp": now() + 600}));
    let reply = bob.call(json!({"op": "connect", "token": hs})).await;
    assert_eq!(
        reply["error"]["code"], 111,
        "HS256 is not configured here: {reply}"
    );
}

#[tokio::test]
async fn limits_connections_per_ip_and_in_total() {
    let server = start(ServerConfig::default().connection_limits(3, 2)).await;
    let url = format!("ws://{}/connection/websocket", server.addr);
    let _a = tether::connect(&url).await.unwrap();
    let _b = tether::connect(&url).await.unwrap();
    let refused = tether::connect(&url).await;
    assert!(
        matches!(
            refused,
            Err(tether::Error::Handshake(
                tether::HandshakeError::UnexpectedStatus(429)
            ))
        ),
        "{refused:?}"
    );
    // A client bound to another loopback address is another IP.
    let from_other_ip = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let tcp = socket.connect(server.addr).await.unwrap();
        tether::ClientBuilder::new(&url).connect_on(tcp).await
    };
    let _c = from_other_ip().await.unwrap();
    let refused = from_other_ip().await;
    assert!(
        matches!(
            refused,
            Err(tether::Error::Handshake(
                tether::HandshakeError::UnexpectedStatus(503)
            ))
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn api_broadcasts_and_disconnects_clients() {
    let server = start(ServerConfig::default()).await;
    let mut one = Client::connect(&server).await;
    let mut two = Client::connect(&server).await;
    one.call(json!({"op": "subscribe", "channel": "a"})).await;
    two.call(json!({"op": "subscribe", "channel": "b"})).await;
    let body = r#"{"channels":["a","b","bad name"],"data":{"alert":true}}"#;
    let (status, reply) = http(server.addr, "POST", "/api/broadcast", body, "").await;
    assert_eq!(status, 200);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(
        (results[0]["offset"].clone(), results[1]["offset"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(results[2]["error"]["code"], 102);
    assert_eq!(one.publication().await["data"]["alert"], true);
    assert_eq!(two.publication().await["data"]["alert"], true);

    let client = two.call(json!({"op": "connect"})).await["result"]["client"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/disconnect",
        &format!(r#"{{"client":"{client}"}}"#),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let mut code = None;
    while let Ok(Some(message)) = two.ws.recv().await {
        if let Message::Close(Some(frame)) = message {
            code = Some(frame.code.0);
        }
    }
    assert_eq!(code, Some(4501));
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/disconnect",
        r#"{"client":"c999999"}"#,
        "",
    )
    .await;
    assert_eq!(status, 404);
}

/// Reads publications on `channel` until `last` arrives; returns (offset, data) pairs.
async fn read_until(ws: &mut WebSocket<TcpStream>, last: u64) -> Vec<(u64, Value)> {
    let mut seen = Vec::new();
    let read = async {
        loop {
            let Ok(Some(Message::Text(text))) = ws.recv().await else {
                panic!("connection ended early")
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["push"] == "publication" {
                let offset = value["offset"].as_u64().unwrap();
                seen.push((offset, value["data"].clone()));
                if offset == last {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the newest publication arrives");
    seen
}

#[tokio::test]
async fn drop_oldest_keeps_a_slow_subscriber_connected_with_the_newest_data() {
    use tether_server::config::SlowConsumerPolicy;
    let options = NamespaceOptions::default().slow_consumer(SlowConsumerPolicy::DropOldest);
    let config = ServerConfig::default()
        .outbound_queue(16)
        .rate_limit(1e6, 1 << 20)
        .namespace("ticks", options);
    let server = start(config).await;
    let mut slow = slow_client(&server).await;
    slow.send(r#"{"id":1,"op":"subscribe","channel":"ticks:x"}"#)
        .await
        .unwrap();
    let mut fast = Client::connect(&server).await;
    fast.call(json!({"op": "subscribe", "channel": "ticks:x"}))
        .await;
    let mut publisher = Client::connect(&server).await;
    const COUNT: u64 = 600;
    let big = "t".repeat(16 << 10);
    let reader = tokio::spawn(async move {
        for n in 1..=COUNT {
            assert_eq!(
                fast.publication().await["offset"],
                n,
                "the fast subscriber misses nothing"
            );
        }
    });
    for _ in 0..COUNT {
        publisher
            .call(json!({"op": "publish", "channel": "ticks:x", "data": big}))
            .await;
    }
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("fast subscriber kept up")
        .unwrap();
    let seen = read_until(&mut slow, COUNT).await;
    assert!(
        seen.len() < COUNT as usize,
        "older publications were dropped ({} seen)",
        seen.len()
    );
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "what arrives is in order"
    );
    // Still connected.
    slow.send(r#"{"id":2,"op":"ping"}"#).await.unwrap();
    loop {
        let Ok(Some(Message::Text(text))) = slow.recv().await else {
            panic!("no reply")
        };
        if text.contains(r#""id":2"#) {
            break;
        }
    }
}

#[tokio::test]
async fn latest_per_key_delivers_the_newest_value_of_each_key() {
    use tether_server::config::SlowConsumerPolicy;
    let options = NamespaceOptions::default().slow_consumer(SlowConsumerPolicy::LatestPerKey);
    let config = ServerConfig::default()
        .outbound_queue(16)
        .rate_limit(1e6, 1 << 20)
        .namespace("prices", options);
    let server = start(config).await;
    let mut slow = slow_client(&server).await;
    slow.send(r#"{"id":1,"op":"subscribe","channel":"prices:fx"}"#)
        .await
        .unwrap();
    let mut publisher = Client::connect(&server).await;
    let symbols = ["EURUSD", "GBPUSD", "USDJPY"];
    let pad = "p".repeat(16 << 10);
    const COUNT: u64 = 600;
    for n in 1..=COUNT {
        let symbol = symbols[(n % 3) as usize];
        let data = json!({"symbol": symbol, "price": n, "pad": pad});
        publisher
            .call(json!({"op": "publish", "channel": "prices:fx", "data": data, "key": symbol}))
            .await;
    }
    let seen = read_until(&mut slow, COUNT).await;
    assert!(
        seen.len() < COUNT as usize,
        "queued values were conflated ({} seen)",
        seen.len()
    );
    // The newest price of every symbol arrived.
    for (i, symbol) in symbols.iter().enumerate() {
        let newest = (1..=COUNT).rev().find(|n| (n % 3) as usize == i).unwrap();
        assert!(
            seen.iter()
                .any(|(_, data)| data["symbol"] == *symbol && data["price"] == newest),
            "{symbol} at {newest}"
        );
    }
}

#[tokio::test]
async fn cuts_off_a_slowloris_request_head() {
    let mut config = ServerConfig::default();
    config.websocket.handshake_timeout = Duration::from_millis(500);
    let server = start(config).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /connection/websocket HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let trickle = async {
        for _ in 0..100 {
            if tcp.write_all(b"X").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), trickle).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server still holds the connection");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut off after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn enforces_per_namespace_subscribe_and_publish_permissions() {
    use tether_server::Access;
    let auth = tether_server::auth::AuthConfig::default()
        .hmac_secret("s3cret")
        .allow_anonymous(true);
    let config = ServerConfig::default()
        .auth(auth)
        .namespace("news", NamespaceOptions::default().publish(Access::Nobody))
        .namespace(
            "team",
            NamespaceOptions::default()
                .subscribe(Access::Authenticated)
                .publish(Access::Authenticated),
        )
        .namespace(
            "vip",
            NamespaceOptions::default().subscribe(Access::Granted),
        );
    let server = start(config).await;
    let mut anonymous = Client::connect(&server).await;
    let mut member = Client::connect(&server).await;
    let token = hs256("s3cret", json!({"sub": "ann", "exp": now() + 600}));
    member.call(json!({"op": "connect", "token": token})).await;
    let mut vip = Client::connect(&server).await;
    let token = hs256(
        "s3cret",
        json!({"sub": "vic", "exp": now() + 600, "channels": ["vip:*", "news:*", "team:*"]}),
    );
    vip.call(json!({"op": "connect", "token": token})).await;

    // news: anyone reads, no client publishes, the API does.
    let reply = anonymous
        .call(json!({"op": "subscribe", "channel": "news:today"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
    for client in [&mut anonymous, &mut member, &mut vip] {
        let reply = client
            .call(json!({"op": "publish", "channel": "news:today", "data": 1}))
            .await;
        assert_eq!(reply["error"]["code"], 103, "{reply}");
    }
    let body = json!({"channel": "news:today", "data": "headline"}).to_string();
    let (status, _) = http(server.addr, "POST", "/api/publish", &body, "").await;
    assert_eq!(status, 200);
    assert_eq!(anonymous.publication().await["data"], "headline");

    // team: a token is needed to subscribe, publish, or read history and presence.
    for op in ["subscribe", "history", "presence"] {
        let reply = anonymous
            .call(json!({"op": op, "channel": "team:dev"}))
            .await;
        assert_eq!(reply["error"]["code"], 111, "{op}: {reply}");
    }
    let reply = anonymous
        .call(json!({"op": "publish", "channel": "team:dev", "data": 1}))
        .await;
    assert_eq!(reply["error"]["code"], 111, "{reply}");
    let reply = member
        .call(json!({"op": "subscribe", "channel": "team:dev"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
    let reply = member
        .call(json!({"op": "publish", "channel": "team:dev", "data": 2}))
        .await;
    assert_eq!(reply["result"]["offset"], 1, "{reply}");

    // vip: only a token that lists the channel.
    let reply = member
        .call(json!({"op": "subscribe", "channel": "vip:lounge"}))
        .await;
    assert_eq!(reply["error"]["code"], 103, "{reply}");
    let reply = vip
        .call(json!({"op": "subscribe", "channel": "vip:lounge"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
    let reply = vip
        .call(json!({"op": "unsubscribe", "channel": "vip:lounge"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
}

#[tokio::test]
async fn expires_history_by_age() {
    let options = NamespaceOptions::default().history_ttl(Some(Duration::from_millis(300)));
    let server = start(ServerConfig::default().namespace("live", options)).await;
    let mut publisher = Client::connect(&server).await;
    let ack = publisher
        .call(json!({"op": "publish", "channel": "live:feed", "data": 1}))
        .await;
    let epoch = ack["result"]["epoch"].clone();
    publisher
        .call(json!({"op": "publish", "channel": "live:feed", "data": 2}))
        .await;
    let mut fresh = Client::connect(&server).await;
    let reply = fresh
        .call(json!({"op": "subscribe", "channel": "live:feed", "recover": {"offset": 0, "epoch": epoch}}))
        .await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    assert_eq!(reply["result"]["publications"].as_array().unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let history = publisher
        .call(json!({"op": "history", "channel": "live:feed"}))
        .await;
    assert_eq!(history["result"]["publications"], json!([]), "{history}");
    let mut late = Client::connect(&server).await;
    let reply = late
        .call(json!({"op": "subscribe", "channel": "live:feed", "recover": {"offset": 0, "epoch": epoch}}))
        .await;
    assert_eq!(
        reply["result"]["recovered"], false,
        "expired history no longer covers the gap: {reply}"
    );
    assert_eq!(reply["result"]["offset"], 2, "offsets go on");
}

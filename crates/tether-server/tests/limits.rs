//! Limits against hostile or broken clients: malformed requests, oversize
//! messages, floods, connection counts, slowloris heads, and the process's
//! buffer budget; each answered as documented while the server stays up.

mod common;

use std::time::Duration;

use common::{metrics, start, Client};
use serde_json::{json, Value};
use tether::Message;
use tether_server::ServerConfig;
use tether_testing::{eventually, Conversation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
async fn a_message_without_room_in_the_buffer_budget_is_closed_with_1013_and_counted() {
    let mut config = ServerConfig::default();
    config.max_buffered_bytes = Some(512 << 10);
    config.buffer_wait = Duration::from_millis(200);
    let server = start(config).await;
    let mut client = Client::connect(&server).await;
    // A 900 KiB frame (under the 1 MiB message limit) needs more room than
    // the budget has: the connection waits, then gets 1013.
    let mut tcp = tether_testing::raw_websocket(server.addr, "/connection/websocket", "").await;
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
    let cut_off = || async {
        let samples = metrics(&server).await;
        samples.get("tether_disconnects_total{code=\"4001\"}") == Some(&1.0)
    };
    eventually(
        "the session whose replies did not fit was cut off",
        Duration::from_secs(10),
        cut_off,
    )
    .await;
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

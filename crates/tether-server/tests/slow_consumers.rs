//! Subscribers that fall behind, past their queue: disconnected with where to
//! resume, or kept with the newest data (drop-oldest, latest-per-key),
//! without delaying the others.

mod common;

use std::time::Duration;

use common::{metrics, slow_client, start, Client};
use serde_json::{json, Value};
use tether::{Message, WebSocket};
use tether_server::{NamespaceOptions, ServerConfig};
use tether_testing::eventually;
use tether_testing::Conversation;
use tokio::net::TcpStream;

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
    let (counted, mut progress) = tokio::sync::watch::channel(0);
    let reader = tokio::spawn(async move {
        for n in 1..=COUNT {
            assert_eq!(fast.publication().await["offset"], n);
            counted.send_replace(n);
        }
    });
    for sent in 0..COUNT {
        // Never more than a few ahead of the fast reader, however slowly a
        // busy machine runs it: it must keep up, only the stalled one lags.
        let behind = sent.saturating_sub(4);
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|&received| received >= behind),
        )
        .await;
        publisher
            .call(json!({"op": "publish", "channel": "firehose", "data": big}))
            .await;
    }
    // The server gives up on the slow client while it still is not reading:
    // its writer, stuck on a full socket, notices the lag.
    let cut_off = || async {
        let samples = metrics(&server).await;
        samples
            .get("tether_disconnects_total{code=\"4001\"}")
            .is_some_and(|n| *n >= 1.0)
    };
    eventually(
        "a slow-consumer disconnect while the client was stalled",
        Duration::from_secs(10),
        cut_off,
    )
    .await;
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

//! The slow-consumer policies apply past a full queue, never before: a
//! subscriber that pauses while fewer publications than `outbound_queue` go out,
//! and a fast one on the same channel, both receive every publication, under
//! every policy.

mod common;

use std::time::Duration;

use common::{slow_client, start, Client};
use serde_json::{json, Value};
use tether::Message;
use tether_server::{NamespaceOptions, ServerConfig, SlowConsumerPolicy};
use tether_testing::Conversation;

const COUNT: u64 = 600;
const KEYS: u64 = 8;

/// Offsets of the publications read from `ws` until `last` (or a 30 s stall).
async fn offsets_until<S>(ws: &mut tether::WebSocket<S>, last: u64) -> Vec<u64>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut seen = Vec::new();
    let read = async {
        while let Ok(Some(message)) = ws.recv().await {
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["push"] == "publication" {
                let offset = value["offset"].as_u64().unwrap();
                seen.push(offset);
                if offset == last {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), read).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_within_the_queue_limit_loses_nothing_under_any_policy() {
    let policies = [
        ("disconnect", SlowConsumerPolicy::Disconnect),
        ("oldest", SlowConsumerPolicy::DropOldest),
        ("latest", SlowConsumerPolicy::LatestPerKey),
    ];
    let mut config = ServerConfig::default().outbound_queue(1024);
    for (namespace, policy) in policies {
        config = config.namespace(namespace, NamespaceOptions::default().slow_consumer(policy));
    }
    let server = start(config).await;
    let everything: Vec<u64> = (1..=COUNT).collect();
    for (namespace, _) in policies {
        let channel = format!("{namespace}:feed");
        let subscribe = json!({"id": 1, "op": "subscribe", "channel": channel}).to_string();
        // Paused: it reads nothing until the burst is over (a small receive
        // buffer, so the burst backs up in the server's queue).
        let mut paused = slow_client(&server).await;
        paused.send(subscribe.clone()).await.unwrap();
        let mut fast = Client::connect_with(&server, false).await;
        fast.call(json!({"op": "subscribe", "channel": channel}))
            .await;
        let reading = tokio::spawn(async move { offsets_until(&mut fast.ws, COUNT).await });
        let mut publisher = Client::connect(&server).await;
        let pad = "p".repeat(8 << 10);
        for n in 1..=COUNT {
            let key = format!("k{}", n % KEYS);
            let data = json!({"n": n, "pad": pad});
            let ack = publisher
                .call(json!({"op": "publish", "channel": channel, "data": data, "key": key}))
                .await;
            assert_eq!(ack["result"]["offset"], n, "{namespace}");
        }
        let fast_seen = reading.await.unwrap();
        assert_eq!(fast_seen, everything, "{namespace}: the fast subscriber");
        let paused_seen = offsets_until(&mut paused, COUNT).await;
        assert_eq!(
            paused_seen.len(),
            everything.len(),
            "{namespace}: the paused subscriber"
        );
        assert_eq!(paused_seen, everything, "{namespace}: in order");
    }
}

//! A subscriber that stops reading costs bounded memory under every slow-consumer
//! policy, while a fast subscriber on the same channel gets every publication.
//!
//! So does a client that asks for large replies and never reads them.
//!
//! Its own test binary: it measures the process's RSS, which other tests running
//! in parallel threads would disturb (and its tests take turns).

mod common;

use std::time::Duration;

use common::{slow_client, start, Client};
use serde_json::json;
use tether_server::{NamespaceOptions, ServerConfig, SlowConsumerPolicy};
use tether_testing::{rss_bytes_of_self, Conversation, Peak};

/// The tests here measure the whole process's memory: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Publications pushed past the stalled reader: 1500 × 32 KiB = 48 MiB, so a
/// queue that kept them all would show up plainly.
const COUNT: u64 = 1500;
const SIZE: usize = 32 << 10;
/// What the stalled reader may cost at most: its queue holds 16 publications
/// (512 KiB) and kernel buffers a few more; the rest is allocator slack.
const BOUND: usize = 24 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_costs_bounded_memory_under_every_policy() {
    let _alone = SERIAL.lock().await;
    let policies = [
        ("disconnect", SlowConsumerPolicy::Disconnect),
        ("oldest", SlowConsumerPolicy::DropOldest),
        ("latest", SlowConsumerPolicy::LatestPerKey),
    ];
    let mut config = ServerConfig::default()
        .outbound_queue(16)
        .rate_limit(1e6, 1 << 20);
    for (namespace, policy) in policies {
        let options = NamespaceOptions::default()
            .history_size(10)
            .slow_consumer(policy);
        config = config.namespace(namespace, options);
    }
    let server = start(config).await;
    let payload = "x".repeat(SIZE);
    for (namespace, policy) in policies {
        let channel = format!("{namespace}:feed");
        let mut slow = slow_client(&server).await;
        let subscribe = json!({"id": 1, "op": "subscribe", "channel": channel});
        slow.send(subscribe.to_string()).await.unwrap();
        let mut fast = Client::connect(&server).await;
        fast.call(json!({"op": "subscribe", "channel": channel}))
            .await;
        let reader = tokio::spawn(async move {
            for n in 1..=COUNT {
                assert_eq!(fast.publication().await["offset"], n, "fast subscriber");
            }
        });
        let mut publisher = Client::connect(&server).await;
        // Warm up the allocator before taking the baseline.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let baseline = rss_bytes_of_self();
        let peak = Peak::sample(rss_bytes_of_self);
        for n in 1..=COUNT {
            let key = format!("k{}", n % 4);
            let ack = publisher
                .call(json!({"op": "publish", "channel": channel, "data": payload, "key": key}))
                .await;
            assert_eq!(ack["result"]["offset"], n, "{ack}");
        }
        tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("the fast subscriber kept up")
            .unwrap();
        let growth = peak.stop().saturating_sub(baseline);
        eprintln!(
            "{policy:?}: RSS grew {:.1} MiB while {:.0} MiB went past a stalled subscriber",
            growth as f64 / (1 << 20) as f64,
            (COUNT as usize * SIZE) as f64 / (1 << 20) as f64
        );
        assert!(
            growth < BOUND,
            "{policy:?}: RSS grew {growth} bytes, more than {BOUND}"
        );
        drop(slow);
    }
}

/// A client that asks for large history pages and never reads the replies
/// holds at most about `max_queued_bytes` and the reply being written, not
/// every page it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_history_pages_cost_bounded_memory() {
    let _alone = SERIAL.lock().await;
    const PAGES: u64 = 200;
    let config = ServerConfig::default()
        .rate_limit(1e6, 1 << 20)
        .channels(NamespaceOptions::default().history_size(100));
    let server = start(config).await;
    let mut publisher = Client::connect(&server).await;
    let payload = "x".repeat(60 << 10);
    for _ in 0..100 {
        publisher
            .call(json!({"op": "publish", "channel": "pages", "data": payload}))
            .await;
    }
    let mut slow = slow_client(&server).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let baseline = rss_bytes_of_self();
    let peak = Peak::sample(rss_bytes_of_self);
    // Each page is about 6 MiB of JSON: kept whole, 200 would be 1.2 GiB.
    let mut sent = 0;
    for id in 1..=PAGES {
        let request = json!({"id": id, "op": "history", "channel": "pages"}).to_string();
        // The server stops reading this client once its queue is full, so
        // the sends block in the end: that is the backpressure.
        match tokio::time::timeout(Duration::from_secs(2), slow.send(request)).await {
            Ok(result) => {
                result.unwrap();
                sent += 1;
            }
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let growth = peak.stop().saturating_sub(baseline);
    eprintln!(
        "{sent} history pages asked for and not read: RSS grew {:.1} MiB",
        growth as f64 / (1 << 20) as f64
    );
    assert!(growth < 64 << 20, "RSS grew {growth} bytes");
    // Once the client reads, its replies come, complete and in order.
    let first = tokio::time::timeout(Duration::from_secs(10), slow.recv())
        .await
        .expect("a reply in time")
        .unwrap()
        .expect("still open");
    let tether::Message::Text(text) = first else {
        panic!("not text: {first:?}");
    };
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["id"], 1);
    assert_eq!(
        reply["result"]["publications"].as_array().unwrap().len(),
        100
    );
}

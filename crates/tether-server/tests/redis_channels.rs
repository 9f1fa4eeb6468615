//! Channels' shared state in a real `redis-server` (started on a free port
//! for each test): offsets gap-free under concurrent publishes from several
//! nodes, idempotency across nodes, history capped, read after an offset and
//! expired by age, publications on the channel's topic as publish.lua sends
//! them, and a clear error, not a hang, when Redis is gone.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::value::RawValue;
use tether_server::engine::redis::{RedisChannels, RedisSettings, Wire};
use tether_server::engine::{EngineError, HistoryQuery, NewPublication, Retention};
use tether_testing::RedisServer;

fn settings(redis: &RedisServer) -> RedisSettings {
    RedisSettings {
        url: redis.url(),
        prefix: "test".into(),
        command_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        pool_size: 2,
    }
}

fn retention(history_size: usize) -> Retention {
    Retention {
        history_size,
        history_ttl: Some(Duration::from_secs(60)),
        idempotency_window: Duration::from_secs(60),
    }
}

fn publication(data: &str, idempotency_key: Option<&str>) -> NewPublication {
    NewPublication {
        data: RawValue::from_string(data.to_owned()).unwrap(),
        idempotency_key: idempotency_key.map(str::to_owned),
        key: None,
    }
}

fn everything() -> HistoryQuery {
    HistoryQuery {
        since: None,
        limit: None,
    }
}

#[tokio::test]
async fn concurrent_publishes_from_three_nodes_get_gap_free_increasing_offsets() {
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(RedisChannels::connect(settings(&redis)).await.unwrap());
    }
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..200 {
                let data = format!(r#"{{"node":{n},"i":{i}}}"#);
                let (published, repeated) = node
                    .publish("race", &publication(&data, None), retention(1000))
                    .await
                    .unwrap();
                assert!(!repeated);
                mine.push((published.offset, published.epoch));
            }
            mine
        }));
    }
    let mut all = BTreeSet::new();
    let mut epochs = BTreeSet::new();
    for task in tasks {
        let mine = task.await.unwrap();
        // Each node sees its own publishes in order.
        assert!(mine.windows(2).all(|w| w[0].0 < w[1].0));
        for (offset, epoch) in mine {
            assert!(all.insert(offset), "offset {offset} given twice");
            epochs.insert(epoch);
        }
    }
    assert_eq!(all, (1..=600).collect::<BTreeSet<u64>>(), "gap-free");
    assert_eq!(epochs.len(), 1);
    let history = nodes[1]
        .history("race", everything(), retention(1000))
        .await
        .unwrap();
    assert_eq!(history.offset, 600);
    assert_eq!(history.publications.len(), 600);
    assert!(history
        .publications
        .windows(2)
        .all(|w| w[0].offset + 1 == w[1].offset));
}

#[tokio::test]
async fn an_idempotency_key_holds_across_nodes() {
    let redis = RedisServer::start().await;
    let a = RedisChannels::connect(settings(&redis)).await.unwrap();
    let b = RedisChannels::connect(settings(&redis)).await.unwrap();
    a.publish("orders", &publication("1", None), retention(10))
        .await
        .unwrap();
    let (first, repeated) = a
        .publish("orders", &publication("2", Some("order-7")), retention(10))
        .await
        .unwrap();
    assert!(!repeated);
    let (again, repeated) = b
        .publish("orders", &publication("2", Some("order-7")), retention(10))
        .await
        .unwrap();
    assert!(repeated);
    assert_eq!((again.offset, &again.epoch), (first.offset, &first.epoch));
    let history = b
        .history("orders", everything(), retention(10))
        .await
        .unwrap();
    assert_eq!(history.offset, 2);
    let data: Vec<&str> = history.publications.iter().map(|p| p.data.get()).collect();
    assert_eq!(data, ["1", "2"]);
}

#[tokio::test]
async fn history_is_capped_read_after_an_offset_and_limited() {
    let redis = RedisServer::start().await;
    let node = RedisChannels::connect(settings(&redis)).await.unwrap();
    // A read of a new channel fixes its epoch for the first publish.
    let empty = node
        .history("feed", everything(), retention(5))
        .await
        .unwrap();
    assert_eq!(
        (empty.offset, empty.publications.len(), empty.complete),
        (0, 0, true)
    );
    for n in 1..=8 {
        let (published, _) = node
            .publish("feed", &publication(&n.to_string(), None), retention(5))
            .await
            .unwrap();
        assert_eq!(published.epoch, empty.epoch);
    }
    let offsets = |h: &tether_server::engine::History| {
        h.publications.iter().map(|p| p.offset).collect::<Vec<_>>()
    };
    let all = node
        .history("feed", everything(), retention(5))
        .await
        .unwrap();
    assert_eq!(
        (offsets(&all), all.offset, all.complete),
        (vec![4, 5, 6, 7, 8], 8, true)
    );
    assert_eq!(all.publications[0].data.get(), "4");
    let read = |since, limit| node.history("feed", HistoryQuery { since, limit }, retention(5));
    let tail = read(Some(5), None).await.unwrap();
    assert_eq!((offsets(&tail), tail.complete), (vec![6, 7, 8], true));
    let caught_up = read(Some(8), None).await.unwrap();
    assert_eq!((offsets(&caught_up), caught_up.complete), (vec![], true));
    assert!(
        !read(Some(1), None).await.unwrap().complete,
        "publication 2 is gone"
    );
    assert!(
        !read(Some(9), None).await.unwrap().complete,
        "a position from the future"
    );
    let newest = read(None, Some(2)).await.unwrap();
    assert_eq!((offsets(&newest), newest.complete), (vec![7, 8], false));
}

#[tokio::test]
async fn history_expires_by_age() {
    let redis = RedisServer::start().await;
    let node = RedisChannels::connect(settings(&redis)).await.unwrap();
    let short = Retention {
        history_ttl: Some(Duration::from_millis(300)),
        ..retention(10)
    };
    node.publish("news", &publication("1", None), short)
        .await
        .unwrap();
    assert_eq!(
        node.history("news", everything(), short)
            .await
            .unwrap()
            .publications
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = node.history("news", everything(), short).await.unwrap();
    assert!(later.publications.is_empty());
    let resumed = node
        .history(
            "news",
            HistoryQuery {
                since: Some(0),
                limit: None,
            },
            short,
        )
        .await
        .unwrap();
    assert!(!resumed.complete, "what expired cannot be recovered");
}

#[tokio::test]
async fn each_publication_goes_out_on_the_channels_topic() {
    let redis = RedisServer::start().await;
    let node = RedisChannels::connect(settings(&redis)).await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(node.keys("scores:m1").topic)
        .await
        .unwrap();
    let mut messages = pubsub.on_message();
    let data = r#"{"home": 2, "note": "a b  c"}"#;
    let conflated = NewPublication {
        key: Some("home score".into()),
        ..publication(data, None)
    };
    let (first, _) = node
        .publish("scores:m1", &conflated, retention(10))
        .await
        .unwrap();
    node.publish("scores:m1", &publication("3", None), retention(10))
        .await
        .unwrap();
    for (offset, key, body) in [(1, Some("home score"), data), (2, None, "3")] {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .unwrap()
            .unwrap();
        let wire = Wire::decode(message.get_payload_bytes()).unwrap();
        assert_eq!(
            (wire.offset, wire.epoch, wire.key, wire.data),
            (offset, &*first.epoch, key, body)
        );
    }
}

#[tokio::test]
async fn a_redis_that_is_gone_answers_unavailable_within_the_timeout() {
    let redis = RedisServer::start().await;
    let node = RedisChannels::connect(settings(&redis)).await.unwrap();
    node.publish("c", &publication("1", None), retention(10))
        .await
        .unwrap();
    redis.signal("KILL");
    let started = std::time::Instant::now();
    let error = node
        .publish("c", &publication("2", None), retention(10))
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::Unavailable { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(node
        .history("c", everything(), retention(10))
        .await
        .is_err());
}

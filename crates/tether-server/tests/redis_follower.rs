//! A node's follower of channels on a real `redis-server`: publications
//! delivered in order while followed and not after; every publication once,
//! in order, when its pub/sub connection is killed mid-stream (CLIENT KILL);
//! a publication lost on the way filled from the stream, at the next one or,
//! on a quiet channel, by the periodic position check.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::value::RawValue;
use tether_server::engine::redis::{Follower, RedisChannels, RedisSettings};
use tether_server::engine::{Event, Fanout, NewPublication, Retention};
use tether_testing::{eventually, RedisServer};

/// What a hub would receive: offsets by channel.
#[derive(Debug, Default)]
struct Collect(Mutex<Vec<(String, u64)>>);

impl Fanout for Collect {
    fn deliver(&self, channel: &str, event: Event<'_>) {
        if let Event::Publication { offset, .. } = event {
            self.0.lock().unwrap().push((channel.to_owned(), offset));
        }
    }
}

impl Collect {
    fn offsets(&self, channel: &str) -> Vec<u64> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, o)| *o)
            .collect()
    }
}

const RETENTION: Retention = Retention {
    history_size: 1000,
    history_ttl: Some(Duration::from_secs(60)),
    idempotency_window: Duration::from_secs(60),
};

async fn node(redis: &RedisServer) -> (RedisChannels, Follower, Arc<Collect>) {
    let settings = RedisSettings {
        url: redis.url(),
        prefix: "test".into(),
        command_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        pool_size: 2,
    };
    let channels = RedisChannels::connect(settings).await.unwrap();
    let collect = Arc::new(Collect::default());
    let fanout: Weak<dyn Fanout> = Arc::downgrade(&(collect.clone() as Arc<dyn Fanout>));
    let follower = Follower::start(
        redis::Client::open(redis.url()).unwrap(),
        channels.clone(),
        fanout,
        Arc::new(|_: &str| RETENTION),
        Duration::from_secs(1),
    );
    (channels, follower, collect)
}

async fn publish(channels: &RedisChannels, channel: &str, n: u64) -> u64 {
    let publication = NewPublication {
        data: RawValue::from_string(n.to_string()).unwrap(),
        idempotency_key: None,
        key: None,
    };
    channels
        .publish(channel, &publication, RETENTION)
        .await
        .unwrap()
        .0
        .offset
}

#[tokio::test]
async fn delivers_in_order_while_followed_and_not_after() {
    let redis = RedisServer::start().await;
    let (channels, follower, collect) = node(&redis).await;
    publish(&channels, "news", 0).await; // before: not delivered
    follower.follow("news").await.unwrap();
    for n in 1..=50 {
        publish(&channels, "news", n).await;
    }
    eventually("50 deliveries", Duration::from_secs(5), || async {
        collect.offsets("news").len() == 50
    })
    .await;
    assert_eq!(collect.offsets("news"), (2..=51).collect::<Vec<u64>>());
    follower.unfollow("news");
    // Unfollowed once the follower has read the call: a follow of another
    // channel after it is answered after it.
    follower.follow("other").await.unwrap();
    publish(&channels, "news", 99).await;
    publish(&channels, "other", 1).await;
    eventually("the other channel", Duration::from_secs(5), || async {
        collect.offsets("other") == [1]
    })
    .await;
    assert_eq!(collect.offsets("news").len(), 50);
}

#[tokio::test]
async fn every_publication_once_in_order_when_the_pubsub_connection_is_killed() {
    let redis = RedisServer::start().await;
    let (channels, follower, collect) = node(&redis).await;
    follower.follow("feed").await.unwrap();
    let admin = redis::Client::open(redis.url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let total = 400;
    for n in 1..=total {
        publish(&channels, "feed", n).await;
        if n % 100 == 0 {
            // What a failover or a proxy does to a subscriber: its
            // connection gone, with whatever was in flight.
            let killed: u64 = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "pubsub"])
                .query_async(&mut admin)
                .await
                .unwrap();
            assert_eq!(killed, 1);
        }
    }
    eventually("every publication", Duration::from_secs(10), || async {
        collect.offsets("feed").len() >= total as usize
    })
    .await;
    assert_eq!(collect.offsets("feed"), (1..=total).collect::<Vec<u64>>());
}

/// A publication that reaches the stream but not the topic: pub/sub lost it.
async fn lose_one(redis: &RedisServer, channels: &RedisChannels, channel: &str) {
    let keys = channels.keys(channel);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let offset: u64 = redis::cmd("HINCRBY")
        .arg(&keys.meta)
        .arg("offset")
        .arg(1)
        .query_async(&mut connection)
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let _: String = redis::cmd("XADD")
        .arg(&keys.stream)
        .arg(format!("{offset}-0"))
        .arg(&["d", "\"lost\"", "t"])
        .arg(now)
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lost_publication_is_filled_from_the_stream() {
    let redis = RedisServer::start().await;
    let (channels, follower, collect) = node(&redis).await;
    follower.follow("ticks").await.unwrap();
    publish(&channels, "ticks", 1).await;
    lose_one(&redis, &channels, "ticks").await;
    publish(&channels, "ticks", 3).await;
    eventually("the gap filled", Duration::from_secs(5), || async {
        collect.offsets("ticks").len() == 3
    })
    .await;
    assert_eq!(collect.offsets("ticks"), [1, 2, 3]);
    // The last one lost, on a channel that then goes quiet: the position
    // check finds it.
    lose_one(&redis, &channels, "ticks").await;
    eventually(
        "the quiet channel's last publication",
        Duration::from_secs(6),
        || async { collect.offsets("ticks").len() == 4 },
    )
    .await;
    assert_eq!(collect.offsets("ticks"), [1, 2, 3, 4]);
    // Read back from the stream: 2 and 3 at the gap (3 came with it), then 4.
    assert_eq!(channels.metrics().gaps_filled.get(), 3);
}

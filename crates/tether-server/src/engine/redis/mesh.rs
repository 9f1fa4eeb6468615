//! The nodes' [`Mesh`] on Redis: each node listens on its own pub/sub topic
//! (`PREFIX:node:ID`, on the instance its id hashes to), and a message to
//! a node is a PUBLISH there. PUBLISH answers how many connections heard
//! it, so a message to a node that died is known to have reached no one.
//!
//! Like all pub/sub, a message can be lost (a connection dropped); the
//! [`Exchange`](crate::mesh::Exchange) over it numbers parts for that.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::channels::RedisChannels;
use super::engine::fnv;
use super::follower::backoff;
use crate::mesh::{Mesh, MeshError, MeshFuture};

/// Messages to this node read from Redis and not yet handled; past this,
/// reading waits (and Redis buffers).
const INCOMING_QUEUED: usize = 4096;

/// How often an idle listening connection is pinged (a wedged one is replaced).
const PING_EVERY: Duration = Duration::from_secs(2);

/// See the module documentation.
#[derive(Debug)]
pub struct RedisMesh {
    node: String,
    shards: Vec<RedisChannels>,
    incoming: Mutex<Option<mpsc::Receiver<Bytes>>>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for RedisMesh {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl RedisMesh {
    /// Starts listening as `node` on the instance of `shards` its id hashes
    /// to. Must run inside a tokio runtime.
    pub fn start(shards: Vec<RedisChannels>, node: String) -> Self {
        let (sender, receiver) = mpsc::channel(INCOMING_QUEUED);
        let home = home(&shards, &node).clone();
        let topic = topic(&home, &node);
        Self {
            listener: tokio::spawn(listen(home, topic, sender)),
            node,
            shards,
            incoming: Mutex::new(Some(receiver)),
        }
    }
}

/// The instance `node` listens on: the highest weight of (instance, node).
fn home<'a>(shards: &'a [RedisChannels], node: &str) -> &'a RedisChannels {
    shards
        .iter()
        .max_by_key(|shard| fnv(&[&shard.settings().url, "node", node]))
        .expect("at least one Redis URL")
}

fn topic(shard: &RedisChannels, node: &str) -> String {
    format!("{}:node:{node}", shard.settings().prefix)
}

impl Mesh for RedisMesh {
    fn node(&self) -> &str {
        &self.node
    }

    fn send<'a>(&'a self, node: &'a str, message: Bytes) -> MeshFuture<'a, bool> {
        Box::pin(async move {
            let shard = home(&self.shards, node);
            let heard = shard
                .notify(&topic(shard, node), &message)
                .await
                .map_err(|error| MeshError::Unavailable(error.to_string()))?;
            Ok(heard > 0)
        })
    }

    fn incoming(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.incoming.lock().expect("incoming lock").take()
    }
}

/// Listens on `topic`, reconnecting with backoff, until `sender` is dropped.
async fn listen(shard: RedisChannels, topic: String, sender: mpsc::Sender<Bytes>) {
    let timeout = shard.settings().command_timeout;
    let mut failures = 0u32;
    let mut connected_once = false;
    loop {
        let subscribed = async {
            let mut pubsub = tokio::time::timeout(timeout, shard.client().get_async_pubsub())
                .await
                .ok()?
                .ok()?;
            tokio::time::timeout(timeout, pubsub.subscribe(&topic))
                .await
                .ok()?
                .ok()?;
            Some(pubsub.split())
        };
        let Some((mut sink, mut stream)) = subscribed.await else {
            tracing::warn!(%topic, "cannot listen on redis for other nodes; retrying");
            tokio::time::sleep(backoff(failures)).await;
            failures += 1;
            continue;
        };
        if connected_once {
            shard.metrics().reconnects.inc();
        }
        connected_once = true;
        failures = 0;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
                        if sender.send(payload).await.is_err() {
                            return;
                        }
                        ping.reset();
                    }
                    None => break,
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        tracing::warn!(%topic, "lost the redis connection other nodes reach this one on; reconnecting");
    }
}

//! The `redis` engine: what the nodes of a cluster share, in one or more
//! Redis instances. Channels are spread over the instances by rendezvous
//! hashing of their names (stable across nodes and versions, and a new
//! instance moves only its share). Each instance has its own store
//! ([`RedisChannels`]), presence ([`RedisPresence`]) and follower
//! ([`Follower`]) on this node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::channels::{RedisChannels, RedisSettings};
use super::follower::Follower;
use super::metrics::RedisMetrics;
use super::presence::RedisPresence;
use crate::config::EngineConfig;
use crate::engine::{
    Engine, EngineError, EngineFuture, Fanout, History, HistoryQuery, NewPublication, Retention,
};
use crate::protocol::{PresenceEntry, Published};

/// How often each instance is pinged for `/readyz`.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// One Redis instance as this node uses it.
#[derive(Debug)]
struct Shard {
    url: String,
    channels: RedisChannels,
    presence: RedisPresence,
    follower: Follower,
}

/// Presence this node holds (client to user, by channel): refreshed until removed.
type Held = Mutex<HashMap<String, HashMap<String, Option<String>>>>;

/// See the module documentation.
#[derive(Debug)]
pub struct RedisEngine {
    shards: Vec<Shard>,
    node: String,
    held: Arc<Held>,
    /// Local followers by channel, for the count `sweep` reports.
    followed: Mutex<HashMap<String, usize>>,
    healthy: Arc<AtomicBool>,
    upkeep: tokio::task::JoinHandle<()>,
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        self.upkeep.abort();
    }
}

/// FNV-1a: a hash every node (of any version) computes alike.
pub(super) fn fnv(parts: &[&str]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

impl RedisEngine {
    /// The settings of each instance `config` names.
    pub fn settings(config: &EngineConfig) -> Vec<RedisSettings> {
        config
            .redis_urls
            .iter()
            .map(|url| RedisSettings {
                url: url.clone(),
                prefix: config.redis_prefix.clone(),
                command_timeout: config.redis_command_timeout,
                connect_timeout: config.redis_connect_timeout,
                pool_size: config.redis_pool_size,
            })
            .collect()
    }

    /// A store per instance, counting into `metrics`; fails on a URL that
    /// cannot be one (nothing is connected yet: a node may start before
    /// Redis does).
    pub fn shards(
        settings: &[RedisSettings],
        metrics: &RedisMetrics,
    ) -> Result<Vec<RedisChannels>, EngineError> {
        settings
            .iter()
            .map(|settings| RedisChannels::new(settings.clone(), metrics.clone()))
            .collect()
    }

    /// A new node id: six hex digits, random (a node that restarts is a
    /// new node).
    pub fn new_node() -> String {
        format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
    }

    /// The engine of node `node` over `stores`, fanning out to `fanout`;
    /// presence entries last `presence_ttl` unless refreshed (every third
    /// of it). Must run inside a tokio runtime.
    pub fn new(
        stores: Vec<RedisChannels>,
        fanout: Weak<dyn Fanout>,
        retention_of: Arc<dyn Fn(&str) -> Retention + Send + Sync>,
        presence_ttl: Duration,
        node: String,
    ) -> Self {
        let shards: Vec<Shard> = stores
            .into_iter()
            .map(|channels| Shard {
                url: channels.settings().url.clone(),
                follower: Follower::start(
                    channels.client().clone(),
                    channels.clone(),
                    fanout.clone(),
                    retention_of.clone(),
                    channels.settings().command_timeout,
                ),
                presence: RedisPresence::new(channels.clone(), presence_ttl),
                channels,
            })
            .collect();
        let held: Arc<Held> = Arc::default();
        let healthy = Arc::new(AtomicBool::new(false));
        let upkeep = tokio::spawn(upkeep(
            shards
                .iter()
                .map(|s| (s.channels.clone(), s.presence.clone()))
                .collect(),
            held.clone(),
            healthy.clone(),
            presence_ttl / 3,
        ));
        Self {
            shards,
            node,
            held,
            followed: Mutex::default(),
            healthy,
            upkeep,
        }
    }

    /// The instance that holds `channel`: the highest weight of (instance, channel).
    fn shard(&self, channel: &str) -> &Shard {
        self.shards
            .iter()
            .max_by_key(|shard| fnv(&[&shard.url, channel]))
            .expect("at least one Redis URL")
    }

    fn mark<T>(&self, outcome: Result<T, EngineError>) -> Result<T, EngineError> {
        if outcome.is_err() {
            self.healthy.store(false, Ordering::Relaxed);
        }
        outcome
    }
}

/// Keeps this node's presence alive and checks that every instance answers.
async fn upkeep(
    shards: Vec<(RedisChannels, RedisPresence)>,
    held: Arc<Held>,
    healthy: Arc<AtomicBool>,
    refresh_every: Duration,
) {
    let mut health = tokio::time::interval(HEALTH_EVERY);
    let mut refresh = tokio::time::interval(refresh_every.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = health.tick() => {
                let mut all = true;
                for (channels, _) in &shards {
                    all &= channels.ping().await;
                }
                healthy.store(all, Ordering::Relaxed);
            }
            _ = refresh.tick() => {
                let now: Vec<(String, Vec<PresenceEntry>)> = held
                    .lock()
                    .expect("presence lock")
                    .iter()
                    .map(|(channel, clients)| {
                        let entries = clients
                            .iter()
                            .map(|(client, user)| PresenceEntry { client: client.clone(), user: user.clone() })
                            .collect();
                        (channel.clone(), entries)
                    })
                    .collect();
                for (channel, entries) in now {
                    let shard = shards
                        .iter()
                        .max_by_key(|(c, _)| fnv(&[&c.settings().url, &channel]))
                        .expect("at least one Redis URL");
                    if let Err(error) = shard.1.refresh(&channel, &entries).await {
                        tracing::warn!(%channel, %error, "presence refresh failed");
                    }
                }
            }
        }
    }
}

impl Engine for RedisEngine {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: NewPublication,
        retention: Retention,
    ) -> EngineFuture<'a, Published> {
        Box::pin(async move {
            // Fanned out by Redis to every node following it, this one too.
            let outcome = self
                .shard(channel)
                .channels
                .publish(channel, &publication, retention)
                .await;
            self.mark(outcome).map(|(published, _repeated)| published)
        })
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        query: HistoryQuery,
        retention: Retention,
    ) -> EngineFuture<'a, History> {
        Box::pin(async move {
            let outcome = self
                .shard(channel)
                .channels
                .history(channel, query, retention)
                .await;
            self.mark(outcome)
        })
    }

    fn presence_add<'a>(&'a self, channel: &'a str, entry: PresenceEntry) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let outcome = self.shard(channel).presence.add(channel, &entry).await;
            if outcome.is_ok() {
                let mut held = self.held.lock().expect("presence lock");
                held.entry(channel.to_owned())
                    .or_default()
                    .insert(entry.client, entry.user);
            }
            self.mark(outcome)
        })
    }

    fn presence_remove<'a>(&'a self, channel: &'a str, client: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            {
                let mut held = self.held.lock().expect("presence lock");
                if let Some(clients) = held.get_mut(channel) {
                    clients.remove(client);
                    if clients.is_empty() {
                        held.remove(channel);
                    }
                }
            }
            let outcome = self.shard(channel).presence.remove(channel, client).await;
            self.mark(outcome)
        })
    }

    fn presence_list<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Vec<PresenceEntry>> {
        Box::pin(async move {
            let outcome = self.shard(channel).presence.list(channel).await;
            self.mark(outcome)
        })
    }

    fn follow<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let outcome = self.shard(channel).follower.follow(channel).await;
            if outcome.is_ok() {
                *self
                    .followed
                    .lock()
                    .expect("followed lock")
                    .entry(channel.to_owned())
                    .or_default() += 1;
            }
            self.mark(outcome)
        })
    }

    fn unfollow(&self, channel: &str) {
        {
            let mut followed = self.followed.lock().expect("followed lock");
            match followed.get_mut(channel) {
                Some(count) if *count > 1 => *count -= 1,
                Some(_) => {
                    followed.remove(channel);
                }
                None => return,
            }
        }
        self.shard(channel).follower.unfollow(channel);
    }

    fn node(&self) -> Option<&str> {
        Some(&self.node)
    }

    fn ready(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Redis expires what it holds by itself; this reports the channels
    /// this node follows.
    fn sweep(
        &self,
        _retention_of: &dyn Fn(&str) -> Retention,
        _in_use: &dyn Fn(&str) -> bool,
    ) -> usize {
        self.followed.lock().expect("followed lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_and_spreads() {
        // Fixed values: every node and every version must agree.
        assert_eq!(fnv(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(&["a"]), fnv(&["a"]));
        assert_ne!(fnv(&["ab", "c"]), fnv(&["a", "bc"]));
        let urls = ["redis://a", "redis://b", "redis://c"];
        let mut counts = [0usize; 3];
        for n in 0..3000 {
            let channel = format!("chat:{n}");
            let best = (0..3).max_by_key(|i| fnv(&[urls[*i], &channel])).unwrap();
            counts[best] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
    }
}

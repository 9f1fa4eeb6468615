//! A channel's offsets, epoch, history and idempotency keys in Redis: the
//! atomic publish (publish.lua) and the consistent read (history.lua), over
//! a small pool of multiplexed connections (each pipelines the commands of
//! every caller that picks it; callers take them in turn), each made again
//! at its next command after it failed.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Script, Value};
use serde_json::value::RawValue;

use super::keys::ChannelKeys;
use super::metrics::RedisMetrics;
use crate::engine::{EngineError, History, HistoryQuery, NewPublication, Retention};
use crate::protocol::{Publication, Published};

/// How to reach Redis and name what is kept there.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://HOST:PORT/DB` (or `rediss://`, `redis+unix://`).
    pub url: String,
    /// Prefix of every key and topic.
    pub prefix: String,
    /// How long a command may take before it fails (error 112 for the client).
    pub command_timeout: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How many multiplexed connections commands are spread over (at least 1).
    pub pool_size: usize,
}

/// The channels' shared state in one Redis; see the module documentation.
#[derive(Clone)]
pub struct RedisChannels {
    client: redis::Client,
    /// The pool: each made at its first command (a server may start before
    /// Redis does), dropped when it fails, made again at its next.
    pool: Arc<[tokio::sync::Mutex<Option<MultiplexedConnection>>]>,
    /// The pool's next connection to use.
    turn: Arc<std::sync::atomic::AtomicUsize>,
    /// Whether a connection was ever made (the next one is a reconnect).
    connected_once: Arc<std::sync::atomic::AtomicBool>,
    metrics: RedisMetrics,
    settings: Arc<RedisSettings>,
    publish: Arc<Script>,
    history: Arc<Script>,
}

impl std::fmt::Debug for RedisChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChannels")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A new channel's epoch, used only if the channel has none yet.
fn fresh_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn millis(duration: Option<Duration>) -> u64 {
    duration.map_or(0, |d| d.as_millis().max(1) as u64)
}

/// A reply of another shape than the scripts give.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from Redis: {0}")]
struct Unexpected(String);

impl RedisChannels {
    /// Channels in the Redis at `settings.url`, counting into `metrics`;
    /// nothing is connected yet.
    pub fn new(settings: RedisSettings, metrics: RedisMetrics) -> Result<Self, EngineError> {
        let client =
            redis::Client::open(settings.url.as_str()).map_err(EngineError::unavailable)?;
        Ok(Self {
            client,
            pool: (0..settings.pool_size.max(1))
                .map(|_| tokio::sync::Mutex::default())
                .collect(),
            turn: Arc::default(),
            connected_once: Arc::default(),
            metrics,
            settings: Arc::new(settings),
            publish: Arc::new(Script::new(include_str!("publish.lua"))),
            history: Arc::new(Script::new(include_str!("history.lua"))),
        })
    }

    /// Channels in the Redis at `settings.url`, connected (metrics of their own).
    pub async fn connect(settings: RedisSettings) -> Result<Self, EngineError> {
        let channels = Self::new(settings, RedisMetrics::default())?;
        channels.connection().await?;
        Ok(channels)
    }

    /// The Redis client, for connections of another kind (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The settings.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// What it counts into.
    pub fn metrics(&self) -> &RedisMetrics {
        &self.metrics
    }

    /// The pool's next connection (and its place in the pool), made when
    /// there is none.
    pub async fn connection(&self) -> Result<(usize, MultiplexedConnection), EngineError> {
        let place = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.pool.len();
        let mut slot = self.pool[place].lock().await;
        if let Some(connection) = &*slot {
            return Ok((place, connection.clone()));
        }
        let settings = &self.settings;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(settings.connect_timeout)
            .set_response_timeout(settings.command_timeout);
        let made = tokio::time::timeout(
            settings.connect_timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(EngineError::unavailable)?
        .map_err(EngineError::unavailable)?;
        if self
            .connected_once
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.metrics.reconnects.inc();
        }
        *slot = Some(made.clone());
        Ok((place, made))
    }

    /// What a command's failure on the pool's connection `place` says of
    /// it: one that broke or timed out is dropped, so the next command
    /// there makes a new one.
    async fn failed(&self, place: usize, error: RedisError) -> EngineError {
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
            || error.is_unrecoverable_error()
        {
            self.pool[place].lock().await.take();
        }
        EngineError::unavailable(error)
    }

    /// Runs `command` within the command timeout.
    async fn query<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, EngineError> {
        let (place, mut connection) = self.connection().await?;
        self.within_timeout(place, command.query_async(&mut connection))
            .await
    }

    /// Awaits a command's answer on the pool's connection `place` for at
    /// most the command timeout; a failure or a timeout drops a broken
    /// connection (see [`failed`](Self::failed)).
    async fn within_timeout<T>(
        &self,
        place: usize,
        answer: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, EngineError> {
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.settings.command_timeout, answer).await;
        self.metrics
            .command_seconds
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.metrics.errors.inc();
                Err(self.failed(place, error).await)
            }
            Err(elapsed) => {
                self.metrics.errors.inc();
                self.pool[place].lock().await.take();
                Err(EngineError::unavailable(elapsed))
            }
        }
    }

    /// Answers whether Redis answers a PING.
    pub async fn ping(&self) -> bool {
        self.query::<String>(&redis::cmd("PING")).await.is_ok()
    }

    /// Publishes `message` on the pub/sub `topic`: how many connections
    /// were subscribed to it (and got it).
    pub async fn notify(&self, topic: &str, message: &[u8]) -> Result<u64, EngineError> {
        let mut command = redis::cmd("PUBLISH");
        command.arg(topic).arg(message);
        self.query(&command).await
    }

    /// The keys of `channel`.
    pub fn keys(&self, channel: &str) -> ChannelKeys {
        ChannelKeys::new(&self.settings.prefix, channel)
    }

    /// Runs `script` with its keys and arguments, within the command timeout.
    pub(crate) async fn run(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<Value, EngineError> {
        let (place, mut connection) = self.connection().await?;
        self.within_timeout(place, invocation.invoke_async(&mut connection))
            .await
    }

    /// Publishes on `channel`: its offset and epoch, and whether the
    /// idempotency key was seen before (then nothing was published).
    pub async fn publish(
        &self,
        channel: &str,
        publication: &NewPublication,
        retention: Retention,
    ) -> Result<(Published, bool), EngineError> {
        let keys = self.keys(channel);
        let idempotency = publication.idempotency_key.as_deref().unwrap_or("");
        let mut invocation = self.publish.prepare_invoke();
        invocation
            .key(&keys.meta)
            .key(&keys.stream)
            .key(keys.seen(idempotency))
            .arg(publication.data.get())
            .arg(retention.history_size)
            .arg(millis(retention.history_ttl))
            .arg(millis(Some(retention.idempotency_window)))
            .arg(fresh_epoch())
            .arg(&keys.topic)
            .arg(idempotency)
            .arg(publication.key.as_deref().unwrap_or(""));
        let reply = self.run(invocation).await?;
        let (offset, epoch, repeated): (u64, String, u8) =
            redis::from_redis_value(&reply).map_err(EngineError::unavailable)?;
        Ok((
            Published {
                offset,
                epoch: epoch.into(),
            },
            repeated == 1,
        ))
    }

    /// The channel's epoch and newest offset, if it has an epoch yet.
    pub async fn position(&self, channel: &str) -> Result<Option<(Arc<str>, u64)>, EngineError> {
        let keys = self.keys(channel);
        let mut command = redis::cmd("HMGET");
        command.arg(&keys.meta).arg("epoch").arg("offset");
        let (epoch, offset): (Option<String>, Option<u64>) = self.query(&command).await?;
        Ok(epoch.map(|epoch| (epoch.into(), offset.unwrap_or(0))))
    }

    /// The channel's epoch, newest offset and retained publications.
    pub async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
        retention: Retention,
    ) -> Result<History, EngineError> {
        let keys = self.keys(channel);
        let mut invocation = self.history.prepare_invoke();
        invocation
            .key(&keys.meta)
            .key(&keys.stream)
            .arg(query.since.map_or(-1, |s| s as i64))
            .arg(query.limit.unwrap_or(0))
            .arg(millis(retention.history_ttl))
            .arg(fresh_epoch());
        let reply = self.run(invocation).await?;
        let unexpected = || EngineError::unavailable(Unexpected(format!("{reply:?}")));
        let Value::Array(items) = &reply else {
            return Err(unexpected());
        };
        let (head, entries) = items.split_at_checked(3).ok_or_else(unexpected)?;
        let epoch: String = redis::from_redis_value(&head[0]).map_err(EngineError::unavailable)?;
        let offset: u64 = redis::from_redis_value(&head[1]).map_err(EngineError::unavailable)?;
        let complete: u8 = redis::from_redis_value(&head[2]).map_err(EngineError::unavailable)?;
        let mut publications = Vec::with_capacity(entries.len() / 2);
        for pair in entries.chunks(2) {
            let [at, data] = pair else {
                return Err(unexpected());
            };
            let offset: u64 = redis::from_redis_value(at).map_err(EngineError::unavailable)?;
            let data: String = redis::from_redis_value(data).map_err(EngineError::unavailable)?;
            // Stored as published: JSON the server validated.
            let data = RawValue::from_string(data).map_err(EngineError::unavailable)?;
            publications.push(Publication { offset, data });
        }
        Ok(History {
            epoch: epoch.into(),
            offset,
            publications,
            complete: complete == 1,
        })
    }
}

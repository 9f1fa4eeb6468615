//! A node's ear on Redis: the topics of the channels this node has
//! subscribers for, on one dedicated pub/sub connection, each publication
//! handed to the node's [`Fanout`] in offset order (and each join and leave
//! as it comes).
//!
//! Pub/sub is lossy (a connection dropped or killed loses what was sent
//! meanwhile), so the follower never trusts it alone. Per channel it keeps
//! the last offset delivered; a publication past the next one, a reconnect,
//! or a periodic look at the channel's newest offset (which catches a lost
//! last message on a quiet channel) makes it read the missing publications
//! from the channel's stream and deliver them first. An idle connection is
//! pinged, so a wedged one is replaced rather than left silent.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::channels::RedisChannels;
use super::keys::Heard;
use crate::engine::{EngineError, Event, Fanout, HistoryQuery, Retention};
use crate::protocol::PresenceEntry;

/// How often each followed channel's newest offset is compared with what
/// was delivered, and an idle connection pinged.
const CHECK_EVERY: Duration = Duration::from_secs(2);

enum Call {
    Follow {
        channel: String,
        done: oneshot::Sender<Result<(), EngineError>>,
    },
    Unfollow {
        channel: String,
    },
}

/// The follower's handle; the task ends when it is dropped.
#[derive(Debug, Clone)]
pub struct Follower {
    calls: mpsc::UnboundedSender<Call>,
    timeout: Duration,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Follow { channel, .. } => write!(f, "Follow({channel})"),
            Call::Unfollow { channel } => write!(f, "Unfollow({channel})"),
        }
    }
}

/// What the follower knows of one channel.
struct Followed {
    topic: String,
    /// Subscribers' follows minus unfollows: unsubscribed at zero.
    wanted: usize,
    /// The epoch and offset last delivered.
    last: Option<(Arc<str>, u64)>,
}

impl Follower {
    /// Starts following on `client`'s pub/sub connections, reading missed
    /// publications through `channels`, delivering to `fanout`;
    /// `retention_of` gives a channel's history settings for those reads.
    pub fn start(
        client: redis::Client,
        channels: RedisChannels,
        fanout: Weak<dyn Fanout>,
        retention_of: Arc<dyn Fn(&str) -> Retention + Send + Sync>,
        timeout: Duration,
    ) -> Self {
        let (calls, inbox) = mpsc::unbounded_channel();
        let task = Task {
            client,
            channels,
            fanout,
            retention_of,
            timeout,
            followed: HashMap::new(),
            by_topic: HashMap::new(),
            inbox,
        };
        tokio::spawn(task.run());
        Self { calls, timeout }
    }

    /// Delivers `channel`'s publications from now on; resolves once Redis
    /// confirmed the subscription (so a history read after it misses nothing).
    pub async fn follow(&self, channel: &str) -> Result<(), EngineError> {
        let (done, answer) = oneshot::channel();
        let gone = || EngineError::unavailable(Stopped);
        self.calls
            .send(Call::Follow {
                channel: channel.to_owned(),
                done,
            })
            .map_err(|_| gone())?;
        tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(EngineError::unavailable)?
            .map_err(|_| gone())?
    }

    /// One follower of `channel` fewer; at none, its topic is left.
    pub fn unfollow(&self, channel: &str) {
        let _ = self.calls.send(Call::Unfollow {
            channel: channel.to_owned(),
        });
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the Redis follower has stopped")]
struct Stopped;

struct Task {
    client: redis::Client,
    channels: RedisChannels,
    fanout: Weak<dyn Fanout>,
    retention_of: Arc<dyn Fn(&str) -> Retention + Send + Sync>,
    timeout: Duration,
    followed: HashMap<String, Followed>,
    by_topic: HashMap<String, String>,
    inbox: mpsc::UnboundedReceiver<Call>,
}

impl Task {
    async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let (sink, stream) = match self.connect().await {
                Ok(connected) => connected,
                Err(error) => {
                    tracing::warn!(%error, "redis pub/sub connection failed; retrying");
                    // Calls wait meanwhile (a follow times out on its own).
                    let delay = backoff(failures);
                    failures += 1;
                    if !self.wait(delay).await {
                        return;
                    }
                    continue;
                }
            };
            failures = 0;
            if !self.serve(sink, stream).await {
                return;
            }
            self.channels.metrics().reconnects.inc();
            tracing::warn!("redis pub/sub connection lost; reconnecting");
        }
    }

    /// Waits `delay`, keeping unfollows current; false once the handle is gone.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                call = self.inbox.recv() => match call {
                    None => return false,
                    // Left at once: the next connection subscribes only what is followed.
                    Some(Call::Unfollow { channel }) => {
                        self.release(&channel);
                    }
                    // Not confirmed: the caller hears so now, and may retry.
                    Some(Call::Follow { done, .. }) => {
                        let _ = done.send(Err(EngineError::unavailable(Stopped)));
                    }
                },
            }
        }
    }

    /// A new pub/sub connection, subscribed to every followed topic, with
    /// what was missed while there was none delivered.
    async fn connect(&mut self) -> Result<(PubSubSink, PubSubStream), EngineError> {
        let pubsub = tokio::time::timeout(self.timeout, self.client.get_async_pubsub())
            .await
            .map_err(EngineError::unavailable)?
            .map_err(EngineError::unavailable)?;
        let (mut sink, stream) = pubsub.split();
        let topics: Vec<String> = self.followed.values().map(|f| f.topic.clone()).collect();
        if !topics.is_empty() {
            // One SUBSCRIBE for them all.
            tokio::time::timeout(self.timeout, sink.subscribe(&topics))
                .await
                .map_err(EngineError::unavailable)?
                .map_err(EngineError::unavailable)?;
        }
        let names: Vec<String> = self.followed.keys().cloned().collect();
        for channel in names {
            self.catch_up(&channel).await;
        }
        Ok((sink, stream))
    }

    /// Serves one connection; false once the handle is gone.
    async fn serve(&mut self, mut sink: PubSubSink, mut stream: PubSubStream) -> bool {
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        let topic = message.get_channel_name().to_owned();
                        self.receive(&topic, message.get_payload_bytes()).await;
                    }
                    None => return true,
                },
                call = self.inbox.recv() => match call {
                    None => return false,
                    Some(Call::Follow { channel, done }) => {
                        let outcome = self.follow(&mut sink, channel).await;
                        let failed = outcome.is_err();
                        let _ = done.send(outcome);
                        if failed {
                            return true;
                        }
                    }
                    Some(Call::Unfollow { channel }) => {
                        if let Some(topic) = self.release(&channel) {
                            let _ = tokio::time::timeout(self.timeout, sink.unsubscribe(&topic)).await;
                        }
                    }
                },
                _ = check.tick() => {
                    // A wedged connection answers no ping: replace it.
                    // (Subscribed, Redis answers a ping with ["pong", ""].)
                    let pong = tokio::time::timeout(self.timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return true;
                    }
                    let names: Vec<String> = self.followed.keys().cloned().collect();
                    for channel in names {
                        self.catch_up(&channel).await;
                    }
                }
            }
        }
    }

    async fn follow(&mut self, sink: &mut PubSubSink, channel: String) -> Result<(), EngineError> {
        if let Some(followed) = self.followed.get_mut(&channel) {
            followed.wanted += 1;
            return Ok(());
        }
        let topic = self.channels.keys(&channel).topic;
        tokio::time::timeout(self.timeout, sink.subscribe(&topic))
            .await
            .map_err(EngineError::unavailable)?
            .map_err(EngineError::unavailable)?;
        // Where the channel stands once subscribed: the first publication
        // heard is checked against it like any other.
        let last = match self.channels.position(&channel).await {
            Ok(position) => position,
            Err(error) => {
                let _ = tokio::time::timeout(self.timeout, sink.unsubscribe(&topic)).await;
                return Err(error);
            }
        };
        self.by_topic.insert(topic.clone(), channel.clone());
        self.followed.insert(
            channel,
            Followed {
                topic,
                wanted: 1,
                last,
            },
        );
        Ok(())
    }

    /// One follower fewer; the topic to leave when it was the last.
    fn release(&mut self, channel: &str) -> Option<String> {
        let followed = self.followed.get_mut(channel)?;
        followed.wanted -= 1;
        if followed.wanted > 0 {
            return None;
        }
        let followed = self.followed.remove(channel)?;
        self.by_topic.remove(&followed.topic);
        Some(followed.topic)
    }

    async fn receive(&mut self, topic: &str, payload: &[u8]) {
        let Some(channel) = self.by_topic.get(topic).cloned() else {
            return;
        };
        let wire = match Heard::decode(payload) {
            Some(Heard::Publication(wire)) => wire,
            Some(Heard::Join { client, user }) | Some(Heard::Leave { client, user }) => {
                let entry = PresenceEntry {
                    client: client.to_owned(),
                    user: user.map(str::to_owned),
                };
                if let Some(fanout) = self.fanout.upgrade() {
                    let joined = payload.first() == Some(&b'J');
                    let event = if joined {
                        Event::Join(&entry)
                    } else {
                        Event::Leave(&entry)
                    };
                    fanout.deliver(&channel, event);
                }
                return;
            }
            None => {
                tracing::warn!(%topic, "unreadable message on redis");
                return;
            }
        };
        let last = self.followed.get(&channel).and_then(|f| f.last.clone());
        if let Some((epoch, offset)) = &last {
            if **epoch == *wire.epoch {
                if wire.offset <= *offset {
                    return; // delivered already, by a catch-up
                }
                if wire.offset > offset + 1 {
                    // Something was lost on the way: read it first.
                    self.catch_up(&channel).await;
                    let now = self.followed.get(&channel).and_then(|f| f.last.clone());
                    if now.is_some_and(|(_, delivered)| delivered >= wire.offset) {
                        return;
                    }
                }
            }
        }
        let Ok(data) = RawValue::from_string(wire.data.to_owned()) else {
            return;
        };
        self.deliver(&channel, wire.epoch.into(), wire.offset, &data, wire.key);
    }

    /// Delivers what the channel's stream holds past the last offset delivered.
    async fn catch_up(&mut self, channel: &str) {
        let Some((epoch, since)) = self.followed.get(channel).and_then(|f| f.last.clone()) else {
            return;
        };
        let query = HistoryQuery {
            since: Some(since),
            limit: None,
        };
        let history = match self
            .channels
            .history(channel, query, (self.retention_of)(channel))
            .await
        {
            Ok(history) => history,
            Err(error) => {
                tracing::warn!(%channel, %error, "reading missed publications failed");
                return;
            }
        };
        if history.epoch != epoch || !history.complete {
            tracing::warn!(%channel, since, "publications missed on redis are gone from its history");
            // Nothing can fill it: the subscribers here start over, told so,
            // and this node goes on from the channel's position.
            if let Some(followed) = self.followed.get_mut(channel) {
                followed.last = Some((history.epoch.clone(), history.offset));
            }
            self.channels.metrics().resets.inc();
            if let Some(fanout) = self.fanout.upgrade() {
                fanout.reset(channel);
            }
            return;
        }
        let filled = history.publications.len() as u64;
        self.channels.metrics().gaps_filled.inc_by(filled);
        for publication in history.publications {
            self.deliver(
                channel,
                epoch.clone(),
                publication.offset,
                &publication.data,
                None,
            );
        }
    }

    fn deliver(
        &mut self,
        channel: &str,
        epoch: Arc<str>,
        offset: u64,
        data: &RawValue,
        key: Option<&str>,
    ) {
        if let Some(fanout) = self.fanout.upgrade() {
            fanout.deliver(
                channel,
                Event::Publication {
                    offset,
                    epoch: &epoch,
                    data,
                    key,
                },
            );
        }
        if let Some(followed) = self.followed.get_mut(channel) {
            followed.last = Some((epoch, offset));
        }
    }
}

/// Reconnect delays: doubling from 50 ms to 5 s, with full jitter.
pub(super) fn backoff(failures: u32) -> Duration {
    let ceiling = Duration::from_millis(50 * (1u64 << failures.min(7))).min(Duration::from_secs(5));
    ceiling.mul_f64(rand::random::<f64>().max(0.1))
}

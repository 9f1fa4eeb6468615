//! Channels and their subscribers: publish with offsets, history and recovery,
//! presence. The hub knows nothing of transports: it pushes ready-made frames
//! into each connection's [`Outbox`].
//!
//! Each publication is serialised once into a [`PreparedMessage`]; every
//! subscriber's queue gets a clone of it, and its frame (compressed too, for
//! connections that compress each message on its own) is built once by the first
//! connection that writes it.

mod channel;
mod outbox;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::value::RawValue;
use tether::PreparedMessage;

pub use outbox::{
    ClientId, Follow, Inbox, Outbox, Overflow, Position, Queued, Stream, StreamSubscription,
};

use crate::config::{ServerConfig, SlowConsumerPolicy};
use crate::metrics::Metrics;
use crate::protocol::{nesting_depth, ErrorBody, ErrorCode, HistoryPage, Publication, Push, Reply};
pub use crate::protocol::{PresenceEntry, Published, Subscribed};
use channel::{Channel, Subscriber};

/// The channel registry.
#[derive(Debug)]
pub struct Hub {
    config: Arc<ServerConfig>,
    metrics: Arc<Metrics>,
    // A std Mutex: critical sections are short and never await.
    channels: Mutex<HashMap<String, Arc<Mutex<Channel>>>>,
}

/// Serialises a server message into a shareable text frame.
pub(crate) fn frame<T: Serialize>(value: &T) -> PreparedMessage {
    PreparedMessage::text(serde_json::to_string(value).expect("protocol types serialise"))
}

impl Hub {
    /// An empty hub.
    pub fn new(config: Arc<ServerConfig>, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            metrics,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Checks a channel name: non-empty, bounded, printable ASCII without spaces.
    pub fn validate_channel(&self, channel: &str) -> Result<(), ErrorBody> {
        let ok = !channel.is_empty()
            && channel.len() <= self.config.max_channel_name
            && channel.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(())
        } else {
            Err(ErrorCode::BadChannel.body(format!("invalid channel name {channel:?}")))
        }
    }

    /// Runs `f` on the channel `name` (created if new), with its lock held and
    /// its history expired by age.
    fn with_channel<R>(&self, name: &str, f: impl FnOnce(&mut Channel) -> R) -> R {
        let options = self.config.namespace_of(name);
        let ttl = options.history_ttl;
        // Conflating needs a queue per subscriber; every other policy reads
        // from the channel's stream, as deep as a connection's queue.
        let stream = (options.slow_consumer != SlowConsumerPolicy::LatestPerKey)
            .then_some(self.config.outbound_queue);
        loop {
            let shared = {
                let mut channels = self.channels.lock().expect("hub lock");
                // Looked up before inserting: the key is allocated only for a new channel.
                match channels.get(name) {
                    Some(shared) => shared.clone(),
                    None => channels
                        .entry(name.to_owned())
                        .or_insert_with(|| Arc::new(Mutex::new(Channel::new(name, stream))))
                        .clone(),
                }
            };
            let mut state = shared.lock().expect("channel lock");
            // A sweep may have forgotten it between the lookup and the lock.
            if !state.removed {
                state.expire(ttl, std::time::Instant::now());
                return f(&mut state);
            }
        }
    }

    /// Forgets channels with no subscribers, history or live idempotency keys,
    /// after expiring history by age; returns how many are left. The server
    /// calls it periodically so transient channels do not accumulate.
    pub fn sweep(&self) -> usize {
        let now = std::time::Instant::now();
        let mut channels = self.channels.lock().expect("hub lock");
        channels.retain(|name, shared| {
            let mut state = shared.lock().expect("channel lock");
            state.expire(self.config.namespace_of(name).history_ttl, now);
            let idle = state.is_idle(self.config.idempotency_window, now);
            state.removed = idle;
            !idle
        });
        self.metrics.channels.set(channels.len() as i64);
        channels.len()
    }

    fn existing(&self, name: &str) -> Option<Arc<Mutex<Channel>>> {
        self.channels.lock().expect("hub lock").get(name).cloned()
    }

    /// Publishes `data` to `channel`: assigns the next offset, retains it, and
    /// queues it for every subscriber.
    /// `idempotency_key` deduplicates retries; `key` names what the publication
    /// is about (a symbol, a player) for `latest-per-key` conflation, and defaults
    /// to the channel itself.
    pub fn publish(
        &self,
        channel: &str,
        data: Box<RawValue>,
        idempotency_key: Option<String>,
        key: Option<&str>,
    ) -> Result<Published, ErrorBody> {
        self.validate_channel(channel)?;
        if data.get().len() > self.config.max_publish_size {
            return Err(ErrorCode::MessageTooLarge.body(format!(
                "data is {} bytes, the limit is {}",
                data.get().len(),
                self.config.max_publish_size
            )));
        }
        // Whatever is accepted must be readable back by every client, and
        // JSON parsers limit nesting (serde_json at 128, envelope included).
        let depth = nesting_depth(data.get());
        if depth > self.config.max_data_depth {
            return Err(ErrorCode::BadRequest.body(format!(
                "data nests {depth} levels deep, the limit is {}",
                self.config.max_data_depth
            )));
        }
        let options = self.config.namespace_of(channel);
        let conflation: Option<Arc<str>> = (options.slow_consumer
            == SlowConsumerPolicy::LatestPerKey)
            .then(|| format!("{channel}\u{0}{}", key.unwrap_or_default()).into());
        self.with_channel(channel, |state| {
            if let Some(key) = &idempotency_key {
                if let Some(offset) = state.seen_key(key, self.config.idempotency_window) {
                    return Ok(Published {
                        offset,
                        epoch: state.epoch.clone(),
                    });
                }
            }
            let bytes = frame(&Push::Publication {
                channel: channel.into(),
                offset: state.offset + 1,
                data: std::borrow::Cow::Borrowed(&data),
            });
            let offset = state.append(data, idempotency_key, options.history_size);
            let position = state.position();
            let started = std::time::Instant::now();
            let dropped = state.broadcast(
                &bytes,
                options.slow_consumer,
                conflation.as_ref(),
                Some(&position),
            );
            self.metrics
                .fanout_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.publications.inc();
            self.metrics.queue_drops.inc_by(dropped);
            Ok(Published {
                offset,
                epoch: state.epoch.clone(),
            })
        })
    }

    /// Subscribes `client`. The reply (with any recovered publications) is queued
    /// under the channel lock, so it precedes every live publication.
    pub fn subscribe(
        &self,
        request_id: u64,
        channel: &str,
        client: &ClientId,
        user: Option<&Arc<str>>,
        outbox: &Outbox,
        recover: Option<&crate::protocol::StreamPosition>,
    ) -> Result<(), ErrorBody> {
        self.validate_channel(channel)?;
        let options = self.config.namespace_of(channel);
        let presence = options.presence;
        self.with_channel(channel, |state| {
            if state.subscribers.contains_key(client) {
                return Err(ErrorCode::AlreadySubscribed.body(channel));
            }
            let (recovered, publications) = match recover {
                None => (None, Vec::new()),
                Some(position) if *position.epoch != *state.epoch => (Some(false), Vec::new()),
                Some(position) => match state.since(position.offset) {
                    Some(missed) => (
                        Some(true),
                        missed
                            .into_iter()
                            .map(|p| Publication {
                                offset: p.offset,
                                data: p.data,
                            })
                            .collect(),
                    ),
                    None => (Some(false), Vec::new()),
                },
            };
            let result = Subscribed {
                epoch: state.epoch.clone(),
                offset: state.offset,
                recovered,
                publications,
            };
            let reply = frame(&Reply::new(request_id, Ok(result)));
            // The others hear of the join; the joiner's stream starts after it.
            if presence {
                state.broadcast(
                    &frame(&Push::Join {
                        channel: channel.into(),
                        client: (&**client).into(),
                        user: user.map(|u| (&**u).into()),
                    }),
                    options.slow_consumer,
                    None,
                    None,
                );
            }
            let follow = state.stream.as_ref().map(|stream| Follow::Start {
                channel: state.name.clone(),
                epoch: state.epoch.clone(),
                subscription: stream.subscribe(),
                policy: options.slow_consumer,
            });
            outbox.push_reply(reply, Some(state.position()), follow);
            let subscriber = Subscriber {
                outbox: outbox.clone(),
                user: user.cloned(),
            };
            state.subscribers.insert(client.clone(), subscriber);
            self.metrics.subscriptions.inc();
            Ok(())
        })
    }

    /// Removes `client` from `channel`. For a streamed channel, returns the
    /// [`Follow::Stop`] to queue with the reply: the client's writer sends what
    /// was published before this, and nothing after.
    pub fn unsubscribe(
        &self,
        channel: &str,
        client: &ClientId,
    ) -> Result<Option<Follow>, ErrorBody> {
        let Some(shared) = self.existing(channel) else {
            return Err(ErrorCode::NotSubscribed.body(channel));
        };
        let mut state = shared.lock().expect("channel lock");
        let Some(subscriber) = state.subscribers.remove(client) else {
            return Err(ErrorCode::NotSubscribed.body(channel));
        };
        self.metrics.subscriptions.dec();
        let stop = state.stream.as_ref().map(|stream| Follow::Stop {
            channel: state.name.clone(),
            until: stream.head(),
        });
        let options = self.config.namespace_of(channel);
        if options.presence {
            state.broadcast(
                &frame(&Push::Leave {
                    channel: channel.into(),
                    client: (&**client).into(),
                    user: subscriber.user.as_deref().map(Into::into),
                }),
                options.slow_consumer,
                None,
                None,
            );
        }
        Ok(stop)
    }

    /// Who is subscribed to `channel`, by client id.
    pub fn presence(&self, channel: &str) -> Result<Vec<PresenceEntry>, ErrorBody> {
        self.validate_channel(channel)?;
        if !self.config.namespace_of(channel).presence {
            return Err(ErrorCode::NotAvailable.body("presence is off for this namespace"));
        }
        let Some(shared) = self.existing(channel) else {
            return Ok(Vec::new());
        };
        let state = shared.lock().expect("channel lock");
        let mut clients: Vec<PresenceEntry> = state
            .subscribers
            .iter()
            .map(|(client, subscriber)| PresenceEntry {
                client: client.to_string(),
                user: subscriber.user.as_deref().map(str::to_owned),
            })
            .collect();
        clients.sort_by(|a, b| a.client.cmp(&b.client));
        Ok(clients)
    }

    /// Retained publications of `channel`, the newest `limit` of them.
    pub fn history(&self, channel: &str, limit: Option<usize>) -> Result<HistoryPage, ErrorBody> {
        self.validate_channel(channel)?;
        if self.config.namespace_of(channel).history_size == 0 {
            return Err(ErrorCode::NotAvailable.body("history is off for this namespace"));
        }
        Ok(self.with_channel(channel, |state| {
            let skip = limit.map_or(0, |limit| state.history.len().saturating_sub(limit));
            let publications = state
                .history
                .iter()
                .skip(skip)
                .map(|p| Publication {
                    offset: p.offset,
                    data: p.data.clone(),
                })
                .collect();
            HistoryPage {
                epoch: state.epoch.clone(),
                offset: state.offset,
                publications,
            }
        }))
    }

    /// Names of channels that currently have subscribers.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let channels = self.channels.lock().expect("hub lock");
        let mut list: Vec<(String, usize)> = channels
            .iter()
            .map(|(name, shared)| {
                (
                    name.clone(),
                    shared.lock().expect("channel lock").subscribers.len(),
                )
            })
            .filter(|(_, subscribers)| *subscribers > 0)
            .collect();
        list.sort();
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespaceOptions;

    fn data(n: u64) -> Box<RawValue> {
        RawValue::from_string(n.to_string()).unwrap()
    }

    #[test]
    fn sweep_forgets_only_channels_with_nothing_left_to_lose() {
        let config = ServerConfig::default()
            .namespace("tmp", NamespaceOptions::default().history_size(0))
            .namespace("kept", NamespaceOptions::default().history_ttl(None));
        let hub = Hub::new(Arc::new(config), Arc::default());
        let first = hub.publish("tmp:a", data(1), None, None).unwrap();
        hub.publish("tmp:b", data(1), Some("retry-me".into()), None)
            .unwrap();
        hub.publish("kept:c", data(1), None, None).unwrap();
        let (outbox, _inbox, _) = Outbox::new(8);
        let client: ClientId = "c1".into();
        hub.subscribe(1, "tmp:d", &client, None, &outbox, None)
            .unwrap();
        // tmp:a has no history and no subscriber; tmp:b's key is still live;
        // kept:c has history; tmp:d has a subscriber.
        assert_eq!(hub.sweep(), 3);
        let again = hub.publish("tmp:a", data(2), None, None).unwrap();
        assert_eq!(again.offset, 1, "a forgotten channel starts over");
        assert_ne!(again.epoch, first.epoch, "with a new epoch");
        let retried = hub
            .publish("tmp:b", data(1), Some("retry-me".into()), None)
            .unwrap();
        assert_eq!(retried.offset, 1, "the idempotency key survived the sweep");
    }
}

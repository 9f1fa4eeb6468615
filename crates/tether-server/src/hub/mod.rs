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

pub use outbox::{ClientId, Inbox, Outbox, Overflow};

use crate::config::{ServerConfig, SlowConsumerPolicy};
use crate::metrics::Metrics;
use crate::protocol::{ErrorBody, ErrorCode, Publication, Push, Reply};
use channel::{Channel, Subscriber};

/// The result of a subscribe.
#[derive(Debug, Serialize)]
pub struct Subscribed {
    /// The channel's current epoch.
    pub epoch: String,
    /// The channel's newest offset.
    pub offset: u64,
    /// Whether every missed publication is in `publications` (only when the
    /// client asked to recover). `false`: reload state, history no longer covers
    /// the gap or the epoch changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Missed publications, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
}

/// One entry of a presence list.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The connection's client id.
    pub client: String,
    /// The user id from its token, if it authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The result of a publish.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Published {
    /// The offset the publication got (the original one for a repeated key).
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: String,
}

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

    fn channel(&self, name: &str) -> Arc<Mutex<Channel>> {
        let mut channels = self.channels.lock().expect("hub lock");
        channels
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Channel::new())))
            .clone()
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
        let options = self.config.namespace_of(channel);
        let conflation: Option<Arc<str>> = (options.slow_consumer
            == SlowConsumerPolicy::LatestPerKey)
            .then(|| format!("{channel}\u{0}{}", key.unwrap_or_default()).into());
        let shared = self.channel(channel);
        let mut state = shared.lock().expect("channel lock");
        if let Some(key) = &idempotency_key {
            if let Some(offset) = state.seen_key(key, self.config.idempotency_window) {
                return Ok(Published {
                    offset,
                    epoch: state.epoch.clone(),
                });
            }
        }
        let bytes = frame(&Push::Publication {
            channel,
            offset: state.offset + 1,
            data: &data,
        });
        let offset = state.append(data, idempotency_key, options.history_size);
        let started = std::time::Instant::now();
        let dropped = state.broadcast(&bytes, None, options.slow_consumer, conflation.as_ref());
        self.metrics
            .fanout_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.publications.inc();
        self.metrics.queue_drops.inc_by(dropped);
        Ok(Published {
            offset,
            epoch: state.epoch.clone(),
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
        let shared = self.channel(channel);
        let mut state = shared.lock().expect("channel lock");
        if state.subscribers.contains_key(client) {
            return Err(ErrorCode::AlreadySubscribed.body(channel));
        }
        let (recovered, publications) = match recover {
            None => (None, Vec::new()),
            Some(position) if position.epoch != state.epoch => (Some(false), Vec::new()),
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
        outbox.push(frame(&Reply {
            id: request_id,
            result: Some(result),
            error: None,
        }));
        if presence {
            state.broadcast(
                &frame(&Push::Join {
                    channel,
                    client,
                    user: user.map(|u| &**u),
                }),
                None,
                options.slow_consumer,
                None,
            );
        }
        let subscriber = Subscriber {
            outbox: outbox.clone(),
            user: user.cloned(),
        };
        state.subscribers.insert(client.clone(), subscriber);
        self.metrics.subscriptions.inc();
        Ok(())
    }

    /// Removes `client` from `channel`.
    pub fn unsubscribe(&self, channel: &str, client: &ClientId) -> Result<(), ErrorBody> {
        let Some(shared) = self.existing(channel) else {
            return Err(ErrorCode::NotSubscribed.body(channel));
        };
        let mut state = shared.lock().expect("channel lock");
        let Some(subscriber) = state.subscribers.remove(client) else {
            return Err(ErrorCode::NotSubscribed.body(channel));
        };
        self.metrics.subscriptions.dec();
        let options = self.config.namespace_of(channel);
        if options.presence {
            state.broadcast(
                &frame(&Push::Leave {
                    channel,
                    client,
                    user: subscriber.user.as_deref(),
                }),
                None,
                options.slow_consumer,
                None,
            );
        }
        Ok(())
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
    pub fn history(
        &self,
        channel: &str,
        limit: Option<usize>,
    ) -> Result<(String, u64, Vec<Publication>), ErrorBody> {
        self.validate_channel(channel)?;
        if self.config.namespace_of(channel).history_size == 0 {
            return Err(ErrorCode::NotAvailable.body("history is off for this namespace"));
        }
        let shared = self.channel(channel);
        let state = shared.lock().expect("channel lock");
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
        Ok((state.epoch.clone(), state.offset, publications))
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

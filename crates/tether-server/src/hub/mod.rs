//! This node's side of channels: its local subscribers and their streams, and
//! the order in which each subscriber gets its replies and publications. What
//! the channels share across nodes (offsets, epochs, history, idempotency,
//! presence, fan-out) is the [`Engine`]'s; the hub calls it and receives its
//! fan-out as the engine's [`Fanout`]. The hub names no transport and no
//! session: it pushes frames into the channel's [`Stream`] or into each
//! subscriber's [`Mailbox`], which the session implements.
//!
//! Each publication is serialised once into a [`PreparedMessage`]: one push
//! into the channel's stream, which every subscriber's writer reads (WebSocket
//! writers copy its frame, framed once).
//!
//! Subscribing does not hold a lock across the engine: the subscriber starts
//! buffering live publications first (its place in the stream, or a held
//! list), then history is read since its position, and the two are merged by
//! offset behind the reply, with no gap and no duplicate, wherever the
//! history lives.

mod channel;
mod mailbox;
mod position;
mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use serde_json::value::RawValue;
use tether::PreparedMessage;

pub use settings::HubSettings;

pub use mailbox::{Follow, Mailbox, Stream, StreamSubscription};
pub use position::Position;

/// A session's id, unique within the process: what presence shows others.
pub type ClientId = Arc<str>;

use crate::config::{NamespaceOptions, SlowConsumerPolicy};
use crate::engine::{Engine, Event, Fanout, HistoryQuery, NewPublication, Retention};
use crate::metrics::Metrics;
use crate::protocol::{
    nesting_depth, ErrorBody, ErrorCode, HistoryPage, PresenceEntry, Published, Push, Reply,
    StreamPosition, Subscribed,
};
use channel::{LocalChannel, Subscriber};

/// This node's channels and their local subscribers.
#[derive(Debug)]
pub struct Hub {
    settings: HubSettings,
    metrics: Arc<Metrics>,
    engine: Arc<dyn Engine>,
    // A std Mutex: critical sections are short and never await.
    channels: Mutex<HashMap<String, Arc<Mutex<LocalChannel>>>>,
}

/// Serialises a server message into a shareable text frame.
pub(crate) fn frame<T: Serialize>(value: &T) -> PreparedMessage {
    PreparedMessage::text(serde_json::to_string(value).expect("protocol types serialise"))
}

/// What leaving a channel left to do: the stream stop to queue with the reply.
#[derive(Debug)]
pub struct Left {
    /// For a streamed channel, where the session's writer stops sending it.
    pub stop: Option<Follow>,
    presence: bool,
}

impl Hub {
    /// A hub under `settings` on the engine `engine` builds, given where to
    /// fan out to (the hub itself).
    pub fn new(
        settings: HubSettings,
        metrics: Arc<Metrics>,
        engine: impl FnOnce(Weak<dyn Fanout>) -> Arc<dyn Engine>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|hub: &Weak<Hub>| Self {
            settings,
            metrics,
            engine: engine(hub.clone() as Weak<dyn Fanout>),
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// The settings it runs under.
    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// Whether the engine can answer now (for `/readyz`).
    pub fn ready(&self) -> bool {
        self.engine.ready()
    }

    /// This node's id among the nodes that share the engine (None alone).
    pub fn node(&self) -> Option<&str> {
        self.engine.node()
    }

    /// A new client id, unique among the nodes that share the engine:
    /// `c17`, or `c17-3fa9c2` on a node of a cluster.
    pub fn client_id(&self, n: u64) -> String {
        match self.engine.node() {
            Some(node) => format!("c{n}-{node}"),
            None => format!("c{n}"),
        }
    }

    /// The options for `channel`, by its namespace.
    pub fn namespace_of(&self, channel: &str) -> &NamespaceOptions {
        self.settings.namespace_of(channel)
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Checks a channel name: non-empty, bounded, printable ASCII without spaces.
    pub fn validate_channel(&self, channel: &str) -> Result<(), ErrorBody> {
        let ok = !channel.is_empty()
            && channel.len() <= self.settings.max_channel_name
            && channel.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(())
        } else {
            Err(ErrorCode::BadChannel.body(format!("invalid channel name {channel:?}")))
        }
    }

    /// What the engine keeps of `channel`, by its namespace.
    fn retention(&self, channel: &str) -> Retention {
        self.settings.retention(channel)
    }

    /// Runs `f` on the local channel `name` (created if new) with its lock
    /// held; returns the channel too.
    fn with_local<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut LocalChannel) -> R,
    ) -> (Arc<Mutex<LocalChannel>>, R) {
        // Conflating needs a queue per subscriber; every other policy reads
        // from the channel's stream, as deep as a connection's queue.
        let stream = (self.settings.namespace_of(name).slow_consumer
            != SlowConsumerPolicy::LatestPerKey)
            .then_some(self.settings.outbound_queue);
        loop {
            let shared = {
                let mut channels = self.channels.lock().expect("hub lock");
                // Looked up before inserting: the key is allocated only for a new channel.
                match channels.get(name) {
                    Some(shared) => shared.clone(),
                    None => channels
                        .entry(name.to_owned())
                        .or_insert_with(|| Arc::new(Mutex::new(LocalChannel::new(name, stream))))
                        .clone(),
                }
            };
            let mut state = shared.lock().expect("channel lock");
            // A sweep may have forgotten it between the lookup and the lock.
            if !state.removed {
                let result = f(&mut state);
                drop(state);
                return (shared, result);
            }
        }
    }

    fn existing(&self, name: &str) -> Option<Arc<Mutex<LocalChannel>>> {
        self.channels.lock().expect("hub lock").get(name).cloned()
    }

    /// Forgets local channels without subscribers, and lets the engine forget
    /// what has expired; returns how many channels the engine still holds.
    /// The server calls it periodically so transient channels do not
    /// accumulate.
    pub fn sweep(&self) -> usize {
        {
            let mut channels = self.channels.lock().expect("hub lock");
            channels.retain(|_, shared| {
                let mut state = shared.lock().expect("channel lock");
                state.removed = state.subscribers.is_empty();
                !state.removed
            });
        }
        // The engine asks about each of its channels under its own locks,
        // which come before the hub's (as when it fans out).
        let in_use = |name: &str| self.channels.lock().expect("hub lock").contains_key(name);
        let held = self.engine.sweep(&|name| self.retention(name), &in_use);
        self.metrics.channels.set(held as i64);
        held
    }

    /// Publishes `data` to `channel`: the engine assigns the next offset,
    /// retains it and fans it out to every subscriber.
    /// `idempotency_key` deduplicates retries; `key` names what the publication
    /// is about (a symbol, a player) for `latest-per-key` conflation, and defaults
    /// to the channel itself.
    pub async fn publish(
        &self,
        channel: &str,
        data: Box<RawValue>,
        idempotency_key: Option<String>,
        key: Option<&str>,
    ) -> Result<Published, ErrorBody> {
        self.validate_channel(channel)?;
        if data.get().len() > self.settings.max_publish_size {
            return Err(ErrorCode::MessageTooLarge.body(format!(
                "data is {} bytes, the limit is {}",
                data.get().len(),
                self.settings.max_publish_size
            )));
        }
        // Whatever is accepted must be readable back by every client, and
        // JSON parsers limit nesting (serde_json at 128, envelope included).
        let depth = nesting_depth(data.get());
        if depth > self.settings.max_data_depth {
            return Err(ErrorCode::BadRequest.body(format!(
                "data nests {depth} levels deep, the limit is {}",
                self.settings.max_data_depth
            )));
        }
        let publication = NewPublication {
            data,
            idempotency_key,
            key: key.map(str::to_owned),
        };
        let started = std::time::Instant::now();
        let published = self
            .engine
            .publish(channel, publication, self.retention(channel))
            .await?;
        self.metrics
            .fanout_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(published)
    }

    /// Subscribes `client`, recovering from `recover` if given. The reply
    /// (with any recovered publications) is queued ahead of every live
    /// publication that follows it.
    pub async fn subscribe(
        &self,
        request_id: u64,
        channel: &str,
        client: &ClientId,
        user: Option<&Arc<str>>,
        mailbox: &Arc<dyn Mailbox>,
        recover: Option<&StreamPosition>,
    ) -> Result<(), ErrorBody> {
        self.validate_channel(channel)?;
        let options = self.settings.namespace_of(channel);
        let (_, known) = self.with_local(channel, |state| state.subscribers.contains_key(client));
        if known {
            return Err(ErrorCode::AlreadySubscribed.body(channel));
        }
        // This node hears the channel from here on (a no-op for an engine
        // of one node), so the history read below misses nothing.
        self.engine.follow(channel).await?;
        // The others hear of the join; the joiner's stream starts after it.
        if options.presence {
            let entry = PresenceEntry {
                client: client.to_string(),
                user: user.map(|u| u.to_string()),
            };
            if let Err(error) = self.engine.presence_add(channel, entry).await {
                self.engine.unfollow(channel);
                return Err(error.into());
            }
        }
        // Buffer live: from here on the subscriber keeps what is published.
        let (local, subscription) = self.with_local(channel, |state| {
            let subscriber = Subscriber {
                mailbox: mailbox.clone(),
                held: state.stream.is_none().then(Box::default),
            };
            state.subscribers.insert(client.clone(), subscriber);
            state.stream.as_ref().map(Stream::subscribe)
        });
        self.metrics.subscriptions.inc();
        // Then read history since the position.
        let query = HistoryQuery {
            since: Some(recover.map_or(u64::MAX, |p| p.offset)),
            limit: None,
        };
        let history = match self
            .engine
            .history(channel, query, self.retention(channel))
            .await
        {
            Ok(history) => history,
            Err(error) => {
                if let Ok(left) = self.leave(channel, client) {
                    self.announce_leave(channel, client, left).await;
                }
                return Err(error.into());
            }
        };
        let recovered = recover.map(|p| *p.epoch == *history.epoch && history.complete);
        let publications = if recovered == Some(true) {
            history.publications
        } else {
            Vec::new()
        };
        let top = history.offset;
        let result = Subscribed {
            epoch: history.epoch.clone(),
            offset: top,
            recovered,
            publications,
        };
        let reply = frame(&Reply::new(request_id, Ok(result)));
        let position = Arc::new(Position {
            channel: channel.into(),
            offset: top,
            epoch: history.epoch.clone(),
        });
        // Merge: the reply first, then what arrived meanwhile that history
        // did not have (offsets above the reply's).
        let mut state = local.lock().expect("channel lock");
        state.epoch = Some(history.epoch.clone());
        let follow = subscription.map(|subscription| Follow::Start {
            channel: state.name.clone(),
            epoch: history.epoch.clone(),
            subscription,
            policy: options.slow_consumer,
            after: top,
        });
        mailbox.push_reply(reply, Some(position), follow);
        let held = state
            .subscribers
            .get_mut(client)
            .and_then(|subscriber| subscriber.held.take());
        for held in held.into_iter().flat_map(|held| *held) {
            if held.offset.is_some_and(|offset| offset <= top) {
                continue;
            }
            if !mailbox.push_publication(held.frame, options.slow_consumer, held.key, held.position)
            {
                self.metrics.queue_drops.inc();
            }
        }
        Ok(())
    }

    /// Removes `client` from `channel` here, at once. For a streamed channel
    /// the result holds the [`Follow::Stop`] to queue with the reply: the
    /// client's writer sends what was published before this, and nothing
    /// after. Then [`announce_leave`](Self::announce_leave) tells the others.
    pub fn leave(&self, channel: &str, client: &ClientId) -> Result<Left, ErrorBody> {
        let Some(shared) = self.existing(channel) else {
            return Err(ErrorCode::NotSubscribed.body(channel));
        };
        let mut state = shared.lock().expect("channel lock");
        if state.subscribers.remove(client).is_none() {
            return Err(ErrorCode::NotSubscribed.body(channel));
        }
        self.engine.unfollow(channel);
        self.metrics.subscriptions.dec();
        let stop = state.stream.as_ref().map(|stream| Follow::Stop {
            channel: state.name.clone(),
            until: stream.head(),
        });
        Ok(Left {
            stop,
            presence: self.settings.namespace_of(channel).presence,
        })
    }

    /// Removes `client` from the channel's presence, which tells the others.
    pub async fn announce_leave(&self, channel: &str, client: &str, left: Left) {
        if left.presence {
            if let Err(error) = self.engine.presence_remove(channel, client).await {
                tracing::warn!(%channel, %client, %error, "presence leave failed");
            }
        }
    }

    /// Who is subscribed to `channel`, by client id.
    pub async fn presence(&self, channel: &str) -> Result<Vec<PresenceEntry>, ErrorBody> {
        self.validate_channel(channel)?;
        if !self.settings.namespace_of(channel).presence {
            return Err(ErrorCode::NotAvailable.body("presence is off for this namespace"));
        }
        Ok(self.engine.presence_list(channel).await?)
    }

    /// Retained publications of `channel`, the newest `limit` of them.
    pub async fn history(
        &self,
        channel: &str,
        limit: Option<usize>,
    ) -> Result<HistoryPage, ErrorBody> {
        self.validate_channel(channel)?;
        if self.settings.namespace_of(channel).history_size == 0 {
            return Err(ErrorCode::NotAvailable.body("history is off for this namespace"));
        }
        let query = HistoryQuery { since: None, limit };
        let history = self
            .engine
            .history(channel, query, self.retention(channel))
            .await?;
        Ok(HistoryPage {
            epoch: history.epoch,
            offset: history.offset,
            publications: history.publications,
        })
    }

    /// Names of channels that currently have local subscribers, with how many.
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

impl Hub {
    fn reset_subscribers(state: &LocalChannel) {
        for subscriber in state.subscribers.values() {
            subscriber.mailbox.reset();
        }
    }
}

impl Fanout for Hub {
    fn reset(&self, channel: &str) {
        if let Some(local) = self.existing(channel) {
            let mut state = local.lock().expect("channel lock");
            tracing::warn!(%channel, subscribers = state.subscribers.len(), "channel history lost; subscribers resubscribe");
            state.epoch = None;
            Self::reset_subscribers(&state);
        }
    }

    fn deliver(&self, channel: &str, event: Event<'_>) {
        let Some(local) = self.existing(channel) else {
            // Nobody here follows it: nothing to frame.
            if matches!(event, Event::Publication { .. }) {
                self.metrics.publications.inc();
            }
            return;
        };
        let options = self.settings.namespace_of(channel);
        let mut state = local.lock().expect("channel lock");
        let dropped = match event {
            Event::Publication {
                offset,
                epoch,
                data,
                key,
            } => {
                self.metrics.publications.inc();
                if state.epoch.as_deref().is_some_and(|known| known != epoch) {
                    // Its subscribers' positions belong to a history that
                    // is gone: they resubscribe and hear so.
                    state.epoch = Some(epoch.into());
                    Self::reset_subscribers(&state);
                    return;
                }
                let bytes = frame(&Push::Publication {
                    channel: channel.into(),
                    offset,
                    data: std::borrow::Cow::Borrowed(data),
                });
                let (conflation, position) = if state.stream.is_some() {
                    (None, None)
                } else {
                    let key: Arc<str> = format!("{channel}\u{0}{}", key.unwrap_or_default()).into();
                    let position = Arc::new(Position {
                        channel: state.name.clone(),
                        offset,
                        epoch: epoch.into(),
                    });
                    (Some(key), Some(position))
                };
                state.broadcast(
                    &bytes,
                    options.slow_consumer,
                    conflation.as_ref(),
                    Some(offset),
                    position.as_ref(),
                )
            }
            Event::Join(entry) | Event::Leave(entry) => {
                let (client, user) = (entry.client.as_str(), entry.user.as_deref());
                let push = if matches!(event, Event::Join(_)) {
                    Push::Join {
                        channel: channel.into(),
                        client: client.into(),
                        user: user.map(Into::into),
                    }
                } else {
                    Push::Leave {
                        channel: channel.into(),
                        client: client.into(),
                        user: user.map(Into::into),
                    }
                };
                state.broadcast(&frame(&push), options.slow_consumer, None, None, None)
            }
        };
        self.metrics.queue_drops.inc_by(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use crate::engine::MemoryEngine;

    fn memory(fanout: Weak<dyn Fanout>) -> Arc<dyn Engine> {
        Arc::new(MemoryEngine::new(fanout))
    }

    fn data(n: u64) -> Box<RawValue> {
        RawValue::from_string(n.to_string()).unwrap()
    }

    /// A subscriber's mailbox that keeps everything it is given, in order.
    #[derive(Debug, Default)]
    struct Kept(Mutex<Vec<PreparedMessage>>);

    impl Mailbox for Kept {
        fn reset(&self) {}

        fn push_reply(
            &self,
            frame: PreparedMessage,
            _: Option<Arc<Position>>,
            _: Option<Follow>,
        ) -> bool {
            self.0.lock().unwrap().push(frame);
            true
        }

        fn push_publication(
            &self,
            frame: PreparedMessage,
            _: SlowConsumerPolicy,
            _: Option<Arc<str>>,
            _: Option<Arc<Position>>,
        ) -> bool {
            self.0.lock().unwrap().push(frame);
            true
        }
    }

    fn kept() -> (Arc<Kept>, Arc<dyn Mailbox>) {
        let kept = Arc::new(Kept::default());
        (kept.clone(), kept)
    }

    fn texts(kept: &Kept) -> Vec<String> {
        std::mem::take(&mut *kept.0.lock().unwrap())
            .into_iter()
            .map(|frame| match frame.message() {
                tether::Message::Text(text) => text.to_string(),
                other => panic!("not text: {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_conflating_subscriber_gets_the_reply_then_only_newer_publications() {
        let config = ServerConfig::default().namespace(
            "px",
            crate::NamespaceOptions::default().slow_consumer(SlowConsumerPolicy::LatestPerKey),
        );
        let hub = Hub::new((&config).into(), Arc::default(), memory);
        for n in 1..=3 {
            hub.publish("px:a", data(n), None, None).await.unwrap();
        }
        let (kept, mailbox) = kept();
        let client: ClientId = "c1".into();
        let position = StreamPosition {
            offset: 1,
            epoch: hub.history("px:a", None).await.unwrap().epoch.to_string(),
        };
        hub.subscribe(1, "px:a", &client, None, &mailbox, Some(&position))
            .await
            .unwrap();
        hub.publish("px:a", data(4), None, None).await.unwrap();
        let got = texts(&kept);
        assert!(got[0].starts_with(r#"{"id":1,"result""#), "{got:?}");
        assert!(got[0].contains(r#""recovered":true"#), "{got:?}");
        assert!(got[0].contains(r#""offset":2"#) && got[0].contains(r#""offset":3"#));
        assert_eq!(got.len(), 2, "then publication 4 only: {got:?}");
        assert!(got[1].contains(r#""offset":4"#));
    }

    /// The memory engine, where a publication lands while a subscribe reads
    /// history: after the subscriber started buffering, before the read.
    #[derive(Debug)]
    struct Racing {
        inner: MemoryEngine,
        raced: std::sync::atomic::AtomicBool,
    }

    impl Engine for Racing {
        fn publish<'a>(
            &'a self,
            channel: &'a str,
            publication: NewPublication,
            retention: Retention,
        ) -> crate::engine::EngineFuture<'a, Published> {
            self.inner.publish(channel, publication, retention)
        }
        fn history<'a>(
            &'a self,
            channel: &'a str,
            query: HistoryQuery,
            retention: Retention,
        ) -> crate::engine::EngineFuture<'a, crate::engine::History> {
            if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let racer = NewPublication {
                    data: data(99),
                    idempotency_key: None,
                    key: None,
                };
                drop(self.inner.publish(channel, racer, retention));
            }
            self.inner.history(channel, query, retention)
        }
        fn presence_add<'a>(
            &'a self,
            c: &'a str,
            e: PresenceEntry,
        ) -> crate::engine::EngineFuture<'a, ()> {
            self.inner.presence_add(c, e)
        }
        fn presence_remove<'a>(
            &'a self,
            c: &'a str,
            id: &'a str,
        ) -> crate::engine::EngineFuture<'a, ()> {
            self.inner.presence_remove(c, id)
        }
        fn presence_list<'a>(
            &'a self,
            c: &'a str,
        ) -> crate::engine::EngineFuture<'a, Vec<PresenceEntry>> {
            self.inner.presence_list(c)
        }
        fn sweep(&self, r: &dyn Fn(&str) -> Retention, u: &dyn Fn(&str) -> bool) -> usize {
            self.inner.sweep(r, u)
        }
    }

    #[tokio::test]
    async fn a_publication_racing_the_history_read_arrives_once() {
        let config = ServerConfig::default().namespace(
            "px",
            crate::NamespaceOptions::default().slow_consumer(SlowConsumerPolicy::LatestPerKey),
        );
        let hub = Hub::new((&config).into(), Arc::default(), |fanout| {
            Arc::new(Racing {
                inner: MemoryEngine::new(fanout),
                raced: Default::default(),
            })
        });
        let (kept, mailbox) = kept();
        let client: ClientId = "c1".into();
        let first = hub.publish("px:a", data(1), None, None).await.unwrap();
        let position = StreamPosition {
            offset: 1,
            epoch: first.epoch.to_string(),
        };
        hub.subscribe(1, "px:a", &client, None, &mailbox, Some(&position))
            .await
            .unwrap();
        hub.publish("px:a", data(3), None, None).await.unwrap();
        let got = texts(&kept);
        assert!(got[0].contains(r#""recovered":true"#), "{got:?}");
        assert!(
            got[0].contains(r#""offset":2,"data":99"#),
            "recovered: {got:?}"
        );
        let racer = got.iter().filter(|text| text.contains("99")).count();
        assert_eq!(
            racer, 1,
            "the racing publication once, in the reply: {got:?}"
        );
        assert_eq!(got.len(), 2, "then publication 3: {got:?}");
        assert!(got[1].contains(r#""offset":3"#));
    }

    #[tokio::test]
    async fn sweep_forgets_local_channels_without_subscribers() {
        let hub = Hub::new((&ServerConfig::default()).into(), Arc::default(), memory);
        let (_kept, mailbox) = kept();
        let client: ClientId = "c1".into();
        hub.subscribe(1, "a", &client, None, &mailbox, None)
            .await
            .unwrap();
        hub.subscribe(1, "b", &client, None, &mailbox, None)
            .await
            .unwrap();
        let left = hub.leave("b", &client).unwrap();
        hub.announce_leave("b", &client, left).await;
        hub.sweep();
        assert_eq!(hub.channels(), [("a".to_owned(), 1)]);
        assert!(hub.existing("b").is_none());
    }
}

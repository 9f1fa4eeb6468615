//! One channel's state: offsets, epoch, retained history, subscribers, and the
//! idempotency keys of recent publishes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tether::PreparedMessage;

use super::outbox::{ClientId, Outbox, Position, Stream};
use crate::config::SlowConsumerPolicy;

/// A retained publication.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    pub(crate) offset: u64,
    pub(crate) data: Box<RawValue>,
    /// When it was published, for the history TTL.
    at: Instant,
}

/// One subscriber of a channel.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) outbox: Outbox,
    /// The user id from the connection's token, if it has one.
    pub(crate) user: Option<Arc<str>>,
}

/// Channel state, guarded by the hub's per-channel lock.
#[derive(Debug)]
pub(crate) struct Channel {
    /// The channel's name.
    pub(crate) name: Arc<str>,
    /// Changes whenever history is lost (here: the channel was created anew).
    pub(crate) epoch: Arc<str>,
    /// Offset of the newest publication (0 before the first).
    pub(crate) offset: u64,
    pub(crate) history: VecDeque<Retained>,
    pub(crate) subscribers: HashMap<ClientId, Subscriber>,
    /// What subscribers' writers read publications from, unless the namespace
    /// conflates (`latest-per-key` needs a queue per subscriber to conflate in).
    pub(crate) stream: Option<Stream>,
    idempotency: HashMap<String, (u64, Instant)>,
    /// Set when the hub forgot this channel; whoever still holds it looks again.
    pub(crate) removed: bool,
}

impl Channel {
    /// A channel; `stream` holds up to that many frames for its subscribers'
    /// writers (`None`: a queue per subscriber instead).
    pub(crate) fn new(name: &str, stream: Option<usize>) -> Self {
        let stream = stream
            .map(|capacity| Stream::new(tether::BroadcastConfig::default().capacity(capacity)));
        Self {
            name: name.into(),
            epoch: new_epoch(),
            offset: 0,
            history: VecDeque::new(),
            subscribers: HashMap::new(),
            stream,
            idempotency: HashMap::new(),
            removed: false,
        }
    }

    /// Drops publications older than `ttl` from history.
    pub(crate) fn expire(&mut self, ttl: Option<Duration>, now: Instant) {
        if let Some(ttl) = ttl {
            while self
                .history
                .front()
                .is_some_and(|p| now.duration_since(p.at) >= ttl)
            {
                self.history.pop_front();
            }
        }
    }

    /// Whether nothing would be lost by forgetting this channel: no subscriber,
    /// no history, no idempotency key still inside its `window`.
    pub(crate) fn is_idle(&mut self, window: Duration, now: Instant) -> bool {
        self.idempotency
            .retain(|_, (_, at)| now.duration_since(*at) < window);
        self.subscribers.is_empty() && self.history.is_empty() && self.idempotency.is_empty()
    }

    /// The offset a publish with `key` got before, if within `window`.
    pub(crate) fn seen_key(&mut self, key: &str, window: Duration) -> Option<u64> {
        let now = Instant::now();
        // Expire old keys lazily, so the map stays bounded by the publish rate.
        if self.idempotency.len() > 64 {
            self.idempotency
                .retain(|_, (_, at)| now.duration_since(*at) < window);
        }
        match self.idempotency.get(key) {
            Some((offset, at)) if now.duration_since(*at) < window => Some(*offset),
            _ => None,
        }
    }

    /// Assigns the next offset, retains the publication, remembers its key.
    pub(crate) fn append(
        &mut self,
        data: Box<RawValue>,
        key: Option<String>,
        history_size: usize,
    ) -> u64 {
        self.offset += 1;
        if history_size > 0 {
            self.history.push_back(Retained {
                offset: self.offset,
                data,
                at: Instant::now(),
            });
            while self.history.len() > history_size {
                self.history.pop_front();
            }
        }
        if let Some(key) = key {
            self.idempotency.insert(key, (self.offset, Instant::now()));
        }
        self.offset
    }

    /// Publications after `offset`, if history still holds all of them.
    pub(crate) fn since(&self, offset: u64) -> Option<Vec<Retained>> {
        if offset > self.offset {
            return None;
        }
        if offset == self.offset {
            return Some(Vec::new());
        }
        let first = self.history.front()?.offset;
        if first > offset + 1 {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|p| p.offset > offset)
                .cloned()
                .collect(),
        )
    }

    /// The position of the newest publication.
    pub(crate) fn position(&self) -> Arc<Position> {
        Arc::new(Position {
            channel: self.name.clone(),
            offset: self.offset,
            epoch: self.epoch.clone(),
        })
    }

    /// Sends `frame` to every subscriber: one push into the stream, or one
    /// into each subscriber's queue; returns how many queues were full (those
    /// subscribers are being disconnected as slow consumers; a stream's
    /// subscribers are told by their writers). `position` marks a
    /// publication, so each connection knows how far it got.
    pub(crate) fn broadcast(
        &self,
        frame: &PreparedMessage,
        policy: SlowConsumerPolicy,
        key: Option<&Arc<str>>,
        position: Option<&Arc<Position>>,
    ) -> u64 {
        if let Some(stream) = &self.stream {
            stream.send_tagged(frame.clone(), position.map(|p| p.offset));
            return 0;
        }
        let mut dropped = 0;
        for subscriber in self.subscribers.values() {
            if !subscriber
                .outbox
                .push_with(frame.clone(), policy, key.cloned(), position.cloned())
            {
                dropped += 1;
            }
        }
        dropped
    }
}

fn new_epoch() -> Arc<str> {
    format!("{:08x}", rand::random::<u32>()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: u64) -> Box<RawValue> {
        RawValue::from_string(n.to_string()).unwrap()
    }

    #[test]
    fn recovers_only_while_history_covers_the_gap() {
        let mut channel = Channel::new("t", Some(8));
        for n in 1..=5 {
            channel.append(data(n), None, 3);
        }
        assert_eq!(channel.since(5).unwrap().len(), 0);
        let missed: Vec<u64> = channel.since(2).unwrap().iter().map(|p| p.offset).collect();
        assert_eq!(missed, [3, 4, 5]);
        assert!(channel.since(1).is_none(), "publication 2 is gone");
        assert!(channel.since(9).is_none(), "a position from the future");
    }

    #[test]
    fn expires_history_by_age_and_then_counts_as_idle() {
        let mut channel = Channel::new("t", Some(8));
        channel.append(data(1), None, 10);
        let later = Instant::now() + Duration::from_secs(5);
        channel.expire(Some(Duration::from_secs(60)), later);
        assert_eq!(channel.history.len(), 1, "younger than the TTL");
        assert!(!channel.is_idle(Duration::ZERO, later));
        channel.expire(None, later + Duration::from_secs(3600));
        assert_eq!(channel.history.len(), 1, "no TTL: kept");
        channel.expire(Some(Duration::from_secs(1)), later);
        assert!(channel.history.is_empty());
        assert!(channel.since(0).is_none(), "the gap is no longer covered");
        assert!(channel.is_idle(Duration::ZERO, later));
    }

    #[test]
    fn remembers_idempotency_keys_within_the_window() {
        let mut channel = Channel::new("t", Some(8));
        let offset = channel.append(data(1), Some("k".into()), 10);
        assert_eq!(channel.seen_key("k", Duration::from_secs(60)), Some(offset));
        assert_eq!(channel.seen_key("k", Duration::ZERO), None);
        assert_eq!(channel.seen_key("other", Duration::from_secs(60)), None);
    }
}

//! The default engine: every channel's offsets, epoch, history, idempotency
//! keys and presence in this process, under one lock per channel. Fan-out is
//! a direct call into this node's hub, made under that lock, so each channel's
//! events reach the hub in offset order. Nothing here waits, so each call does
//! its work when made and returns a future that is already done.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::{
    Engine, EngineFuture, Event, Fanout, History, HistoryQuery, NewPublication, Retention,
};
use crate::protocol::{PresenceEntry, Publication, Published};

/// A retained publication.
#[derive(Debug, Clone)]
struct Retained {
    offset: u64,
    data: Box<RawValue>,
    /// When it was published, for the history TTL.
    at: Instant,
}

/// One channel's shared state.
#[derive(Debug)]
struct Channel {
    /// Changes whenever history is lost (here: the channel was created anew).
    epoch: Arc<str>,
    /// Offset of the newest publication (0 before the first).
    offset: u64,
    history: VecDeque<Retained>,
    idempotency: HashMap<String, (u64, Instant)>,
    /// Client id to user id. A hash map of boxed strings: every subscriber
    /// of a presence channel has an entry, and this holds one in about 45
    /// bytes where a B-tree of `String`s took over 80; the list is sorted
    /// when it is asked for.
    presence: HashMap<Box<str>, Option<Box<str>>>,
    /// Set when the channel was forgotten; whoever still holds it looks again.
    removed: bool,
}

impl Channel {
    fn new() -> Self {
        Self {
            epoch: format!("{:08x}", rand::random::<u32>()).into(),
            offset: 0,
            history: VecDeque::new(),
            idempotency: HashMap::new(),
            presence: HashMap::new(),
            removed: false,
        }
    }

    /// Drops publications older than `ttl` from history.
    fn expire(&mut self, ttl: Option<Duration>, now: Instant) {
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

    /// The offset a publish with `key` got before, if within `window`.
    fn seen_key(&mut self, key: &str, window: Duration, now: Instant) -> Option<u64> {
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

    /// Publications after `offset`, if history still holds all of them.
    fn since(&self, offset: u64) -> Option<Vec<&Retained>> {
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
        Some(self.history.iter().filter(|p| p.offset > offset).collect())
    }

    /// Whether nothing would be lost by forgetting it.
    fn is_idle(&mut self, window: Duration, now: Instant) -> bool {
        self.idempotency
            .retain(|_, (_, at)| now.duration_since(*at) < window);
        self.history.is_empty() && self.idempotency.is_empty() && self.presence.is_empty()
    }
}

/// Everything in memory; see the module documentation.
#[derive(Debug)]
pub struct MemoryEngine {
    // A std Mutex: critical sections are short and never await.
    channels: Mutex<HashMap<String, Arc<Mutex<Channel>>>>,
    fanout: Weak<dyn Fanout>,
}

impl MemoryEngine {
    /// An empty engine that fans out to `fanout` (this node's hub) while it
    /// lives.
    pub fn new(fanout: Weak<dyn Fanout>) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            fanout,
        }
    }

    /// Runs `f` on channel `name` (created if new) with its lock held.
    fn with_channel<R>(&self, name: &str, f: impl FnOnce(&mut Channel) -> R) -> R {
        loop {
            let shared = {
                let mut channels = self.channels.lock().expect("engine lock");
                // Looked up before inserting: the key is allocated only for a new channel.
                match channels.get(name) {
                    Some(shared) => shared.clone(),
                    None => channels
                        .entry(name.to_owned())
                        .or_insert_with(|| Arc::new(Mutex::new(Channel::new())))
                        .clone(),
                }
            };
            let mut state = shared.lock().expect("channel lock");
            // A sweep may have forgotten it between the lookup and the lock.
            if !state.removed {
                return f(&mut state);
            }
        }
    }

    fn existing(&self, name: &str) -> Option<Arc<Mutex<Channel>>> {
        self.channels
            .lock()
            .expect("engine lock")
            .get(name)
            .cloned()
    }

    fn deliver(&self, channel: &str, event: Event<'_>) {
        if let Some(fanout) = self.fanout.upgrade() {
            fanout.deliver(channel, event);
        }
    }

    fn publish_now(
        &self,
        name: &str,
        publication: NewPublication,
        retention: Retention,
    ) -> Published {
        let now = Instant::now();
        self.with_channel(name, |state| {
            state.expire(retention.history_ttl, now);
            if let Some(key) = &publication.idempotency_key {
                if let Some(offset) = state.seen_key(key, retention.idempotency_window, now) {
                    return Published {
                        offset,
                        epoch: state.epoch.clone(),
                    };
                }
            }
            state.offset += 1;
            let offset = state.offset;
            // Fanned out under the lock: the hub sees this channel's
            // publications in offset order.
            self.deliver(
                name,
                Event::Publication {
                    offset,
                    epoch: &state.epoch,
                    data: &publication.data,
                    key: publication.key.as_deref(),
                },
            );
            if retention.history_size > 0 {
                state.history.push_back(Retained {
                    offset,
                    data: publication.data,
                    at: now,
                });
                while state.history.len() > retention.history_size {
                    state.history.pop_front();
                }
            }
            if let Some(key) = publication.idempotency_key {
                state.idempotency.insert(key, (offset, now));
            }
            Published {
                offset,
                epoch: state.epoch.clone(),
            }
        })
    }

    fn history_now(&self, name: &str, query: HistoryQuery, retention: Retention) -> History {
        self.with_channel(name, |state| {
            state.expire(retention.history_ttl, Instant::now());
            let (kept, complete) = match query.since {
                Some(since) => match state.since(since) {
                    Some(kept) => (kept, true),
                    None => (Vec::new(), false),
                },
                None => (state.history.iter().collect(), true),
            };
            let skip = query
                .limit
                .map_or(0, |limit| kept.len().saturating_sub(limit));
            let publications = kept
                .into_iter()
                .skip(skip)
                .map(|p| Publication {
                    offset: p.offset,
                    data: p.data.clone(),
                })
                .collect();
            History {
                epoch: state.epoch.clone(),
                offset: state.offset,
                publications,
                complete: complete && skip == 0,
            }
        })
    }
}

impl Engine for MemoryEngine {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: NewPublication,
        retention: Retention,
    ) -> EngineFuture<'a, Published> {
        let published = self.publish_now(channel, publication, retention);
        Box::pin(std::future::ready(Ok(published)))
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        query: HistoryQuery,
        retention: Retention,
    ) -> EngineFuture<'a, History> {
        let history = self.history_now(channel, query, retention);
        Box::pin(std::future::ready(Ok(history)))
    }

    fn presence_add<'a>(&'a self, channel: &'a str, entry: PresenceEntry) -> EngineFuture<'a, ()> {
        self.with_channel(channel, |state| {
            let known = state.presence.insert(
                entry.client.as_str().into(),
                entry.user.as_deref().map(Box::from),
            );
            if known.is_none() {
                self.deliver(channel, Event::Join(&entry));
            }
        });
        Box::pin(std::future::ready(Ok(())))
    }

    fn presence_remove<'a>(&'a self, channel: &'a str, client: &'a str) -> EngineFuture<'a, ()> {
        if let Some(shared) = self.existing(channel) {
            let mut state = shared.lock().expect("channel lock");
            if let Some(user) = state.presence.remove(client) {
                let entry = PresenceEntry {
                    client: client.to_owned(),
                    user: user.map(String::from),
                };
                self.deliver(channel, Event::Leave(&entry));
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn presence_list<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Vec<PresenceEntry>> {
        let list = self.existing(channel).map_or_else(Vec::new, |shared| {
            let state = shared.lock().expect("channel lock");
            let mut list: Vec<PresenceEntry> = state
                .presence
                .iter()
                .map(|(client, user)| PresenceEntry {
                    client: client.to_string(),
                    user: user.as_deref().map(String::from),
                })
                .collect();
            list.sort_unstable_by(|a, b| a.client.cmp(&b.client));
            list
        });
        Box::pin(std::future::ready(Ok(list)))
    }

    fn sweep(
        &self,
        retention_of: &dyn Fn(&str) -> Retention,
        in_use: &dyn Fn(&str) -> bool,
    ) -> usize {
        let now = Instant::now();
        let mut channels = self.channels.lock().expect("engine lock");
        channels.retain(|name, shared| {
            let mut state = shared.lock().expect("channel lock");
            let retention = retention_of(name);
            state.expire(retention.history_ttl, now);
            let idle = state.is_idle(retention.idempotency_window, now) && !in_use(name);
            state.removed = idle;
            !idle
        });
        channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fan-out that remembers what it was given.
    #[derive(Debug, Default)]
    struct Recorded(Mutex<Vec<String>>);

    impl Fanout for Recorded {
        fn deliver(&self, channel: &str, event: Event<'_>) {
            let line = match event {
                Event::Publication { offset, data, .. } => {
                    format!("{channel} {offset} {}", data.get())
                }
                Event::Join(entry) => format!("{channel} join {}", entry.client),
                Event::Leave(entry) => format!("{channel} leave {}", entry.client),
            };
            self.0.lock().unwrap().push(line);
        }
    }

    fn engine() -> (MemoryEngine, Arc<Recorded>) {
        let recorded = Arc::new(Recorded::default());
        let weak = Arc::downgrade(&recorded) as Weak<dyn Fanout>;
        (MemoryEngine::new(weak), recorded)
    }

    const KEEP: Retention = Retention {
        history_size: 3,
        history_ttl: None,
        idempotency_window: Duration::from_secs(60),
    };

    fn data(n: u64) -> NewPublication {
        NewPublication {
            data: RawValue::from_string(n.to_string()).unwrap(),
            idempotency_key: None,
            key: None,
        }
    }

    fn offsets(history: &History) -> Vec<u64> {
        history.publications.iter().map(|p| p.offset).collect()
    }

    #[test]
    fn assigns_offsets_in_order_and_fans_out_each_publication_once() {
        let (engine, recorded) = engine();
        for n in 1..=5 {
            assert_eq!(engine.publish_now("c", data(n), KEEP).offset, n);
        }
        let mut keyed = data(6);
        keyed.idempotency_key = Some("k".into());
        let first = engine.publish_now("c", keyed, KEEP);
        let mut again = data(6);
        again.idempotency_key = Some("k".into());
        assert_eq!(
            engine.publish_now("c", again, KEEP),
            first,
            "a retry gets the original"
        );
        let lines = recorded.0.lock().unwrap().clone();
        assert_eq!(lines.len(), 6, "the retry is not fanned out: {lines:?}");
        assert_eq!(lines[5], "c 6 6");
    }

    #[test]
    fn reads_history_since_a_position_only_while_it_reaches_back() {
        let (engine, _) = engine();
        for n in 1..=5 {
            engine.publish_now("c", data(n), KEEP);
        }
        let read = |since, limit| engine.history_now("c", HistoryQuery { since, limit }, KEEP);
        let tail = read(Some(2), None);
        assert_eq!(
            (offsets(&tail), tail.complete, tail.offset),
            (vec![3, 4, 5], true, 5)
        );
        assert!(read(Some(5), None).complete, "nothing missed");
        assert!(!read(Some(1), None).complete, "publication 2 is gone");
        assert!(!read(Some(9), None).complete, "a position from the future");
        assert_eq!(offsets(&read(None, Some(2))), [4, 5], "the newest two");
    }

    #[tokio::test]
    async fn presence_joins_once_and_leaves_with_a_fanned_out_event() {
        let (engine, recorded) = engine();
        let alice = PresenceEntry {
            client: "c1".into(),
            user: Some("alice".into()),
        };
        engine.presence_add("room", alice.clone()).await.unwrap();
        engine.presence_add("room", alice.clone()).await.unwrap();
        assert_eq!(engine.presence_list("room").await.unwrap(), [alice]);
        engine.presence_remove("room", "c1").await.unwrap();
        engine.presence_remove("room", "c1").await.unwrap();
        assert_eq!(
            *recorded.0.lock().unwrap(),
            ["room join c1", "room leave c1"]
        );
    }

    #[test]
    fn sweep_forgets_only_channels_with_nothing_left_to_lose() {
        let (engine, _) = engine();
        let none = Retention {
            history_size: 0,
            ..KEEP
        };
        let first = engine.publish_now("tmp:a", data(1), none);
        let mut keyed = data(1);
        keyed.idempotency_key = Some("retry-me".into());
        engine.publish_now("tmp:b", keyed, none);
        engine.publish_now("kept:c", data(1), KEEP);
        engine.history_now(
            "tmp:d",
            HistoryQuery {
                since: None,
                limit: None,
            },
            none,
        );
        let retention_of = |name: &str| if name.starts_with("tmp") { none } else { KEEP };
        // tmp:a has nothing; tmp:b's key is live; kept:c has history; tmp:d is in use.
        assert_eq!(engine.sweep(&retention_of, &|name| name == "tmp:d"), 3);
        let again = engine.publish_now("tmp:a", data(2), none);
        assert_eq!(again.offset, 1, "a forgotten channel starts over");
        assert_ne!(again.epoch, first.epoch, "with a new epoch");
    }
}

//! One channel as this node's hub holds it: the local subscribers and the
//! stream their writers read. Offsets, history and presence live in the
//! engine.

use std::collections::HashMap;
use std::sync::Arc;

use tether::PreparedMessage;

use super::{ClientId, Mailbox, Position, Stream};
use crate::config::SlowConsumerPolicy;

/// A frame that reached a subscriber while its subscribe was still reading
/// history: held until the reply is queued, then queued behind it unless the
/// history already had it.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) frame: PreparedMessage,
    /// The publication's offset (none for presence events).
    pub(crate) offset: Option<u64>,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) position: Option<Arc<Position>>,
}

/// One local subscriber.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) mailbox: Arc<dyn Mailbox>,
    /// Set while its subscribe reads history, on channels without a stream
    /// (a stream's subscription holds what comes meanwhile by itself).
    /// Boxed: every subscriber's entry carries it, and it is set for a moment.
    #[allow(clippy::box_collection)] // one pointer in every entry, not a vector's three
    pub(crate) held: Option<Box<Vec<Held>>>,
}

/// The local side of a channel, guarded by the hub's per-channel lock.
#[derive(Debug)]
pub(crate) struct LocalChannel {
    /// The channel's name.
    pub(crate) name: Arc<str>,
    pub(crate) subscribers: HashMap<ClientId, Subscriber>,
    /// What subscribers' writers read publications from, unless the namespace
    /// conflates (`latest-per-key` needs a queue per subscriber to conflate in).
    pub(crate) stream: Option<Stream>,
    /// Set when the hub forgot this channel; whoever still holds it looks again.
    pub(crate) removed: bool,
    /// The epoch its subscribers were given; a publication of another means
    /// the history they hold positions in is gone.
    pub(crate) epoch: Option<Arc<str>>,
}

impl LocalChannel {
    /// A channel; `stream` holds up to that many frames for its subscribers'
    /// writers (`None`: a queue per subscriber instead).
    pub(crate) fn new(name: &str, stream: Option<usize>) -> Self {
        let stream = stream
            .map(|capacity| Stream::new(tether::BroadcastConfig::default().capacity(capacity)));
        Self {
            name: name.into(),
            subscribers: HashMap::new(),
            stream,
            removed: false,
            epoch: None,
        }
    }

    /// Sends `frame` to every subscriber: one push into the stream, or one
    /// into each subscriber's queue; returns how many queues lost something
    /// (a `disconnect`-policy subscriber is then being cut off; a stream's
    /// subscribers are told by their writers). `offset` and `position` mark a
    /// publication, so each connection knows how far it got.
    pub(crate) fn broadcast(
        &mut self,
        frame: &PreparedMessage,
        policy: SlowConsumerPolicy,
        key: Option<&Arc<str>>,
        offset: Option<u64>,
        position: Option<&Arc<Position>>,
    ) -> u64 {
        if let Some(stream) = &self.stream {
            stream.send_tagged(frame.clone(), offset);
            return 0;
        }
        let mut dropped = 0;
        for subscriber in self.subscribers.values_mut() {
            if let Some(held) = &mut subscriber.held {
                held.push(Held {
                    frame: frame.clone(),
                    offset,
                    key: key.cloned(),
                    position: position.cloned(),
                });
                continue;
            }
            if !subscriber.mailbox.push_publication(
                frame.clone(),
                policy,
                key.cloned(),
                position.cloned(),
            ) {
                dropped += 1;
            }
        }
        dropped
    }
}

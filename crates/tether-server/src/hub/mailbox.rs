//! What the hub hands a subscriber, and how: a channel's [`Stream`], which
//! every subscriber's delivery reads on its own, and for everything else
//! (the subscribe reply, the publications of a conflating channel) the
//! subscriber's [`Mailbox`]. The queue behind a mailbox is the session's;
//! the hub declares only the two pushes it makes.

use std::sync::Arc;

use tether::PreparedMessage;

use super::position::Position;
use crate::config::SlowConsumerPolicy;

/// A channel's frames (publications and presence events) in the order they
/// happened, framed once and shared by every subscriber's delivery; each
/// tagged with its publication offset (none for presence events).
pub type Stream = tether::Broadcast<Option<u64>>;

/// A subscriber's place in a channel's [`Stream`].
pub type StreamSubscription = tether::Subscription<Option<u64>>;

/// A change to the channel streams a session's delivery sends, queued in
/// order with the replies so it takes effect exactly where the reply goes out.
#[derive(Debug)]
pub enum Follow {
    /// After the subscribe reply, send the channel's stream from `subscription`
    /// on (the first frame after the reply's position).
    Start {
        /// The channel.
        channel: Arc<str>,
        /// Its epoch, for the positions delivery records.
        epoch: Arc<str>,
        /// Where the subscriber starts.
        subscription: StreamSubscription,
        /// What to do when the subscriber falls more than the stream holds behind.
        policy: SlowConsumerPolicy,
        /// Publications up to this offset came in the reply (from history):
        /// the stream's copies of them are passed over.
        after: u64,
    },
    /// Before the unsubscribe reply, send the channel's stream up to `until`
    /// (what was published before the unsubscribe), then stop.
    Stop {
        /// The channel.
        channel: Arc<str>,
        /// The stream's sequence number at the unsubscribe.
        until: u64,
    },
}

/// Where the hub puts what one subscriber is sent outside its channels'
/// streams. Neither push waits: the hub makes them under a channel's lock.
pub trait Mailbox: Send + Sync + std::fmt::Debug {
    /// Queues the subscribe reply, with the position it brings the client to
    /// and the stream it starts. A reply is never dropped or conflated; one
    /// that does not fit cuts the session off as a slow consumer, and false
    /// is returned.
    fn push_reply(
        &self,
        frame: PreparedMessage,
        position: Option<Arc<Position>>,
        follow: Option<Follow>,
    ) -> bool;

    /// A channel this session follows lost its history: end the session so
    /// the client reconnects and resubscribes (4003).
    fn reset(&self);

    /// Queues a publication of a channel without a stream. Below the queue's
    /// bound every one is kept; past it `policy` decides (cut the session
    /// off, drop the oldest, or replace the queued one with the same `key`).
    /// Returns false when something was lost, this frame or an older one.
    fn push_publication(
        &self,
        frame: PreparedMessage,
        policy: SlowConsumerPolicy,
        key: Option<Arc<str>>,
        position: Option<Arc<Position>>,
    ) -> bool;
}

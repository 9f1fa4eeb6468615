//! A connection's bounded outgoing queue, as the hub sees it, with the namespace's
//! slow-consumer policy applied when it is full. Replies go through it; so do
//! publications on `latest-per-key` channels. Other channels' publications are
//! read by the connection's writer straight from the channel's [`Stream`],
//! which a [`Follow`] queued with the subscribe reply hands to it.
//!
//! The queue is bounded in frames and in bytes ([`Bounds`]), and the bytes a
//! session queues past [`FREE_QUEUED`] are charged to the process-wide
//! [`tether::Budget`] the WebSocket readers share: a client that asks for
//! large replies (history pages) and does not read them cannot make the
//! server hold more than its share.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tether::PreparedMessage;
use tokio::sync::Notify;

use crate::alarm::Alarm;
use crate::config::SlowConsumerPolicy;

pub use super::position::{Position, Positions};

/// A channel's frames (publications and presence events) in the order they
/// happened, framed once and shared by every subscriber's writer; each tagged
/// with its publication offset (none for presence events).
pub type Stream = tether::Broadcast<Option<u64>>;

/// A subscriber's place in a channel's [`Stream`].
pub type StreamSubscription = tether::Subscription<Option<u64>>;

/// A change to the channel streams a connection's writer sends, queued in
/// order with the replies so it takes effect exactly where the reply goes out.
#[derive(Debug)]
pub enum Follow {
    /// After the subscribe reply, send the channel's stream from `subscription`
    /// on (the first frame after the reply's position).
    Start {
        /// The channel.
        channel: Arc<str>,
        /// Its epoch, for the positions the writer records.
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

/// A connection's id, unique within the process.
pub type ClientId = Arc<str>;

/// A frame taken from the queue, with the stream position it brings the client to.
#[derive(Debug)]
pub struct Queued {
    /// The frame to write; none for a bare change of the streams followed
    /// (the stops a session queues as it ends).
    pub frame: Option<PreparedMessage>,
    /// Set for publications and subscribe replies.
    pub position: Option<Arc<Position>>,
    /// Set for subscribe and unsubscribe replies on streamed channels.
    pub follow: Option<Follow>,
}

/// Bytes a session may queue before they count against the process-wide
/// budget: a few replies' worth, so ordinary sessions never touch it.
pub const FREE_QUEUED: usize = 64 << 10;

/// How often a reply waiting for room in the budget looks again.
const BUDGET_RETRY: Duration = Duration::from_millis(10);

/// What bounds one session's queue: the same for every session of a server,
/// so each queue holds one pointer to it.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// Frames queued at most (at least 1).
    pub frames: usize,
    /// Payload bytes queued at most (0: no bound); one frame of any size is
    /// taken into an empty queue.
    pub bytes: usize,
    /// Charged with the bytes queued past [`FREE_QUEUED`]; a reply that finds
    /// it full waits up to its wait time, then the session is cut off as a
    /// slow consumer.
    pub budget: Option<tether::Budget>,
    /// Items queued in every session's queue (`tether_queued_frames`).
    pub depth: Gauge,
}

/// Whether a frame fits now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    Yes,
    /// The session's own bound (frames or bytes) is reached.
    Full,
    /// The process-wide budget has no room.
    NoBudget,
}

#[derive(Debug)]
struct Item {
    frame: Option<PreparedMessage>,
    position: Option<Arc<Position>>,
    /// Publications may be dropped or conflated; replies never are.
    droppable: bool,
    /// Conflation key (channel and publication key) for `latest-per-key`.
    key: Option<Arc<str>>,
    follow: Option<Follow>,
}

/// One queue's state. Every idle session holds one, so it is kept small: the
/// bounds are shared, the sender count lives under the lock (clones are
/// rare), and the whole `Shared` fits a 160-byte allocation.
#[derive(Debug)]
struct State {
    items: VecDeque<Item>,
    /// The writer, when it waits for an item.
    waiter: Option<Waker>,
    /// Payload bytes queued.
    bytes: usize,
    /// Bytes charged to the budget (those queued past [`FREE_QUEUED`]).
    charged: usize,
    bounds: Arc<Bounds>,
    /// Where delivery has brought the client in each channel.
    written: Positions,
    /// Live [`Outbox`] handles; at zero the queue is closed.
    senders: u32,
    closed: bool,
}

impl Item {
    fn len(&self) -> usize {
        self.frame.as_ref().map_or(0, |frame| frame.message().len())
    }
}

impl State {
    /// Whether a frame of `len` bytes fits, charging the budget for it if
    /// it does (a later [`State::push`] of it must follow).
    fn room(&mut self, len: usize) -> Room {
        let bounds = &*self.bounds;
        if self.items.len() >= bounds.frames.max(1)
            || (bounds.bytes > 0 && self.bytes > 0 && self.bytes + len > bounds.bytes)
        {
            return Room::Full;
        }
        if let Some(budget) = &bounds.budget {
            let want = (self.bytes + len).saturating_sub(FREE_QUEUED);
            if want > self.charged {
                if !budget.try_charge(want - self.charged) {
                    return Room::NoBudget;
                }
                self.charged = want;
            }
        }
        Room::Yes
    }

    /// Queues `item` and returns the writer to wake (outside the lock).
    fn push(&mut self, item: Item) -> Option<Waker> {
        self.bytes += item.len();
        self.items.push_back(item);
        self.bounds.depth.inc();
        self.waiter.take()
    }

    /// Accounts for `items` leaving the queue (taken, dropped or superseded).
    fn removed(&mut self, items: usize, bytes: usize) {
        self.bounds.depth.dec_by(items as i64);
        self.bytes -= bytes;
        let keep = self.bytes.saturating_sub(FREE_QUEUED);
        if self.charged > keep {
            if let Some(budget) = &self.bounds.budget {
                budget.release(self.charged - keep);
            }
            self.charged = keep;
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // A session that ends with frames still queued takes them along.
        let bytes = self.bytes;
        self.removed(self.items.len(), bytes);
    }
}

/// Wakes the writer, if it was waiting.
fn wake(waiter: Option<Waker>) {
    if let Some(waker) = waiter {
        waker.wake();
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    space: Notify,
    overflow: Arc<Alarm>,
}

/// The sending side of a connection's queue. Pushing a publication never waits:
/// on a full queue the namespace's policy decides (disconnect the slow consumer,
/// drop the oldest publication, or keep only the latest per key), so one slow
/// reader never delays the others and its memory stays bounded.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The receiving side, drained by the connection's writer.
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<Shared>,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.state.lock().expect("outbox lock").senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let waiter = {
            let mut state = self.shared.state.lock().expect("outbox lock");
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.closed = true;
            state.waiter.take()
        };
        wake(waiter);
    }
}

impl Outbox {
    /// A queue of `capacity` messages; returns the outbox, its receiving side and
    /// the session's alarm, which a full queue trips.
    pub fn new(capacity: usize) -> (Self, Inbox, Arc<Alarm>) {
        Self::bounded(Arc::new(Bounds {
            frames: capacity,
            ..Bounds::default()
        }))
    }

    /// A queue within `bounds`; returns the outbox, its receiving side and
    /// the session's alarm, which a full queue trips.
    pub fn bounded(bounds: Arc<Bounds>) -> (Self, Inbox, Arc<Alarm>) {
        let overflow = Arc::new(Alarm::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                items: VecDeque::new(),
                waiter: None,
                bytes: 0,
                charged: 0,
                bounds,
                written: Positions::default(),
                senders: 1,
                closed: false,
            }),
            space: Notify::new(),
            overflow: overflow.clone(),
        });
        (
            Self {
                shared: shared.clone(),
            },
            Inbox { shared },
            overflow,
        )
    }

    /// Where delivery has brought the client in each channel it was sent
    /// (as recorded with [`Inbox::record`]).
    pub fn written(&self) -> Positions {
        self.shared
            .state
            .lock()
            .expect("outbox lock")
            .written
            .clone()
    }

    /// Queues a reply without waiting, for replies queued under a channel lock
    /// (the subscribe reply, which must precede the channel's live
    /// publications). Like every reply it is never dropped or conflated; a full
    /// queue (or budget) trips the overflow signal instead and returns false.
    pub fn push_reply(
        &self,
        frame: PreparedMessage,
        position: Option<Arc<Position>>,
        follow: Option<Follow>,
    ) -> bool {
        let mut state = self.shared.state.lock().expect("outbox lock");
        if state.closed {
            return false;
        }
        if state.room(frame.message().len()) != Room::Yes {
            drop(state);
            self.shared.overflow.trip();
            return false;
        }
        let waiter = state.push(Item {
            frame: Some(frame),
            position,
            droppable: false,
            key: None,
            follow,
        });
        drop(state);
        wake(waiter);
        true
    }

    /// Queues a change to the streams the writer sends, with no frame and
    /// whatever the queue's level (a session queues one per channel as it
    /// ends, at most `max_subscriptions`), so the writer stops each stream
    /// exactly where the session left the channel.
    pub fn push_follow(&self, follow: Follow) {
        let mut state = self.shared.state.lock().expect("outbox lock");
        if state.closed {
            return;
        }
        let waiter = state.push(Item {
            frame: None,
            position: None,
            droppable: false,
            key: None,
            follow: Some(follow),
        });
        drop(state);
        wake(waiter);
    }

    /// Queues a publication without waiting. Returns false when something was
    /// lost: this frame (queue full, `disconnect` policy: the session is told to
    /// close) or an older one (dropped or conflated).
    ///
    /// Below capacity every publication is kept, whatever the policy: the
    /// policies apply only past a full queue, so a subscriber within the limit
    /// never loses one. Past it, `latest-per-key` replaces the queued
    /// publication with the same key (or, with none, drops the oldest, like
    /// `drop-oldest`).
    pub fn push_with(
        &self,
        frame: PreparedMessage,
        policy: SlowConsumerPolicy,
        key: Option<Arc<str>>,
        position: Option<Arc<Position>>,
    ) -> bool {
        let mut state = self.shared.state.lock().expect("outbox lock");
        if state.closed {
            return false;
        }
        let item = Item {
            frame: Some(frame),
            position,
            droppable: true,
            key,
            follow: None,
        };
        let len = item.len();
        if state.room(len) == Room::Yes {
            let waiter = state.push(item);
            drop(state);
            wake(waiter);
            return true;
        }
        let superseded = match policy {
            SlowConsumerPolicy::Disconnect => None,
            SlowConsumerPolicy::DropOldest => {
                state.items.iter().position(|queued| queued.droppable)
            }
            SlowConsumerPolicy::LatestPerKey => {
                let same_key = item.key.as_ref().and_then(|key| {
                    state
                        .items
                        .iter()
                        .position(|queued| queued.droppable && queued.key.as_ref() == Some(key))
                });
                same_key.or_else(|| state.items.iter().position(|queued| queued.droppable))
            }
        };
        let Some(at) = superseded else {
            drop(state);
            self.shared.overflow.trip();
            return false;
        };
        let gone = state.items.remove(at).map_or(0, |item| item.len());
        state.removed(1, gone);
        // The newer publication takes the older one's place if it fits
        // there; a larger one past the byte bound or the budget is dropped
        // itself.
        if state.room(len) == Room::Yes {
            let waiter = state.push(item);
            drop(state);
            wake(waiter);
        }
        false
    }

    /// Queues a reply, waiting for room: replies are bounded by the client's own
    /// request rate, so waiting pushes back on the client. Replies are never
    /// dropped or conflated. A reply the process-wide budget has no room for
    /// waits up to the budget's wait time; then the session is cut off as a
    /// slow consumer (the overflow signal) and false is returned.
    pub async fn reply(&self, frame: PreparedMessage) -> bool {
        self.reply_following(frame, None).await
    }

    /// [`reply`](Self::reply), with a change to the streams the writer sends.
    pub async fn reply_following(&self, frame: PreparedMessage, follow: Option<Follow>) -> bool {
        let len = frame.message().len();
        let mut item = Some((frame, follow));
        let mut budget_deadline = None;
        loop {
            let space = self.shared.space.notified();
            let budget_wait = {
                let mut state = self.shared.state.lock().expect("outbox lock");
                if state.closed {
                    return false;
                }
                let room = state.room(len);
                if room == Room::Yes {
                    let (frame, follow) = item.take().expect("not yet queued");
                    let waiter = state.push(Item {
                        frame: Some(frame),
                        position: None,
                        droppable: false,
                        key: None,
                        follow,
                    });
                    drop(state);
                    wake(waiter);
                    return true;
                }
                (room == Room::NoBudget).then(|| {
                    state
                        .bounds
                        .budget
                        .as_ref()
                        .map_or(Duration::ZERO, |b| b.wait_time())
                })
            };
            let Some(wait) = budget_wait else {
                budget_deadline = None;
                space.await;
                continue;
            };
            let now = tokio::time::Instant::now();
            let deadline = *budget_deadline.get_or_insert(now + wait);
            if now >= deadline {
                self.shared.overflow.trip();
                return false;
            }
            // Room in the budget frees elsewhere, unannounced: look again
            // soon, or as soon as this queue drains.
            let _ = tokio::time::timeout_at(deadline.min(now + BUDGET_RETRY), space).await;
        }
    }
}

impl Inbox {
    /// The session's alarm, which a full queue trips (and so does delivery,
    /// when a `disconnect`-policy subscriber lags).
    pub fn alarm(&self) -> &Arc<Alarm> {
        &self.shared.overflow
    }

    /// The next frame; `None` once every outbox is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Queued> {
        loop {
            if !poll_fn(|cx| self.poll_ready(cx)).await {
                return None;
            }
            if let Some(queued) = self.try_recv() {
                return Some(queued);
            }
        }
    }

    /// Ready with `true` once something is queued, with `false` once every
    /// outbox is gone and the queue is empty. While pending, the next push
    /// wakes the task.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = self.shared.state.lock().expect("outbox lock");
        if !state.items.is_empty() {
            return Poll::Ready(true);
        }
        if state.closed {
            return Poll::Ready(false);
        }
        if !state
            .waiter
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waiter = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Moves every queued frame to `into`, under one lock.
    pub fn take_all(&mut self, into: &mut Vec<Queued>) {
        let mut state = self.shared.state.lock().expect("outbox lock");
        if state.items.is_empty() {
            return;
        }
        // Taken whole: an idle connection keeps no queue buffer, and the
        // items move out of the lock.
        let items = std::mem::take(&mut state.items);
        let bytes = state.bytes;
        state.removed(items.len(), bytes);
        drop(state);
        self.shared.space.notify_waiters();
        into.extend(items.into_iter().map(|item| Queued {
            frame: item.frame,
            position: item.position,
            follow: item.follow,
        }));
    }

    /// Updates the positions delivery has reached (see [`Outbox::written`]).
    pub fn record(&self, update: impl FnOnce(&mut Positions)) {
        update(&mut self.shared.state.lock().expect("outbox lock").written);
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Queued> {
        let item = {
            let mut state = self.shared.state.lock().expect("outbox lock");
            let item = state.items.pop_front()?;
            state.removed(1, item.len());
            if state.items.is_empty() {
                // An idle session keeps no queue buffer.
                state.items = VecDeque::new();
            }
            item
        };
        self.shared.space.notify_one();
        Some(Queued {
            frame: item.frame,
            position: item.position,
            follow: item.follow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> PreparedMessage {
        PreparedMessage::text(s)
    }

    fn text(queued: Queued) -> String {
        match queued.frame.expect("a frame").message() {
            tether::Message::Text(text) => text.to_string(),
            other => panic!("not text: {other:?}"),
        }
    }

    fn drain(inbox: &mut Inbox) -> Vec<String> {
        std::iter::from_fn(|| inbox.try_recv()).map(text).collect()
    }

    #[test]
    fn disconnect_policy_trips_on_overflow() {
        let (outbox, mut inbox, overflow) = Outbox::new(2);
        let push = |s| outbox.push_with(b(s), SlowConsumerPolicy::Disconnect, None, None);
        assert!(push("1") && push("2"));
        assert!(!push("3"));
        assert!(overflow.raised().overflow());
        assert_eq!(drain(&mut inbox), ["1", "2"]);
    }

    #[test]
    fn drop_oldest_keeps_the_newest_publications() {
        let (outbox, mut inbox, overflow) = Outbox::new(2);
        for s in ["1", "2", "3", "4"] {
            outbox.push_with(b(s), SlowConsumerPolicy::DropOldest, None, None);
        }
        assert!(!overflow.raised().overflow());
        assert_eq!(drain(&mut inbox), ["3", "4"]);
    }

    #[test]
    fn latest_per_key_conflates_queued_values_once_full() {
        let (outbox, mut inbox, overflow) = Outbox::new(3);
        let key = |k: &str| Some(Arc::<str>::from(k));
        let push = |s, k| outbox.push_with(b(s), SlowConsumerPolicy::LatestPerKey, key(k), None);
        assert!(push("a1", "a") && push("b1", "b") && push("a2", "a"));
        assert!(!push("b2", "b"), "full: b1 is superseded");
        assert!(!push("c1", "c"), "full, no queued c: the oldest goes");
        assert!(!overflow.raised().overflow());
        assert_eq!(drain(&mut inbox), ["a2", "b2", "c1"]);
    }

    #[test]
    fn latest_per_key_keeps_every_publication_below_capacity() {
        let (outbox, mut inbox, _) = Outbox::new(1024);
        let keys: Vec<Arc<str>> = (0..8).map(|k| format!("k{k}").into()).collect();
        let published: Vec<String> = (0..600).map(|n| n.to_string()).collect();
        for (n, text) in published.iter().enumerate() {
            let frame = PreparedMessage::text(text.clone());
            let key = Some(keys[n % keys.len()].clone());
            assert!(outbox.push_with(frame, SlowConsumerPolicy::LatestPerKey, key, None));
        }
        assert_eq!(drain(&mut inbox), published);
    }

    #[tokio::test]
    async fn replies_are_never_dropped_and_close_ends_the_inbox() {
        let (outbox, mut inbox, _) = Outbox::new(1);
        assert!(outbox.reply(b("r1")).await);
        assert!(
            !outbox.push_with(b("p"), SlowConsumerPolicy::DropOldest, None, None),
            "only a reply queued: nothing to drop"
        );
        assert_eq!(inbox.recv().await.map(text).as_deref(), Some("r1"));
        drop(outbox);
        assert!(inbox.recv().await.is_none());
    }

    #[test]
    fn the_depth_gauge_follows_what_is_queued_and_what_a_session_leaves() {
        let depth = Gauge::default();
        let (outbox, mut inbox, _) = Outbox::bounded(Arc::new(Bounds {
            frames: 2,
            depth: depth.clone(),
            ..Bounds::default()
        }));
        let push = |s| outbox.push_with(b(s), SlowConsumerPolicy::DropOldest, None, None);
        push("1");
        push("2");
        push("3");
        assert_eq!(depth.get(), 2, "a dropped publication is not counted");
        assert_eq!(drain(&mut inbox).len(), 2);
        assert_eq!(depth.get(), 0);
        push("4");
        let mut all = Vec::new();
        inbox.take_all(&mut all);
        assert_eq!(depth.get(), 0);
        push("5");
        drop((outbox, inbox));
        assert_eq!(depth.get(), 0, "an ended session's queue leaves the gauge");
    }

    fn sized(len: usize) -> PreparedMessage {
        PreparedMessage::text("x".repeat(len))
    }

    #[tokio::test]
    async fn replies_wait_at_the_byte_bound_but_one_always_fits() {
        let (outbox, mut inbox, _) = Outbox::bounded(Arc::new(Bounds {
            frames: 100,
            bytes: 1000,
            ..Bounds::default()
        }));
        assert!(
            outbox.reply(sized(5000)).await,
            "an empty queue takes any reply"
        );
        let waiting = outbox.reply(sized(10));
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "over the bound: the reply waits"
        );
        assert_eq!(inbox.try_recv().map(text).map(|t| t.len()), Some(5000));
        assert!(waiting.await, "room again: it is queued");
        assert_eq!(inbox.try_recv().map(text).map(|t| t.len()), Some(10));
    }

    #[test]
    fn bytes_past_the_free_allowance_are_charged_to_the_budget_and_given_back() {
        let budget = tether::Budget::new(1 << 20, Duration::from_secs(1));
        let (outbox, mut inbox, overflow) = Outbox::bounded(Arc::new(Bounds {
            frames: 100,
            budget: Some(budget.clone()),
            ..Bounds::default()
        }));
        let policy = SlowConsumerPolicy::DropOldest;
        assert!(outbox.push_with(sized(FREE_QUEUED), policy, None, None));
        assert_eq!(budget.used(), 0, "within the free allowance");
        assert!(outbox.push_with(sized(1000), policy, None, None));
        assert_eq!(budget.used(), 1000);
        assert!(
            !outbox.push_with(sized(2 << 20), policy, None, None),
            "past the budget: dropped"
        );
        assert!(!overflow.raised().overflow());
        assert_eq!(
            drain(&mut inbox).len(),
            1,
            "the oldest made way, the large one did not fit"
        );
        assert_eq!(budget.used(), 0);
        assert!(outbox.push_with(sized(FREE_QUEUED + 10), policy, None, None));
        assert_eq!(budget.used(), 10);
        drop((outbox, inbox));
        assert_eq!(budget.used(), 0, "an ended session gives its charge back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_the_budget_cannot_hold_cuts_the_session_off_after_the_wait() {
        let budget = tether::Budget::new(FREE_QUEUED, Duration::from_millis(300));
        assert!(
            budget.try_charge(FREE_QUEUED),
            "another session holds it all"
        );
        let (outbox, _inbox, overflow) = Outbox::bounded(Arc::new(Bounds {
            frames: 100,
            budget: Some(budget.clone()),
            ..Bounds::default()
        }));
        assert!(outbox.reply(sized(100)).await, "small replies are free");
        let started = tokio::time::Instant::now();
        assert!(!outbox.reply(sized(FREE_QUEUED)).await);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(overflow.raised().overflow());
    }
}

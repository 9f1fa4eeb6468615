//! A session's bounded outgoing queue. Replies go through it; so do the
//! publications of `latest-per-key` channels, which the hub pushes through
//! the [`Mailbox`] it declares. Other channels' publications are read by
//! the session's delivery straight from the channel's stream, which a
//! [`Follow`] queued with the subscribe reply hands to it.
//!
//! - [`bounds`]: frames, bytes and the process-wide budget;
//! - [`conflation`]: which publication makes way on a full queue;
//! - [`positions`]: where delivery has brought the client in each channel.

mod bounds;
mod conflation;
mod positions;

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tether::PreparedMessage;
use tokio::sync::Notify;

use crate::alarm::Alarm;
use crate::config::SlowConsumerPolicy;
use crate::hub::{Follow, Mailbox, Position};
use bounds::{Room, Usage};

pub use bounds::{Bounds, FREE_QUEUED};
pub use positions::Positions;

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

/// How often a reply waiting for room in the budget looks again.
const BUDGET_RETRY: Duration = Duration::from_millis(10);

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

impl Item {
    fn len(&self) -> usize {
        self.frame.as_ref().map_or(0, |frame| frame.message().len())
    }

    /// A reply, or a bare change of the streams followed.
    fn reply(
        frame: Option<PreparedMessage>,
        position: Option<Arc<Position>>,
        follow: Option<Follow>,
    ) -> Self {
        Item {
            frame,
            position,
            droppable: false,
            key: None,
            follow,
        }
    }
}

impl conflation::Queued for Item {
    fn droppable(&self) -> bool {
        self.droppable
    }

    fn key(&self) -> Option<&Arc<str>> {
        self.key.as_ref()
    }
}

/// One queue's state. Every idle session holds one, so it is kept small: the
/// bounds are shared, the sender count lives under the lock (clones are
/// rare), and the whole `Shared` fits a 160-byte allocation.
#[derive(Debug)]
struct State {
    items: VecDeque<Item>,
    /// The delivery task, when it waits for an item.
    waiter: Option<Waker>,
    usage: Usage,
    bounds: Arc<Bounds>,
    /// Where delivery has brought the client in each channel.
    written: Positions,
    /// Live [`Outbox`] handles; at zero the queue is closed.
    senders: u32,
    closed: bool,
}

impl State {
    /// Whether a frame of `len` bytes fits, charging the budget for it if
    /// it does (a later [`State::push`] of it must follow).
    fn room(&mut self, len: usize) -> Room {
        self.usage.room(&self.bounds, self.items.len(), len)
    }

    /// Queues `item` and returns the delivery task to wake (outside the lock).
    fn push(&mut self, item: Item) -> Option<Waker> {
        self.usage.added(&self.bounds, item.len());
        self.items.push_back(item);
        self.waiter.take()
    }

    /// Accounts for `items` of `bytes` leaving the queue.
    fn removed(&mut self, items: usize, bytes: usize) {
        self.usage.removed(&self.bounds, items, bytes);
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // A session that ends with frames still queued takes them along.
        let bytes = self.usage.bytes;
        self.removed(self.items.len(), bytes);
    }
}

/// Wakes the delivery task, if it was waiting.
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

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("outbox lock")
    }
}

/// The sending side of a session's queue. Pushing a publication never waits:
/// on a full queue the namespace's policy decides (disconnect the slow
/// consumer, drop the oldest publication, or keep only the latest per key),
/// so one slow reader never delays the others and its memory stays bounded.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The receiving side, drained by the session's delivery.
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<Shared>,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.state().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let waiter = {
            let mut state = self.shared.state();
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
                usage: Usage::default(),
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

    /// The queue as the hub pushes into it. It does not keep the queue open:
    /// a session leaves its channels before it drops its outbox.
    pub fn mailbox(&self) -> Arc<dyn Mailbox> {
        self.shared.clone()
    }

    /// Where delivery has brought the client in each channel it was sent
    /// (as recorded with [`Inbox::record`]).
    pub fn written(&self) -> Positions {
        self.shared.state().written.clone()
    }

    /// Queues a change to the streams delivery sends, with no frame and
    /// whatever the queue's level (a session queues one per channel as it
    /// ends, at most `max_subscriptions`), so delivery stops each stream
    /// exactly where the session left the channel.
    pub fn push_follow(&self, follow: Follow) {
        let mut state = self.shared.state();
        if state.closed {
            return;
        }
        let waiter = state.push(Item::reply(None, None, Some(follow)));
        drop(state);
        wake(waiter);
    }

    /// Queues a reply, waiting for room: replies are bounded by the client's own
    /// request rate, so waiting pushes back on the client. Replies are never
    /// dropped or conflated. A reply the process-wide budget has no room for
    /// waits up to the budget's wait time; then the session is cut off as a
    /// slow consumer (the overflow signal) and false is returned.
    pub async fn reply(&self, frame: PreparedMessage) -> bool {
        self.reply_following(frame, None).await
    }

    /// [`reply`](Self::reply), with a change to the streams delivery sends.
    pub async fn reply_following(&self, frame: PreparedMessage, follow: Option<Follow>) -> bool {
        let len = frame.message().len();
        let mut item = Some((frame, follow));
        let mut budget_deadline = None;
        loop {
            let space = self.shared.space.notified();
            let budget_wait = {
                let mut state = self.shared.state();
                if state.closed {
                    return false;
                }
                let room = state.room(len);
                if room == Room::Yes {
                    let (frame, follow) = item.take().expect("not yet queued");
                    let waiter = state.push(Item::reply(Some(frame), None, follow));
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

impl Mailbox for Shared {
    fn reset(&self) {
        self.overflow.reset();
    }

    fn push_reply(
        &self,
        frame: PreparedMessage,
        position: Option<Arc<Position>>,
        follow: Option<Follow>,
    ) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        if state.room(frame.message().len()) != Room::Yes {
            drop(state);
            self.overflow.trip();
            return false;
        }
        let waiter = state.push(Item::reply(Some(frame), position, follow));
        drop(state);
        wake(waiter);
        true
    }

    fn push_publication(
        &self,
        frame: PreparedMessage,
        policy: SlowConsumerPolicy,
        key: Option<Arc<str>>,
        position: Option<Arc<Position>>,
    ) -> bool {
        let mut state = self.state();
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
        let Some(at) = conflation::making_way(&state.items, policy, item.key.as_ref()) else {
            drop(state);
            self.overflow.trip();
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
        let mut state = self.shared.state();
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
        let mut state = self.shared.state();
        if state.items.is_empty() {
            return;
        }
        // Taken whole: an idle session keeps no queue buffer, and the
        // items move out of the lock.
        let items = std::mem::take(&mut state.items);
        let bytes = state.usage.bytes;
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
        update(&mut self.shared.state().written);
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Queued> {
        let item = {
            let mut state = self.shared.state();
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
        let push = |s| {
            outbox
                .mailbox()
                .push_publication(b(s), SlowConsumerPolicy::Disconnect, None, None)
        };
        assert!(push("1") && push("2"));
        assert!(!push("3"));
        assert!(overflow.raised().overflow());
        assert_eq!(drain(&mut inbox), ["1", "2"]);
    }

    #[test]
    fn drop_oldest_keeps_the_newest_publications() {
        let (outbox, mut inbox, overflow) = Outbox::new(2);
        for s in ["1", "2", "3", "4"] {
            outbox
                .mailbox()
                .push_publication(b(s), SlowConsumerPolicy::DropOldest, None, None);
        }
        assert!(!overflow.raised().overflow());
        assert_eq!(drain(&mut inbox), ["3", "4"]);
    }

    #[test]
    fn latest_per_key_conflates_queued_values_once_full() {
        let (outbox, mut inbox, overflow) = Outbox::new(3);
        let key = |k: &str| Some(Arc::<str>::from(k));
        let push = |s, k| {
            outbox
                .mailbox()
                .push_publication(b(s), SlowConsumerPolicy::LatestPerKey, key(k), None)
        };
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
            assert!(outbox.mailbox().push_publication(
                frame,
                SlowConsumerPolicy::LatestPerKey,
                key,
                None
            ));
        }
        assert_eq!(drain(&mut inbox), published);
    }

    #[tokio::test]
    async fn replies_are_never_dropped_and_close_ends_the_inbox() {
        let (outbox, mut inbox, _) = Outbox::new(1);
        assert!(outbox.reply(b("r1")).await);
        assert!(
            !outbox
                .mailbox()
                .push_publication(b("p"), SlowConsumerPolicy::DropOldest, None, None),
            "only a reply queued: nothing to drop"
        );
        assert_eq!(inbox.recv().await.map(text).as_deref(), Some("r1"));
        drop(outbox);
        assert!(inbox.recv().await.is_none());
    }

    #[test]
    fn the_depth_gauge_follows_what_is_queued_and_what_a_session_leaves() {
        let depth = prometheus_client::metrics::gauge::Gauge::default();
        let (outbox, mut inbox, _) = Outbox::bounded(Arc::new(Bounds {
            frames: 2,
            depth: depth.clone(),
            ..Bounds::default()
        }));
        let push = |s| {
            outbox
                .mailbox()
                .push_publication(b(s), SlowConsumerPolicy::DropOldest, None, None)
        };
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
        assert!(outbox
            .mailbox()
            .push_publication(sized(FREE_QUEUED), policy, None, None));
        assert_eq!(budget.used(), 0, "within the free allowance");
        assert!(outbox
            .mailbox()
            .push_publication(sized(1000), policy, None, None));
        assert_eq!(budget.used(), 1000);
        assert!(
            !outbox
                .mailbox()
                .push_publication(sized(2 << 20), policy, None, None),
            "past the budget: dropped"
        );
        assert!(!overflow.raised().overflow());
        assert_eq!(
            drain(&mut inbox).len(),
            1,
            "the oldest made way, the large one did not fit"
        );
        assert_eq!(budget.used(), 0);
        assert!(outbox
            .mailbox()
            .push_publication(sized(FREE_QUEUED + 10), policy, None, None));
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

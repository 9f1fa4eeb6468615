//! One message to many connections: a group whose messages are framed once and
//! kept in a shared ring, from which every member's writer copies what it has
//! not sent yet.
//!
//! A queue per member costs a queue operation, a wake-up and a slot per message
//! and member. Here a message costs one push into the ring however many members
//! there are; a member costs one wake-up per burst (only members waiting for more
//! are woken) and, per message, a copy of the frame into its socket buffer. A
//! member that falls more than the ring's capacity behind has lagged: its
//! [`Subscription::forward_to`] returns [`Ended::Lagged`] and the caller drops
//! it (typically with close code 1008), so a slow reader neither holds memory
//! nor delays the others. A message every member has sent is let go at once,
//! so a ring whose members keep up holds almost nothing.
//!
//! ```no_run
//! # async fn run(ws: tether::WebSocket<tokio::net::TcpStream>, group: tether::Broadcast) -> tether::Result<()> {
//! let (mut reader, writer) = ws.split();
//! let mut subscription = group.subscribe();
//! let out = writer.clone();
//! tokio::spawn(async move { subscription.forward_to(&out).await });
//! while let Some(message) = reader.recv().await? {
//!     if let Some(prepared) = tether::PreparedMessage::new(message) {
//!         group.send(prepared);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tether_proto::PreparedMessage;

use crate::error::Result;
use crate::halves::SplitStream;
use crate::split::WsWriter;

/// The bounds of a [`Broadcast`] group's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastConfig {
    /// Messages the ring keeps: how far behind a member may fall before it has
    /// lagged. Default 4096.
    pub capacity: usize,
    /// Bytes the ring keeps (payloads, and the frames of messages up to 8 KiB,
    /// which it keeps beside them); older messages are let go beyond this even
    /// within `capacity`, so large messages cannot pin unbounded memory.
    /// Default 64 MiB. The newest message is always kept.
    pub max_bytes: usize,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            capacity: 4096,
            max_bytes: 64 << 20,
        }
    }
}

impl BroadcastConfig {
    /// Sets [`capacity`](Self::capacity) (at least 1).
    pub fn capacity(mut self, messages: usize) -> Self {
        self.capacity = messages.max(1);
        self
    }

    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }
}

/// A group of connections that receive the same messages. Cheap to clone: clones
/// send into the same group. When the last clone is dropped, members finish
/// sending what the ring holds and their [`Subscription::forward_to`] returns
/// [`Ended::Closed`].
///
/// Each message may carry a tag `T` (a stream offset, say) that members see as
/// they send it; plain groups use `()`.
#[derive(Debug)]
pub struct Broadcast<T = ()> {
    shared: Arc<Shared<T>>,
}

/// How a member's forwarding ended without a write error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every [`Broadcast`] handle was dropped and the member sent everything.
    Closed,
    /// The member fell behind by more than the ring holds; `missed` messages
    /// are gone for it.
    Lagged {
        /// Messages the member will never see.
        missed: u64,
    },
}

/// One member's place in a [`Broadcast`] group: the next message it has to send.
#[derive(Debug)]
pub struct Subscription<T = ()> {
    shared: Arc<Shared<T>>,
    next: u64,
    /// The wake-up generation this member is registered for, so a spurious
    /// poll does not register it twice ([`UNREGISTERED`]: none; a `u64`, not
    /// an `Option`'s 16 bytes, in every member).
    registered: u64,
}

/// A generation no ring reaches: the member is registered for none.
const UNREGISTERED: u64 = u64::MAX;

#[derive(Debug)]
struct Shared<T> {
    ring: Mutex<Ring<T>>,
    senders: AtomicUsize,
}

/// A message in the ring. What a member reads to send it (its length and
/// plain frame) is here, not behind the message's pointer: a member walks
/// thousands of entries per burst.
#[derive(Debug)]
struct Entry<T> {
    message: PreparedMessage,
    /// The server's uncompressed frame, in the ring's arena (small messages).
    frame: Option<Bytes>,
    /// Payload bytes.
    len: usize,
    tag: T,
    /// Members that have yet to send it.
    remaining: usize,
}

#[derive(Debug)]
struct Ring<T> {
    messages: VecDeque<Entry<T>>,
    /// Members (live subscriptions).
    members: usize,
    /// Sequence number of `messages[0]`.
    first: u64,
    /// Bytes held by `messages`: payloads and plain frames.
    bytes: usize,
    /// Where the plain frames of new messages are laid out, one after the
    /// other (see [`Ring::frame`]).
    arena: BytesMut,
    config: BroadcastConfig,
    /// Members waiting for the next message; emptied (and woken) by each send.
    waiting: Vec<Waker>,
    /// Wakers in `waiting` whose members have gone since they registered.
    stale: usize,
    /// Counts the sends that woke someone: a member registered in an older
    /// generation has been woken and must register again.
    generation: u64,
    closed: bool,
}

impl<T> Ring<T> {
    /// Sequence number the next message will get.
    fn head(&self) -> u64 {
        self.first + self.messages.len() as u64
    }

    /// Lets go of the oldest messages while every member has sent them, the
    /// ring is over capacity, or over its byte bound (the newest stays).
    fn trim(&mut self) {
        while let Some(oldest) = self.messages.front() {
            let over = self.messages.len() > self.config.capacity
                || (self.bytes > self.config.max_bytes && self.messages.len() > 1);
            if oldest.remaining > 0 && !over {
                break;
            }
            self.bytes -= oldest.len + oldest.frame.as_ref().map_or(0, Bytes::len);
            self.messages.pop_front();
            self.first += 1;
        }
        if self.messages.is_empty() {
            // A quiet group keeps no arena between messages.
            self.arena = BytesMut::new();
        }
    }

    /// The plain frame of `message` (`len` payload bytes), laid out after the
    /// previous message's. Consecutive frames share a chunk, so a member
    /// copying a run of them reads memory in order instead of chasing a
    /// pointer per message. A chunk is sized by what the ring holds: small for
    /// a group whose members keep up, up to [`ARENA_CHUNK_MAX`] in a burst.
    fn frame(&mut self, message: &PreparedMessage, len: usize) -> Option<Bytes> {
        let needed = len + MAX_PLAIN_HEADER;
        if self.arena.capacity() - self.arena.len() < needed {
            let chunk = (self.bytes + needed)
                .clamp(ARENA_CHUNK_MIN, ARENA_CHUNK_MAX)
                .max(needed);
            self.arena = BytesMut::with_capacity(chunk);
        }
        message.plain_frame_into(&mut self.arena)
    }
}

/// Largest header of a plain frame the arena holds (payloads up to 8 KiB).
const MAX_PLAIN_HEADER: usize = 4;
/// Smallest arena chunk.
const ARENA_CHUNK_MIN: usize = 512;
/// Largest arena chunk.
const ARENA_CHUNK_MAX: usize = 64 << 10;

impl<T> Shared<T> {
    fn ring(&self) -> MutexGuard<'_, Ring<T>> {
        // A panic elsewhere while holding the lock leaves the ring consistent
        // (every update is a single push or pop), so poisoning is ignored.
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T> Default for Broadcast<T> {
    fn default() -> Self {
        Self::new(BroadcastConfig::default())
    }
}

impl Broadcast<()> {
    /// Sends `message` to every member: one push into the ring, then a wake-up
    /// for each member waiting for more. Never waits.
    pub fn send(&self, message: PreparedMessage) {
        self.send_tagged(message, ());
    }
}

impl<T> Broadcast<T> {
    /// A group with the given bounds.
    pub fn new(config: BroadcastConfig) -> Self {
        let config = config.capacity(config.capacity);
        Self {
            shared: Arc::new(Shared {
                ring: Mutex::new(Ring {
                    messages: VecDeque::new(),
                    members: 0,
                    first: 0,
                    bytes: 0,
                    arena: BytesMut::new(),
                    config,
                    waiting: Vec::new(),
                    stale: 0,
                    generation: 0,
                    closed: false,
                }),
                senders: AtomicUsize::new(1),
            }),
        }
    }

    /// Sends `message` with its `tag` to every member (see
    /// [`send`](Broadcast::send)).
    pub fn send_tagged(&self, message: PreparedMessage, tag: T) {
        let len = message.message().len();
        let waiting = {
            let mut ring = self.shared.ring();
            let frame = ring.frame(&message, len);
            ring.bytes += len + frame.as_ref().map_or(0, Bytes::len);
            let remaining = ring.members;
            ring.messages.push_back(Entry {
                message,
                frame,
                len,
                tag,
                remaining,
            });
            ring.trim();
            if ring.waiting.is_empty() {
                return;
            }
            ring.generation += 1;
            ring.stale = 0;
            std::mem::take(&mut ring.waiting)
        };
        // Woken outside the lock, so woken members on other threads do not
        // queue up behind it.
        for waker in waiting {
            waker.wake();
        }
    }

    /// A new member, starting with the next message sent.
    pub fn subscribe(&self) -> Subscription<T> {
        let mut ring = self.shared.ring();
        ring.members += 1;
        let next = ring.head();
        drop(ring);
        Subscription {
            shared: self.shared.clone(),
            next,
            registered: UNREGISTERED,
        }
    }

    /// Messages the ring holds now: those some member has yet to send.
    pub fn len(&self) -> usize {
        self.shared.ring().messages.len()
    }

    /// Whether the ring holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sequence number the next message will get (messages are numbered
    /// from 0 in the order sent).
    pub fn head(&self) -> u64 {
        self.shared.ring().head()
    }
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Broadcast<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waiting = {
                let mut ring = self.shared.ring();
                ring.closed = true;
                ring.generation += 1;
                ring.stale = 0;
                std::mem::take(&mut ring.waiting)
            };
            for waker in waiting {
                waker.wake();
            }
        }
    }
}

/// What one call of [`Subscription::queue_into`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Everything up to the limit is in the batch.
    CaughtUp,
    /// The batch passed the writer's high-water mark: flush it, then call again.
    Full,
    /// Nothing was queued: the subscription has ended.
    Ended(Ended),
}

impl<T> Subscription<T> {
    /// Sends the group's messages through `writer` as they come, each burst
    /// framed into the socket buffer and written with one flush, until the
    /// group closes or this member lags. Errors are the writer's.
    pub async fn forward_to<S: SplitStream>(&mut self, writer: &WsWriter<S>) -> Result<Ended> {
        loop {
            if let Err(ended) = poll_fn(|cx| self.poll_messages(cx)).await {
                return Ok(ended);
            }
            let mut batch = writer.batch().await;
            loop {
                match self.queue_into(&mut batch, u64::MAX, |_, _| {})? {
                    Queued::CaughtUp => break,
                    Queued::Full => batch.flush().await?,
                    Queued::Ended(ended) => return Ok(ended),
                }
            }
            batch.flush().await?;
        }
    }

    /// Ready with `Ok` once there is a message to send, with `Err` once the
    /// subscription has ended (the group closed and everything was sent, or
    /// this member lagged). While pending, the task is woken by the next send.
    pub fn poll_messages(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Ended>> {
        let mut ring = self.shared.ring();
        if let Some(ended) = self.ended(&ring) {
            return Poll::Ready(Err(ended));
        }
        if self.next < ring.head() {
            return Poll::Ready(Ok(()));
        }
        if self.registered != ring.generation {
            self.registered = ring.generation;
            ring.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Ready with the number of messages missed once this member has lagged;
    /// while pending, the task is woken by every send (so a writer stuck on a
    /// full socket can notice its member fell too far behind and give up on it).
    pub fn poll_lag(&mut self, cx: &mut Context<'_>) -> Poll<u64> {
        let mut ring = self.shared.ring();
        if self.next < ring.first {
            return Poll::Ready(ring.first - self.next);
        }
        if self.registered != ring.generation {
            self.registered = ring.generation;
            ring.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Frames the pending messages numbered below `until` into `batch`, calling
    /// `on_each` with each message's payload length and tag, until the next
    /// one would not fit under the batch's high-water mark or none is left.
    /// Nothing is written: the caller flushes.
    pub fn queue_into<S: SplitStream>(
        &mut self,
        batch: &mut crate::Batch<'_, S>,
        until: u64,
        on_each: impl FnMut(usize, &T),
    ) -> Result<Queued> {
        self.queue_filtered_into(batch, until, |_| true, on_each)
    }

    /// [`queue_into`](Self::queue_into), passing over (as sent) the messages
    /// whose tag `keep` refuses: what a member already got some other way,
    /// such as the publications a recovery read from history.
    #[inline]
    pub fn queue_filtered_into<S: SplitStream>(
        &mut self,
        batch: &mut crate::Batch<'_, S>,
        until: u64,
        mut keep: impl FnMut(&T) -> bool,
        mut on_each: impl FnMut(usize, &T),
    ) -> Result<Queued> {
        let mut ring = self.shared.ring();
        if let Some(ended) = self.ended(&ring) {
            return Ok(match ended {
                // Closed with nothing left: the caller's flush finishes.
                Ended::Closed => Queued::CaughtUp,
                lagged => Queued::Ended(lagged),
            });
        }
        let start = (self.next - ring.first) as usize;
        let end = until.min(ring.head()).saturating_sub(ring.first) as usize;
        let mut progress = Queued::CaughtUp;
        for entry in ring.messages.range_mut(start..end.max(start)) {
            if keep(&entry.tag) {
                if !batch.has_room_for(entry.len) {
                    progress = Queued::Full;
                    break;
                }
                let queued = match &entry.frame {
                    Some(frame) => batch.queue_plain(&entry.message, entry.len, frame),
                    None => batch.queue_prepared(&entry.message),
                };
                if let Err(e) = queued {
                    ring.trim();
                    return Err(e);
                }
                on_each(entry.len, &entry.tag);
            }
            entry.remaining -= 1;
            self.next += 1;
        }
        ring.trim();
        Ok(progress)
    }

    /// Hands the pending messages numbered below `until` to `each`, passing
    /// over (as sent) those whose tag `keep` refuses, until `each` answers
    /// `false` (its sink is full: that message stays pending) or none is left.
    /// For senders that are not WebSocket connections: an HTTP stream takes
    /// the payload of the same shared message, without its framing.
    pub fn take_each(
        &mut self,
        until: u64,
        mut keep: impl FnMut(&T) -> bool,
        mut each: impl FnMut(&PreparedMessage, &T) -> bool,
    ) -> Queued {
        let mut ring = self.shared.ring();
        if let Some(ended) = self.ended(&ring) {
            return match ended {
                Ended::Closed => Queued::CaughtUp,
                lagged => Queued::Ended(lagged),
            };
        }
        let start = (self.next - ring.first) as usize;
        let end = until.min(ring.head()).saturating_sub(ring.first) as usize;
        let mut progress = Queued::CaughtUp;
        for entry in ring.messages.range_mut(start..end.max(start)) {
            if keep(&entry.tag) && !each(&entry.message, &entry.tag) {
                progress = Queued::Full;
                break;
            }
            entry.remaining -= 1;
            self.next += 1;
        }
        ring.trim();
        progress
    }

    /// After [`Ended::Lagged`]: skips to the oldest message the ring still
    /// holds, for callers that would rather lose messages than the member.
    /// Returns how many were skipped.
    pub fn skip_lagged(&mut self) -> u64 {
        // What it skipped is gone already: nothing to count down.
        let first = self.shared.ring().first;
        let missed = first.saturating_sub(self.next);
        self.next = self.next.max(first);
        missed
    }

    /// The sequence number of the next message this member will send.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Messages this member has not sent yet (they may be gone: see
    /// [`Ended::Lagged`]).
    pub fn pending(&self) -> u64 {
        self.shared.ring().head().saturating_sub(self.next)
    }

    /// Lagged, or closed with nothing left to send.
    fn ended(&self, ring: &Ring<T>) -> Option<Ended> {
        if self.next < ring.first {
            return Some(Ended::Lagged {
                missed: ring.first - self.next,
            });
        }
        (ring.closed && self.next >= ring.head()).then_some(Ended::Closed)
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        // The messages it had yet to send no longer wait for it.
        let mut ring = self.shared.ring();
        ring.members -= 1;
        let start = (self.next.saturating_sub(ring.first) as usize).min(ring.messages.len());
        for entry in ring.messages.range_mut(start..) {
            entry.remaining -= 1;
        }
        ring.trim();
        // Its waker stays in `waiting` until the next send. On a quiet group
        // with members coming and going those would pile up: once most of the
        // list is stale, wake everyone (spuriously; live members register
        // again) and start a fresh list.
        let mut woken = Vec::new();
        if self.registered == ring.generation {
            ring.stale += 1;
            if ring.stale > 64 && ring.stale * 2 > ring.waiting.len() {
                ring.generation += 1;
                ring.stale = 0;
                woken = std::mem::take(&mut ring.waiting);
            }
        }
        drop(ring);
        for waker in woken {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use tether_proto::{Message, Role};
    use tokio::io::DuplexStream;

    use super::*;
    use crate::{Config, WebSocket, WsReader};

    /// A server-side writer and the client that reads what it writes.
    fn pair() -> (WsWriter<DuplexStream>, WsReader<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1 << 20);
        let config = Config::default();
        let (_, writer) = WebSocket::from_raw(server, Role::Server, &config).split();
        let (reader, _) = WebSocket::from_raw(client, Role::Client, &config).split();
        (writer, reader)
    }

    /// A server-side writer that compresses messages of `threshold` bytes or
    /// more (no context takeover), and the raw stream it writes to.
    fn compressing_pair(threshold: usize) -> (WsWriter<DuplexStream>, DuplexStream) {
        use tether_proto::deflate::Deflater;
        use tether_proto::{Decoder, Encoder};
        let (server, client) = tokio::io::duplex(1 << 20);
        let config = Config::default();
        let encoder = Encoder::new(Role::Server, Some(Deflater::new(1, 15, true)), threshold);
        let decoder = Decoder::new(Role::Server, config.protocol.clone(), None);
        let (_, writer) =
            WebSocket::from_parts(server, decoder, encoder, &config, None, true).split();
        (writer, client)
    }

    fn text(n: usize) -> PreparedMessage {
        PreparedMessage::text(n.to_string())
    }

    async fn read_texts(reader: &mut WsReader<DuplexStream>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            match reader.recv().await.unwrap() {
                Some(Message::Text(t)) => out.push(t.to_string()),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn every_member_gets_every_message_in_order() {
        let group = Broadcast::default();
        let mut members = Vec::new();
        for _ in 0..3 {
            let (writer, reader) = pair();
            let mut subscription = group.subscribe();
            let task = tokio::spawn(async move { subscription.forward_to(&writer).await });
            members.push((reader, task));
        }
        for n in 0..100 {
            group.send(text(n));
            if n % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let expected: Vec<String> = (0..100).map(|n| n.to_string()).collect();
        for (reader, _) in &mut members {
            assert_eq!(read_texts(reader, 100).await, expected);
        }
        drop(group);
        for (_, task) in members {
            assert_eq!(task.await.unwrap().unwrap(), Ended::Closed);
        }
    }

    #[test]
    fn take_each_hands_over_payloads_until_the_sink_is_full() {
        let group: Broadcast<u64> = Broadcast::default();
        let mut subscription = group.subscribe();
        for n in 1..=5u64 {
            group.send_tagged(text(n as usize), n);
        }
        let mut got = Vec::new();
        // Tag 2 is passed over as sent; the sink takes two, then is full.
        let progress = subscription.take_each(
            u64::MAX,
            |tag| *tag != 2,
            |message, tag| {
                if got.len() == 2 {
                    return false;
                }
                got.push((message.message().len(), *tag));
                true
            },
        );
        assert_eq!(progress, Queued::Full);
        assert_eq!(got, vec![(1, 1), (1, 3)]);
        assert_eq!(subscription.pending(), 2);
        let mut rest = Vec::new();
        let progress = subscription.take_each(
            4,
            |_| true,
            |_, tag| {
                rest.push(*tag);
                true
            },
        );
        assert_eq!(progress, Queued::CaughtUp);
        assert_eq!(
            rest,
            vec![4],
            "stops below `until` (sequence numbers count from 0)"
        );
    }

    #[tokio::test]
    async fn a_member_joins_at_the_next_message() {
        let group = Broadcast::default();
        group.send(text(1));
        let (writer, mut reader) = pair();
        let mut subscription = group.subscribe();
        assert_eq!(subscription.pending(), 0);
        group.send(text(2));
        tokio::spawn(async move { subscription.forward_to(&writer).await });
        assert_eq!(read_texts(&mut reader, 1).await, ["2"]);
    }

    #[tokio::test]
    async fn passes_over_what_a_member_already_has() {
        let group: Broadcast<u64> = Broadcast::default();
        let (writer, mut reader) = pair();
        let mut member = group.subscribe();
        for n in [1, 2, 7, 3, 9] {
            group.send_tagged(text(n as usize), n);
        }
        let mut batch = writer.batch().await;
        let mut seen = Vec::new();
        let progress = member
            .queue_filtered_into(&mut batch, u64::MAX, |n| *n > 2, |_, n| seen.push(*n))
            .unwrap();
        batch.flush().await.unwrap();
        drop(batch);
        assert_eq!((progress, seen), (Queued::CaughtUp, vec![7, 3, 9]));
        assert_eq!(read_texts(&mut reader, 3).await, ["7", "3", "9"]);
        assert_eq!((member.pending(), group.len()), (0, 0), "all let go");
    }

    #[test]
    fn a_member_too_far_behind_has_lagged_and_may_skip_ahead() {
        let group = Broadcast::new(BroadcastConfig::default().capacity(4));
        let mut subscription = group.subscribe();
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        assert!(subscription.poll_messages(&mut cx).is_pending());
        for n in 0..6 {
            group.send(text(n));
        }
        assert_eq!(group.len(), 4);
        assert_eq!(
            subscription.poll_messages(&mut cx),
            Poll::Ready(Err(Ended::Lagged { missed: 2 }))
        );
        assert_eq!(subscription.skip_lagged(), 2);
        assert_eq!(subscription.poll_messages(&mut cx), Poll::Ready(Ok(())));
        assert_eq!(subscription.pending(), 4);
    }

    #[tokio::test]
    async fn messages_every_member_has_sent_are_let_go() {
        let group = Broadcast::default();
        group.send(text(0));
        assert_eq!(group.len(), 0, "no member: nothing is kept");
        let (writer, _reader) = pair();
        let mut sent = group.subscribe();
        let mut behind = group.subscribe();
        for n in 1..=3 {
            group.send(text(n));
        }
        assert_eq!(group.len(), 3);
        let mut batch = writer.batch().await;
        sent.queue_into(&mut batch, u64::MAX, |_, _| {}).unwrap();
        assert_eq!(group.len(), 3, "one member still has to send them");
        behind.queue_into(&mut batch, 2, |_, _| {}).unwrap();
        assert_eq!(group.len(), 2, "the first is let go once both sent it");
        drop(behind);
        assert_eq!(group.len(), 0, "a member that leaves holds nothing back");
        group.send(text(4));
        assert_eq!(group.len(), 1);
        assert_eq!(sent.pending(), 1);
    }

    #[test]
    fn members_that_leave_a_quiet_group_do_not_pile_up_wakers() {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let group: Broadcast = Broadcast::default();
        let mut stays = group.subscribe();
        assert!(stays.poll_messages(&mut cx).is_pending());
        for _ in 0..10_000 {
            let mut passing = group.subscribe();
            assert!(passing.poll_messages(&mut cx).is_pending());
        }
        assert!(group.shared.ring().waiting.len() < 200);
        // The member that stayed is woken by the next send all the same.
        assert!(stays.poll_messages(&mut cx).is_pending());
        group.send(text(1));
        assert_eq!(stays.poll_messages(&mut cx), Poll::Ready(Ok(())));
    }

    #[test]
    fn large_messages_are_let_go_beyond_the_byte_bound() {
        let group = Broadcast::new(BroadcastConfig::default().max_bytes(10));
        let _member = group.subscribe();
        group.send(PreparedMessage::binary(vec![0u8; 8]));
        group.send(PreparedMessage::binary(vec![0u8; 8]));
        assert_eq!(group.len(), 1, "the older one is let go");
        group.send(PreparedMessage::binary(vec![0u8; 64]));
        assert_eq!(group.len(), 1, "the newest is always kept");
    }

    #[tokio::test]
    async fn small_frames_lie_side_by_side_and_each_member_sends_what_it_negotiated() {
        let group = Broadcast::default();
        let (plain_writer, mut plain_reader) = pair();
        let (deflate_writer, mut deflate_stream) = compressing_pair(64);
        let mut plain = group.subscribe();
        let mut deflating = group.subscribe();
        let big = "compressible ".repeat(10);
        let texts = ["a".to_owned(), big.clone(), "b".to_owned(), big.clone()];
        for text in &texts {
            group.send(PreparedMessage::text(text.clone()));
        }
        {
            let ring = group.shared.ring();
            let frames: Vec<&Bytes> = ring.messages.iter().flat_map(|e| &e.frame).collect();
            assert_eq!(frames.len(), 4, "all are small enough for the arena");
            for pair in frames.windows(2) {
                let end = pair[0].as_ptr() as usize + pair[0].len();
                assert_eq!(end, pair[1].as_ptr() as usize, "one after the other");
            }
            assert_eq!(&frames[0][..], b"\x81\x01a", "a server's plain frame");
        }
        for (member, writer) in [
            (&mut plain, &plain_writer),
            (&mut deflating, &deflate_writer),
        ] {
            let mut batch = writer.batch().await;
            let mut lens = Vec::new();
            member
                .queue_into(&mut batch, u64::MAX, |len, _| lens.push(len))
                .unwrap();
            batch.flush().await.unwrap();
            assert_eq!(lens, texts.iter().map(String::len).collect::<Vec<_>>());
        }
        assert_eq!(read_texts(&mut plain_reader, 4).await, texts);
        // The compressing member sent the small text from the arena and the
        // large one compressed (RSV1), much shorter than its plain frame.
        drop(deflate_writer);
        let mut raw = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut deflate_stream, &mut raw)
            .await
            .unwrap();
        assert_eq!(&raw[..3], b"\x81\x01a");
        assert_eq!(raw[3], 0xc1, "FIN, RSV1, text");
        assert!(raw.len() < 2 * big.len(), "{} bytes", raw.len());
        assert_eq!(group.len(), 0, "messages are let go once sent");
        assert_eq!(group.shared.ring().bytes, 0);
        assert_eq!(
            group.shared.ring().arena.capacity(),
            0,
            "an empty ring keeps no arena"
        );
    }

    #[tokio::test]
    async fn tags_come_with_their_messages_and_until_stops_early() {
        let group: Broadcast<u64> = Broadcast::default();
        let (writer, mut reader) = pair();
        let mut subscription = group.subscribe();
        for n in 0..5u64 {
            group.send_tagged(text(n as usize), n * 10);
        }
        let mut tags = Vec::new();
        {
            let mut batch = writer.batch().await;
            let queued = subscription
                .queue_into(&mut batch, 3, |_, tag| tags.push(*tag))
                .unwrap();
            assert_eq!(queued, Queued::CaughtUp);
            batch.flush().await.unwrap();
        }
        assert_eq!(tags, [0, 10, 20]);
        assert_eq!(subscription.next_sequence(), 3);
        assert_eq!(read_texts(&mut reader, 3).await, ["0", "1", "2"]);
    }
}

//! The outgoing side of a session carried by HTTP requests (SSE streams,
//! long-polls), which come and go while the session lives: every message
//! delivered gets a sequence number and stays in the log until the client
//! has it, so a stream that breaks or a poll answer lost on the way is sent
//! again, never lost and never applied twice.
//!
//! Long-polling acknowledges by cursor: a poll carrying cursor `N` says the
//! client holds everything up to `N`, which the log then forgets. An SSE
//! stream cannot be acknowledged; what it wrote stays as a replay window (up
//! to the log's capacity) for the `Last-Event-ID` of the browser's reconnect.
//!
//! The log is bounded: while the client has `capacity` messages it has not
//! taken, delivery waits, the channel streams behind it fill, and the
//! namespace's slow-consumer policy applies there, as for a WebSocket whose
//! socket is full.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tether::broadcast::Queued as Progress;
use tokio::sync::Notify;

use super::sink::{Burst, Feed, Payload, Sink, SinkClosed};

/// A cursor the log cannot resume from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Beyond the newest message: the client claims what was never sent.
    #[error("cursor {cursor} is ahead of the newest message ({head})")]
    Future {
        /// The cursor given.
        cursor: u64,
        /// The newest sequence number.
        head: u64,
    },
    /// Behind what the log still holds: acknowledged before, or pushed out
    /// of the replay window.
    #[error("cursor {cursor} is behind the oldest message kept ({oldest})")]
    Gone {
        /// The cursor given.
        cursor: u64,
        /// The oldest sequence number still held.
        oldest: u64,
    },
}

/// Messages read from the log.
#[derive(Debug, Default)]
pub struct Read {
    /// Each with its sequence number, oldest first.
    pub messages: Vec<(u64, Bytes)>,
    /// The sequence number of the last one (the cursor given, if none).
    pub cursor: u64,
    /// The session has ended and this read reached its last message.
    pub ended: bool,
}

#[derive(Debug)]
struct State {
    entries: VecDeque<Bytes>,
    /// Sequence number of `entries[0]`; numbers start at 1.
    first: u64,
    /// Everything up to here was taken by the client (acknowledged by a
    /// poll, or written to an SSE stream).
    taken: u64,
    /// Payload bytes held.
    bytes: usize,
    /// Bytes of the messages not yet taken.
    untaken_bytes: usize,
    /// Messages the client may leave untaken before delivery waits; also the
    /// replay window kept after they are taken.
    capacity: usize,
    /// Bytes the untaken messages may reach before delivery waits.
    max_bytes: usize,
    /// The delivery task, while it waits for room.
    writer: Option<Waker>,
    /// The session ended: nothing more will be appended.
    closed: bool,
    /// A read reached the last message of the closed log.
    drained: bool,
}

impl State {
    fn head(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    fn untaken(&self) -> usize {
        (self.head() - self.taken) as usize
    }

    fn has_room(&self) -> bool {
        self.untaken() < self.capacity && self.untaken_bytes < self.max_bytes
    }

    fn append(&mut self, bytes: Bytes) {
        self.bytes += bytes.len();
        self.untaken_bytes += bytes.len();
        self.entries.push_back(bytes);
    }

    /// Forgets the taken messages beyond `keep` of them.
    fn trim(&mut self, keep: usize) {
        while self.first <= self.taken {
            let taken = (self.taken - self.first + 1) as usize;
            if taken <= keep && self.bytes <= self.max_bytes {
                break;
            }
            match self.entries.pop_front() {
                Some(entry) => self.bytes -= entry.len(),
                None => break,
            }
            self.first += 1;
        }
        if self.entries.is_empty() && self.entries.capacity() > 0 {
            // An idle session holds no buffer.
            self.entries = VecDeque::new();
        }
    }

    fn check(&self, cursor: u64) -> Result<(), CursorError> {
        let head = self.head();
        if cursor > head {
            return Err(CursorError::Future { cursor, head });
        }
        if cursor + 1 < self.first {
            return Err(CursorError::Gone {
                cursor,
                oldest: self.first,
            });
        }
        Ok(())
    }

    /// Marks everything up to `cursor` taken.
    fn take_up_to(&mut self, cursor: u64) {
        if cursor <= self.taken {
            return;
        }
        let start = (self.taken + 1 - self.first) as usize;
        let end = (cursor + 1 - self.first) as usize;
        let released: usize = self.entries.range(start..end).map(Bytes::len).sum();
        self.untaken_bytes -= released;
        self.taken = cursor;
    }
}

/// A session's delivered messages, numbered, until the client has them.
#[derive(Debug)]
pub struct EventLog {
    state: Mutex<State>,
    /// Readers (an SSE stream, a held poll) wait here for new messages.
    appended: Notify,
}

impl EventLog {
    /// A log that lets the client leave `capacity` messages or `max_bytes`
    /// untaken before delivery waits.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                entries: VecDeque::new(),
                first: 1,
                taken: 0,
                bytes: 0,
                untaken_bytes: 0,
                capacity: capacity.max(1),
                max_bytes: max_bytes.max(1),
                writer: None,
                closed: false,
                drained: false,
            }),
            appended: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("event log lock")
    }

    /// Reads what follows `cursor`, up to `max_bytes` (one message always).
    /// With `acknowledge`, the cursor says the client holds everything up to
    /// it (a poll): that is forgotten. Without, what is read counts as taken
    /// but stays for a replay (an SSE stream).
    pub fn read(
        &self,
        cursor: u64,
        max_bytes: usize,
        acknowledge: bool,
    ) -> Result<Read, CursorError> {
        let (read, writer) = {
            let mut state = self.state();
            state.check(cursor)?;
            let was_full = !state.has_room();
            if acknowledge {
                state.take_up_to(cursor);
                state.trim(0);
            }
            let mut read = Read {
                messages: Vec::new(),
                cursor,
                ended: false,
            };
            let mut bytes = 0;
            let start = (cursor + 1 - state.first) as usize;
            for (at, entry) in state.entries.iter().enumerate().skip(start) {
                if !read.messages.is_empty() && bytes + entry.len() > max_bytes {
                    break;
                }
                bytes += entry.len();
                read.cursor = state.first + at as u64;
                read.messages.push((read.cursor, entry.clone()));
            }
            if !acknowledge {
                state.take_up_to(read.cursor);
                let keep = state.capacity;
                state.trim(keep);
            }
            read.ended = state.closed && read.cursor == state.head();
            state.drained |= read.ended;
            let writer = (was_full && state.has_room())
                .then(|| state.writer.take())
                .flatten();
            (read, writer)
        };
        if let Some(writer) = writer {
            writer.wake();
        }
        if read.ended {
            self.appended.notify_waiters();
        }
        Ok(read)
    }

    /// Waits until a message follows `cursor` or the log closes.
    pub async fn wait_after(&self, cursor: u64) {
        loop {
            let appended = self.appended.notified();
            {
                let state = self.state();
                if state.closed || state.head() > cursor {
                    return;
                }
            }
            appended.await;
        }
    }

    /// Whether reading can resume after `cursor`.
    pub fn check(&self, cursor: u64) -> Result<(), CursorError> {
        self.state().check(cursor)
    }

    /// Waits until a read has reached the last message of the closed log.
    pub async fn drained(&self) {
        loop {
            let appended = self.appended.notified();
            if self.state().drained {
                return;
            }
            appended.await;
        }
    }

    /// The newest sequence number (0 before the first message).
    pub fn head(&self) -> u64 {
        self.state().head()
    }

    /// Appends the session's last message (its `disconnect` push), whatever
    /// the room, and closes the log.
    pub fn close_with(&self, last: Option<Bytes>) {
        let writer = {
            let mut state = self.state();
            if state.closed {
                return;
            }
            if let Some(last) = last {
                state.append(last);
            }
            state.closed = true;
            state.writer.take()
        };
        if let Some(writer) = writer {
            writer.wake();
        }
        self.appended.notify_waiters();
    }

    /// Whether the session has ended (its last message may still be unread).
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }
}

/// Delivery into a session's [`EventLog`].
#[derive(Debug)]
pub struct LogSink(pub Arc<EventLog>);

/// One burst into the log: messages are appended as they come (so what
/// delivery counts as sent is in the log before any goodbye), and readers
/// are woken once, at the flush.
#[derive(Debug)]
pub struct LogBurst<'a> {
    log: &'a EventLog,
}

impl Sink for LogSink {
    type Burst<'a>
        = LogBurst<'a>
    where
        Self: 'a;

    async fn burst(&self) -> LogBurst<'_> {
        LogBurst { log: &self.0 }
    }
}

impl Burst for LogBurst<'_> {
    fn has_room_for(&self, _len: usize) -> bool {
        self.log.state().has_room()
    }

    fn put(&mut self, payload: Payload<'_>) -> Result<(), SinkClosed> {
        let mut state = self.log.state();
        if state.closed {
            return Err(SinkClosed);
        }
        state.append(payload.bytes());
        Ok(())
    }

    /// Under one lock for the whole feed.
    fn put_feed(&mut self, feed: &mut Feed<'_>) -> Result<Progress, SinkClosed> {
        let mut state = self.log.state();
        if state.closed {
            return Err(SinkClosed);
        }
        Ok(feed.each(|payload| {
            if !state.has_room() {
                return false;
            }
            state.append(payload.bytes());
            true
        }))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkClosed>> {
        self.log.appended.notify_waiters();
        let mut state = self.log.state();
        if state.closed {
            return Poll::Ready(Err(SinkClosed));
        }
        if state.has_room() {
            return Poll::Ready(Ok(()));
        }
        state.writer = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether::PreparedMessage;

    fn log_of(n: u64, capacity: usize) -> EventLog {
        let log = EventLog::new(capacity, 1 << 20);
        for i in 1..=n {
            let mut burst = LogBurst { log: &log };
            burst
                .put(Payload::new(&PreparedMessage::text(i.to_string())))
                .unwrap();
        }
        log
    }

    fn numbers(read: &Read) -> Vec<u64> {
        read.messages.iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn a_poll_answer_lost_on_the_way_is_sent_again_by_cursor() {
        let log = log_of(3, 10);
        let first = log.read(0, 1 << 20, true).unwrap();
        assert_eq!((numbers(&first), first.cursor), (vec![1, 2, 3], 3));
        // The answer never arrived: the client asks from 0 again.
        let again = log.read(0, 1 << 20, true).unwrap();
        assert_eq!(numbers(&again), vec![1, 2, 3]);
        // Acknowledged: forgotten, and going back is refused.
        let after = log.read(3, 1 << 20, true).unwrap();
        assert!(after.messages.is_empty());
        assert_eq!(
            log.read(1, 1 << 20, true).unwrap_err(),
            CursorError::Gone {
                cursor: 1,
                oldest: 4
            }
        );
        assert_eq!(
            log.read(9, 1 << 20, true).unwrap_err(),
            CursorError::Future { cursor: 9, head: 3 }
        );
    }

    #[test]
    fn a_stream_keeps_a_replay_window_of_what_it_wrote() {
        let log = log_of(5, 3);
        let written = log.read(0, 1 << 20, false).unwrap();
        assert_eq!(numbers(&written), vec![1, 2, 3, 4, 5]);
        // The last three stay for a Last-Event-ID; older ones are gone.
        assert_eq!(
            numbers(&log.read(2, 1 << 20, false).unwrap()),
            vec![3, 4, 5]
        );
        assert!(matches!(
            log.read(0, 1 << 20, false),
            Err(CursorError::Gone { .. })
        ));
    }

    #[test]
    fn delivery_waits_while_the_client_has_not_taken_capacity_messages() {
        let log = log_of(2, 2);
        assert!(!LogBurst { log: &log }.has_room_for(1));
        log.read(1, 1 << 20, true).unwrap();
        assert!(LogBurst { log: &log }.has_room_for(1));
    }

    #[test]
    fn reads_are_bounded_in_bytes_but_always_carry_one_message() {
        let log = log_of(20, 100);
        let read = log.read(0, 5, true).unwrap();
        assert_eq!(numbers(&read), vec![1, 2, 3, 4, 5]);
        let log = EventLog::new(10, 1 << 20);
        LogBurst { log: &log }
            .put(Payload::new(&PreparedMessage::text("x".repeat(100))))
            .unwrap();
        assert_eq!(log.read(0, 10, true).unwrap().messages.len(), 1);
    }

    #[test]
    fn the_last_message_goes_in_whatever_the_room_and_ends_the_log() {
        let log = log_of(2, 2);
        log.close_with(Some(Bytes::from_static(b"bye")));
        let read = log.read(0, 1 << 20, true).unwrap();
        assert_eq!(numbers(&read), vec![1, 2, 3]);
        assert!(read.ended);
        assert!(LogBurst { log: &log }
            .put(Payload::new(&PreparedMessage::text("late")))
            .is_err());
    }
}

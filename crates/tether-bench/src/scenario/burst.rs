//! Timing messages that arrive in bursts without reading the clock for each:
//! at a million messages a second, reading it per message was a sixth of the
//! load generator's time.
//!
//! Messages decoded one after another without the task waiting in between
//! arrived together, so they share one reading, taken when the first of them
//! was handed out. The reading is renewed after the task waited, after
//! [`MAX_REUSE`] messages, or when a message carries a send time later than
//! it; a shared reading is thus late by at most the time spent on the few
//! messages before it (microseconds), never early.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

/// Messages in a row that may share one clock reading.
pub(crate) const MAX_REUSE: u32 = 16;

/// A future's output and whether the task had to wait for it (it returned
/// `Pending` first) rather than finding it at hand.
pub(crate) async fn noting_wait<F: Future>(future: F) -> (F::Output, bool) {
    let mut future = pin!(future);
    let mut waited = false;
    poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready((output, waited)),
        Poll::Pending => {
            waited = true;
            Poll::Pending
        }
    })
    .await
}

/// The clock reading the messages of one burst share.
#[derive(Debug)]
pub(crate) struct BurstClock {
    now: Instant,
    uses: u32,
}

impl BurstClock {
    /// A clock whose first use reads the time.
    pub(crate) fn new() -> Self {
        Self {
            now: Instant::now(),
            uses: MAX_REUSE,
        }
    }

    /// Takes a reading the caller made anyway (when sending a burst, say).
    pub(crate) fn set(&mut self, now: Instant) {
        self.now = now;
        self.uses = 0;
    }

    /// Makes the next use read the clock (the task did something else, which
    /// may have taken a while, since the last reading).
    pub(crate) fn expire(&mut self) {
        self.uses = MAX_REUSE;
    }

    /// When a message that was just handed out arrived: `waited` says whether
    /// the task waited for it, `not_before` is a time it cannot precede (its
    /// send time).
    pub(crate) fn arrival(&mut self, waited: bool, not_before: Instant) -> Instant {
        if waited || self.uses >= MAX_REUSE || self.now < not_before {
            self.now = Instant::now();
            self.uses = 0;
        } else {
            self.uses += 1;
        }
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shares_a_reading_within_a_burst_and_renews_it_after_a_wait() {
        let mut clock = BurstClock::new();
        let start = Instant::now();
        let first = clock.arrival(false, start);
        assert!(first >= start, "the first use reads the clock");
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.arrival(false, start), first, "same burst");
        let renewed = clock.arrival(true, start);
        assert!(renewed >= first + Duration::from_millis(2), "after a wait");
        // A message sent after the reading cannot share it.
        std::thread::sleep(Duration::from_millis(2));
        let later = Instant::now();
        assert!(clock.arrival(false, later) >= later);
        // Nor can more than MAX_REUSE in a row.
        let reading = clock.arrival(true, start);
        for _ in 0..MAX_REUSE {
            assert_eq!(clock.arrival(false, start), reading);
        }
        std::thread::sleep(Duration::from_millis(1));
        assert!(clock.arrival(false, start) > reading);
        clock.expire();
        std::thread::sleep(Duration::from_millis(1));
        let expired = clock.arrival(false, start);
        assert!(expired > reading + Duration::from_millis(1));
    }

    #[tokio::test]
    async fn notes_whether_a_future_had_to_wait() {
        assert_eq!(noting_wait(async { 7 }).await, (7, false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiting = tokio::spawn(noting_wait(rx));
        tokio::task::yield_now().await;
        tx.send(8).unwrap();
        let (value, waited) = waiting.await.unwrap();
        assert_eq!((value.unwrap(), waited), (8, true));
    }
}

//! A session's alarm: what, from outside its task, tells a session to end (its
//! queue overflowed, the API kicked it, the server is shutting down), and the
//! one waker that hears it.
//!
//! One small object per session in place of a notifier per reason: the queue
//! trips it, the registry kicks and stops through it, and the session's task
//! polls it beside its socket, without holding a future for each.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Why an alarm went off; several reasons may be raised at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Raised(u8);

impl Raised {
    const OVERFLOW: u8 = 1;
    const KICKED: u8 = 2;
    const STOPPING: u8 = 4;
    /// Not a reason to end: time for a heartbeat (see [`Alarm::take_beat`]).
    const BEAT: u8 = 8;
    const RESET: u8 = 16;

    /// A queue on a `disconnect`-policy channel overflowed, or a subscriber
    /// lagged: the session is a slow consumer.
    pub fn overflow(self) -> bool {
        self.0 & Self::OVERFLOW != 0
    }

    /// Disconnected through the API.
    pub fn kicked(self) -> bool {
        self.0 & Self::KICKED != 0
    }

    /// The server is shutting down.
    pub fn stopping(self) -> bool {
        self.0 & Self::STOPPING != 0
    }

    /// A subscribed channel's history was lost: the client must resubscribe.
    pub fn reset(self) -> bool {
        self.0 & Self::RESET != 0
    }
}

/// A set of reasons to end one session, with the waker of the task that
/// waits for them (one waiter: the session's own task).
#[derive(Debug, Default)]
pub struct Alarm {
    raised: AtomicU8,
    waker: AtomicWaker,
}

impl Alarm {
    fn raise(&self, reason: u8) {
        if self.raised.fetch_or(reason, Ordering::AcqRel) & reason == 0 {
            self.waker.wake();
        }
    }

    /// The session's queue overflowed (or a subscriber lagged) on a
    /// `disconnect` channel.
    pub fn trip(&self) {
        self.raise(Raised::OVERFLOW);
    }

    /// The API asked for the session to be disconnected.
    pub fn kick(&self) {
        self.raise(Raised::KICKED);
    }

    /// A subscribed channel's history was lost (see [`Raised::reset`]).
    pub fn reset(&self) {
        self.raise(Raised::RESET);
    }

    /// The server began shutting down.
    pub fn stop(&self) {
        self.raise(Raised::STOPPING);
    }

    /// Time for the session's heartbeat: wakes its task, which takes the
    /// beat with [`Alarm::take_beat`]. One server-wide timer beats every
    /// session in turn, rather than a timer per session.
    pub fn beat(&self) {
        self.raise(Raised::BEAT);
    }

    /// Whether a beat came since the last call (and clears it).
    pub fn take_beat(&self) -> bool {
        // A look first: the connection asks at every wake-up, and most have
        // nothing to do with its heartbeat.
        self.raised.load(Ordering::Acquire) & Raised::BEAT != 0
            && self.raised.fetch_and(!Raised::BEAT, Ordering::AcqRel) & Raised::BEAT != 0
    }

    /// The reasons to end raised so far (nothing: all false).
    pub fn raised(&self) -> Raised {
        Raised(self.raised.load(Ordering::Acquire) & !Raised::BEAT)
    }

    /// Ready once a reason to end is raised; registers `cx`'s waker
    /// otherwise (which a beat wakes too).
    pub fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<Raised> {
        let raised = self.raised();
        if raised != Raised::default() {
            return Poll::Ready(raised);
        }
        self.waker.register(cx.waker());
        // Raised between the look and the registration: the wake went to the
        // previous waker, so look again.
        match self.raised() {
            Raised(0) => Poll::Pending,
            raised => Poll::Ready(raised),
        }
    }

    /// Waits until a reason to end is raised.
    pub async fn wait(&self) -> Raised {
        poll_fn(|cx| self.poll_raised(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn reasons_accumulate() {
        let alarm = Alarm::default();
        assert_eq!(alarm.raised(), Raised::default());
        alarm.kick();
        alarm.trip();
        let raised = alarm.raised();
        assert!(raised.kicked() && raised.overflow() && !raised.stopping());
    }

    #[test]
    fn beats_are_taken_once_and_end_nothing() {
        let alarm = Alarm::default();
        assert!(!alarm.take_beat());
        alarm.beat();
        assert_eq!(alarm.raised(), Raised::default());
        assert!(alarm.take_beat());
        assert!(!alarm.take_beat());
    }

    #[tokio::test]
    async fn wakes_its_waiter() {
        let alarm = Arc::new(Alarm::default());
        let waiter = tokio::spawn({
            let alarm = alarm.clone();
            async move { alarm.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        alarm.stop();
        let raised = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert!(raised.stopping());
    }
}

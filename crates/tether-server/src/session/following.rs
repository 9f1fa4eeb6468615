//! The channel streams a session follows: where it is in each, what its
//! subscribe reply already carried, and how a sink takes what each holds
//! (a [`Feed`]).

use std::sync::Arc;

use tether::broadcast::Queued as Progress;
use tether::{Batch, SplitStream};

use super::sink::Payload;
use crate::config::SlowConsumerPolicy;
use crate::hub::StreamSubscription;

/// A channel stream the session sends.
#[derive(Debug)]
pub(super) struct Following {
    pub(super) channel: Arc<str>,
    pub(super) epoch: Arc<str>,
    pub(super) subscription: StreamSubscription,
    pub(super) policy: SlowConsumerPolicy,
    /// The offset of the newest publication sent since positions were last
    /// recorded (0: none; offsets start at 1, and a `u64` keeps the entry
    /// within 80 bytes).
    pub(super) reached: u64,
    /// The stream is gone (its channel was dropped): stop following it.
    pub(super) closed: bool,
    /// Publications up to this offset reached the client in the subscribe
    /// reply: passed over in the stream until one beyond it is sent (0: none).
    pub(super) after: u64,
}

/// Messages and bytes a burst sent, for the metrics.
#[derive(Debug, Default)]
pub(super) struct Sent {
    pub(super) messages: u64,
    pub(super) bytes: u64,
}

impl Sent {
    pub(super) fn add(&mut self, len: usize) {
        self.messages += 1;
        self.bytes += len as u64;
    }
}

impl Following {
    /// What the stream holds below `until`, counted into `sent` as a sink
    /// takes it.
    pub(super) fn feed<'a>(&'a mut self, until: u64, sent: &'a mut Sent) -> Feed<'a> {
        Feed {
            subscription: &mut self.subscription,
            until,
            after: self.after,
            reached: &mut self.reached,
            sent,
        }
    }

    /// Once a publication past the reply's is sent, nothing further can be
    /// a copy of one the reply carried: offsets only grow.
    pub(super) fn past_the_reply(&mut self) {
        if self.reached > self.after {
            self.after = 0;
        }
    }
}

/// What one channel's stream holds for a session, as a sink takes it: the
/// publications and presence events below a stop, less those the subscribe
/// reply carried; each one taken is counted as sent and noted as the
/// position the client reached.
#[derive(Debug)]
pub struct Feed<'a> {
    subscription: &'a mut StreamSubscription,
    until: u64,
    after: u64,
    reached: &'a mut u64,
    sent: &'a mut Sent,
}

/// Whether the stream's message tagged `offset` is new to a client whose
/// reply carried the publications up to `after`.
fn fresh(after: u64, offset: &Option<u64>) -> bool {
    !offset.is_some_and(|offset| offset <= after)
}

impl Feed<'_> {
    /// Hands each message in turn to `put`, until it answers false (the sink
    /// is full: that one stays for the next burst) or none is left.
    pub fn each(&mut self, mut put: impl FnMut(Payload<'_>) -> bool) -> Progress {
        let (sent, reached, after) = (&mut *self.sent, &mut *self.reached, self.after);
        self.subscription.take_each(
            self.until,
            |offset| fresh(after, offset),
            |message, offset| {
                let payload = Payload::new(message);
                if !put(payload) {
                    return false;
                }
                sent.add(payload.len());
                if let Some(offset) = *offset {
                    *reached = offset;
                }
                true
            },
        )
    }

    /// Copies the messages into a WebSocket's `batch` as the stream framed
    /// them, once for every subscriber, until the batch reaches its
    /// high-water mark or none is left.
    pub fn frames_into<S: SplitStream>(
        &mut self,
        batch: &mut Batch<'_, S>,
    ) -> tether::Result<Progress> {
        let (sent, reached, after) = (&mut *self.sent, &mut *self.reached, self.after);
        let on_each = |len, offset: &Option<u64>| {
            sent.add(len);
            if let Some(offset) = *offset {
                *reached = offset;
            }
        };
        if after == 0 {
            // The common case, with nothing to look at per message.
            self.subscription
                .queue_filtered_into(batch, self.until, |_| true, on_each)
        } else {
            self.subscription.queue_filtered_into(
                batch,
                self.until,
                |offset| fresh(after, offset),
                on_each,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every session that follows a channel holds one of these in its own
    /// allocation: within 80 bytes it takes the allocator's 80-byte bin, not
    /// its 96-byte one.
    #[test]
    fn a_followed_stream_fits_80_bytes() {
        let size = std::mem::size_of::<super::Following>();
        assert!(size <= 80, "{size} bytes");
    }
}

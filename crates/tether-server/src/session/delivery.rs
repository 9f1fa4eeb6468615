//! A session's delivery task: the replies (and conflated publications) from
//! its queue, and the publications of every channel it follows straight from
//! the channel's stream, in order, into its transport's [`Sink`] with one
//! flush per burst. Here live the ordering rules (a stream starts right after
//! its subscribe reply and stops right before its unsubscribe reply), the
//! recorded positions a slow consumer resumes from, and the lag policy; the
//! transports only carry what it writes.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use tether::broadcast::{Ended, Queued as Progress};

use super::following::{Following, Sent};
use super::outbox::{Inbox, Queued};
use super::sink::{Burst, Payload, Sink, SinkClosed};
use crate::alarm::Alarm;
use crate::config::SlowConsumerPolicy;
use crate::hub::{Follow, Position};
use crate::metrics::Metrics;

/// Why delivery stopped early.
enum Stop {
    /// The sink is gone.
    Sink,
    /// A subscriber on a `disconnect` channel lagged: the overflow signal is up.
    Overflow,
}

impl From<SinkClosed> for Stop {
    fn from(_: SinkClosed) -> Self {
        Stop::Sink
    }
}

/// A session's delivery: its queue, the streams it follows, and where it
/// writes. [`Delivery::run`] drives it as a task of its own; a transport that
/// drives its connection by hand polls [`Delivery::poll_due`] and runs
/// [`Delivery::send_burst`] when it is ready.
#[derive(Debug)]
pub struct Delivery<K> {
    /// Where it writes.
    sink: K,
    /// For the messages and bytes sent, and the drops.
    metrics: Arc<Metrics>,
    /// The session's queue: replies, stream starts and stops.
    queue: Inbox,
    /// The channel streams it sends.
    following: Vec<Following>,
}

impl<K: Sink> Delivery<K> {
    /// Delivery of `queue` into `sink`, recording in the queue the positions
    /// it reaches, and tripping the queue's alarm when a `disconnect`-policy
    /// subscriber lags.
    pub fn new(sink: K, metrics: Arc<Metrics>, queue: Inbox) -> Self {
        Self {
            sink,
            metrics,
            queue,
            following: Vec::new(),
        }
    }

    /// Where it writes.
    pub fn sink(&self) -> &K {
        &self.sink
    }

    /// Runs until the queue closes (the session ended), the sink fails, or a
    /// subscriber lags on a `disconnect` channel (the alarm is tripped and
    /// the session says goodbye).
    pub async fn run(mut self) {
        while poll_fn(|cx| self.poll_due(cx)).await {
            if !self.send_burst().await {
                return;
            }
        }
    }

    /// Ready with `true` when there is something to send, with `false` when
    /// the queue closed (the session ended) and delivery is over; registers
    /// `cx` with every source otherwise.
    pub fn poll_due(&mut self, cx: &mut std::task::Context<'_>) -> Poll<bool> {
        // Poll every source, so each registers this task for wake-up.
        let mut ready = false;
        for follow in &mut self.following {
            match follow.subscription.poll_messages(cx) {
                Poll::Ready(Err(Ended::Closed)) => follow.closed = true,
                Poll::Ready(_) => ready = true,
                Poll::Pending => {}
            }
        }
        // A closed queue (the session ended) stops delivery, even with stream
        // frames left: the client is going away.
        match self.queue.poll_ready(cx) {
            Poll::Ready(open) => Poll::Ready(open),
            Poll::Pending if ready => Poll::Ready(true),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Sends one burst, once [`Delivery::poll_due`] said there is one: false
    /// when delivery is over (the sink failed, or a subscriber lagged on a
    /// `disconnect` channel and the alarm is tripped).
    pub async fn send_burst(&mut self) -> bool {
        self.following.retain(|f| !f.closed);
        // Scratch for this burst only: between bursts a connection holds no
        // buffers (most are idle, and a stream's publications need neither).
        let mut burst = Vec::new();
        // Positions of queued frames (subscribe replies, conflated
        // publications) in this burst, recorded with the streams'.
        let mut replied: Vec<Arc<Position>> = Vec::new();
        let Self {
            sink,
            metrics,
            queue,
            following,
        } = self;
        // The queue's own alarm, held apart from it for this burst.
        let alarm = queue.alarm().clone();
        let parts = Parts {
            metrics,
            alarm: &alarm,
        };
        let mut sent = Sent::default();
        let mut batch = sink.burst().await;
        let result = parts
            .burst(
                &mut batch,
                queue,
                following,
                &mut burst,
                &mut replied,
                &mut sent,
            )
            .await;
        // Noted once the frames are in the sink: whatever happens next, they
        // go out before a disconnect push does.
        record(queue, &mut replied, following);
        metrics.messages_out.inc_by(sent.messages);
        metrics.bytes_out.inc_by(sent.bytes);
        let flushed = match result {
            Ok(()) => parts.flush(&mut batch, following).await,
            Err(stop) => Err(stop),
        };
        match flushed {
            Ok(()) => true,
            // The session says goodbye (and drops delivery if the socket
            // stays full).
            Err(Stop::Overflow) => {
                let _ = poll_fn(|cx| batch.poll_flush(cx)).await;
                false
            }
            Err(Stop::Sink) => false,
        }
    }
}

/// What a burst needs of its delivery besides the sink, the queue and the
/// streams (borrowed apart from them).
struct Parts<'a> {
    metrics: &'a Metrics,
    alarm: &'a Alarm,
}

impl Parts<'_> {
    /// One burst: what the followed streams hold, then what the queue held
    /// when the burst began (where a subscribe reply starts a stream right
    /// after itself, and an unsubscribe reply or a bare stop ends one right
    /// before itself).
    async fn burst<B: Burst>(
        &self,
        batch: &mut B,
        queue: &mut Inbox,
        following: &mut Vec<Following>,
        burst: &mut Vec<Queued>,
        replied: &mut Vec<Arc<Position>>,
        sent: &mut Sent,
    ) -> Result<(), Stop> {
        // The queue first: a stream is sent no further than a stop queued for
        // it, even when the stream already holds what came after (the
        // session's own leave, say).
        queue.take_all(burst);
        let stops: Vec<(usize, Arc<str>, u64)> = burst
            .iter()
            .enumerate()
            .filter_map(|(at, queued)| match &queued.follow {
                Some(Follow::Stop { channel, until }) => Some((at, channel.clone(), *until)),
                _ => None,
            })
            .collect();
        let limit = |from: usize, channel: &str| {
            stops
                .iter()
                .find(|(at, stopped, _)| *at >= from && **stopped == *channel)
                .map_or(u64::MAX, |(_, _, until)| *until)
        };
        for follow in following.iter_mut() {
            let until = limit(0, &follow.channel);
            self.forward(follow, batch, until, sent).await?;
        }
        for (
            at,
            Queued {
                frame,
                position,
                follow,
            },
        ) in burst.drain(..).enumerate()
        {
            if let Some(Follow::Stop { channel, until }) = &follow {
                if let Some(at) = following.iter().position(|f| f.channel == *channel) {
                    let mut stopped = following.swap_remove(at);
                    // Whatever it missed is moot now that it left the
                    // channel: no disconnect.
                    stopped.policy = SlowConsumerPolicy::DropOldest;
                    self.forward(&mut stopped, batch, *until, sent).await?;
                }
            }
            if let Some(frame) = frame {
                if !batch.has_room_for(frame.message().len()) {
                    self.flush(batch, following).await?;
                }
                batch.put(Payload::new(&frame))?;
                sent.add(frame.message().len());
            }
            if let Some(position) = position {
                replied.push(position);
            }
            if let Some(Follow::Start {
                channel,
                epoch,
                subscription,
                policy,
                after,
            }) = follow
            {
                let until = limit(at + 1, &channel);
                following.retain(|f| f.channel != channel);
                // Most connections follow one channel: room for exactly that.
                following.reserve_exact(1);
                following.push(Following {
                    channel,
                    epoch,
                    subscription,
                    policy,
                    reached: 0,
                    closed: false,
                    after,
                });
                let started = following.last_mut().expect("just pushed");
                self.forward(started, batch, until, sent).await?;
            }
        }
        Ok(())
    }

    /// Queues what `follow`'s stream holds below `until`, flushing whenever
    /// the batch reaches the high-water mark. A lag is handled by the channel's
    /// policy: `disconnect` raises the overflow signal; the others skip to the
    /// oldest frame the stream still holds.
    async fn forward<B: Burst>(
        &self,
        follow: &mut Following,
        batch: &mut B,
        until: u64,
        sent: &mut Sent,
    ) -> Result<(), Stop> {
        loop {
            let progress = batch.put_feed(&mut follow.feed(until, sent))?;
            follow.past_the_reply();
            match progress {
                Progress::CaughtUp | Progress::Ended(Ended::Closed) => return Ok(()),
                Progress::Full => self.flush(batch, std::slice::from_mut(follow)).await?,
                Progress::Ended(Ended::Lagged { missed }) => {
                    self.metrics.queue_drops.inc_by(missed);
                    if follow.policy == SlowConsumerPolicy::Disconnect {
                        self.alarm.trip();
                        return Err(Stop::Overflow);
                    }
                    follow.subscription.skip_lagged();
                }
            }
        }
    }

    /// Flushes `batch`. While the sink is full, a stream in `watched` on a
    /// `disconnect` channel whose subscriber lagged ends the wait: the overflow
    /// signal goes up and the session disconnects the slow consumer, instead of
    /// the lag going unnoticed until the client reads again.
    async fn flush<B: Burst>(&self, batch: &mut B, watched: &mut [Following]) -> Result<(), Stop> {
        poll_fn(|cx| {
            if let Poll::Ready(result) = batch.poll_flush(cx) {
                return Poll::Ready(result.map_err(Stop::from));
            }
            for follow in watched.iter_mut() {
                if follow.policy != SlowConsumerPolicy::Disconnect {
                    continue;
                }
                if let Poll::Ready(missed) = follow.subscription.poll_lag(cx) {
                    self.metrics.queue_drops.inc_by(missed);
                    self.alarm.trip();
                    return Poll::Ready(Err(Stop::Overflow));
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// Records in `queue` the positions reached in this burst, for a slow
/// consumer's disconnect push.
fn record(queue: &Inbox, replied: &mut Vec<Arc<Position>>, following: &mut [Following]) {
    let reached = following.iter().any(|f| f.reached > 0);
    if replied.is_empty() && !reached {
        return;
    }
    queue.record(|written| {
        for position in replied.drain(..) {
            written.set(&position.channel, position.offset, &position.epoch);
        }
        for follow in following.iter_mut() {
            let offset = std::mem::take(&mut follow.reached);
            if offset > 0 {
                written.set(&follow.channel, offset, &follow.epoch);
            }
        }
    });
}

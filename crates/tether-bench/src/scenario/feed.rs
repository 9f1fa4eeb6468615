//! What fan-out and churn share: a publisher, subscribers that check what they
//! receive, and the two ways of talking to a server about it (the bare
//! `/broadcast` contract of `tether echo`, or `tether serve`'s JSON protocol).
//!
//! Every publication carries its send time and a sequence number at the start
//! of its text (`TTTTTTTTTTTTTTTTTTTT SSSSSSSSSS xxx…`), so a subscriber measures
//! publish-to-receive latency and notices any gap.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_protocol::{Command, Reply, Request, Subscribed};

use tether::Message;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::burst::{noting_wait, BurstClock};
use crate::dial::{Connection, Dialer};
use crate::error::{BenchError, Result};
use crate::latency::{Latency, SharedLatency};
use crate::meter::{Budget, Counter};
use crate::options::{Options, DEFAULT_PUBLISH_RATE};

/// Bytes of the timestamp and sequence header: 20 digits, space, 10 digits, space.
pub(crate) const HEADER: usize = 32;

/// How the scenario talks to the server.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// `tether echo`'s `/broadcast`: every text goes to everyone on the path.
    Bare,
    /// `tether serve`: subscribe to and publish on a channel.
    Tether {
        /// The channel.
        channel: String,
    },
}

impl Mode {
    pub(crate) fn new(dialer: &Dialer, options: &Options) -> Self {
        if dialer.path() == "/broadcast" {
            Mode::Bare
        } else {
            Mode::Tether {
                channel: options.channel.clone(),
            }
        }
    }

    /// Joins the feed on a fresh connection.
    pub(crate) async fn subscribe(&self, ws: &mut Connection, timeout: Duration) -> Result<()> {
        let Mode::Tether { channel } = self else {
            return Ok(());
        };
        let request = Request::new(
            1,
            Command::Subscribe {
                channel: channel.clone(),
                recover: None,
            },
        );
        ws.send(request.to_json()).await?;
        let reply = async {
            loop {
                match ws.recv().await? {
                    // Pushes (join, leave) may come first; the reply has id 1.
                    Some(Message::Text(text)) if text.starts_with("{\"id\":") => {
                        let reply: Reply<Subscribed> = serde_json::from_str(&text)
                            .map_err(|e| BenchError::Protocol(e.to_string()))?;
                        if reply.id == 1 {
                            return match reply.into_result() {
                                Err(error) => Err(BenchError::Protocol(format!(
                                    "subscribe to {channel:?} refused: {error}"
                                ))),
                                Ok(_) => Ok(()),
                            };
                        }
                    }
                    Some(_) => {}
                    None => return Err(BenchError::Protocol("closed while subscribing".into())),
                }
            }
        };
        tokio::time::timeout(timeout, reply)
            .await
            .map_err(|_| BenchError::Protocol("no subscribe reply in time".into()))?
    }

    /// The text frame that publishes `body`.
    fn publish_frame(&self, seq: u64, body: &str) -> String {
        match self {
            Mode::Bare => body.to_owned(),
            Mode::Tether { channel } => {
                let data = serde_json::value::to_raw_value(body).expect("a string serialises");
                let command = Command::Publish {
                    channel: channel.clone(),
                    data,
                    idempotency_key: None,
                    key: None,
                };
                Request::new(seq + 2, command).to_json()
            }
        }
    }

    /// The publication header in a received frame: (sent at, sequence).
    fn parse(&self, frame: &[u8]) -> Option<(u64, u64)> {
        // Every delivery passes through here, so the load generator's speed
        // (which bounds what a fan-out run can show) depends on it: a SIMD
        // search and digits read in place.
        let body = match self {
            Mode::Bare => frame,
            Mode::Tether { .. } => {
                const DATA: &[u8] = b"\"data\":\"";
                let at = memchr::memmem::find(frame, DATA)?;
                &frame[at + DATA.len()..]
            }
        };
        Some((digits(body.get(0..20)?)?, digits(body.get(21..31)?)?))
    }
}

/// The number `text` spells in ASCII decimal digits (`None` for anything else
/// or an overflow).
fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A publication body of `size` bytes (at least the header).
fn body(origin: Instant, seq: u64, size: usize) -> String {
    let sent = origin.elapsed().as_nanos() as u64;
    let mut text = format!("{sent:020} {seq:010} ");
    text.push_str(&"x".repeat(size.saturating_sub(HEADER)));
    text
}

/// What one subscriber saw (its latencies go to the feed's histogram).
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) count: u64,
    pub(crate) gaps: u64,
    pub(crate) failed: bool,
}

/// What all the subscribers of a run saw together.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) latency: Latency,
    pub(crate) received: u64,
    pub(crate) gaps: u64,
    pub(crate) failed: u64,
    /// The connections still open, to close politely.
    pub(crate) open: Vec<Connection>,
}

impl Totals {
    /// Waits for every subscriber task of `feed` and adds up what they saw.
    pub(crate) async fn collect(
        mut tasks: tokio::task::JoinSet<(Received, Option<Connection>)>,
        feed: &Feed,
    ) -> Self {
        let mut totals = Totals::default();
        while let Some(done) = tasks.join_next().await {
            let (seen, ws) = done.expect("subscriber task");
            totals.received += seen.count;
            totals.gaps += seen.gaps;
            totals.failed += u64::from(seen.failed);
            totals.open.extend(ws);
        }
        totals.latency = feed.latency.take();
        totals
    }
}

/// Shared by the subscribers of one run.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    pub(crate) mode: Mode,
    pub(crate) origin: Instant,
    /// Subscribers that saw the warm-up publication (sequence 0).
    pub(crate) ready: Arc<AtomicUsize>,
    /// The last sequence published, once the publisher is done.
    pub(crate) last: watch::Receiver<Option<u64>>,
    pub(crate) deliveries: Counter,
    /// Publish-to-receive latency of every subscriber.
    pub(crate) latency: SharedLatency,
    /// How long to wait for stragglers after the publisher is done.
    pub(crate) drain: Duration,
}

impl Feed {
    /// Reads publications until the last one (or until deliveries stop for
    /// `drain` once the publisher is done, or until `leave_at`, for a churning
    /// client).
    ///
    /// One timer serves the whole connection, re-armed only when the
    /// publisher finishes or a drain period ends with deliveries still coming
    /// (a timer per message was a tenth of the generator's time), and
    /// publications that arrive together share one clock reading (see
    /// [`super::burst`]).
    pub(crate) async fn receive(
        &self,
        mut ws: Connection,
        leave_at: Option<Instant>,
    ) -> (Received, Option<Connection>) {
        let mut seen = Received::default();
        let mut latency = self.latency.recorder();
        let mut clock = BurstClock::new();
        let mut last_seq = 0;
        let mut warmed = false;
        let mut done = self.last.clone();
        let mut finished = *done.borrow_and_update();
        let mut publisher_gone = false;
        let far = Instant::now() + Duration::from_secs(86_400);
        let until = |now: Instant, draining: bool| {
            let leave = leave_at.unwrap_or(far);
            if draining {
                leave.min(now + self.drain)
            } else {
                leave
            }
        };
        let mut timer = pin!(tokio::time::sleep_until(
            until(Instant::now(), finished.is_some()).into()
        ));
        // Messages received, and how many there were when the timer was armed.
        let mut messages = 0u64;
        let mut armed_at = 0u64;
        loop {
            if finished.is_some_and(|last| last_seq >= last) {
                break;
            }
            let draining = finished.is_some() || publisher_gone;
            let (message, waited) = tokio::select! {
                biased;
                received = noting_wait(ws.recv()) => received,
                changed = done.changed(), if !draining => {
                    finished = *done.borrow_and_update();
                    publisher_gone = changed.is_err();
                    armed_at = messages;
                    timer.as_mut().reset(until(Instant::now(), true).into());
                    clock.expire();
                    continue;
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if leave_at.is_some_and(|leave| now >= leave)
                        || !draining
                        || messages == armed_at
                    {
                        break;
                    }
                    // Deliveries are still coming: give them another period.
                    armed_at = messages;
                    timer.as_mut().reset(until(now, true).into());
                    clock.expire();
                    continue;
                }
            };
            messages += 1;
            let text = match message {
                Ok(Some(Message::Text(text))) => text,
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => {
                    seen.failed = true;
                    return (seen, None);
                }
            };
            let Some((sent, seq)) = self.mode.parse(text.as_bytes()) else {
                continue; // replies, join and leave pushes
            };
            if seq == 0 {
                if !warmed {
                    warmed = true;
                    self.ready.fetch_add(1, Ordering::AcqRel);
                }
                continue;
            }
            let sent = self.origin + Duration::from_nanos(sent);
            latency.record(clock.arrival(waited, sent) - sent);
            if last_seq != 0 && seq != last_seq + 1 {
                seen.gaps += 1;
            }
            last_seq = seq;
            seen.count += 1;
            self.deliveries.add(1);
        }
        (seen, Some(ws))
    }
}

/// The publishing connection: its writer, and a task draining what the server
/// sends it (acks, or its own broadcasts) so it never counts as slow.
pub(crate) struct Publisher {
    writer: tether::WsWriter<tether::MaybeTlsStream>,
    drain: tokio::task::JoinHandle<u64>,
    mode: Mode,
    origin: Instant,
    size: usize,
}

impl Publisher {
    pub(crate) async fn connect(
        dialer: &Dialer,
        mode: Mode,
        origin: Instant,
        size: usize,
    ) -> Result<Self> {
        let ws = dialer.connect().await?;
        let (mut reader, writer) = ws.split();
        let drain = tokio::spawn(async move {
            // Counts error replies (refused publishes).
            let mut refused = 0;
            while let Ok(Some(message)) = reader.recv().await {
                if let Message::Text(text) = message {
                    if text.starts_with("{\"id\"") && text.contains("\"error\"") {
                        refused += 1;
                    }
                }
            }
            refused
        });
        Ok(Self {
            writer,
            drain,
            mode,
            origin,
            size: size.max(HEADER),
        })
    }

    async fn send(&self, seq: u64) -> Result<()> {
        self.writer.send(self.frame(seq)).await?;
        Ok(())
    }

    fn frame(&self, seq: u64) -> String {
        self.mode
            .publish_frame(seq, &body(self.origin, seq, self.size))
    }

    /// Publishes the warm-up (sequence 0) until `subscribers` have seen it.
    pub(crate) async fn warm_up(
        &self,
        ready: &AtomicUsize,
        subscribers: usize,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout.max(Duration::from_secs(5));
        let mut sent = false;
        while ready.load(Ordering::Acquire) < subscribers {
            // On the bare path a subscriber joins only after its handshake, so
            // repeat the warm-up; on a channel one is enough.
            if !sent || matches!(self.mode, Mode::Bare) {
                self.send(0).await?;
                sent = true;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Protocol(format!(
                    "only {} of {subscribers} subscribers received the warm-up",
                    ready.load(Ordering::Acquire)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Publishes sequences 1, 2, … at `rate` per second until the budget runs
    /// out; returns the last sequence sent. An infinite rate is a burst: the
    /// publications are written back to back, a socket buffer at a time, so
    /// the server has them all in front of it at once.
    pub(crate) async fn run(&self, rate: Option<f64>, budget: &Budget) -> Result<u64> {
        let rate = rate.unwrap_or(DEFAULT_PUBLISH_RATE);
        let mut seq = 0;
        if !rate.is_finite() {
            while budget.take() {
                seq += 1;
                // `feed` writes whenever the writer's buffer fills.
                self.writer.feed(self.frame(seq)).await?;
            }
            self.writer.flush().await?;
            return Ok(seq);
        }
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        while budget.take() {
            ticker.tick().await;
            seq += 1;
            self.send(seq).await?;
        }
        Ok(seq)
    }

    /// Closes the connection; returns how many publishes the server refused.
    pub(crate) async fn finish(self) -> u64 {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.writer.close(None)).await;
        match tokio::time::timeout(Duration::from_secs(5), self.drain).await {
            Ok(Ok(refused)) => refused,
            _ => 0,
        }
    }
}

/// A feed under way: its subscribers receiving, its publisher warmed up.
pub(crate) struct Running {
    pub(crate) feed: Feed,
    pub(crate) receivers: tokio::task::JoinSet<(Received, Option<Connection>)>,
    /// Told the last sequence once the publisher is done.
    pub(crate) finished: watch::Sender<Option<u64>>,
    pub(crate) publisher: Publisher,
}

impl Running {
    /// Opens `options.connections` subscribers, starts them receiving, and
    /// connects the publisher and warms it up: every subscriber has seen
    /// the warm-up publication when this returns.
    pub(crate) async fn start(dialer: &Arc<Dialer>, options: &Options) -> Result<Self> {
        let mode = Mode::new(dialer, options);
        let n = options.connections;
        let connections = subscribers(dialer, &mode, options, n).await?;
        let origin = Instant::now();
        let (finished, last) = watch::channel(None);
        let feed = Feed {
            mode: mode.clone(),
            origin,
            ready: Arc::new(AtomicUsize::new(0)),
            last,
            deliveries: Counter::default(),
            latency: SharedLatency::default(),
            drain: options.timeout,
        };
        let mut receivers = tokio::task::JoinSet::new();
        for ws in connections {
            let feed = feed.clone();
            receivers.spawn(async move { feed.receive(ws, None).await });
        }
        let publisher = Publisher::connect(dialer, mode, origin, options.size).await?;
        publisher.warm_up(&feed.ready, n, options.timeout).await?;
        Ok(Self {
            feed,
            receivers,
            finished,
            publisher,
        })
    }
}

/// Opens `n` subscribers, joined to the feed.
pub(crate) async fn subscribers(
    dialer: &Arc<Dialer>,
    mode: &Mode,
    options: &Options,
    n: usize,
) -> Result<Vec<Connection>> {
    let setup = crate::progress::Progress::new("subscribing", Some(n as u64), options.progress);
    let mut connections = dialer.connect_many(n, options.concurrency, &setup).await?;
    setup.finish();
    for ws in &mut connections {
        mode.subscribe(ws, options.timeout).await?;
    }
    Ok(connections)
}

/// Closes connections politely, all at once, without waiting long.
pub(crate) async fn close_all(connections: Vec<Connection>) {
    let mut closing = tokio::task::JoinSet::new();
    for mut ws in connections {
        closing.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        });
    }
    while closing.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_back_in_both_modes() {
        let origin = Instant::now();
        let text = body(origin, 42, 64);
        assert_eq!(text.len(), 64);
        let (_, seq) = Mode::Bare.parse(text.as_bytes()).unwrap();
        assert_eq!(seq, 42);
        let tether = Mode::Tether {
            channel: "bench".into(),
        };
        let push =
            format!(r#"{{"push":"publication","channel":"bench","offset":7,"data":"{text}"}}"#);
        assert_eq!(tether.parse(push.as_bytes()).unwrap().1, 42);
        assert!(tether
            .parse(br#"{"push":"join","channel":"bench","client":"c1"}"#)
            .is_none());
        assert!(Mode::Bare.parse(b"short").is_none());
        assert_eq!(digits(b"0000000042"), Some(42));
        assert_eq!(digits(b"00000000000000000000"), Some(0));
        assert_eq!(digits(b"99999999999999999999"), None);
        assert_eq!(digits(b"00000-0042"), None);
    }
}

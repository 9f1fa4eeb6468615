//! `echo`: every connection sends messages and waits for them to come back,
//! closed-loop (as fast as replies come) or at a set total rate, with up to
//! [`Options::in_flight`](crate::Options::in_flight) requests outstanding.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::{Message, Utf8Bytes};
use tokio::time::MissedTickBehavior;

use super::burst::{noting_wait, BurstClock};
use super::feed::close_all;
use crate::dial::{Connection, Dialer};
use crate::error::Result;
use crate::latency::{Recorder, SharedLatency};
use crate::meter::{Budget, Counter, Meter};
use crate::options::Options;
use crate::progress::Progress;
use crate::report::Report;

/// What one connection's loop ends with.
struct Outcome {
    errors: u64,
    ws: Option<Connection>,
}

pub(super) async fn run(options: &Options) -> Result<Report> {
    let dialer = Arc::new(Dialer::for_options(options).await?);
    let n = options.connections;
    let setup = Progress::new("connecting", Some(n as u64), options.progress);
    let connections = dialer.connect_many(n, options.concurrency, &setup).await?;
    setup.finish();
    let payload = Utf8Bytes::from("x".repeat(options.size));
    let budget = Arc::new(Budget::new(options.duration, options.messages));
    let progress = Progress::new("round trips", options.messages, options.progress);
    let meter = Meter::start(options.server_pid, progress);
    // With a rate, each connection sends on its own schedule, offset so they
    // do not all fire at once.
    let period = options
        .rate
        .filter(|rate| rate.is_finite())
        .map(|rate| Duration::from_secs_f64(n as f64 / rate));
    let latency = SharedLatency::default();
    let load = Load {
        payload,
        budget,
        counter: meter.counter(),
        window: options.in_flight.max(1),
        timeout: options.timeout,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, ws) in connections.into_iter().enumerate() {
        let offset = period.map(|p| p.mul_f64(i as f64 / n as f64));
        tasks.spawn(round_trips(
            ws,
            latency.recorder(),
            load.clone(),
            period.zip(offset),
        ));
    }
    let mut errors = 0;
    let mut open = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        let outcome = done.expect("round-trip task");
        errors += outcome.errors;
        open.extend(outcome.ws);
    }
    let measured = meter.finish().await;
    let latency = latency.take();
    close_all(open).await;
    let mut report = Report::new(
        "echo",
        options,
        "round trips",
        "round trip",
        &measured,
        &latency,
    );
    report.errors = errors;
    Ok(report)
}

/// What every connection's loop shares.
#[derive(Clone)]
struct Load {
    payload: Utf8Bytes,
    budget: Arc<Budget>,
    counter: Counter,
    /// Requests in flight per connection.
    window: usize,
    /// How long a connection may go without a reply.
    timeout: Duration,
}

/// One connection's loop: up to `load.window` requests in flight. With a schedule,
/// latency counts from when each request was due, not when it went out, so a
/// stalled server cannot hide its stall by delaying the requests (coordinated
/// omission).
///
/// The clock is read once per burst, not per message (see [`super::burst`]):
/// a closed-loop refill shares one send time (its requests leave in one write
/// anyway), and replies that arrived together share one arrival time.
async fn round_trips(
    mut ws: Connection,
    mut latency: Recorder,
    load: Load,
    schedule: Option<(Duration, Duration)>,
) -> Outcome {
    let Load {
        payload,
        budget,
        counter,
        window,
        timeout,
    } = load;
    let mut errors = 0;
    let mut ticker = schedule.map(|(period, offset)| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        ticker
    });
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut exhausted = false;
    let mut stall = Stall::new(timeout);
    let mut clock = BurstClock::new();
    // Closed-loop, the window refills in bursts once half of it came back, so
    // requests go out (and replies come back) in batches, as from a busy
    // client, rather than one write per message.
    let mut refilling = true;
    loop {
        if exhausted && in_flight.is_empty() {
            break;
        }
        if in_flight.len() >= window {
            refilling = false;
        } else if in_flight.len() <= window / 2 || ticker.is_some() {
            refilling = true;
        }
        let room = !exhausted && refilling;
        // Sending first: a refill is fed whole before `recv` flushes it.
        tokio::select! {
            biased;
            due = next_due(&mut ticker), if room => {
                clock.set(due);
                if in_flight.is_empty() {
                    // Nothing was outstanding: the wait for replies starts now.
                    stall.restart(due);
                }
                // On a schedule one request per tick; closed-loop the whole refill.
                let burst = if ticker.is_some() { 1 } else { window - in_flight.len() };
                for _ in 0..burst {
                    if !budget.take_at(due) {
                        exhausted = true;
                        break;
                    }
                    // Fed, not sent: the next `recv` that waits flushes the batch.
                    if ws.feed(Message::Text(payload.clone())).await.is_err() {
                        errors += 1 + in_flight.len() as u64;
                        return Outcome { errors, ws: None };
                    }
                    in_flight.push_back(due);
                }
            }
            (reply, waited) = noting_wait(next_data(&mut ws)), if !in_flight.is_empty() => {
                stall.progress();
                let sent = in_flight.pop_front().expect("a request in flight");
                match reply {
                    Some(len) if len == payload.len() => {
                        let now = clock.arrival(waited, sent);
                        latency.record(now - sent);
                        counter.add(1);
                    }
                    Some(_) => errors += 1,
                    None => {
                        errors += 1 + in_flight.len() as u64;
                        return Outcome { errors, ws: None };
                    }
                }
            }
            stalled = stall.check(), if !in_flight.is_empty() => {
                if stalled {
                    errors += in_flight.len() as u64;
                    return Outcome { errors, ws: None };
                }
                clock.expire();
            }
        }
    }
    Outcome {
        errors,
        ws: Some(ws),
    }
}

/// Notices a connection whose replies stopped: one timer per connection,
/// re-armed once per `timeout` only if replies came meanwhile, instead of a
/// timer (and a clock reading) per reply. A stall is caught between one and
/// two `timeout`s after the last reply.
struct Stall {
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    replies: u64,
    /// `replies` when the timer was armed.
    armed_at: u64,
}

impl Stall {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            replies: 0,
            armed_at: 0,
        }
    }

    /// Starts a fresh period at `from` (the timer may have run out while
    /// nothing was outstanding).
    fn restart(&mut self, from: Instant) {
        self.armed_at = self.replies;
        let next = tokio::time::Instant::from_std(from) + self.timeout;
        self.timer.as_mut().reset(next);
    }

    fn progress(&mut self) {
        self.replies += 1;
    }

    /// Waits for the timer; true when no reply came during its period, else
    /// re-arms it and returns false.
    async fn check(&mut self) -> bool {
        (&mut self.timer).await;
        if self.replies == self.armed_at {
            return true;
        }
        self.armed_at = self.replies;
        let next = tokio::time::Instant::now() + self.timeout;
        self.timer.as_mut().reset(next);
        false
    }
}

/// When the next request is due: now, or at the schedule's next tick.
async fn next_due(ticker: &mut Option<tokio::time::Interval>) -> Instant {
    match ticker {
        Some(ticker) => ticker.tick().await.into_std(),
        None => Instant::now(),
    }
}

/// The length of the next data message; `None` when the connection ended.
async fn next_data(ws: &mut Connection) -> Option<usize> {
    loop {
        match ws.recv().await {
            Ok(Some(message)) if message.is_data() => return Some(message.len()),
            Ok(Some(_)) => {}
            _ => return None,
        }
    }
}

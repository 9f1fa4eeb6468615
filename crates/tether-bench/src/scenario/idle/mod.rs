//! `idle`: opens connections and holds them, each after one small exchange
//! (so the server has read from it, as from any real client) or, with
//! `subscribe`, after subscribing to a `tether serve` channel, and reports the
//! server's memory per connection when given its PID. [`http`]: the same for
//! `tether serve`'s long-poll sessions and SSE streams.

mod http;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::Message;

use super::feed::close_all;
use crate::dial::{Connection, Dialer};
use crate::error::{BenchError, Result};
use crate::latency::Latency;
use crate::meter::{Counter, Meter};
use crate::options::Options;
use crate::procfs;
use crate::progress::Progress;
use crate::report::Report;

/// How long to let the server settle before reading its memory.
const SETTLE: Duration = Duration::from_secs(1);

pub(super) async fn run(options: &Options) -> Result<Report> {
    if http::handles(&options.url) {
        return http::run(options).await;
    }
    let dialer = Arc::new(Dialer::for_options(options).await?);
    let n = options.connections;
    let rss_before = options.server_pid.map(procfs::rss_bytes).transpose()?;
    let progress = Progress::new("connections", Some(n as u64), options.progress);
    let meter = Meter::start(options.server_pid, progress);
    let permits = Arc::new(tokio::sync::Semaphore::new(options.concurrency));
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..n {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (dialer, counter) = (dialer.clone(), meter.counter());
        let (size, timeout) = (options.size, options.timeout);
        let subscribe = options
            .subscribe
            .then(|| subscribe_request(&options.channel));
        opening.spawn(async move {
            let first = match subscribe {
                Some(request) => Message::text(request),
                None if size > 0 => Message::text("x".repeat(size)),
                None => Message::Pong(bytes::Bytes::new()),
            };
            let result = open(&dialer, first, timeout, &counter).await;
            drop(permit);
            result
        });
    }
    let mut latency = Latency::new();
    let mut held = Vec::with_capacity(n);
    let mut errors = 0;
    while let Some(done) = opening.join_next().await {
        match done.expect("opening task") {
            Ok((ws, took)) => {
                latency.record(took);
                held.push(ws);
            }
            Err(_) => errors += 1,
        }
    }
    let measured = meter.finish().await;
    if held.is_empty() {
        return Err(BenchError::Protocol("no connection could be opened".into()));
    }
    // Hold them, each watched for an unexpected close.
    let closed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + options.duration.max(SETTLE);
    let mut holding = tokio::task::JoinSet::new();
    for mut ws in held {
        let closed = closed.clone();
        holding.spawn(async move {
            // Messages may come (pings; presence pushes on a subscribed
            // channel); only the end of the connection counts.
            let ended = async {
                loop {
                    match ws.recv().await {
                        Ok(Some(Message::Close(_))) | Ok(None) | Err(_) => return,
                        Ok(Some(_)) => {}
                    }
                }
            };
            match tokio::time::timeout_at(until.into(), ended).await {
                Err(_) => Some(ws),
                Ok(()) => {
                    closed.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        });
    }
    tokio::time::sleep(SETTLE).await;
    let rss_after = options.server_pid.map(procfs::rss_bytes).transpose()?;
    let mut still_open = Vec::new();
    while let Some(done) = holding.join_next().await {
        still_open.extend(done.expect("holding task"));
    }
    let open_count = still_open.len();
    close_all(still_open).await;
    let mut report = Report::new(
        "idle",
        options,
        "connections",
        "connect",
        &measured,
        &latency,
    );
    report.errors = errors + closed.load(Ordering::Relaxed);
    if let (Some(server), Some(before), Some(after)) = (&mut report.server, rss_before, rss_after) {
        server.rss_bytes = Some(after);
        server.rss_per_connection_bytes =
            Some(after.saturating_sub(before) as f64 / open_count.max(1) as f64);
    }
    Ok(report
        .detail("held open", open_count as f64)
        .detail("closed early", closed.load(Ordering::Relaxed) as f64))
}

/// `tether serve`'s subscribe request for `channel`.
fn subscribe_request(channel: &str) -> String {
    let command = tether_protocol::Command::Subscribe {
        channel: channel.to_owned(),
        recover: None,
    };
    tether_protocol::Request::new(1, command).to_json()
}

/// Opens one connection and, unless `first` is a pong (nothing to say),
/// sends it and waits for the answer.
async fn open(
    dialer: &Dialer,
    first: Message,
    timeout: Duration,
    counter: &Counter,
) -> Result<(Connection, Duration)> {
    let started = Instant::now();
    let mut ws = tokio::time::timeout(timeout, dialer.connect())
        .await
        .map_err(|_| BenchError::Protocol("handshake timed out".into()))??;
    let took = started.elapsed();
    if first.is_data() {
        ws.send(first).await?;
        let reply = tokio::time::timeout(timeout, async {
            loop {
                match ws.recv().await {
                    Ok(Some(message)) if message.is_data() => return Ok(()),
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(BenchError::Protocol("closed".into())),
                    Err(e) => return Err(e.into()),
                }
            }
        });
        reply
            .await
            .map_err(|_| BenchError::Protocol("no reply in time".into()))??;
    }
    counter.add(1);
    Ok((ws, took))
}

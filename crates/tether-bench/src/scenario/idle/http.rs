//! `idle` over the HTTP transports: `http://HOST:PORT/connection/longpoll`
//! opens long-poll sessions subscribed to the channel and leaves them with no
//! poll attached (abandoned, as a client that went away leaves them);
//! `http://HOST:PORT/connection/sse` holds Server-Sent Events streams, each on
//! a connection of its own. Either way the server's memory per session is
//! reported, and the sessions are deleted at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{BenchError, Result};
use crate::latency::Latency;
use crate::meter::Meter;
use crate::options::Options;
use crate::procfs;
use crate::progress::Progress;
use crate::report::Report;
use crate::scenario::transports::address;
use crate::scenario::transports::http::{protocol, HttpConn, Wire};

use super::{subscribe_request, SETTLE};

/// Which HTTP transport, from the URL's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LongPoll,
    Sse,
}

/// Whether `url` names an HTTP transport this scenario holds.
pub(super) fn handles(url: &str) -> bool {
    url.starts_with("http://")
}

fn kind(url: &str) -> Result<Kind> {
    let path = url.splitn(4, '/').nth(3).unwrap_or_default();
    match path.trim_end_matches('/') {
        "connection/longpoll" => Ok(Kind::LongPoll),
        "connection/sse" => Ok(Kind::Sse),
        _ => Err(BenchError::Options(format!(
            "idle over HTTP takes http://HOST:PORT/connection/longpoll or /connection/sse, not {url:?}"
        ))),
    }
}

/// A session opened and held.
struct Held {
    key: String,
    /// The SSE stream's connection (none for an abandoned long-poll session).
    stream: Option<HttpConn>,
}

pub(super) async fn run(options: &Options) -> Result<Report> {
    let kind = kind(&options.url)?;
    let addr = address(&options.url)?;
    let wire = Arc::new(Wire::default());
    let n = options.connections;
    let rss_before = options.server_pid.map(procfs::rss_bytes).transpose()?;
    let progress = Progress::new("sessions", Some(n as u64), options.progress);
    let meter = Meter::start(options.server_pid, progress);
    // Long-poll sessions are opened a few at a time over kept-alive
    // connections; SSE streams each hold one.
    let workers = options.concurrency.clamp(1, n.max(1));
    let mut opening = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let count = n / workers + usize::from(worker < n % workers);
        let (addr, wire, counter) = (addr.clone(), wire.clone(), meter.counter());
        let (channel, timeout) = (options.channel.clone(), options.timeout);
        opening.spawn(async move {
            let mut opened = Vec::with_capacity(count);
            let mut latency = Latency::new();
            let mut errors = 0u64;
            let mut conn = None;
            for _ in 0..count {
                let started = Instant::now();
                let attempt = tokio::time::timeout(timeout, async {
                    match kind {
                        Kind::LongPoll => {
                            if conn.is_none() {
                                conn = Some(HttpConn::open(&addr, &wire).await?);
                            }
                            let conn = conn.as_mut().expect("just opened");
                            open_longpoll(conn, &channel).await
                        }
                        Kind::Sse => open_sse(&addr, &wire, &channel).await,
                    }
                })
                .await
                .unwrap_or_else(|_| Err(protocol("no answer in time")));
                match attempt {
                    Ok(held) => {
                        latency.record(started.elapsed());
                        counter.add(1);
                        opened.push(held);
                    }
                    Err(_) => {
                        errors += 1;
                        // A failed answer may leave the connection unusable.
                        conn = None;
                    }
                }
            }
            (opened, latency, errors)
        });
    }
    let mut held = Vec::with_capacity(n);
    let mut latency = Latency::new();
    let mut errors = 0;
    while let Some(done) = opening.join_next().await {
        let (opened, worker_latency, worker_errors) = done.expect("opening task");
        held.extend(opened);
        latency.merge(&worker_latency);
        errors += worker_errors;
    }
    let measured = meter.finish().await;
    if held.is_empty() {
        return Err(BenchError::Protocol("no session could be opened".into()));
    }
    tokio::time::sleep(options.duration.max(SETTLE)).await;
    let rss_after = options.server_pid.map(procfs::rss_bytes).transpose()?;
    let count = held.len();
    delete_all(&addr, held).await;
    let mut report = Report::new("idle", options, "sessions", "open", &measured, &latency);
    report.errors = errors;
    if let (Some(server), Some(before), Some(after)) = (&mut report.server, rss_before, rss_after) {
        server.rss_bytes = Some(after);
        server.rss_per_connection_bytes =
            Some(after.saturating_sub(before) as f64 / count.max(1) as f64);
    }
    Ok(report.detail("held open", count as f64))
}

/// Opens a long-poll session subscribed to `channel`.
async fn open_longpoll(conn: &mut HttpConn, channel: &str) -> Result<Held> {
    let key = conn.open_longpoll(&subscribe_request(channel)).await?;
    Ok(Held { key, stream: None })
}

/// Opens an SSE stream subscribed to `channel` and reads until the
/// subscribe reply, so the session is whole before it is held.
async fn open_sse(addr: &str, wire: &Arc<Wire>, channel: &str) -> Result<Held> {
    let mut conn = HttpConn::open(addr, wire).await?;
    let path = format!("/connection/sse?subscribe={channel}");
    let (status, _, chunked) = conn
        .send("GET", &path, "", "Accept: text/event-stream\r\n")
        .await?;
    if status != 200 || !chunked {
        return Err(protocol(format!("SSE answered {status}")));
    }
    let mut pending = Vec::new();
    let mut key = None;
    loop {
        let chunk = conn
            .chunk()
            .await?
            .ok_or_else(|| protocol("the stream ended"))?;
        pending.extend_from_slice(&chunk);
        while let Some(at) = memchr::memmem::find(&pending, b"\n\n") {
            let event: Vec<u8> = pending.drain(..at + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let data: String = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            let Ok(value) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if text.starts_with("event: session") {
                key = value["session"].as_str().map(str::to_owned);
            } else if value["id"] == 1 {
                let key = key.ok_or_else(|| protocol("no session event"))?;
                return Ok(Held {
                    key,
                    stream: Some(conn),
                });
            }
        }
    }
}

/// Ends every session (and drops its stream), a few at a time.
async fn delete_all(addr: &str, held: Vec<Held>) {
    let wire = Arc::new(Wire::default());
    let keys: Vec<String> = held
        .into_iter()
        .map(|Held { key, stream }| {
            drop(stream);
            key
        })
        .collect();
    let mut deleting = tokio::task::JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(8).max(1)) {
        let (addr, wire, chunk) = (addr.to_owned(), wire.clone(), chunk.to_vec());
        deleting.spawn(async move {
            let Ok(mut conn) = HttpConn::open(&addr, &wire).await else {
                return;
            };
            for key in chunk {
                let path = format!("/connection/session/{key}");
                let answer =
                    tokio::time::timeout(Duration::from_secs(5), conn.call("DELETE", &path, ""));
                if !matches!(answer.await, Ok(Ok(_))) {
                    return;
                }
            }
        });
    }
    while deleting.join_next().await.is_some() {}
}

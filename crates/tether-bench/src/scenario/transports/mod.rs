//! `transports`: the same live feed (one publisher at a set rate, N
//! subscribers) delivered by `tether serve` over WebSocket, Server-Sent
//! Events, long-polling and short polling, one after the other in one run.
//! For each: publish-to-receive latency, TCP payload bytes per delivered
//! message each way (counted on the subscribers' own sockets), HTTP requests
//! per second, and, given the server's PID, its CPU per delivered message and
//! its memory per subscriber (the growth of its RSS while that transport's
//! subscribers open, the earlier ones still held: indicative, as an
//! allocator reuses what it freed; a fresh server per transport is exact).

pub(super) mod http;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::Value;
use tether_protocol::{Command, Request};
use tokio::net::TcpStream;

use http::{protocol, Counted, HttpConn, Wire};

use crate::error::{BenchError, Result};
use crate::latency::{Latency, SharedLatency};
use crate::options::{Options, DEFAULT_PUBLISH_RATE};
use crate::procfs;
use crate::report::{Report, TransportRow};

/// One way of delivering the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    WebSocket,
    Sse,
    LongPoll,
    ShortPoll,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::WebSocket, Kind::Sse, Kind::LongPoll, Kind::ShortPoll];

    fn name(self) -> &'static str {
        match self {
            Kind::WebSocket => "websocket",
            Kind::Sse => "sse",
            Kind::LongPoll => "long-polling",
            Kind::ShortPoll => "short polling",
        }
    }
}

/// The microseconds since `origin` a publication carries.
fn sent_at(message: &Value) -> Option<u64> {
    (message["push"] == "publication")
        .then(|| message["data"]["t"].as_u64())
        .flatten()
}

/// Records one delivered message.
fn deliver(message: &Value, origin: Instant, wire: &Wire, latency: &mut crate::latency::Recorder) {
    if let Some(t) = sent_at(message) {
        let now = origin.elapsed().as_micros() as u64;
        latency.record(Duration::from_micros(now.saturating_sub(t)));
        // Counted once in the histogram: the run reads it while the
        // subscribers are still open.
        latency.flush();
        wire.deliveries.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything one subscriber needs.
#[derive(Clone)]
struct Ctx {
    addr: String,
    channel: String,
    wire: Arc<Wire>,
    latency: SharedLatency,
    origin: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
    interval: Duration,
    timeout: Duration,
}

fn subscribe_body(channel: &str) -> String {
    let command = Command::Subscribe {
        channel: channel.to_owned(),
        recover: None,
    };
    Request::new(1, command).to_json()
}

async fn websocket(ctx: Ctx, ready: tokio::sync::oneshot::Sender<()>) -> Result<()> {
    let tcp = TcpStream::connect(&ctx.addr).await?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{}/connection/websocket", ctx.addr);
    let (mut ws, _) = tether::ClientBuilder::new(url)
        .compression(false)
        .connect_on(Counted {
            tcp,
            wire: ctx.wire.clone(),
        })
        .await
        .map_err(|e| protocol(format!("connect: {e}")))?;
    ws.send(subscribe_body(&ctx.channel))
        .await
        .map_err(protocol)?;
    let mut recorder = ctx.latency.recorder();
    let mut ready = Some(ready);
    let mut stop = ctx.stop.clone();
    loop {
        let message = tokio::select! {
            message = ws.recv() => message,
            _ = stop.wait_for(|s| *s) => break,
        };
        match message {
            Ok(Some(tether::Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).map_err(protocol)?;
                if value["id"] == 1 {
                    ready.take().map(|r| r.send(()));
                }
                deliver(&value, ctx.origin, &ctx.wire, &mut recorder);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    recorder.flush();
    let _ = ws.close(None).await;
    Ok(())
}

async fn sse(ctx: Ctx, ready: tokio::sync::oneshot::Sender<()>) -> Result<()> {
    let mut conn = HttpConn::open(&ctx.addr, &ctx.wire).await?;
    let path = format!("/connection/sse?subscribe={}", ctx.channel);
    let (status, _, chunked) = conn
        .send("GET", &path, "", "Accept: text/event-stream\r\n")
        .await?;
    if status != 200 || !chunked {
        return Err(protocol(format!("SSE answered {status}")));
    }
    let mut recorder = ctx.latency.recorder();
    let mut ready = Some(ready);
    let mut stop = ctx.stop.clone();
    let mut pending = Vec::new();
    let mut session = None;
    loop {
        let chunk = tokio::select! {
            chunk = conn.chunk() => chunk?,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        while let Some(at) = memchr::memmem::find(&pending, b"\n\n") {
            let event: Vec<u8> = pending.drain(..at + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            if data.is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(&data.join("\n")).map_err(protocol)?;
            if text.starts_with("event: session") {
                session = value["session"].as_str().map(str::to_owned);
                continue;
            }
            if value["id"] == 1 {
                ready.take().map(|r| r.send(()));
            }
            deliver(&value, ctx.origin, &ctx.wire, &mut recorder);
        }
    }
    recorder.flush();
    close_session(&ctx, session).await;
    Ok(())
}

/// Long-polling (`short` false) or short polling every `ctx.interval`.
async fn polling(ctx: Ctx, ready: tokio::sync::oneshot::Sender<()>, short: bool) -> Result<()> {
    let mut conn = HttpConn::open(&ctx.addr, &ctx.wire).await?;
    let key = conn.open_longpoll(&subscribe_body(&ctx.channel)).await?;
    let mut recorder = ctx.latency.recorder();
    let mut ready = Some(ready);
    let mut cursor = 0;
    let mut stop = ctx.stop.clone();
    let wait = if short { "&wait_ms=0" } else { "" };
    while !*stop.borrow() {
        let path = format!("/connection/longpoll/{key}?cursor={cursor}{wait}");
        let answer = tokio::select! {
            answer = tokio::time::timeout(ctx.timeout + Duration::from_secs(30), conn.call("GET", &path, "")) => answer,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (status, body) = answer.map_err(|_| protocol("a poll took too long"))??;
        if status != 200 {
            return Err(protocol(format!("poll answered {status}")));
        }
        let answer: Value = serde_json::from_slice(&body).map_err(protocol)?;
        cursor = answer["cursor"].as_u64().unwrap_or(cursor);
        for message in answer["messages"].as_array().into_iter().flatten() {
            if message["id"] == 1 {
                ready.take().map(|r| r.send(()));
            }
            deliver(message, ctx.origin, &ctx.wire, &mut recorder);
        }
        recorder.flush();
        if short {
            tokio::select! {
                () = tokio::time::sleep(ctx.interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
    recorder.flush();
    drop(conn);
    close_session(&ctx, Some(key)).await;
    Ok(())
}

/// Ends an HTTP session at once (its memory is then given back before the
/// next transport is measured).
async fn close_session(ctx: &Ctx, key: Option<String>) {
    let Some(key) = key else { return };
    let wire = Arc::new(Wire::default());
    if let Ok(mut conn) = HttpConn::open(&ctx.addr, &wire).await {
        let _ = conn
            .call("DELETE", &format!("/connection/session/{key}"), "")
            .await;
    }
}

/// Publishes `{"t": µs since origin, "p": padding}` at `rate` until `until`;
/// returns how many it published.
async fn publish(
    addr: &str,
    channel: &str,
    rate: f64,
    size: usize,
    origin: Instant,
    until: Instant,
) -> Result<u64> {
    let url = format!("ws://{addr}/connection/websocket");
    let (ws, _) = tether::connect(&url)
        .await
        .map_err(|e| protocol(format!("publisher: {e}")))?;
    let (mut reader, writer) = ws.split();
    let acks = tokio::spawn(async move { while let Ok(Some(_)) = reader.recv().await {} });
    let padding = "x".repeat(size);
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        sent += 1;
        let t = origin.elapsed().as_micros() as u64;
        let data = RawValue::from_string(format!(r#"{{"t":{t},"p":"{padding}"}}"#))
            .expect("the payload is JSON");
        let command = Command::Publish {
            channel: channel.to_owned(),
            data,
            idempotency_key: None,
            key: None,
        };
        let request = Request::new(sent, command).to_json();
        writer
            .send(request)
            .await
            .map_err(|e| protocol(format!("publish: {e}")))?;
    }
    let _ = writer.close(None).await;
    acks.abort();
    Ok(sent)
}

/// The subscribers of one transport, kept open (idle) while the next ones
/// are measured, so each transport's memory is what it adds on top.
struct Held {
    stop: tokio::sync::watch::Sender<bool>,
    subscribers: tokio::task::JoinSet<Result<()>>,
}

impl Held {
    async fn close(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        while let Some(done) = self.subscribers.join_next().await {
            done.map_err(|e| protocol(format!("subscriber task: {e}")))??;
        }
        Ok(())
    }
}

async fn measure(
    kind: Kind,
    options: &Options,
    addr: &str,
    rate: f64,
) -> Result<(TransportRow, Held)> {
    let wire = Arc::new(Wire::default());
    let latency = SharedLatency::default();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let ctx = Ctx {
        addr: addr.to_owned(),
        // In the channel's namespace: `[namespaces.bench] presence = false`
        // keeps every subscriber's join out of the others' queues.
        channel: format!("{}:{}", options.channel, kind.name().replace(' ', "-")),
        wire: wire.clone(),
        latency: latency.clone(),
        origin: Instant::now(),
        stop,
        interval: options.poll_interval,
        timeout: options.timeout,
    };
    let rss_before = options.server_pid.map(procfs::rss_bytes).transpose()?;
    let mut subscribers = tokio::task::JoinSet::new();
    let mut readies = Vec::new();
    for _ in 0..options.connections {
        let (ready, subscribed) = tokio::sync::oneshot::channel();
        readies.push(subscribed);
        let ctx = ctx.clone();
        subscribers.spawn(async move {
            match kind {
                Kind::WebSocket => websocket(ctx, ready).await,
                Kind::Sse => sse(ctx, ready).await,
                Kind::LongPoll => polling(ctx, ready, false).await,
                Kind::ShortPoll => polling(ctx, ready, true).await,
            }
        });
    }
    for subscribed in readies {
        tokio::time::timeout(options.timeout + options.poll_interval, subscribed)
            .await
            .map_err(|_| {
                protocol(format!(
                    "{}: a subscriber was not subscribed in time",
                    kind.name()
                ))
            })?
            .map_err(|_| protocol(format!("{}: a subscriber failed", kind.name())))?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = options.server_pid.map(procfs::rss_bytes).transpose()?;
    // The measured window: the feed, then time for the last ones to arrive.
    let (down0, up0, requests0) = (
        wire.down.load(Ordering::Relaxed),
        wire.up.load(Ordering::Relaxed),
        wire.requests.load(Ordering::Relaxed),
    );
    latency.take();
    let cpu_before = options.server_pid.map(procfs::CpuTime::read).transpose()?;
    let started = Instant::now();
    let published = publish(
        addr,
        &ctx.channel,
        rate,
        options.size,
        ctx.origin,
        started + options.duration,
    )
    .await?;
    let expected = published * options.connections as u64;
    let drain_until = Instant::now() + options.poll_interval + Duration::from_secs(2);
    while wire.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, options.server_pid) {
        (Some(before), Some(pid)) => Some(before.until(&procfs::CpuTime::read(pid)?)),
        _ => None,
    };
    let deliveries = wire.deliveries.load(Ordering::Relaxed);
    let per = |bytes: u64| {
        if deliveries > 0 {
            bytes as f64 / deliveries as f64
        } else {
            0.0
        }
    };
    let latency: Latency = latency.take();
    let row = TransportRow {
        transport: kind.name().to_owned(),
        subscribers: options.connections,
        published,
        deliveries,
        lost: expected.saturating_sub(deliveries),
        latency: latency.summary(),
        latency_curve: latency.curve(),
        bytes_down_per_message: per(wire.down.load(Ordering::Relaxed) - down0),
        bytes_up_per_message: per(wire.up.load(Ordering::Relaxed) - up0),
        requests_per_second: (wire.requests.load(Ordering::Relaxed) - requests0) as f64 / elapsed,
        server_cpu_us_per_message: cpu
            .filter(|_| deliveries > 0)
            .map(|cpu| cpu * 1e6 / deliveries as f64),
        server_rss_per_subscriber_bytes: match (rss_before, rss_after) {
            (Some(before), Some(after)) => {
                Some((after as f64 - before as f64) / options.connections as f64)
            }
            _ => None,
        },
    };
    let held = Held {
        stop: stop_tx,
        subscribers,
    };
    Ok((row, held))
}

/// `host:port` of the server, from `http://`, `ws://` or a bare address.
pub(super) fn address(url: &str) -> Result<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(BenchError::Options(format!("no host in {url:?}")));
    }
    Ok(host.to_owned())
}

pub(super) async fn run(options: &Options) -> Result<Report> {
    let addr = address(&options.url)?;
    let rate = options
        .rate
        .filter(|r| r.is_finite())
        .unwrap_or(DEFAULT_PUBLISH_RATE);
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut held = Vec::new();
    // In this order, so the short pollers (which poll whether or not there
    // is news) are not there while the others are measured.
    for kind in Kind::ALL {
        if options.progress {
            eprintln!(
                "transports: {} ({} subscribers)",
                kind.name(),
                options.connections
            );
        }
        let (row, subscribers) = measure(kind, options, &addr, rate).await?;
        rows.push(row);
        held.push(subscribers);
    }
    for subscribers in held {
        subscribers.close().await?;
    }
    let measured = crate::meter::Measured {
        elapsed: started.elapsed(),
        operations: rows.iter().map(|r| r.deliveries).sum(),
        timeline: Vec::new(),
        server_cpu_seconds: None,
        watched_cpu_seconds: Vec::new(),
        client_cpu_seconds: 0.0,
    };
    let mut report = Report::new(
        "transports",
        options,
        "deliveries",
        "publish to receive",
        &measured,
        &Latency::new(),
    );
    report.rate = Some(rate);
    report.lost = rows.iter().map(|r| r.lost).sum();
    report.transports = rows;
    Ok(report)
}

//! The highest publication rate the engine sustains: publishers send as
//! fast as their acknowledgements come back (a window of requests in flight
//! each), over one channel or spread over many, with one subscriber per
//! channel checking that every acknowledged publication is delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::to_raw_value;
use tether::Message;
use tether_protocol::{Command, Request};
use tokio::sync::{watch, Semaphore};

use crate::dial::Dialer;
use crate::error::{BenchError, Result};
use crate::procfs::CpuTime;
use crate::scenario::feed::Mode;

/// Requests each publisher keeps in flight.
const WINDOW: usize = 64;

/// What one rate run measured.
#[derive(Debug, Clone)]
pub(super) struct Rate {
    /// Publications acknowledged.
    pub(super) published: u64,
    /// Publishes the server refused (error replies).
    pub(super) refused: u64,
    /// Publications the subscribers received (one subscriber per channel).
    pub(super) delivered: u64,
    /// Seconds of publishing.
    pub(super) seconds: f64,
    /// CPU seconds of the nodes meanwhile, summed.
    pub(super) node_cpu: f64,
    /// CPU seconds of Redis meanwhile.
    pub(super) redis_cpu: f64,
}

impl Rate {
    /// Acknowledged publications per second.
    pub(super) fn per_second(&self) -> f64 {
        self.published as f64 / self.seconds.max(1e-9)
    }

    /// Redis CPU microseconds per publication.
    pub(super) fn redis_us_per_publication(&self) -> f64 {
        self.redis_cpu * 1e6 / self.published.max(1) as f64
    }

    /// The nodes' CPU microseconds per publication.
    pub(super) fn node_us_per_publication(&self) -> f64 {
        self.node_cpu * 1e6 / self.published.max(1) as f64
    }
}

fn cpu(pids: &[u32]) -> Vec<CpuTime> {
    pids.iter()
        .filter_map(|pid| CpuTime::read(*pid).ok())
        .collect()
}

fn used(pids: &[u32], before: &[CpuTime]) -> f64 {
    pids.iter()
        .zip(before)
        .filter_map(|(pid, before)| Some(before.until(&CpuTime::read(*pid).ok()?)))
        .sum()
}

/// Publishes `size`-byte payloads through `url` on `channels` channels from
/// `publishers` connections for `duration`; `nodes` and `redis` are the
/// processes whose CPU is read.
pub(super) async fn measure(
    url: &str,
    channels: usize,
    publishers: usize,
    size: usize,
    duration: Duration,
    nodes: &[u32],
    redis: u32,
) -> Result<Rate> {
    let dialer = Arc::new(Dialer::new(url, false).await?);
    let names: Vec<String> = (0..channels).map(|i| format!("rate-{i}")).collect();
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let mut subscribers = tokio::task::JoinSet::new();
    for name in &names {
        let mut ws = dialer.connect().await?;
        let mode = Mode::Tether {
            channel: name.clone(),
        };
        mode.subscribe(&mut ws, Duration::from_secs(10)).await?;
        let delivered = delivered.clone();
        let mut stopped = stopped.clone();
        subscribers.spawn(async move {
            loop {
                tokio::select! {
                    message = ws.recv() => match message {
                        Ok(Some(Message::Text(text))) if text.starts_with("{\"push\":\"publication\"") => {
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                    _ = stopped.wait_for(|s| *s) => return,
                }
            }
        });
    }
    let published = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let data = to_raw_value(&"x".repeat(size)).map_err(|e| BenchError::Protocol(e.to_string()))?;
    let node_before = cpu(nodes);
    let redis_before = cpu(&[redis]);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut publishing = tokio::task::JoinSet::new();
    for p in 0..publishers {
        let ws = dialer.connect().await?;
        let (mut reader, writer) = ws.split();
        let window = Arc::new(Semaphore::new(WINDOW));
        let returned = window.clone();
        let (published, refused) = (published.clone(), refused.clone());
        // Each reply returns a place in the window.
        let replies = tokio::spawn(async move {
            while let Ok(Some(message)) = reader.recv().await {
                if let Message::Text(text) = message {
                    if text.starts_with("{\"id\"") {
                        if text.contains("\"error\"") {
                            refused.fetch_add(1, Ordering::Relaxed);
                        } else {
                            published.fetch_add(1, Ordering::Relaxed);
                        }
                        returned.add_permits(1);
                    }
                }
            }
        });
        let (names, data) = (names.clone(), data.clone());
        publishing.spawn(async move {
            let mut id = 0u64;
            while tokio::time::Instant::now() < deadline {
                let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, window.acquire()).await
                else {
                    break;
                };
                permit.forget();
                id += 1;
                let channel = names[(p + id as usize) % names.len()].clone();
                let command = Command::Publish {
                    channel,
                    data: data.clone(),
                    idempotency_key: None,
                    key: None,
                };
                if writer
                    .send(Request::new(id, command).to_json())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            // The replies still on their way count.
            let _ =
                tokio::time::timeout(Duration::from_secs(5), window.acquire_many(WINDOW as u32))
                    .await;
            let _ = writer.close(None).await;
            replies.abort();
        });
    }
    while publishing.join_next().await.is_some() {}
    let seconds = started.elapsed().as_secs_f64();
    let node_cpu = used(nodes, &node_before);
    let redis_cpu = used(&[redis], &redis_before);
    let published = published.load(Ordering::Relaxed);
    // Deliveries still queued reach the subscribers within a few seconds.
    let settle = Instant::now() + Duration::from_secs(5);
    while delivered.load(Ordering::Relaxed) < published && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    while subscribers.join_next().await.is_some() {}
    Ok(Rate {
        published,
        refused: refused.load(Ordering::Relaxed),
        delivered: delivered.load(Ordering::Relaxed),
        seconds,
        node_cpu,
        redis_cpu,
    })
}

/// Publishes `per_channel` `size`-byte payloads on each of `channels`
/// through `url`, a batch of requests at a time, each answered before the
/// next batch goes.
pub(super) async fn publish_each(
    url: &str,
    channels: &[String],
    per_channel: usize,
    size: usize,
) -> Result<()> {
    const BATCH: usize = 256;
    let dialer = Dialer::new(url, false).await?;
    let mut ws = dialer.connect().await?;
    let data = to_raw_value(&"x".repeat(size)).map_err(|e| BenchError::Protocol(e.to_string()))?;
    let requests: Vec<String> = (0..per_channel)
        .flat_map(|_| channels.iter())
        .enumerate()
        .map(|(n, channel)| {
            let command = Command::Publish {
                channel: channel.clone(),
                data: data.clone(),
                idempotency_key: None,
                key: None,
            };
            Request::new(n as u64 + 1, command).to_json()
        })
        .collect();
    for batch in requests.chunks(BATCH) {
        for request in batch {
            ws.send(request.clone()).await?;
        }
        let mut answered = 0;
        while answered < batch.len() {
            match tokio::time::timeout(Duration::from_secs(10), ws.recv()).await {
                Ok(Ok(Some(Message::Text(text)))) if text.starts_with("{\"id\"") => {
                    if text.contains("\"error\"") {
                        return Err(BenchError::Protocol(format!("publish refused: {text}")));
                    }
                    answered += 1;
                }
                Ok(Ok(Some(_))) => {}
                _ => return Err(BenchError::Protocol("publishes went unanswered".into())),
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

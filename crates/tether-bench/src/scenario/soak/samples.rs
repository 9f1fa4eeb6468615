//! The soak's readings of the server every few seconds: its memory,
//! descriptors and threads from `/proc`, and its sessions, tasks and queues
//! from its `/metrics`; and the trend of its memory over the run.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::procfs;
use crate::report::SoakSample;

/// Where the samples come from.
#[derive(Debug, Clone)]
pub(super) struct Sampler {
    /// The server's process, for `/proc` (none: only `/metrics`).
    pub(super) pid: Option<u32>,
    /// The server's `HOST:PORT`, for `/metrics`.
    pub(super) address: String,
    /// Time zero of the run.
    pub(super) origin: Instant,
}

impl Sampler {
    /// One reading now.
    pub(super) async fn sample(&self) -> SoakSample {
        let metrics = tokio::time::timeout(Duration::from_secs(5), fetch_metrics(&self.address))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let metric = |name: &str| sum_of(&metrics, name);
        SoakSample {
            at_s: self.origin.elapsed().as_secs_f64(),
            rss_bytes: self.pid.and_then(|pid| procfs::rss_bytes(pid).ok()),
            rss_anon_bytes: self.pid.and_then(|pid| procfs::rss_anon_bytes(pid).ok()),
            allocator_bytes: metric("tether_allocator_committed_bytes"),
            descriptors: self.pid.and_then(|pid| descriptors(pid).ok()),
            threads: self.pid.and_then(|pid| procfs::threads(pid).ok()),
            sessions: metric("tether_connections"),
            subscriptions: metric("tether_subscriptions"),
            channels: metric("tether_channels"),
            tasks: metric("tether_runtime_tasks"),
            queued_frames: metric("tether_queued_frames"),
            buffered_bytes: metric("tether_buffer_budget_used_bytes"),
        }
    }

    /// Samples every `every` until `stop`, then once more.
    pub(super) fn spawn(
        self,
        every: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<Vec<SoakSample>> {
        tokio::spawn(async move {
            let mut samples = vec![self.sample().await];
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => samples.push(self.sample().await),
                    _ = stop.changed() => return samples,
                }
            }
        })
    }
}

/// Open descriptors of `pid`.
fn descriptors(pid: u32) -> std::io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// The body of `GET /metrics`, over a connection of its own.
async fn fetch_metrics(address: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(address).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    // A metrics page is a few KiB; more is not a metrics page.
    tcp.take(4 << 20).read_to_end(&mut answer).await.ok()?;
    let answer = String::from_utf8(answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The sum of every series of metric `name` (all its label sets), if it is there.
fn sum_of(exposition: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name value` or `name{labels} value`, not `name_longer …`.
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// The least-squares slope of `points` (x, y), if there are at least three
/// with x spread out.
pub(super) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let spread: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if spread <= f64::EPSILON {
        return None;
    }
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    Some(covariance / spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_over_its_labels_and_skips_longer_names() {
        let text = "# HELP tether_connections Open sessions\n\
                    tether_connections{transport=\"websocket\"} 7\n\
                    tether_connections{transport=\"sse\"} 2\n\
                    tether_connections_accepted_total{transport=\"sse\"} 40\n\
                    tether_channels 3\n";
        assert_eq!(sum_of(text, "tether_connections"), Some(9.0));
        assert_eq!(sum_of(text, "tether_channels"), Some(3.0));
        assert_eq!(sum_of(text, "tether_queued_frames"), None);
    }

    #[test]
    fn the_slope_of_a_line_and_of_noise_around_a_level() {
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 + 2.0 * x as f64)).collect();
        assert!((slope(&line).unwrap() - 2.0).abs() < 1e-9);
        let flat = [(0.0, 5.0), (1.0, 6.0), (2.0, 4.0), (3.0, 5.0)];
        assert!(slope(&flat).unwrap().abs() < 0.5);
        assert_eq!(slope(&flat[..2]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None);
    }
}

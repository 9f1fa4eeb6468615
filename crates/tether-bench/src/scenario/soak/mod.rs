//! `soak`: everything a live server meets, at once, for as long as asked,
//! against `tether serve` (`ws://HOST:PORT/connection/websocket`):
//!
//! - fan-out: `--connections` subscribers on `--channel`, fed at `--rate`;
//! - churn: clients joining at `--churn-rate`, each staying `--hold`;
//! - [`resuming`] clients that drop their connection at random (with or
//!   without a close frame) and come back with `recover`;
//! - [`pressure`]: consumers that stop reading on a channel of large
//!   publications, and every [`FLOOD_EVERY`] a flood of handshakes and deflate
//!   bombs.
//!
//! Every [`SAMPLE_EVERY`] it reads the server ([`samples`]): memory,
//! descriptors, threads, sessions, tasks, queues. At the end it checks that
//! the fan-out subscribers lost nothing, that every resuming client got every
//! publication exactly once, that each bomb got 1009 (or 1013), that
//! descriptors and tasks came back to where they started, and that memory
//! shows no upward trend past its warm-up: the least-squares line through
//! the readings rises by at most `--max-rss-growth` MiB from the first to the
//! last (a bound on the whole run's growth rather than on a slope, since the
//! slow consumers swing memory by a few MiB and a short run's slope would
//! follow the swing). A failed check counts as an error, so the command exits
//! with 2.

mod pressure;
mod resuming;
mod samples;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::churn::churn;
use super::feed::{close_all, Feed, Mode, Publisher, Running, Totals};
use crate::dial::Dialer;
use crate::error::{BenchError, Result};
use crate::latency::SharedLatency;
use crate::meter::{Budget, Counter, Meter};
use crate::options::{Options, DEFAULT_PUBLISH_RATE};
use crate::progress::Progress;
use crate::report::{Report, SoakSample};

/// How often the server is read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How often a flood comes (the first after half of this).
pub const FLOOD_EVERY: Duration = Duration::from_secs(30);
/// Resuming clients.
const RESUMING: usize = 50;
/// Publications per second on the resuming clients' channel.
const RESUME_RATE: f64 = 20.0;
/// Consumers that stop reading.
const SLOW: usize = 4;
/// Memory readings before this point (or the first quarter of the run, if
/// longer) are the warm-up: channel streams and histories filling, the
/// allocator finding its size. The trend is taken after it.
const WARM_UP: Duration = Duration::from_secs(30);
/// How long the server gets to settle before the last reading.
const SETTLE: Duration = Duration::from_secs(3);
/// Descriptors and tasks may end this far above where they started (the
/// sampler's own connection, a timer or two).
const LEFTOVER: u64 = 16;

pub(super) async fn run(options: &Options) -> Result<Report> {
    let dialer = Arc::new(Dialer::for_options(options).await?);
    let Mode::Tether { .. } = Mode::new(&dialer, options) else {
        return Err(BenchError::Options(
            "soak runs against tether serve (ws://HOST:PORT/connection/websocket)".into(),
        ));
    };
    let parsed = url::Url::parse(&options.url).map_err(|e| BenchError::BadUrl {
        url: options.url.clone(),
        reason: e.to_string(),
    })?;
    let address = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port_or_known_default().unwrap_or(80)
    );
    let origin = Instant::now();
    let sampler = samples::Sampler {
        pid: options.server_pid,
        address,
        origin,
    };
    let (stop_sampling, sampling) = watch::channel(false);
    let sampling = sampler.clone().spawn(SAMPLE_EVERY, sampling);

    // Fan-out and churn, as the churn scenario runs them.
    let n = options.connections;
    let Running {
        feed,
        receivers,
        finished,
        publisher,
    } = Running::start(&dialer, options).await?;

    let progress = Progress::new("deliveries", None, options.progress);
    let meter = Meter::start_with(feed.deliveries.clone(), options.server_pid, progress);
    let budget = Budget::new(options.duration, None);
    let (stop, stopped) = watch::channel(false);
    let churn_feed = Feed {
        deliveries: Counter::default(),
        latency: SharedLatency::default(),
        ready: Arc::new(AtomicUsize::new(0)),
        ..feed.clone()
    };
    let churning = tokio::spawn(churn(
        dialer.clone(),
        churn_feed,
        options.clone(),
        stopped.clone(),
    ));

    // Resuming clients and their publisher.
    let (resume_last, resume_known) = watch::channel(None);
    let resuming = tokio::spawn(resuming::clients(
        dialer.clone(),
        RESUMING,
        resume_known,
        options.timeout,
    ));
    let resume_publishing = {
        let (dialer, deadline, timeout) = (dialer.clone(), budget.deadline(), options.timeout);
        tokio::spawn(
            async move { resuming::publish(&dialer, RESUME_RATE, deadline, timeout).await },
        )
    };

    // Slow consumers, their feed, and the floods.
    let slow_mode = Mode::Tether {
        channel: pressure::SLOW_CHANNEL.to_owned(),
    };
    let slow_publisher =
        Publisher::connect(&dialer, slow_mode, feed.origin, pressure::SLOW_SIZE).await?;
    let slow_budget = Budget::new(options.duration, None);
    let slow = tokio::spawn(pressure::slow_consumers(
        dialer.clone(),
        SLOW,
        stopped.clone(),
        options.timeout,
    ));
    let floods = tokio::spawn(pressure::floods(
        dialer.clone(),
        FLOOD_EVERY,
        stopped,
        options.timeout,
    ));

    let (published, slow_published) = tokio::join!(
        publisher.run(options.rate, &budget),
        slow_publisher.run(Some(pressure::SLOW_RATE), &slow_budget),
    );
    let published = published?;
    slow_published?;
    let load_end = origin.elapsed();
    let _ = stop.send(true);
    let _ = finished.send(Some(published));
    let totals = Totals::collect(receivers, &feed).await;
    let resume_published = resume_publishing
        .await
        .map_err(|e| BenchError::Protocol(e.to_string()))??;
    let _ = resume_last.send(Some(resume_published.last_offset));
    let resumed = resuming.await.expect("resuming clients");
    let churned = churning.await.expect("churn task");
    let slow = slow.await.expect("slow consumers");
    let floods = floods.await.expect("floods");
    let measured = meter.finish().await;
    let refused = publisher.finish().await + slow_publisher.finish().await;
    close_all(totals.open).await;
    tokio::time::sleep(SETTLE).await;
    let _ = stop_sampling.send(true);
    let mut readings = sampling.await.expect("sampler");
    readings.push(sampler.sample().await);

    let mut report = Report::new(
        "soak",
        options,
        "deliveries",
        "publish to receive",
        &measured,
        &totals.latency,
    );
    report.rate = Some(options.rate.unwrap_or(DEFAULT_PUBLISH_RATE));
    report.lost = (published * n as u64).saturating_sub(totals.received) + resumed.missing;
    let trend = Trend::of(&readings, load_end);
    let rising = trend.rise_mib > options.max_rss_growth;
    let first = readings.first();
    let after = readings.last();
    let leaked = |f: fn(&SoakSample) -> Option<f64>| match (first.and_then(f), after.and_then(f)) {
        (Some(before), Some(after)) => after > before + LEFTOVER as f64,
        _ => false,
    };
    let leaked_descriptors = leaked(|s| s.descriptors.map(|d| d as f64));
    let leaked_tasks = leaked(|s| s.tasks);
    report.errors = totals.gaps
        + totals.failed
        + refused
        + resume_published.refused
        + resumed.duplicated
        + resumed.unrecovered
        + resumed.stuck
        + floods.wrong_answers()
        + u64::from(rising)
        + u64::from(leaked_descriptors)
        + u64::from(leaked_tasks);
    let mut report = report
        .detail("fan-out publications", published as f64)
        .detail("fan-out subscribers", n as f64)
        .detail("fan-out gaps", totals.gaps as f64)
        .detail("churn joins", churned.joins as f64)
        .detail("churn join failures", churned.failures as f64)
        .detail("resuming clients", RESUMING as f64)
        .detail("resume publications sent", resume_published.sent as f64)
        .detail(
            "resume publications acknowledged",
            resume_published.acked as f64,
        )
        .detail("resuming clients complete", resumed.complete as f64)
        .detail("resume missing", resumed.missing as f64)
        .detail("resume duplicated", resumed.duplicated as f64)
        .detail("resume sessions", resumed.sessions as f64)
        .detail("resume recovered", resumed.recovered as f64)
        .detail("resume not recovered", resumed.unrecovered as f64)
        .detail("resume dropped without close", resumed.dropped as f64)
        .detail("resume closed", resumed.closed as f64)
        .detail("resume ended by server", resumed.ended_by_server as f64)
        .detail("resume connect failures", resumed.failures as f64)
        .detail("resuming clients stuck", resumed.stuck as f64)
        .detail("slow stalls", slow.stalls as f64)
        .detail("slow cut off", slow.cut_off as f64)
        .detail("slow caught up", slow.kept as f64)
        .detail("slow connect failures", slow.failures as f64)
        .detail("floods", floods.floods as f64)
        .detail("flood handshakes", floods.handshakes as f64)
        .detail("flood handshakes refused", floods.refused_handshakes as f64)
        .detail("bombs", floods.bombs as f64)
        .detail(
            "bombs unanswered or answered wrongly",
            floods.wrong_answers() as f64,
        )
        .detail("RSS trend MiB per hour", trend.slope_mib_per_hour)
        .detail("RSS trend rise MiB", trend.rise_mib)
        .detail("RSS trend rise bound MiB", options.max_rss_growth)
        .detail("RSS trend samples", trend.points as f64)
        .detail("RSS after warm-up MiB", trend.first_mib)
        .detail("RSS peak MiB", trend.peak_mib)
        .detail("RSS settled MiB", trend.settled_mib)
        .detail(
            "descriptors leaked",
            f64::from(u8::from(leaked_descriptors)),
        )
        .detail("tasks leaked", f64::from(u8::from(leaked_tasks)));
    for (code, count) in &slow.codes {
        report = report.detail(&format!("slow cut off with {code}"), *count as f64);
    }
    for (code, count) in &floods.bomb_codes {
        report = report.detail(&format!("bombs closed {code}"), *count as f64);
    }
    report.samples = readings;
    Ok(report)
}

/// The server's memory over a soak.
#[derive(Debug, Default)]
struct Trend {
    /// Least-squares slope of RSS after the warm-up until the load ended.
    slope_mib_per_hour: f64,
    /// How far the line rises from the first reading it is taken over to the last.
    rise_mib: f64,
    /// Readings the slope is taken over.
    points: usize,
    first_mib: f64,
    peak_mib: f64,
    settled_mib: f64,
}

impl Trend {
    fn of(readings: &[SoakSample], load_end: Duration) -> Self {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let warm_up = WARM_UP.max(load_end / 4).as_secs_f64();
        let points: Vec<(f64, f64)> = readings
            .iter()
            .filter(|s| s.at_s >= warm_up && s.at_s <= load_end.as_secs_f64() + 1.0)
            .filter_map(|s| Some((s.at_s / 3600.0, mib(s.rss_bytes?))))
            .collect();
        let slope = samples::slope(&points).unwrap_or(0.0);
        let span = match (points.first(), points.last()) {
            (Some(first), Some(last)) => last.0 - first.0,
            _ => 0.0,
        };
        Self {
            slope_mib_per_hour: slope,
            rise_mib: slope * span,
            points: points.len(),
            first_mib: points.first().map_or(0.0, |p| p.1),
            peak_mib: readings
                .iter()
                .filter_map(|s| s.rss_bytes)
                .max()
                .map_or(0.0, mib),
            settled_mib: readings.last().and_then(|s| s.rss_bytes).map_or(0.0, mib),
        }
    }
}

/// A small xorshift generator: the soak's random stays and choices, seeded
/// per client so runs differ between clients but not in kind.
#[derive(Debug)]
pub(super) struct Rng(u64);

impl Rng {
    /// A generator for client `seed`.
    pub(super) fn new(seed: u64) -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        Self((seed.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ clock | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (at least 1).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration between `low` and `high`.
    pub(super) fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(self.below(span + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_stays_fall_in_their_range() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let d = rng.between(Duration::from_secs(2), Duration::from_secs(20));
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(20));
            assert!(rng.below(2) < 2);
        }
    }

    #[test]
    fn the_trend_skips_the_warm_up() {
        let reading = |at_s: f64, mib: u64| SoakSample {
            at_s,
            rss_bytes: Some(mib << 20),
            rss_anon_bytes: None,
            allocator_bytes: None,
            descriptors: None,
            threads: None,
            sessions: None,
            subscriptions: None,
            channels: None,
            tasks: None,
            queued_frames: None,
            buffered_bytes: None,
        };
        // Memory climbs during the first 30 s, then stays level.
        let readings: Vec<SoakSample> = (0..=12)
            .map(|i| reading(i as f64 * 10.0, if i < 3 { 10 + 10 * i } else { 40 }))
            .collect();
        let trend = Trend::of(&readings, Duration::from_secs(120));
        assert_eq!(trend.points, 10);
        assert!(trend.slope_mib_per_hour.abs() < 1e-6);
        assert_eq!(trend.peak_mib, 40.0);
    }
}

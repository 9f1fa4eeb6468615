//! `churn`: the reconnect-storm case. Receivers stay subscribed while a
//! publisher publishes; meanwhile clients join (connect and subscribe) at a set
//! rate and leave after a while. Reports the receivers' deliveries and latency,
//! which churn should not disturb, and the joins' own latency.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::feed::{close_all, Feed, Running, Totals};
use crate::dial::Dialer;
use crate::error::Result;
use crate::latency::{Latency, SharedLatency};
use crate::meter::{Budget, Counter, Meter};
use crate::options::{Options, DEFAULT_PUBLISH_RATE};
use crate::progress::Progress;
use crate::report::Report;

/// What the churning clients did.
#[derive(Debug, Default)]
pub(super) struct Churned {
    pub(super) joins: u64,
    pub(super) failures: u64,
    latency: Latency,
}

pub(super) async fn run(options: &Options) -> Result<Report> {
    let dialer = Arc::new(Dialer::for_options(options).await?);
    let n = options.connections;
    let Running {
        feed,
        receivers,
        finished,
        publisher,
    } = Running::start(&dialer, options).await?;
    let progress = Progress::new("deliveries", None, options.progress);
    let meter = Meter::start_with(feed.deliveries.clone(), options.server_pid, progress);
    let budget = Budget::new(options.duration, options.messages);
    // Churners get a feed of their own, so their deliveries (and latencies)
    // are not counted.
    let churn_feed = Feed {
        deliveries: Counter::default(),
        latency: SharedLatency::default(),
        ready: Arc::new(AtomicUsize::new(0)),
        ..feed.clone()
    };
    let (stop_churn, churn_stopped) = watch::channel(false);
    let churn = tokio::spawn(churn(
        dialer.clone(),
        churn_feed,
        options.clone(),
        churn_stopped,
    ));
    let published = publisher.run(options.rate, &budget).await?;
    let _ = stop_churn.send(true);
    let _ = finished.send(Some(published));
    let Totals {
        latency,
        received,
        gaps,
        failed,
        open,
    } = Totals::collect(receivers, &feed).await;
    let measured = meter.finish().await;
    let churned = churn.await.expect("churn task");
    let refused = publisher.finish().await;
    close_all(open).await;
    let mut report = Report::new(
        "churn",
        options,
        "deliveries",
        "publish to receive",
        &measured,
        &latency,
    );
    report.rate = Some(options.rate.unwrap_or(DEFAULT_PUBLISH_RATE));
    report.lost = (published * n as u64).saturating_sub(received);
    report.errors = gaps + failed + refused;
    let joins = churned.latency.summary();
    Ok(report
        .detail("publications", published as f64)
        .detail("receivers", n as f64)
        .detail("joins", churned.joins as f64)
        .detail(
            "joins per second",
            churned.joins as f64 / measured.elapsed.as_secs_f64(),
        )
        .detail("join failures", churned.failures as f64)
        .detail("join p50 µs", joins.map_or(0.0, |j| j.p50_us))
        .detail("join p99 µs", joins.map_or(0.0, |j| j.p99_us)))
}

/// Starts a joining client every 1/rate seconds until told to stop; each stays
/// for `hold`, reading, then leaves.
pub(super) async fn churn(
    dialer: Arc<Dialer>,
    feed: Feed,
    options: Options,
    mut stop: watch::Receiver<bool>,
) -> Churned {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / options.churn_rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut clients = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let (dialer, feed, mode) = (dialer.clone(), feed.clone(), feed.mode.clone());
        let (hold, timeout) = (options.hold, options.timeout);
        clients.spawn(async move {
            let started = Instant::now();
            let joined = async {
                let mut ws = dialer.connect().await?;
                mode.subscribe(&mut ws, timeout).await?;
                Ok::<_, crate::BenchError>(ws)
            };
            let ws = match tokio::time::timeout(timeout, joined).await {
                Ok(Ok(ws)) => ws,
                _ => return None,
            };
            let took = started.elapsed();
            let (_, ws) = feed.receive(ws, Some(Instant::now() + hold)).await;
            if let Some(mut ws) = ws {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
            }
            Some(took)
        });
    }
    let mut churned = Churned::default();
    while let Some(done) = clients.join_next().await {
        match done.ok().flatten() {
            Some(took) => {
                churned.joins += 1;
                churned.latency.record(took);
            }
            None => churned.failures += 1,
        }
    }
    churned
}

//! `fanout`: subscribers on one channel (or on `/broadcast`) and one publisher;
//! deliveries per second, publish-to-receive latency, and every subscriber
//! checked for gaps and losses.

use std::sync::Arc;

use super::feed::{close_all, Running, Totals};
use crate::dial::Dialer;
use crate::error::Result;
use crate::meter::{Budget, Meter};
use crate::options::{Options, DEFAULT_PUBLISH_RATE};
use crate::progress::Progress;
use crate::report::Report;

pub(super) async fn run(options: &Options) -> Result<Report> {
    let dialer = Arc::new(Dialer::for_options(options).await?);
    let n = options.connections;
    let Running {
        feed,
        receivers: tasks,
        finished,
        publisher,
    } = Running::start(&dialer, options).await?;
    let meter_progress = Progress::new("deliveries", None, options.progress);
    tracing::debug!(subscribers = n, "subscribers ready, publishing");
    let server_pids = options
        .server_pid
        .into_iter()
        .chain(options.more_server_pids.iter().copied())
        .collect();
    let meter = Meter::start_watching(
        feed.deliveries.clone(),
        server_pids,
        &options.watched,
        meter_progress,
    );
    let budget = Budget::new(options.duration, options.messages);
    let published = publisher.run(options.rate, &budget).await?;
    let _ = finished.send(Some(published));
    let Totals {
        latency,
        received,
        gaps,
        failed,
        open,
    } = Totals::collect(tasks, &feed).await;
    let measured = meter.finish().await;
    let refused = publisher.finish().await;
    close_all(open).await;
    let expected = published * n as u64;
    let mut report = Report::new(
        "fanout",
        options,
        "deliveries",
        "publish to receive",
        &measured,
        &latency,
    );
    report.rate = Some(options.rate.unwrap_or(DEFAULT_PUBLISH_RATE));
    report.lost = expected.saturating_sub(received);
    report.errors = gaps + failed + refused;
    Ok(report
        .detail("publications", published as f64)
        .detail("subscribers", n as f64)
        .detail("subscribers failed", failed as f64)
        .detail("gaps", gaps as f64)
        .detail("publishes refused", refused as f64))
}

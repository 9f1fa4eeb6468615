//! `handshake`: workers that each open a connection (TCP and WebSocket
//! handshake), close it cleanly, and start over.

use std::sync::Arc;
use std::time::Instant;

use crate::dial::Dialer;
use crate::error::Result;
use crate::latency::Latency;
use crate::meter::{Budget, Meter};
use crate::options::Options;
use crate::progress::Progress;
use crate::report::Report;

pub(super) async fn run(options: &Options) -> Result<Report> {
    let dialer = Arc::new(Dialer::for_options(options).await?);
    let budget = Arc::new(Budget::new(options.duration, options.messages));
    let progress = Progress::new("handshakes", options.messages, options.progress);
    let meter = Meter::start(options.server_pid, progress);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.connections {
        let (dialer, budget, counter) = (dialer.clone(), budget.clone(), meter.counter());
        let timeout = options.timeout;
        workers.spawn(async move {
            let mut latency = Latency::new();
            let mut errors = 0u64;
            while budget.take() {
                let started = Instant::now();
                match tokio::time::timeout(timeout, dialer.connect()).await {
                    Ok(Ok(mut ws)) => {
                        latency.record(started.elapsed());
                        // The server closes TCP first, so TIME_WAIT stays on its side.
                        if tokio::time::timeout(timeout, ws.close(None)).await.is_ok() {
                            counter.add(1);
                        } else {
                            errors += 1;
                        }
                    }
                    _ => {
                        errors += 1;
                        // Back off a little: the server may be out of sockets.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
            (latency, errors)
        });
    }
    let mut latency = Latency::new();
    let mut errors = 0;
    while let Some(done) = workers.join_next().await {
        let (seen, failed) = done.expect("handshake worker");
        latency.merge(&seen);
        errors += failed;
    }
    let measured = meter.finish().await;
    let mut report = Report::new(
        "handshake",
        options,
        "handshakes",
        "handshake",
        &measured,
        &latency,
    );
    report.errors = errors;
    Ok(report)
}

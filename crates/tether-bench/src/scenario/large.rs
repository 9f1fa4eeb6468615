//! `large`: messages at the limit. Each of `--connections` connections (all
//! at once) sends one binary message of `--size` bytes, in `--fragments`
//! frames, deflated when `--compress` is given, and reads its echo back
//! whole. Reports, given `--server-pid`, the server's memory before, at its
//! peak (sampled every 5 ms) and a few seconds after with the connections
//! still open, and the peak's growth per byte of message in flight: what a
//! message at the limit costs the server, and whether it gives it back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::Message;

use crate::dial::Dialer;
use crate::error::{BenchError, Result};
use crate::latency::Latency;
use crate::meter::Meter;
use crate::options::Options;
use crate::procfs;
use crate::progress::Progress;
use crate::report::Report;

/// How long the server gets to give memory back before the last reading.
const SETTLE: Duration = Duration::from_secs(3);

pub(super) async fn run(options: &Options) -> Result<Report> {
    let fragments = options.fragments.max(1);
    if options.size < fragments {
        return Err(BenchError::Options(
            "large: --size must be at least --fragments bytes".into(),
        ));
    }
    let dialer = Dialer::for_options(options).await?;
    let dialer = Arc::new(dialer.accept_up_to(options.size.max(1 << 20) + (1 << 10)));
    let n = options.connections;
    let setup = Progress::new("connecting", Some(n as u64), options.progress);
    let connections = dialer.connect_many(n, options.concurrency, &setup).await?;
    setup.finish();
    // Compressible but not trivially (a deflated message is a fraction of
    // its size, not a thousandth).
    let payload: bytes::Bytes = (0..options.size)
        .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
        .collect::<Vec<u8>>()
        .into();
    let pid = options.server_pid;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sampling = pid.map(procfs::PeakRss::start).transpose()?;
    let progress = Progress::new("messages", Some(n as u64), options.progress);
    let meter = Meter::start(pid, progress);
    let mut echoes = tokio::task::JoinSet::new();
    for mut ws in connections {
        let (payload, counter, timeout) = (payload.clone(), meter.counter(), options.timeout);
        echoes.spawn(async move {
            let started = Instant::now();
            let echoed = async {
                send(&mut ws, &payload, fragments).await?;
                loop {
                    match ws.recv().await? {
                        Some(Message::Binary(back)) if back == payload => return Ok(()),
                        Some(Message::Binary(back)) => {
                            return Err(BenchError::Protocol(format!(
                                "echo of {} bytes differs from the {} sent",
                                back.len(),
                                payload.len()
                            )))
                        }
                        Some(_) => {}
                        None => return Err(BenchError::Protocol("closed before the echo".into())),
                    }
                }
            };
            let result = tokio::time::timeout(timeout, echoed)
                .await
                .unwrap_or_else(|_| Err(BenchError::Protocol("no echo in time".into())));
            counter.add(1);
            (result.map(|()| started.elapsed()), ws)
        });
    }
    let mut latency = Latency::new();
    let mut errors = 0;
    let mut open = Vec::with_capacity(n);
    while let Some(done) = echoes.join_next().await {
        let (result, ws) = done.expect("echo task");
        match result {
            Ok(took) => latency.record(took),
            Err(_) => errors += 1,
        }
        open.push(ws);
    }
    let measured = meter.finish().await;
    let before = sampling.as_ref().map(procfs::PeakRss::before);
    let peak = sampling.as_ref().map_or(0, procfs::PeakRss::peak);
    drop(sampling);
    tokio::time::sleep(SETTLE).await;
    let after = pid.map(procfs::rss_bytes).transpose()?;
    super::feed::close_all(open).await;
    let mut report = Report::new(
        "large",
        options,
        "messages",
        "send to echo",
        &measured,
        &latency,
    );
    report.errors = errors;
    report = report.detail("fragments per message", fragments as f64);
    if let (Some(before), Some(after)) = (before, after) {
        let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
        let peak = peak.max(before);
        report = report
            .detail("server RSS before, MiB", mib(before))
            .detail("server RSS peak, MiB", mib(peak))
            .detail("server RSS 3 s after, MiB", mib(after))
            .detail(
                "peak growth per message byte",
                (peak - before) as f64 / (options.size * n) as f64,
            );
        if let Some(server) = &mut report.server {
            server.rss_bytes = Some(after);
        }
    }
    Ok(report)
}

/// Sends `payload` as one message in `fragments` frames.
async fn send(
    ws: &mut crate::dial::Connection,
    payload: &bytes::Bytes,
    fragments: usize,
) -> Result<()> {
    if fragments == 1 {
        ws.send(Message::Binary(payload.clone())).await?;
        return Ok(());
    }
    let step = payload.len().div_ceil(fragments);
    let mut start = 0;
    for i in 0..fragments {
        let end = (start + step).min(payload.len());
        let part = Message::Binary(payload.slice(start..end));
        ws.feed_fragment(part, i == 0, i + 1 == fragments).await?;
        start = end;
    }
    ws.flush().await?;
    Ok(())
}

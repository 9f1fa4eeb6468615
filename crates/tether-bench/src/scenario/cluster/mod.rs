//! `cluster`: what clustering on Redis costs, in one run. It starts its own
//! processes (Debian's `redis-server` and `nginx`, and `tether serve`
//! nodes from this binary) on free loopback ports; the URL is not used.
//!
//! 1. The same fan-out (`--connections` subscribers, `--rate` publications
//!    per second for `--duration`) on one node on the memory engine, one
//!    node on Redis, and three nodes on Redis behind nginx: deliveries per
//!    CPU-second of the nodes (summed), each compared with the memory
//!    engine's, publish-to-receive latency, and Redis's and nginx's CPU.
//! 2. The highest publication rate one node sustains on Redis, on one
//!    channel and spread over 64, with Redis's CPU per publication.
//! 3. What Redis holds per channel and per history entry, from its
//!    `used_memory` before and after.
//!
//! Two cores cannot show three nodes outrunning one: the figure to read
//! is the cost per delivery, not the total.

mod processes;
mod rate;

use processes::{Nginx, Process};

use crate::error::Result;
use crate::options::Options;
use crate::report::{ClusterRow, RateRow, Report};

/// One way of running the server.
struct Setup {
    name: &'static str,
    nodes: usize,
    redis: bool,
}

const SETUPS: [Setup; 3] = [
    Setup {
        name: "1 node, memory engine",
        nodes: 1,
        redis: false,
    },
    Setup {
        name: "1 node, Redis",
        nodes: 1,
        redis: true,
    },
    Setup {
        name: "3 nodes, Redis, behind nginx",
        nodes: 3,
        redis: true,
    },
];

/// Publications per channel past the first, for the history-entry footprint.
const ENTRIES_PER_CHANNEL: usize = 100;

pub(super) async fn run(options: &Options) -> Result<Report> {
    let mut rows = Vec::new();
    let mut headline = None;
    for setup in &SETUPS {
        let (row, report) = fan_out(setup, options).await?;
        tracing::info!(setup = setup.name, "fan-out measured");
        rows.push(row);
        headline.get_or_insert(report);
    }
    let mut report = headline.expect("at least one setup");
    report.scenario = "cluster".to_owned();
    if let (Some(memory), Some(cluster)) = (
        rows[0].deliveries_per_node_cpu_second,
        rows[2].deliveries_per_node_cpu_second,
    ) {
        report = report.detail(
            "3 nodes on Redis vs 1 on memory, deliveries per node CPU-s",
            cluster / memory,
        );
    }
    report.lost = rows.iter().map(|row| row.lost).sum();
    report.url = "(its own processes)".to_owned();
    report.cluster = rows;

    let (redis, node, url) = node_on_redis().await?;
    for (channels, publishers) in [(1, 4), (64, 4)] {
        let measured = rate::measure(
            &url,
            channels,
            publishers,
            options.size,
            options.duration,
            &[node.pid()],
            redis.pid(),
        )
        .await?;
        report.lost += measured.published.saturating_sub(measured.delivered);
        report.errors += measured.refused;
        report.rates.push(RateRow {
            channels,
            publishers,
            per_second: measured.per_second(),
            redis_us_per_publication: measured.redis_us_per_publication(),
            node_us_per_publication: measured.node_us_per_publication(),
            lost: measured.published.saturating_sub(measured.delivered),
            refused: measured.refused,
        });
    }
    drop(node);
    drop(redis);
    let (per_channel, per_entry) = footprint(options.size).await?;
    Ok(report
        .detail(
            "Redis bytes per channel (with its first publication)",
            per_channel,
        )
        .detail("Redis bytes per history entry", per_entry))
}

/// A fresh Redis and one node on it keeping 1000 publications per channel,
/// and the node's WebSocket URL.
async fn node_on_redis() -> Result<(Process, Process, String)> {
    let redis = processes::redis().await?;
    let engine = format!("redis://127.0.0.1:{}", redis.port);
    let args = [
        "--engine".into(),
        engine,
        "--history-size".into(),
        "1000".into(),
    ];
    let node = processes::node(&args).await?;
    let url = format!("ws://127.0.0.1:{}/connection/websocket", node.port);
    Ok((redis, node, url))
}

/// The fan-out on `setup`: its row, and the fan-out's own report.
async fn fan_out(setup: &Setup, options: &Options) -> Result<(ClusterRow, Report)> {
    let redis = if setup.redis {
        Some(processes::redis().await?)
    } else {
        None
    };
    let mut args: Vec<String> = Vec::new();
    if let Some(redis) = &redis {
        args.extend([
            "--engine".into(),
            format!("redis://127.0.0.1:{}", redis.port),
        ]);
    }
    let mut nodes: Vec<Process> = Vec::new();
    for _ in 0..setup.nodes {
        nodes.push(processes::node(&args).await?);
    }
    let nginx = if setup.nodes > 1 {
        Some(Nginx::start(&nodes).await?)
    } else {
        None
    };
    let port = nginx.as_ref().map_or(nodes[0].port, |n| n.process.port);
    let mut run = options.clone();
    run.url = format!("ws://127.0.0.1:{port}/connection/websocket");
    run.server_pid = Some(nodes[0].pid());
    run.more_server_pids = nodes[1..].iter().map(Process::pid).collect();
    run.watched = Vec::new();
    if let Some(redis) = &redis {
        run.watched.push(("redis".into(), redis.pid()));
    }
    if let Some(nginx) = &nginx {
        for worker in nginx.workers() {
            run.watched.push(("nginx".into(), worker));
        }
    }
    let report = super::fanout::run(&run).await?;
    let row = ClusterRow {
        setup: setup.name.to_owned(),
        deliveries_per_second: report.per_second,
        deliveries_per_node_cpu_second: report.server.as_ref().and_then(|s| s.per_cpu_second),
        latency: report.latency,
        lost: report.lost,
        redis_cpu_seconds: report.details.get("redis CPU s").copied(),
        proxy_cpu_seconds: report.details.get("nginx CPU s").copied(),
    };
    Ok((row, report))
}

/// Redis bytes per channel (created by its first publication) and per
/// further history entry, with `size`-byte payloads, from `used_memory`.
async fn footprint(size: usize) -> Result<(f64, f64)> {
    const CHANNELS: usize = 1000;
    let (redis, _node, url) = node_on_redis().await?;
    // One channel first, so that what every channel shares (the scripts,
    // the connections) is there before the count starts.
    rate::publish_each(&url, &["warm-up".to_owned()], 1, size).await?;
    let empty = processes::redis_used_memory(redis.port).await?;
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("footprint-{i}")).collect();
    rate::publish_each(&url, &channels, 1, size).await?;
    let with_channels = processes::redis_used_memory(redis.port).await?;
    let deep = &channels[..CHANNELS / 10];
    rate::publish_each(&url, deep, ENTRIES_PER_CHANNEL, size).await?;
    let with_entries = processes::redis_used_memory(redis.port).await?;
    let per_channel = with_channels.saturating_sub(empty) as f64 / CHANNELS as f64;
    let entries = (deep.len() * ENTRIES_PER_CHANNEL) as f64;
    let per_entry = with_entries.saturating_sub(with_channels) as f64 / entries;
    Ok((per_channel, per_entry))
}

//! The `cluster` scenario's figures: fan-out per setup (each compared with
//! one node on the memory engine) and the publication rates Redis sustains.

use std::fmt::Write as _;

use serde::Serialize;

use super::{si, Report};
use crate::latency::LatencySummary;

/// One setup's fan-out, under the same load as the others.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRow {
    /// What ran: nodes, engine, proxy.
    pub setup: String,
    /// Deliveries per second (wall clock).
    pub deliveries_per_second: f64,
    /// Deliveries per CPU-second of the nodes, summed over them.
    pub deliveries_per_node_cpu_second: Option<f64>,
    /// Publish-to-receive latency.
    pub latency: Option<LatencySummary>,
    /// Deliveries that never came (or came out of order).
    pub lost: u64,
    /// Redis's CPU seconds over the run.
    pub redis_cpu_seconds: Option<f64>,
    /// nginx's CPU seconds over the run.
    pub proxy_cpu_seconds: Option<f64>,
}

/// The publication rate one setup of channels sustained on Redis.
#[derive(Debug, Clone, Serialize)]
pub struct RateRow {
    /// Channels the publications were spread over.
    pub channels: usize,
    /// Publishing connections.
    pub publishers: usize,
    /// Acknowledged publications per second.
    pub per_second: f64,
    /// Redis CPU microseconds per publication.
    pub redis_us_per_publication: f64,
    /// The node's CPU microseconds per publication.
    pub node_us_per_publication: f64,
    /// Acknowledged publications no subscriber received.
    pub lost: u64,
    /// Publishes refused.
    pub refused: u64,
}

impl Report {
    /// The `cluster` scenario's two tables, in Markdown.
    pub fn cluster_tables(&self) -> String {
        let mut out = String::new();
        if let Some(base) = self.cluster.first() {
            out.push_str(
                "\n| setup | deliveries/s | deliveries per node CPU-s | vs memory | p50 µs | p99 µs | lost | Redis CPU s | nginx CPU s |\n\
                 | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            );
            let seconds = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2}"));
            for row in &self.cluster {
                let ratio = match (
                    row.deliveries_per_node_cpu_second,
                    base.deliveries_per_node_cpu_second,
                ) {
                    (Some(row), Some(base)) if base > 0.0 => format!("{:.2}×", row / base),
                    _ => "–".to_owned(),
                };
                let (p50, p99) = row.latency.as_ref().map_or(("–".into(), "–".into()), |l| {
                    (format!("{:.0}", l.p50_us), format!("{:.0}", l.p99_us))
                });
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {ratio} | {p50} | {p99} | {} | {} | {} |",
                    row.setup,
                    si(row.deliveries_per_second),
                    row.deliveries_per_node_cpu_second
                        .map_or("–".to_owned(), si),
                    row.lost,
                    seconds(row.redis_cpu_seconds),
                    seconds(row.proxy_cpu_seconds),
                );
            }
        }
        if !self.rates.is_empty() {
            out.push_str(
                "\n| channels | publishers | publications/s | Redis CPU µs per publication | node CPU µs per publication | lost | refused |\n\
                 | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            );
            for row in &self.rates {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.1} | {:.1} | {} | {} |",
                    row.channels,
                    row.publishers,
                    si(row.per_second),
                    row.redis_us_per_publication,
                    row.node_us_per_publication,
                    row.lost,
                    row.refused,
                );
            }
        }
        out
    }
}

//! A scenario's results: printed as text, written as JSON and as a
//! self-contained HTML page with SVG plots (no scripts, no external files).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::latency::{Latency, LatencySummary};
use crate::meter::Measured;
use crate::options::Options;

mod cluster;
mod html;

pub use cluster::{ClusterRow, RateRow};

/// The server's CPU time and memory over a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerUsage {
    /// Its process id.
    pub pid: u32,
    /// CPU seconds (user + system) it used during the run.
    pub cpu_seconds: f64,
    /// Operations per CPU-second of the server: the figure to compare servers
    /// by when the load generator, not the server, is the limit.
    pub per_cpu_second: Option<f64>,
    /// Resident memory at the end of the run, in bytes.
    pub rss_bytes: Option<u64>,
    /// Resident memory added per connection held (idle scenario), in bytes.
    pub rss_per_connection_bytes: Option<f64>,
}

/// One transport's figures in the `transports` scenario.
#[derive(Debug, Clone, Serialize)]
pub struct TransportRow {
    /// `websocket`, `sse`, `long-polling` or `short polling`.
    pub transport: String,
    /// Subscribers that received the feed.
    pub subscribers: usize,
    /// Publications sent.
    pub published: u64,
    /// Publications received, over all subscribers.
    pub deliveries: u64,
    /// Publications that should have arrived and did not.
    pub lost: u64,
    /// Publish-to-receive latency.
    pub latency: Option<LatencySummary>,
    /// (percentile, microseconds) points of its distribution.
    pub latency_curve: Vec<(f64, f64)>,
    /// TCP payload bytes from the server per delivered publication.
    pub bytes_down_per_message: f64,
    /// TCP payload bytes to the server per delivered publication.
    pub bytes_up_per_message: f64,
    /// HTTP requests the subscribers made per second (0 for the streams).
    pub requests_per_second: f64,
    /// Server CPU microseconds per delivered publication, given its PID.
    pub server_cpu_us_per_message: Option<f64>,
    /// Server resident memory added per subscriber, given its PID.
    pub server_rss_per_subscriber_bytes: Option<f64>,
}

/// `value ÷ base`, as "1.23×", or "–" when the base is too small to divide by.
fn ratio(value: Option<f64>, base: Option<f64>) -> String {
    match (value, base) {
        (Some(v), Some(b)) if b >= 0.5 => format!("{:.2}×", v / b),
        _ => "–".to_owned(),
    }
}

impl TransportRow {
    /// The columns of the comparison table: (heading, value, ratio to `base`).
    fn cells(&self, base: &TransportRow) -> Vec<(&'static str, String, String)> {
        let p = |row: &TransportRow, f: fn(&LatencySummary) -> f64| row.latency.as_ref().map(f);
        let fmt =
            |v: Option<f64>, digits: usize| v.map_or("–".to_owned(), |v| format!("{v:.digits$}"));
        let mut cells = Vec::new();
        for (name, f) in [
            (
                "p50 µs",
                (|l: &LatencySummary| l.p50_us) as fn(&LatencySummary) -> f64,
            ),
            ("p99 µs", |l| l.p99_us),
            ("p99.9 µs", |l| l.p999_us),
        ] {
            cells.push((name, fmt(p(self, f), 0), ratio(p(self, f), p(base, f))));
        }
        let down = Some(self.bytes_down_per_message);
        let up = Some(self.bytes_up_per_message);
        cells.push((
            "bytes down/msg",
            fmt(down, 1),
            ratio(down, Some(base.bytes_down_per_message)),
        ));
        cells.push((
            "bytes up/msg",
            fmt(up, 1),
            ratio(up, Some(base.bytes_up_per_message)),
        ));
        cells.push((
            "HTTP req/s",
            fmt(Some(self.requests_per_second), 1),
            "".to_owned(),
        ));
        let cpu = self.server_cpu_us_per_message;
        cells.push((
            "server CPU µs/msg",
            fmt(cpu, 2),
            ratio(cpu, base.server_cpu_us_per_message),
        ));
        let rss = self.server_rss_per_subscriber_bytes.map(|b| b / 1024.0);
        let base_rss = base.server_rss_per_subscriber_bytes.map(|b| b / 1024.0);
        cells.push(("server KiB/subscriber", fmt(rss, 2), ratio(rss, base_rss)));
        cells.push(("lost", self.lost.to_string(), String::new()));
        cells
    }
}

/// One reading of the server during a soak.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SoakSample {
    /// Seconds since the run started.
    pub at_s: f64,
    /// Resident memory, in bytes (given the server's PID).
    pub rss_bytes: Option<u64>,
    /// Its anonymous part (what the server allocated, not the pages of its
    /// binary), in bytes.
    pub rss_anon_bytes: Option<u64>,
    /// What the server's allocator holds from the system, in bytes
    /// (`tether_allocator_committed_bytes`).
    pub allocator_bytes: Option<f64>,
    /// Open file descriptors (given the PID).
    pub descriptors: Option<u64>,
    /// Threads (given the PID).
    pub threads: Option<u64>,
    /// Open sessions, every transport (`tether_connections`).
    pub sessions: Option<f64>,
    /// Channel subscriptions (`tether_subscriptions`).
    pub subscriptions: Option<f64>,
    /// Channels held (`tether_channels`).
    pub channels: Option<f64>,
    /// Tasks alive on the server's runtime (`tether_runtime_tasks`).
    pub tasks: Option<f64>,
    /// Frames waiting in the sessions' queues (`tether_queued_frames`).
    pub queued_frames: Option<f64>,
    /// Bytes held for messages being read (`tether_buffer_budget_used_bytes`).
    pub buffered_bytes: Option<f64>,
}

/// What a scenario measured.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The target.
    pub url: String,
    /// Connections (or subscribers, workers) used.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Offered rate, if one was set.
    pub rate: Option<f64>,
    /// Whether permessage-deflate was offered.
    pub compress: bool,
    /// Length of the measured part of the run, in seconds.
    pub elapsed_s: f64,
    /// What [`Report::operations`] counts ("round trips", "deliveries", …).
    pub unit: String,
    /// Operations completed.
    pub operations: u64,
    /// Operations per second.
    pub per_second: f64,
    /// What the latency measures ("round trip", "publish to receive", …).
    pub latency_of: String,
    /// Latency percentiles.
    pub latency: Option<LatencySummary>,
    /// The server's usage, when its PID was given.
    pub server: Option<ServerUsage>,
    /// CPU seconds the load generator used.
    pub client_cpu_seconds: f64,
    /// Operations that failed (wrong answers, dropped connections).
    pub errors: u64,
    /// Messages that should have arrived and did not.
    pub lost: u64,
    /// Scenario-specific figures.
    pub details: BTreeMap<String, f64>,
    /// Operations in each second of the run.
    pub timeline: Vec<f64>,
    /// (percentile, microseconds) points of the latency distribution.
    pub latency_curve: Vec<(f64, f64)>,
    /// The `transports` scenario: one row per transport, WebSocket first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transports: Vec<TransportRow>,
    /// The `soak` scenario: the server's readings, every few seconds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<SoakSample>,
    /// The `cluster` scenario: one fan-out row per setup, memory first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<ClusterRow>,
    /// The `cluster` scenario: the publication rates Redis sustained.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<RateRow>,
}

impl Report {
    /// A report for `scenario` from what the meter and the histogram saw.
    pub fn new(
        scenario: &str,
        options: &Options,
        unit: &str,
        latency_of: &str,
        measured: &Measured,
        latency: &Latency,
    ) -> Self {
        let seconds = measured.elapsed.as_secs_f64();
        let server = options.server_pid.and_then(|pid| {
            let cpu_seconds = measured.server_cpu_seconds?;
            Some(ServerUsage {
                pid,
                cpu_seconds,
                per_cpu_second: (cpu_seconds > 0.0)
                    .then(|| measured.operations as f64 / cpu_seconds),
                rss_bytes: crate::procfs::rss_bytes(pid).ok(),
                rss_per_connection_bytes: None,
            })
        });
        Self {
            scenario: scenario.to_owned(),
            url: options.url.clone(),
            connections: options.connections,
            size: options.size,
            rate: options.rate,
            compress: options.compress,
            elapsed_s: seconds,
            unit: unit.to_owned(),
            operations: measured.operations,
            per_second: if seconds > 0.0 {
                measured.operations as f64 / seconds
            } else {
                0.0
            },
            latency_of: latency_of.to_owned(),
            latency: latency.summary(),
            server,
            client_cpu_seconds: measured.client_cpu_seconds,
            errors: 0,
            lost: 0,
            details: measured
                .watched_cpu_seconds
                .iter()
                .map(|(label, seconds)| (format!("{label} CPU s"), *seconds))
                .collect(),
            timeline: measured.timeline.clone(),
            latency_curve: latency.curve(),
            transports: Vec::new(),
            samples: Vec::new(),
            cluster: Vec::new(),
            rates: Vec::new(),
        }
    }

    /// Adds a scenario-specific figure.
    pub fn detail(mut self, name: &str, value: f64) -> Self {
        self.details.insert(name.to_owned(), value);
        self
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialise")
    }

    /// A plain-text summary, a few lines.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} against {}: {} {} in {:.2} s = {} {}/s",
            self.scenario,
            self.url,
            self.operations,
            self.unit,
            self.elapsed_s,
            si(self.per_second),
            self.unit
        );
        let _ = writeln!(
            out,
            "  connections {}, payload {} B{}{}",
            self.connections,
            self.size,
            self.rate
                .map(|r| if r.is_finite() {
                    format!(", offered {} /s", si(r))
                } else {
                    ", sent back to back".to_owned()
                })
                .unwrap_or_default(),
            if self.compress { ", deflate" } else { "" }
        );
        if let Some(l) = &self.latency {
            let _ = writeln!(
                out,
                "  {} latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}  (mean {:.1}, n {})",
                self.latency_of, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us, l.count
            );
        }
        if let Some(server) = &self.server {
            let _ = write!(
                out,
                "  server pid {}: {:.2} CPU s",
                server.pid, server.cpu_seconds
            );
            if let Some(per) = server.per_cpu_second {
                let _ = write!(out, " = {} {} per CPU-second", si(per), self.unit);
            }
            if let Some(rss) = server.rss_bytes {
                let _ = write!(out, ", RSS {:.1} MiB", rss as f64 / (1 << 20) as f64);
            }
            if let Some(per) = server.rss_per_connection_bytes {
                let _ = write!(out, ", {:.2} KiB per connection", per / 1024.0);
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "  load generator {:.2} CPU s; errors {}, lost {}",
            self.client_cpu_seconds, self.errors, self.lost
        );
        for (name, value) in &self.details {
            let _ = writeln!(out, "  {name}: {value}");
        }
        out.push_str(&self.transports_table());
        out.push_str(&self.samples_table());
        out.push_str(&self.cluster_tables());
        out
    }

    /// The soak's readings as a Markdown table.
    pub fn samples_table(&self) -> String {
        if self.samples.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\n| s | RSS MiB | anon MiB | allocator MiB | fds | threads | sessions | subscriptions | channels | tasks | queued frames | buffered KiB |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        let int = |v: Option<u64>| v.map_or("–".to_owned(), |v| v.to_string());
        let num = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0}"));
        let mib = |v: Option<u64>| {
            v.map_or("–".to_owned(), |b| {
                format!("{:.1}", b as f64 / (1 << 20) as f64)
            })
        };
        for s in &self.samples {
            let _ = writeln!(
                out,
                "| {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.at_s,
                mib(s.rss_bytes),
                mib(s.rss_anon_bytes),
                mib(s.allocator_bytes.map(|b| b as u64)),
                int(s.descriptors),
                int(s.threads),
                num(s.sessions),
                num(s.subscriptions),
                num(s.channels),
                num(s.tasks),
                num(s.queued_frames),
                num(s.buffered_bytes.map(|b| b / 1024.0)),
            );
        }
        out
    }

    /// The `transports` comparison as a Markdown table, with each figure's
    /// ratio to WebSocket's.
    pub fn transports_table(&self) -> String {
        let Some(base) = self.transports.first() else {
            return String::new();
        };
        let mut out = String::from("\n| transport |");
        let headings: Vec<&str> = base.cells(base).iter().map(|c| c.0).collect();
        for heading in &headings {
            let _ = write!(out, " {heading} |");
        }
        out.push_str("\n| --- |");
        out.push_str(&" ---: |".repeat(headings.len()));
        out.push('\n');
        for row in &self.transports {
            let _ = write!(out, "| {} |", row.transport);
            for (_, value, ratio) in row.cells(base) {
                if ratio.is_empty() || std::ptr::eq(row, base) {
                    let _ = write!(out, " {value} |");
                } else {
                    let _ = write!(out, " {value} ({ratio}) |");
                }
            }
            out.push('\n');
        }
        out
    }
}

/// 1234567 → "1.23 M".
pub fn si(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e9 {
        format!("{:.2} G", value / 1e9)
    } else if abs >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if abs >= 1e4 {
        format!("{:.1} k", value / 1e3)
    } else if abs >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_text_json_and_html_with_plots() {
        let mut latency = Latency::new();
        for us in [50, 60, 70, 80, 900] {
            latency.record(Duration::from_micros(us));
        }
        let measured = Measured {
            elapsed: Duration::from_secs(3),
            operations: 3000,
            timeline: vec![900.0, 1000.0, 1100.0],
            server_cpu_seconds: None,
            watched_cpu_seconds: Vec::new(),
            client_cpu_seconds: 0.5,
        };
        let options = Options::new("ws://127.0.0.1:9001/");
        let report = Report::new(
            "echo",
            &options,
            "round trips",
            "round trip",
            &measured,
            &latency,
        )
        .detail("connections opened", 100.0);
        assert_eq!(report.per_second, 1000.0);
        assert!(
            report.summary().contains("1000 round trips/s"),
            "{}",
            report.summary()
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["latency"]["count"], 5);
        let html = report.to_html();
        assert_eq!(html.matches("<svg").count(), 2, "two plots");
        assert!(
            html.contains("<polyline") || html.contains("<path"),
            "lines drawn"
        );
        assert!(!html.contains("<script"), "self-contained, no scripts");
    }
}

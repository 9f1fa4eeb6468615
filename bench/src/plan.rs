//! What the comparison measures, under which load, and how results become the
//! table of ratios.

use std::time::Duration;

use serde::Serialize;
use tether_bench::{Options, Report, Scenario};

/// A server in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Peer {
    /// `tether echo`.
    Tether,
    /// `peer-tungstenite`.
    Tungstenite,
    /// `peer-fastwebsockets`.
    Fastwebsockets,
    /// `tether serve` (fan-out only: the server against the bare library).
    TetherServe,
    /// `tether echo` with each message padded to the length of `tether
    /// serve`'s publication frame (fan-out only): the bare library moving the
    /// same bytes as the server, so the two differ only by the hub.
    TetherWide,
    /// `tether echo --http2` with every WebSocket on an HTTP/2 connection of
    /// its own (RFC 8441, h2c): what the extra layer costs.
    TetherHttp2,
}

impl Peer {
    /// Its column title.
    pub fn title(self) -> &'static str {
        match self {
            Peer::Tether => "tether",
            Peer::Tungstenite => "tokio-tungstenite",
            Peer::Fastwebsockets => "fastwebsockets",
            Peer::TetherServe => "tether serve",
            Peer::TetherWide => "tether, serve-sized frames",
            Peer::TetherHttp2 => "tether over HTTP/2",
        }
    }

    /// Whether it is tether (which must lose nothing; a peer's losses are
    /// reported).
    pub fn is_tether(self) -> bool {
        !matches!(self, Peer::Tungstenite | Peer::Fastwebsockets)
    }

    /// The binary, next to the runner's own.
    pub fn binary(self) -> &'static str {
        match self {
            Peer::Tether | Peer::TetherServe | Peer::TetherWide | Peer::TetherHttp2 => "tether",
            Peer::Tungstenite => "peer-tungstenite",
            Peer::Fastwebsockets => "peer-fastwebsockets",
        }
    }
}

/// The libraries compared head to head.
pub const LIBRARIES: [Peer; 3] = [Peer::Tether, Peer::Tungstenite, Peer::Fastwebsockets];

/// Which figure of a report a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Figure {
    /// Operations per server CPU-second (higher is better).
    PerCpuSecond,
    /// Operations per second as measured (higher is better; may be the load
    /// generator's limit).
    PerSecond,
    /// 99th percentile latency, µs (lower is better).
    P99,
    /// Server RSS per connection, KiB (lower is better).
    KibPerConnection,
}

impl Figure {
    /// The figure from one report.
    pub fn of(self, report: &Report) -> Option<f64> {
        match self {
            Figure::PerCpuSecond => report.server.as_ref()?.per_cpu_second,
            Figure::PerSecond => Some(report.per_second),
            Figure::P99 => Some(report.latency?.p99_us),
            Figure::KibPerConnection => report
                .server
                .as_ref()?
                .rss_per_connection_bytes
                .map(|b| b / 1024.0),
        }
    }

    /// How the row names it.
    pub fn label(self, unit: &str) -> String {
        match self {
            Figure::PerCpuSecond => format!("{unit} per server CPU-s"),
            Figure::PerSecond => format!("{unit}/s"),
            Figure::P99 => "p99 µs (lower is better)".to_owned(),
            Figure::KibPerConnection => "KiB per connection (lower is better)".to_owned(),
        }
    }
}

/// One load, run against several servers.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Its name in the table.
    pub name: &'static str,
    /// The scenario.
    pub scenario: Scenario,
    /// The URL path on the library servers.
    pub path: &'static str,
    /// Connections (subscribers, workers).
    pub connections: usize,
    /// Offered rate, if any.
    pub rate: Option<f64>,
    /// Payload bytes.
    pub size: usize,
    /// Echo requests in flight per connection.
    pub in_flight: usize,
    /// Stop after this many operations (publications) instead of the duration.
    pub messages: Option<u64>,
    /// How long the load runs.
    pub duration: Duration,
    /// The servers it runs against.
    pub peers: Vec<Peer>,
    /// The figures the table shows.
    pub figures: Vec<Figure>,
    /// What an operation is, for labels.
    pub unit: &'static str,
}

impl Measurement {
    /// The load's options against `peer` at `url`, for a server with `pid`.
    pub fn options(&self, peer: Peer, url: String, pid: u32, channel: &str) -> Options {
        let size = match peer {
            Peer::TetherWide => serve_frame_len(channel, self.messages.unwrap_or(1), self.size),
            _ => self.size,
        };
        let mut options = Options::new(url)
            .connections(self.connections)
            .rate(self.rate)
            .size(size)
            .duration(self.duration)
            .messages(self.messages)
            .server_pid(Some(pid))
            .progress(false);
        options.channel = channel.to_owned();
        options.http2 = peer == Peer::TetherHttp2;
        options.concurrency = 128;
        options.in_flight = self.in_flight;
        options
    }
}

/// The length of `tether serve`'s publication frame on `channel` at `offset`
/// for a `size`-byte load-generator payload (which travels as a JSON string).
pub fn serve_frame_len(channel: &str, offset: u64, size: usize) -> usize {
    let payload = "x".repeat(size.max(tether_bench::MIN_PAYLOAD));
    let data = serde_json::value::to_raw_value(&payload).expect("a string serialises");
    let push = tether_protocol::Push::Publication {
        channel: channel.into(),
        offset,
        data: std::borrow::Cow::Borrowed(&data),
    };
    push.to_json().len()
}

fn pick<T>(quick: bool, full: T, smoke: T) -> T {
    if quick {
        smoke
    } else {
        full
    }
}

/// The measurements: the full set, or a short smoke run (`quick`).
pub fn measurements(quick: bool) -> Vec<Measurement> {
    let seconds = Duration::from_secs(pick(quick, 5, 1));
    let libraries = LIBRARIES.to_vec();
    let echo_peers = [LIBRARIES.as_slice(), &[Peer::TetherHttp2]].concat();
    let fanout_peers = vec![
        Peer::Tether,
        Peer::Tungstenite,
        Peer::Fastwebsockets,
        Peer::TetherServe,
        Peer::TetherWide,
        Peer::TetherHttp2,
    ];
    let throughput = vec![Figure::PerCpuSecond, Figure::PerSecond, Figure::P99];
    let echo = |name, size| Measurement {
        name,
        scenario: Scenario::Echo,
        path: "/",
        connections: pick(quick, 100, 20),
        rate: None,
        size,
        // Pipelined, as real clients with many messages to send are: the
        // server sees several requests per read.
        in_flight: 16,
        messages: None,
        duration: seconds,
        peers: echo_peers.clone(),
        figures: throughput.clone(),
        unit: "round trips",
    };
    // A burst: the publisher sends back to back, so every server has all the
    // work in front of it and its CPU time per delivery is what framing,
    // queueing and writing cost it, not how often a trickle of publications
    // woke it. The same publications for every server, fewer than any
    // member's queue holds (4096), so none may be lost.
    let fanout = |name, subscribers: usize, smoke: usize| {
        let subscribers = pick(quick, subscribers, smoke);
        let deliveries = pick(quick, 4_000_000, 100_000) as u64;
        Measurement {
            name,
            scenario: Scenario::Fanout,
            path: "/broadcast",
            connections: subscribers,
            rate: Some(f64::INFINITY),
            size: 16,
            in_flight: 1,
            messages: Some(deliveries / subscribers as u64),
            duration: Duration::from_secs(60),
            peers: fanout_peers.clone(),
            figures: throughput.clone(),
            unit: "deliveries",
        }
    };
    vec![
        echo("echo 16 B", 16),
        echo("echo 4 KiB", 4096),
        fanout("fan-out to 1000", 1000, 100),
        fanout("fan-out to 10000", 10_000, 200),
        Measurement {
            name: "idle 10000",
            scenario: Scenario::Idle,
            path: "/",
            connections: pick(quick, 10_000, 500),
            rate: None,
            size: 16,
            in_flight: 1,
            messages: None,
            duration: Duration::from_secs(pick(quick, 2, 1)),
            peers: libraries.clone(),
            figures: vec![Figure::KibPerConnection],
            unit: "connections",
        },
        Measurement {
            name: "handshakes",
            scenario: Scenario::Handshake,
            path: "/",
            connections: pick(quick, 50, 8),
            rate: None,
            size: 16,
            in_flight: 1,
            messages: None,
            duration: seconds,
            peers: libraries,
            figures: vec![Figure::PerCpuSecond, Figure::PerSecond],
            unit: "handshakes",
        },
    ]
}

/// The median of some values (`None` when there are none).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Results of one measurement against one server.
#[derive(Debug, Clone, Serialize)]
pub struct Runs {
    /// The measurement's name.
    pub measurement: &'static str,
    /// The server.
    pub peer: Peer,
    /// Each run's report.
    pub reports: Vec<Report>,
}

impl Runs {
    /// The median of `figure` over the runs.
    pub fn median(&self, figure: Figure) -> Option<f64> {
        median(self.reports.iter().filter_map(|r| figure.of(r)).collect())
    }
}

/// The median of `figure` for `measurement` against `peer`, if it ran.
fn median_of(results: &[Runs], measurement: &str, peer: Peer, figure: Figure) -> Option<f64> {
    results
        .iter()
        .find(|r| r.measurement == measurement && r.peer == peer)
        .and_then(|r| r.median(figure))
}

/// A table cell: the value with an SI prefix, or a dash.
fn cell(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), tether_bench::report::si)
}

/// The table: a row per measurement and figure, a column per library, the
/// ratios tether/peer, and for fan-out tether serve against tether echo, both
/// with the same payload and with frames of the same length.
pub fn table(plan: &[Measurement], results: &[Runs]) -> String {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    };
    let mut out = String::from(
        "| measurement | tether | tokio-tungstenite | fastwebsockets | tether ÷ tungstenite | tether ÷ fastwebsockets | tether serve | serve ÷ tether | tether, serve-sized frames | serve ÷ that |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for m in plan {
        for figure in &m.figures {
            let value = |peer| median_of(results, m.name, peer, *figure);
            let (t, tt, fw, serve, wide) = (
                value(Peer::Tether),
                value(Peer::Tungstenite),
                value(Peer::Fastwebsockets),
                value(Peer::TetherServe),
                value(Peer::TetherWide),
            );
            out.push_str(&format!(
                "| {}: {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m.name,
                figure.label(m.unit),
                cell(t),
                cell(tt),
                cell(fw),
                ratio(t, tt),
                ratio(t, fw),
                cell(serve),
                ratio(serve, t),
                cell(wide),
                ratio(serve, wide),
            ));
        }
    }
    out
}

/// The second table: tether's WebSocket over HTTP/1.1 against the same
/// over HTTP/2 (RFC 8441), for the measurements that ran both.
pub fn http2_table(plan: &[Measurement], results: &[Runs]) -> String {
    let mut out = String::from(
        "| measurement | tether over HTTP/1.1 | tether over HTTP/2 | HTTP/2 ÷ HTTP/1.1 |\n\
         | --- | ---: | ---: | ---: |\n",
    );
    for m in plan.iter().filter(|m| m.peers.contains(&Peer::TetherHttp2)) {
        for figure in &m.figures {
            let value = |peer| median_of(results, m.name, peer, *figure);
            let (h1, h2) = (value(Peer::Tether), value(Peer::TetherHttp2));
            let ratio = match (h1, h2) {
                (Some(h1), Some(h2)) if h1 > 0.0 => format!("{:.2}×", h2 / h1),
                _ => "–".to_owned(),
            };
            out.push_str(&format!(
                "| {}: {} | {} | {} | {ratio} |\n",
                m.name,
                figure.label(m.unit),
                cell(h1),
                cell(h2),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }

    #[test]
    fn serve_frames_are_the_envelope_plus_the_payload_as_a_string() {
        let len = serve_frame_len("bench:feed", 4000, 16);
        let expected = r#"{"push":"publication","channel":"bench:feed","offset":4000,"data":""}"#
            .len()
            + tether_bench::MIN_PAYLOAD;
        assert_eq!(len, expected);
    }
}

//! What every scenario takes, with documented defaults.

use std::time::Duration;

/// Default for [`Options::connections`].
pub const DEFAULT_CONNECTIONS: usize = 100;
/// Default for [`Options::size`]: payload bytes per message.
pub const DEFAULT_SIZE: usize = 16;
/// Default for [`Options::duration`].
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Default for [`Options::concurrency`]: connections opened at once.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Default for [`Options::channel`] (fan-out and churn against `tether serve`).
pub const DEFAULT_CHANNEL: &str = "bench";
/// Default publication rate for fan-out and churn when [`Options::rate`] is unset.
pub const DEFAULT_PUBLISH_RATE: f64 = 100.0;
/// Default for [`Options::churn_rate`]: clients joining per second.
pub const DEFAULT_CHURN_RATE: f64 = 50.0;
/// Default for [`Options::poll_interval`].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default for [`Options::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Options::max_rss_growth`], in MiB.
pub const DEFAULT_MAX_RSS_GROWTH: f64 = 8.0;

/// Settings shared by every scenario; each uses the ones that apply to it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The server, `ws://HOST:PORT/PATH`. For `fanout` and `churn`, a path of
    /// `/broadcast` speaks the bare broadcast contract of `tether echo`; any
    /// other path speaks `tether serve`'s JSON protocol. `idle` also takes
    /// `http://HOST:PORT/connection/longpoll` or `/connection/sse`.
    pub url: String,
    /// Connections (echo, idle), subscribers (fanout), receivers (churn) or
    /// parallel workers (handshake). Default: [`DEFAULT_CONNECTIONS`].
    pub connections: usize,
    /// Messages per second in total (echo: requests; fanout, churn:
    /// publications); `None` runs echo closed-loop, as fast as replies come,
    /// and fan-out at [`DEFAULT_PUBLISH_RATE`]. Infinity publishes back to
    /// back (a burst) and runs echo closed-loop.
    pub rate: Option<f64>,
    /// Payload bytes per message. Default: [`DEFAULT_SIZE`].
    pub size: usize,
    /// How long to run (idle: how long to hold). Default: [`DEFAULT_DURATION`].
    pub duration: Duration,
    /// Stop after this many messages (round trips, publications, handshakes)
    /// instead of after [`Options::duration`].
    pub messages: Option<u64>,
    /// Echo: requests a connection keeps outstanding (pipelining). Default: 1,
    /// one round trip at a time.
    pub in_flight: usize,
    /// Offer permessage-deflate. Default: `false` (measure the protocol itself).
    pub compress: bool,
    /// Open each WebSocket over HTTP/2 (RFC 8441, h2c: an HTTP/2 connection
    /// of its own per WebSocket) rather than HTTP/1.1, to measure what the
    /// extra layer costs. Default: `false`.
    pub http2: bool,
    /// The server's process id: its CPU time and memory are then reported.
    pub server_pid: Option<u32>,
    /// Channel for `tether serve` scenarios. Default: [`DEFAULT_CHANNEL`].
    pub channel: String,
    /// Churn: clients that join (connect, subscribe) per second, each leaving
    /// after [`Options::hold`]. Default: [`DEFAULT_CHURN_RATE`].
    pub churn_rate: f64,
    /// Churn: how long a churning client stays. Default: 1 s.
    pub hold: Duration,
    /// Connections opened at once while setting up. Default: [`DEFAULT_CONCURRENCY`].
    pub concurrency: usize,
    /// Longest wait for any one answer before the run fails. Default: [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Show a progress bar on a terminal. Default: `true`.
    pub progress: bool,
    /// Idle against `tether serve`: each connection subscribes to
    /// [`Options::channel`] (and waits for the reply) instead of exchanging
    /// one message, so the report is the memory of a subscribed idle session.
    /// Default: `false`.
    pub subscribe: bool,
    /// Transports: how often the short-polling subscribers poll.
    /// Default: [`DEFAULT_POLL_INTERVAL`].
    pub poll_interval: Duration,
    /// Soak: how far the trend of the server's memory may rise after the
    /// warm-up, in MiB: the least-squares line through the readings, from
    /// the first to the last. Default: [`DEFAULT_MAX_RSS_GROWTH`].
    pub max_rss_growth: f64,
    /// Large: frames each message is sent in. Default: 1.
    pub fragments: usize,
    /// Fan-out: the server's other processes (a cluster's nodes besides
    /// [`Options::server_pid`]), whose CPU time adds to the server's.
    pub more_server_pids: Vec<u32>,
    /// Fan-out: processes beside the server (Redis, a proxy) whose CPU time
    /// the report gives apart, by label. Default: none.
    pub watched: Vec<(String, u32)>,
}

impl Options {
    /// Defaults against `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connections: DEFAULT_CONNECTIONS,
            rate: None,
            size: DEFAULT_SIZE,
            duration: DEFAULT_DURATION,
            messages: None,
            in_flight: 1,
            compress: false,
            http2: false,
            server_pid: None,
            channel: DEFAULT_CHANNEL.to_owned(),
            churn_rate: DEFAULT_CHURN_RATE,
            hold: Duration::from_secs(1),
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            progress: true,
            subscribe: false,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_rss_growth: DEFAULT_MAX_RSS_GROWTH,
            fragments: 1,
            more_server_pids: Vec::new(),
            watched: Vec::new(),
        }
    }

    /// Sets [`Options::connections`].
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }

    /// Sets [`Options::rate`].
    pub fn rate(mut self, per_second: Option<f64>) -> Self {
        self.rate = per_second;
        self
    }

    /// Sets [`Options::size`].
    pub fn size(mut self, bytes: usize) -> Self {
        self.size = bytes;
        self
    }

    /// Sets [`Options::duration`].
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// Sets [`Options::messages`].
    pub fn messages(mut self, count: Option<u64>) -> Self {
        self.messages = count;
        self
    }

    /// Sets [`Options::server_pid`].
    pub fn server_pid(mut self, pid: Option<u32>) -> Self {
        self.server_pid = pid;
        self
    }

    /// Sets [`Options::compress`].
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Sets [`Options::http2`].
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// Sets [`Options::progress`].
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Sets [`Options::churn_rate`] and [`Options::hold`].
    pub fn churn(mut self, per_second: f64, hold: Duration) -> Self {
        self.churn_rate = per_second;
        self.hold = hold;
        self
    }

    /// Checks the numbers.
    pub fn validate(&self) -> crate::error::Result<()> {
        let bad = |why: &str| Err(crate::BenchError::Options(why.to_owned()));
        if self.connections == 0 {
            return bad("--connections must be at least 1");
        }
        if self.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
            return bad("--rate must be a positive number or inf");
        }
        if !(self.churn_rate.is_finite() && self.churn_rate > 0.0) {
            return bad("--churn-rate must be a positive number");
        }
        if self.concurrency == 0 {
            return bad("--concurrency must be at least 1");
        }
        if self.poll_interval.is_zero() {
            return bad("--poll-interval must be above 0");
        }
        if self.max_rss_growth.is_nan() {
            return bad("--max-rss-growth must be a number");
        }
        if self.messages == Some(0) {
            return bad("--messages must be at least 1");
        }
        Ok(())
    }
}

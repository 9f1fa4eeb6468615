//! `tether bench SCENARIO URL`: load generation with a report.

use std::path::PathBuf;
use std::time::Duration;

use tether_bench::{Options, Scenario};

/// Arguments of `tether bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// echo | fanout | idle | handshake | churn | transports | bombs | large | soak | cluster.
    scenario: Scenario,
    /// The server: `ws://HOST:PORT/PATH`. fanout and churn speak `tether serve`'s
    /// protocol, or the bare broadcast contract when the path is `/broadcast`;
    /// transports takes `tether serve`'s `http://HOST:PORT`; idle also holds
    /// long-poll sessions or SSE streams at `http://HOST:PORT/connection/longpoll`
    /// or `/connection/sse`. cluster takes none: it starts its own
    /// redis-server, nodes and nginx.
    url: Option<String>,
    /// Connections (echo, idle, bombs: all at once), subscribers (fanout),
    /// receivers (churn) or parallel workers (handshake).
    #[arg(short, long, default_value_t = tether_bench::options::DEFAULT_CONNECTIONS)]
    connections: usize,
    /// Messages per second in total (echo requests; fanout and churn
    /// publications, default 100). Unset, echo runs closed-loop; `inf`
    /// publishes back to back.
    #[arg(short, long)]
    rate: Option<f64>,
    /// Payload bytes per message (bombs: what each bomb inflates to, at
    /// least 1 MiB; large: each message's size).
    #[arg(short, long, default_value_t = tether_bench::options::DEFAULT_SIZE)]
    size: usize,
    /// Seconds to run (idle: to hold the connections).
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many round trips, publications or handshakes (the
    /// duration still caps the run; it defaults to an hour with this flag).
    #[arg(short, long)]
    messages: Option<u64>,
    /// echo: requests each connection keeps in flight (pipelining).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Offer permessage-deflate.
    #[arg(long)]
    compress: bool,
    /// Open each WebSocket over an HTTP/2 connection of its own (RFC 8441,
    /// h2c: `tether echo --http2`, `tether serve --h2c true`).
    #[arg(long)]
    http2: bool,
    /// The server's process id, to report its CPU time (and rate per
    /// CPU-second) and its memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Channel for `tether serve` scenarios.
    #[arg(long, default_value = tether_bench::options::DEFAULT_CHANNEL)]
    channel: String,
    /// churn: clients joining per second.
    #[arg(long, default_value_t = tether_bench::options::DEFAULT_CHURN_RATE)]
    churn_rate: f64,
    /// churn: seconds a joining client stays.
    #[arg(long, default_value_t = 1.0)]
    hold: f64,
    /// Connections opened at once during setup.
    #[arg(long, default_value_t = tether_bench::options::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Seconds to wait for any one answer (echo: a connection with requests
    /// outstanding and no reply for this long is given up, noticed within
    /// twice this).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report with plots to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// idle against `tether serve`: each connection subscribes to --channel
    /// instead of exchanging one message (the memory of a subscribed session).
    #[arg(long)]
    subscribe: bool,
    /// transports: seconds between the short-polling subscribers' polls.
    #[arg(long, default_value_t = 1.0)]
    poll_interval: f64,
    /// soak: how many MiB the trend of the server's memory (given
    /// --server-pid) may rise over the run after its warm-up (least-squares
    /// line through the readings).
    #[arg(long, default_value_t = tether_bench::options::DEFAULT_MAX_RSS_GROWTH)]
    max_rss_growth: f64,
    /// large: frames each message is sent in.
    #[arg(long, default_value_t = 1)]
    fragments: usize,
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        value.is_finite() && value >= 0.0,
        "--{flag} takes a number of seconds, not {value}"
    );
    Ok(Duration::from_secs_f64(value))
}

/// Runs the scenario; the exit code is 0 when nothing was lost or failed, 2
/// otherwise.
pub async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let mut duration = seconds(args.duration, "duration")?;
    if args.messages.is_some() && args.duration == 10.0 {
        duration = Duration::from_secs(3600);
    }
    let url = match (args.url, args.scenario) {
        (Some(url), _) => url,
        (None, Scenario::Cluster) => String::new(),
        (None, scenario) => anyhow::bail!("{scenario} needs the server's URL"),
    };
    let mut options = Options::new(url)
        .connections(args.connections)
        .rate(args.rate)
        .size(args.size)
        .duration(duration)
        .messages(args.messages)
        .compress(args.compress)
        .http2(args.http2)
        .server_pid(args.server_pid)
        .churn(args.churn_rate, seconds(args.hold, "hold")?)
        .progress(!args.quiet);
    options.channel = args.channel;
    options.concurrency = args.concurrency;
    options.in_flight = args.in_flight;
    options.subscribe = args.subscribe;
    options.poll_interval = seconds(args.poll_interval, "poll-interval")?;
    options.max_rss_growth = args.max_rss_growth;
    options.fragments = args.fragments;
    options.timeout = seconds(args.timeout, "timeout")?;
    let report = args.scenario.run(&options).await?;
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json())?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report.to_html())?;
    }
    Ok(if report.lost > 0 || report.errors > 0 {
        2
    } else {
        0
    })
}

//! The scenarios. Each is a module with `run(&Options) -> Result<Report>`;
//! adding one means a module and a [`Scenario`] variant.

mod bombs;
mod burst;
mod churn;
mod cluster;
mod echo;
mod fanout;
pub(crate) mod feed;
mod handshake;
mod idle;
mod large;
mod soak;
mod transports;

pub use bombs::deflate_bomb;

use std::str::FromStr;

use crate::error::Result;
use crate::options::Options;
use crate::report::Report;

/// A load pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Round trips against an echo server: throughput and latency.
    Echo,
    /// Subscribers on one channel and a publisher: deliveries per second and
    /// publish-to-receive latency.
    Fanout,
    /// Many connections held open: the server's memory per connection.
    Idle,
    /// Connections opened and closed per second.
    Handshake,
    /// Clients joining and leaving at a set rate while others receive.
    Churn,
    /// One live feed of `tether serve` over WebSocket, SSE, long-polling and
    /// short polling, measured side by side.
    Transports,
    /// Deflate bombs, all at once: close codes and the server's memory
    /// before, at its peak and after.
    Bombs,
    /// Messages at the limit, echoed: the server's memory before, at its
    /// peak and after, per byte of message.
    Large,
    /// Fan-out, churn, resuming clients, slow consumers and floods at once
    /// against `tether serve` for `--duration`, with the server sampled every
    /// 10 s and checked at the end (nothing lost, nothing twice, no leaks, no
    /// upward memory trend).
    Soak,
    /// What clustering on Redis costs: the same fan-out on one node on the
    /// memory engine, one on Redis and three on Redis behind nginx, the
    /// publication rate Redis sustains, and Redis's memory per channel and
    /// per history entry. Starts its own `redis-server`, nodes and nginx.
    Cluster,
}

impl Scenario {
    /// Every scenario, in the order `tether bench --help` lists them.
    pub const ALL: [Scenario; 10] = [
        Scenario::Echo,
        Scenario::Fanout,
        Scenario::Idle,
        Scenario::Handshake,
        Scenario::Churn,
        Scenario::Transports,
        Scenario::Bombs,
        Scenario::Large,
        Scenario::Soak,
        Scenario::Cluster,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Echo => "echo",
            Scenario::Fanout => "fanout",
            Scenario::Idle => "idle",
            Scenario::Handshake => "handshake",
            Scenario::Churn => "churn",
            Scenario::Transports => "transports",
            Scenario::Bombs => "bombs",
            Scenario::Large => "large",
            Scenario::Soak => "soak",
            Scenario::Cluster => "cluster",
        }
    }

    /// Runs it.
    pub async fn run(self, options: &Options) -> Result<Report> {
        options.validate()?;
        match self {
            Scenario::Echo => echo::run(options).await,
            Scenario::Fanout => fanout::run(options).await,
            Scenario::Idle => idle::run(options).await,
            Scenario::Handshake => handshake::run(options).await,
            Scenario::Churn => churn::run(options).await,
            Scenario::Transports => transports::run(options).await,
            Scenario::Bombs => bombs::run(options).await,
            Scenario::Large => large::run(options).await,
            Scenario::Soak => soak::run(options).await,
            Scenario::Cluster => cluster::run(options).await,
        }
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {name:?}; one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

//! Load generation for WebSocket servers: the engine behind `tether bench` and
//! the comparison benchmark.
//!
//! A [`Scenario`] opens connections with a [`Dialer`], drives them as its
//! [`Options`] say, and returns a [`Report`]: throughput, an HDR latency
//! histogram summary, and (given the server's PID) the server's CPU time and
//! memory, so servers are compared per CPU-second rather than by a rate the load
//! generator may be the limit of. Reports render as text, JSON and a
//! self-contained HTML page with SVG plots.
//!
//! # Layout
//! - [`options`]: what every scenario takes, with defaults; [`error`]: what fails.
//! - [`scenario`]: the scenario set, one module each (echo, fanout, idle,
//!   handshake, churn); adding one is a module plus a [`Scenario`] variant.
//! - [`dial`]: opening many connections, spread over 127.0.0.x source addresses.
//! - [`meter`]: counting, deadlines, per-second timelines, CPU and memory samples.
//! - [`latency`]: HDR histograms of latencies; [`procfs`]: `/proc` readings.
//! - [`report`]: results as text, JSON and HTML; [`progress`]: the progress bar.

#![deny(missing_docs)]

pub mod dial;
pub mod error;
pub mod latency;
pub mod meter;
pub mod options;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod scenario;

pub use dial::Dialer;
pub use error::BenchError;
pub use latency::Latency;
pub use options::Options;
pub use report::Report;
pub use scenario::deflate_bomb;
pub use scenario::Scenario;

/// Smallest payload the fan-out and churn scenarios send: their timestamp and
/// sequence header (smaller `--size`s are raised to it).
pub const MIN_PAYLOAD: usize = scenario::feed::HEADER;

/// The runtime the load generator runs on (see [`tether::runtime`]).
pub use tether::runtime;

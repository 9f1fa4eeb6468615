//! What can stop a benchmark.

/// A benchmark that could not run or whose results cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The URL is not a `ws://` URL with a host and port.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connections could not be opened.
    #[error("connecting to {url}: {source}")]
    Connect {
        /// The target.
        url: String,
        /// Why.
        #[source]
        source: tether::Error,
    },
    /// The server answered something the scenario does not expect.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A connection failed mid-run.
    #[error("connection failed: {0}")]
    Connection(#[from] tether::Error),
    /// Reading `/proc` or another local I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The options do not make sense for the scenario.
    #[error("invalid options: {0}")]
    Options(String),
}

/// Result with [`BenchError`].
pub type Result<T> = std::result::Result<T, BenchError>;

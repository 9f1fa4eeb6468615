//! What a cluster of servers must share about channels: offsets and epochs,
//! history, idempotency keys, presence, and the fan-out of every publication
//! and presence event to each node's hub. The hub calls an [`Engine`]; the
//! engine hands what it fans out to a [`Fanout`] (the hub). It knows nothing
//! of sessions or transports.
//!
//! The boundary is async, so an engine that lives in another process (Redis)
//! can answer without blocking a runtime thread. [`memory`] is the default:
//! everything in this process.

pub mod memory;
pub mod redis;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::value::RawValue;

use crate::config::{EngineConfig, EngineKind};
use crate::mesh::Mesh;
use crate::protocol::{ErrorBody, ErrorCode, PresenceEntry, Publication, Published};

pub use memory::MemoryEngine;
pub use redis::{RedisEngine, RedisMesh};

/// A boxed future an engine answers with.
pub type EngineFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'a>>;

/// Why an engine could not answer. Each variant keeps the error it came
/// from, so a caller can tell a timeout from a refused connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine (a remote store) could not be reached or timed out; the
    /// request may be retried. Error 112 for the client.
    Unavailable {
        /// What the engine's client said (shared: one failure may answer
        /// many waiting requests).
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable { source } => write!(f, "engine unavailable: {source}"),
        }
    }
}

/// The source is the client's own error, so it can be downcast to its type.
impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable { source } => Some(&**source),
        }
    }
}

impl EngineError {
    /// The engine could not be reached, because of `source`.
    pub fn unavailable(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable {
            source: Arc::new(source),
        }
    }
}

impl From<EngineError> for ErrorBody {
    fn from(error: EngineError) -> Self {
        ErrorCode::Unavailable.body(error)
    }
}

/// How long a channel keeps what it is given: the namespace's history and
/// idempotency settings, passed with each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Publications kept for history and recovery (0: none).
    pub history_size: usize,
    /// How long a publication stays in history (`None`: until pushed out).
    pub history_ttl: Option<Duration>,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
}

/// A publication to add to a channel.
#[derive(Debug)]
pub struct NewPublication {
    /// The JSON data, kept verbatim.
    pub data: Box<RawValue>,
    /// A key that deduplicates retries within the idempotency window.
    pub idempotency_key: Option<String>,
    /// What the publication is about, for `latest-per-key` conflation.
    pub key: Option<String>,
}

/// A read of a channel's stream position and history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only publications after this offset; `None`: from the oldest kept.
    pub since: Option<u64>,
    /// At most this many, the newest ones.
    pub limit: Option<usize>,
}

/// A channel's position and retained publications.
#[derive(Debug, Clone)]
pub struct History {
    /// The channel's epoch: it changes whenever its history is lost.
    pub epoch: Arc<str>,
    /// The newest offset (0 before the first publication).
    pub offset: u64,
    /// Publications after `since` (within `limit`), oldest first.
    pub publications: Vec<Publication>,
    /// Whether `publications` holds every publication after `since`: false
    /// when history no longer reaches back that far, or `since` is ahead of
    /// the channel.
    pub complete: bool,
}

/// Something an engine fans out, as the hub receives it.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A new publication.
    Publication {
        /// Its offset.
        offset: u64,
        /// The channel's epoch.
        epoch: &'a str,
        /// The data, verbatim.
        data: &'a RawValue,
        /// Its conflation key, if the publisher gave one.
        key: Option<&'a str>,
    },
    /// A client joined the channel.
    Join(&'a PresenceEntry),
    /// A client left the channel.
    Leave(&'a PresenceEntry),
}

/// Where an engine delivers what it fans out: each node's hub. Called in
/// offset order per channel, and never while the hub's own locks are held by
/// the caller (the hub never calls an engine under them).
pub trait Fanout: Send + Sync + Debug {
    /// Delivers `event` on `channel` to this node's subscribers.
    fn deliver(&self, channel: &str, event: Event<'_>);

    /// `channel`'s stream broke where it cannot be mended (its history lost,
    /// or publications missed that history no longer holds): its subscribers
    /// here must resubscribe, and learn the history is gone.
    fn reset(&self, _channel: &str) {}
}

/// The shared state of channels. See the module documentation.
pub trait Engine: Send + Sync + Debug + 'static {
    /// Assigns the next offset, keeps the publication in history, remembers
    /// its idempotency key, and fans it out. A key already seen within the
    /// window answers with the original offset and fans out nothing.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: NewPublication,
        retention: Retention,
    ) -> EngineFuture<'a, Published>;

    /// The channel's epoch, newest offset and retained publications (see
    /// [`HistoryQuery`]); history older than `retention` allows is dropped
    /// first.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        query: HistoryQuery,
        retention: Retention,
    ) -> EngineFuture<'a, History>;

    /// Adds `entry` to the channel's presence (refreshing it if present) and,
    /// when it is new, fans out its join.
    fn presence_add<'a>(&'a self, channel: &'a str, entry: PresenceEntry) -> EngineFuture<'a, ()>;

    /// Removes the client from the channel's presence and fans out its leave,
    /// if it was there.
    fn presence_remove<'a>(&'a self, channel: &'a str, client: &'a str) -> EngineFuture<'a, ()>;

    /// Who is in the channel, sorted by client id.
    fn presence_list<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Vec<PresenceEntry>>;

    /// This node has a subscriber for `channel` (one call per subscriber):
    /// from when this resolves, the channel's events reach this node's
    /// [`Fanout`], so a history read after it misses nothing. An engine that
    /// fans out everything everywhere (memory) has nothing to do.
    fn follow<'a>(&'a self, _channel: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// One subscriber of `channel` fewer on this node (pairs with [`follow`](Self::follow)).
    fn unfollow(&self, _channel: &str) {}

    /// What makes this node's client ids unique among the nodes sharing the
    /// engine; None for an engine of one node.
    fn node(&self) -> Option<&str> {
        None
    }

    /// Whether the engine can answer now (`/readyz` says 503 while not).
    fn ready(&self) -> bool {
        true
    }

    /// Forgets what has expired: history past its age (by `retention_of` the
    /// channel), idempotency keys past their window, and channels with
    /// nothing left that are not `in_use` (subscribed somewhere). Returns how
    /// many channels it still holds.
    fn sweep(
        &self,
        retention_of: &dyn Fn(&str) -> Retention,
        in_use: &dyn Fn(&str) -> bool,
    ) -> usize;
}

/// What builds the engine `config` names, given where it fans out to (the
/// hub, made around it): the server chooses the engine, the hub only uses it.
/// `retention_of` gives a channel's history settings (the engine reads
/// missed publications with them); a Redis engine counts into `metrics`.
/// On an engine shared by several nodes, also this node's [`Mesh`] to the
/// others (which must run inside a tokio runtime).
pub fn build(
    config: &EngineConfig,
    retention_of: Arc<dyn Fn(&str) -> Retention + Send + Sync>,
    metrics: &redis::RedisMetrics,
) -> Result<(Builder, Option<Arc<dyn Mesh>>), EngineError> {
    let redis = match config.kind {
        EngineKind::Memory => None,
        EngineKind::Redis => Some(RedisEngine::settings(config)),
    };
    // Checked now, so a bad URL stops the server from starting.
    let shards = redis
        .map(|settings| redis::RedisEngine::shards(&settings, metrics))
        .transpose()?;
    let presence_ttl = config.redis_presence_ttl;
    let node = RedisEngine::new_node();
    let mesh = shards
        .as_ref()
        .map(|shards| Arc::new(RedisMesh::start(shards.clone(), node.clone())) as Arc<dyn Mesh>);
    let builder: Builder = Box::new(move |fanout: Weak<dyn Fanout>| match shards {
        None => Arc::new(MemoryEngine::new(fanout)) as Arc<dyn Engine>,
        Some(shards) => Arc::new(RedisEngine::new(
            shards,
            fanout,
            retention_of,
            presence_ttl,
            node,
        )) as Arc<dyn Engine>,
    });
    Ok((builder, mesh))
}

/// Makes the engine once its fan-out target (the hub) exists.
pub type Builder = Box<dyn FnOnce(Weak<dyn Fanout>) -> Arc<dyn Engine> + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_engine_keeps_what_its_client_said() {
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 2 s");
        let error = EngineError::unavailable(timeout);
        let source = std::error::Error::source(&error).expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the io error");
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(error.to_string(), "engine unavailable: no answer in 2 s");
        assert_eq!(ErrorBody::from(error.clone()).code, 112);
    }
}

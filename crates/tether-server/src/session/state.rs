//! What every handler shares: settings, the hub, the session registry,
//! metrics, token verification and the shutdown signal. Its own module, so the
//! transports and the API depend on it rather than on the server that wires
//! them together.

use std::sync::Arc;

use tokio::sync::watch;

use crate::alarm::Alarm;
use crate::auth::{KeyError, Verifier};
use crate::config::{InvalidSetting, ServerConfig};
use crate::hub::{Hub, HubSettings};
use crate::mesh::Exchange;
use crate::metrics::Metrics;
use crate::registry::Sessions;
use crate::session::outbox::{Bounds, Inbox, Outbox};
use crate::session::resumable::Resumables;
use crate::session::{Session, Shared};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting cannot work.
    #[error("invalid setting: {0}")]
    Invalid(#[from] InvalidSetting),
    /// A token verification key could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The engine cannot be made as configured (a Redis URL that is none).
    #[error("engine: {0}")]
    Engine(#[from] crate::engine::EngineError),
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// The process's buffer budget (`max_buffered_bytes`): bytes held for
    /// messages being read or inflated, and sessions' queued replies past
    /// 64 KiB. `None`: no bound.
    pub budget: Option<tether::Budget>,
    /// Channels and subscribers.
    pub hub: Arc<Hub>,
    /// Turns `true` when the server begins shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Live sessions, so shutdown can wait for them to flush.
    pub sessions: Arc<Sessions>,
    /// Counters, gauges and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// What every session shares: token verification and the settings.
    pub shared: Arc<Shared>,
    /// Sessions carried by SSE streams and long-polls, by key.
    pub resumables: Arc<Resumables>,
    /// Calls to the other nodes of a cluster (none on a single node): a
    /// request for a session another node holds is forwarded there.
    pub exchange: Option<Arc<Exchange>>,
    /// What bounds every session's outbound queue (see [`AppState::queue_bounds`]).
    queue_bounds: Arc<Bounds>,
}

impl AppState {
    /// Fresh state for `config`, with the sender that starts shutdown. Fails when
    /// a setting cannot work or a configured verification key cannot be read.
    pub fn new(config: ServerConfig) -> Result<(Self, watch::Sender<bool>), StartError> {
        config.validate()?;
        let verifier = Verifier::new(&config.auth)?;
        let limit = config
            .max_buffered_bytes
            .unwrap_or_else(tether::budget::machine_default);
        let budget = (limit > 0).then(|| tether::Budget::new(limit, config.buffer_wait));
        let config = Arc::new(config);
        let (stop, shutdown) = watch::channel(false);
        let metrics = Arc::new(Metrics::new(budget.clone()));
        // The server chooses the engine; the hub gets its own settings only.
        let settings = HubSettings::from(&*config);
        let retention = {
            let settings = settings.clone();
            Arc::new(move |channel: &str| settings.retention(channel))
        };
        let (engine, mesh) = crate::engine::build(&config.engine, retention, &metrics.redis)?;
        let hub = Hub::new(settings, metrics.clone(), engine);
        let queue_bounds = Arc::new(Bounds {
            frames: config.outbound_queue,
            bytes: config.max_queued_bytes,
            budget: budget.clone(),
            depth: metrics.queued_frames.clone(),
        });
        let hub_node = hub.node().map(Arc::from);
        let state = Self {
            budget,
            hub,
            config: config.clone(),
            shutdown,
            sessions: Arc::default(),
            metrics,
            shared: Arc::new(Shared { verifier, config }),
            resumables: Arc::new(Resumables::new(hub_node)),
            exchange: mesh.map(Exchange::new),
            queue_bounds,
        };
        Ok((state, stop))
    }

    /// The bounds of one session's outbound queue: `outbound_queue` frames,
    /// `max_queued_bytes`, the shared buffer budget, the depth gauge.
    pub fn queue_bounds(&self) -> Arc<Bounds> {
        self.queue_bounds.clone()
    }

    /// A new session, whatever carries it: its queue within
    /// [`AppState::queue_bounds`], the receiving side for its delivery, and
    /// its alarm (which a full queue trips).
    pub fn new_session(&self) -> (Session, Inbox, Arc<Alarm>) {
        let (outbox, inbox, alarm) = Outbox::bounded(self.queue_bounds());
        let session = Session::new(self.hub.clone(), self.shared.clone(), outbox);
        (session, inbox, alarm)
    }
}

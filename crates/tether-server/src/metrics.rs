//! Prometheus metrics, served at `/metrics` in the text exposition format. One
//! registry per server (no globals), so tests can run several servers at once.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What the process's allocator says it holds, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes the allocator has taken from the system and not given back:
    /// live objects plus what it keeps for reuse. Resident memory above this
    /// is not the allocator's (the binary, stacks, the kernel's pages).
    pub committed_bytes: u64,
}

/// Reads the allocator's figures; cheap enough to call at every render.
pub type AllocatorProbe = fn() -> AllocatorStats;

/// The process-wide probe (the allocator is process-wide too).
static ALLOCATOR_PROBE: std::sync::OnceLock<AllocatorProbe> = std::sync::OnceLock::new();

/// Makes every server's `/metrics` carry `tether_allocator_committed_bytes`,
/// read with `probe`. The binary that picks the global allocator calls this
/// once, before it builds a server; later calls are ignored.
pub fn set_allocator_probe(probe: AllocatorProbe) {
    let _ = ALLOCATOR_PROBE.set(probe);
}

/// Label for rejected handshakes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why: `origin`, `shutting_down`, `bad_handshake`, `too_many_connections`,
    /// `descriptors` (answered 503 near the descriptor limit), `tls_handshake`
    /// (a TLS handshake that failed or did not finish within the handshake timeout).
    pub reason: String,
}

/// Label for disconnects the server initiates.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The disconnect code, e.g. `4001`.
    pub code: String,
}

/// Label for requests forwarded to the node holding their session.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `answered` (the other node answered), `gone` (no such node listens:
    /// answered here, as for a session that ended), `failed` (no answer:
    /// 503, or a stream cut short).
    pub outcome: String,
}

/// Label for the HTTP version a WebSocket opened over.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    /// `1.1` (GET and Upgrade) or `2` (extended CONNECT, RFC 8441).
    pub http: String,
}

/// Label for what carries a session.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    /// `websocket`, `sse` or `longpoll`.
    pub transport: String,
}

/// Every metric the server keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open sessions, by transport (a WebSocket connection, or an SSE or
    /// long-poll session between its requests).
    pub connections: Family<TransportLabel, Gauge>,
    /// Sessions accepted since start, by transport
    /// (`tether_connections_accepted_total`: a family name of its own, apart
    /// from the gauge's).
    pub connections_accepted: Family<TransportLabel, Counter>,
    /// Requests attached to HTTP sessions now: SSE streams and held polls
    /// (each an open connection a proxy in front counts too).
    pub http_attached: Gauge,
    /// Requests that attached to an HTTP session since start.
    pub http_attaches: Counter,
    /// Requests for a session held by another node of the cluster, by outcome.
    pub forwarded: Family<OutcomeLabel, Counter>,
    /// WebSocket handshakes accepted, by HTTP version.
    pub websocket_upgrades: Family<HttpLabel, Counter>,
    /// TLS connections established (with `[tls]`): over HTTP/2, a browser's
    /// tabs share one.
    pub tls_connections: Counter,
    /// HTTP/2 connections the server ended for the client's errors, by
    /// their HTTP/2 error code (`ENHANCE_YOUR_CALM`: a reset or
    /// CONTINUATION flood; `PROTOCOL_ERROR`, `COMPRESSION_ERROR`, ...).
    pub http2_errors: Family<ReasonLabel, Counter>,
    /// Active channel subscriptions.
    pub subscriptions: Gauge,
    /// Channels the hub holds (with subscribers, history or recent keys).
    pub channels: Gauge,
    /// Frames received from clients.
    pub messages_in: Counter,
    /// Bytes of frames received from clients (payload).
    pub bytes_in: Counter,
    /// Frames sent to clients.
    pub messages_out: Counter,
    /// Bytes of frames sent to clients (payload).
    pub bytes_out: Counter,
    /// Publications accepted.
    pub publications: Counter,
    /// Messages dropped because a connection's queue was full.
    pub queue_drops: Counter,
    /// Frames waiting in the sessions' outbound queues (replies, and
    /// publications of `latest-per-key` channels; other publications are read
    /// from the channel's shared stream and are not queued per session).
    pub queued_frames: Gauge,
    /// Tasks alive on the runtime that renders the metrics, read at each render.
    runtime_tasks: Gauge,
    /// Connections closed by the server, by disconnect code.
    pub disconnects: Family<CodeLabel, Counter>,
    /// Handshakes refused, by reason.
    pub rejected_handshakes: Family<ReasonLabel, Counter>,
    /// Requests refused by the rate limit.
    pub rate_limited: Counter,
    /// Seconds to queue one publication for every subscriber.
    pub fanout_seconds: Histogram,
    /// Accepts that failed, by reason: `resources` (out of descriptors or
    /// memory: the loop backs off) or `peer` (a connection gone before it was
    /// accepted).
    pub accept_errors: Family<ReasonLabel, Counter>,
    /// The Redis engine's round trips, errors, reconnects, gaps filled and resets.
    pub redis: crate::engine::redis::RedisMetrics,
    /// The buffer budget the WebSocket connections share, read at each render.
    budget: Option<BudgetMetrics>,
    /// What the allocator holds, read at each render (given a probe).
    allocator: Option<(AllocatorProbe, Gauge)>,
}

/// The budget's figures as metrics, brought up to date when rendered.
#[derive(Debug)]
struct BudgetMetrics {
    budget: tether::Budget,
    limit: Gauge,
    used: Gauge,
    peak: Gauge,
    waits: Counter,
    refusals: Counter,
}

impl BudgetMetrics {
    fn register(budget: tether::Budget, registry: &mut Registry) -> Self {
        let metrics = Self {
            budget,
            limit: Gauge::default(),
            used: Gauge::default(),
            peak: Gauge::default(),
            waits: Counter::default(),
            refusals: Counter::default(),
        };
        registry.register(
            "buffer_budget_bytes",
            "Bytes all connections may hold for messages being read (max_buffered_bytes)",
            metrics.limit.clone(),
        );
        registry.register(
            "buffer_budget_used_bytes",
            "Bytes of the buffer budget held now",
            metrics.used.clone(),
        );
        registry.register(
            "buffer_budget_peak_bytes",
            "Most bytes of the buffer budget held at once since start",
            metrics.peak.clone(),
        );
        registry.register(
            "buffer_budget_waits",
            "Times a connection found the buffer budget full and stopped being read",
            metrics.waits.clone(),
        );
        registry.register(
            "buffer_budget_refusals",
            "Connections closed with 1013 after waiting for room in the buffer budget",
            metrics.refusals.clone(),
        );
        metrics
    }

    fn update(&self) {
        let gauge = |bytes: usize| i64::try_from(bytes).unwrap_or(i64::MAX);
        self.limit.set(gauge(self.budget.limit()));
        self.used.set(gauge(self.budget.used()));
        self.peak.set(gauge(self.budget.peak()));
        self.waits
            .inc_by(self.budget.waits().saturating_sub(self.waits.get()));
        self.refusals
            .inc_by(self.budget.refusals().saturating_sub(self.refusals.get()));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    /// Counts a WebSocket opened over HTTP `version`.
    pub fn count_websocket_upgrade(&self, version: http::Version) {
        let http = if version == http::Version::HTTP_2 {
            "2"
        } else {
            "1.1"
        };
        self.websocket_upgrades
            .get_or_create(&HttpLabel {
                http: http.to_owned(),
            })
            .inc();
    }

    /// Counts a forwarded request's `outcome` (see [`OutcomeLabel`]).
    pub fn count_forwarded(&self, outcome: &str) {
        self.forwarded
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The server's metrics, with those of the buffer budget if it has one.
    pub fn new(budget: Option<tether::Budget>) -> Self {
        let mut registry = Registry::with_prefix("tether");
        let metrics = Self {
            connections: Family::default(),
            connections_accepted: Family::default(),
            http_attached: Gauge::default(),
            http_attaches: Counter::default(),
            forwarded: Family::default(),
            websocket_upgrades: Family::default(),
            tls_connections: Counter::default(),
            http2_errors: Family::default(),
            subscriptions: Gauge::default(),
            channels: Gauge::default(),
            messages_in: Counter::default(),
            bytes_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            publications: Counter::default(),
            queue_drops: Counter::default(),
            queued_frames: Gauge::default(),
            runtime_tasks: Gauge::default(),
            disconnects: Family::default(),
            rejected_handshakes: Family::default(),
            rate_limited: Counter::default(),
            // 1 µs to ~1 s, doubling.
            fanout_seconds: Histogram::new((0..21).map(|i| 1e-6 * 2f64.powi(i))),
            accept_errors: Family::default(),
            redis: Default::default(),
            budget: None,
            allocator: None,
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open sessions, by transport",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Sessions accepted, by transport",
            metrics.connections_accepted.clone(),
        );
        registry.register(
            "http_attached",
            "Requests attached to HTTP sessions now: SSE streams and held polls",
            metrics.http_attached.clone(),
        );
        registry.register(
            "http_attaches",
            "Requests attached to HTTP sessions",
            metrics.http_attaches.clone(),
        );
        registry.register(
            "tls_connections",
            "TLS connections established",
            metrics.tls_connections.clone(),
        );
        registry.register(
            "http2_errors",
            "HTTP/2 connections ended for the client's errors, by HTTP/2 error code",
            metrics.http2_errors.clone(),
        );
        registry.register(
            "websocket_upgrades",
            "WebSocket handshakes accepted, by HTTP version (2: RFC 8441)",
            metrics.websocket_upgrades.clone(),
        );
        registry.register(
            "forwarded_requests",
            "Requests for a session another node holds, by outcome",
            metrics.forwarded.clone(),
        );
        registry.register(
            "subscriptions",
            "Active channel subscriptions",
            metrics.subscriptions.clone(),
        );
        registry.register(
            "channels",
            "Channels held (subscribers, history or recent idempotency keys)",
            metrics.channels.clone(),
        );
        registry.register(
            "messages_in",
            "Frames received from clients",
            metrics.messages_in.clone(),
        );
        registry.register(
            "bytes_in",
            "Payload bytes received from clients",
            metrics.bytes_in.clone(),
        );
        registry.register(
            "messages_out",
            "Frames sent to clients",
            metrics.messages_out.clone(),
        );
        registry.register(
            "bytes_out",
            "Payload bytes sent to clients",
            metrics.bytes_out.clone(),
        );
        registry.register(
            "publications",
            "Publications accepted",
            metrics.publications.clone(),
        );
        registry.register(
            "queue_drops",
            "Messages dropped on a full connection queue",
            metrics.queue_drops.clone(),
        );
        registry.register(
            "queued_frames",
            "Frames waiting in the sessions' outbound queues",
            metrics.queued_frames.clone(),
        );
        registry.register(
            "runtime_tasks",
            "Tasks alive on the server's runtime (sessions, timers, requests)",
            metrics.runtime_tasks.clone(),
        );
        registry.register(
            "disconnects",
            "Connections closed by the server, by code",
            metrics.disconnects.clone(),
        );
        registry.register(
            "rejected_handshakes",
            "Handshakes refused, by reason",
            metrics.rejected_handshakes.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the rate limit",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "fanout_seconds",
            "Seconds to queue one publication for every subscriber",
            metrics.fanout_seconds.clone(),
        );
        registry.register(
            "accept_errors",
            "Accepts that failed, by reason",
            metrics.accept_errors.clone(),
        );
        metrics.redis.register(&mut registry);
        let budget = budget.map(|budget| BudgetMetrics::register(budget, &mut registry));
        let allocator = ALLOCATOR_PROBE.get().map(|&probe| {
            let committed = Gauge::default();
            registry.register(
                "allocator_committed_bytes",
                "Bytes the memory allocator holds from the system (live and kept for reuse)",
                committed.clone(),
            );
            (probe, committed)
        });
        Self {
            registry,
            budget,
            allocator,
            ..metrics
        }
    }

    /// Counts a session opened on `transport`; the gauge goes down when the
    /// returned guard is dropped, however the session ends.
    pub fn open(self: &std::sync::Arc<Self>, transport: &str) -> OpenSession {
        let label = TransportLabel {
            transport: transport.to_owned(),
        };
        self.connections_accepted.get_or_create(&label).inc();
        let gauge = self.connections.get_or_create(&label).clone();
        gauge.inc();
        OpenSession(gauge)
    }

    /// Counts a refused handshake.
    pub fn reject(&self, reason: &str) {
        self.rejected_handshakes
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts an HTTP/2 connection ended for the client's error `code`
    /// (one of RFC 9113's names, or `other`: the label set stays bounded).
    pub fn count_http2_error(&self, code: &str) {
        self.http2_errors
            .get_or_create(&ReasonLabel {
                reason: code.to_owned(),
            })
            .inc();
    }

    /// Counts a failed accept.
    pub fn accept_failed(&self, out_of_resources: bool) {
        let reason = if out_of_resources {
            "resources"
        } else {
            "peer"
        };
        self.accept_errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a server-initiated disconnect.
    pub fn disconnect(&self, code: u16) {
        self.disconnects
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Some(budget) = &self.budget {
            budget.update();
        }
        if let Some((probe, committed)) = &self.allocator {
            let stats = probe();
            committed.set(i64::try_from(stats.committed_bytes).unwrap_or(i64::MAX));
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = runtime.metrics().num_alive_tasks();
            self.runtime_tasks
                .set(i64::try_from(tasks).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// Held while a session is open: one in the `tether_connections` gauge of its
/// transport.
#[derive(Debug)]
pub struct OpenSession(Gauge);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.dec();
    }
}

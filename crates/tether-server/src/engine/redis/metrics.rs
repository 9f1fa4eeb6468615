//! What the Redis engine counts, registered with the server's metrics as
//! `tether_redis_*` (they stay at zero on the memory engine).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Handles to the Redis metrics; clones count into the same series.
#[derive(Debug, Clone)]
pub struct RedisMetrics {
    /// Seconds from sending a command (or script) to its answer.
    pub command_seconds: Histogram,
    /// Commands that failed or timed out.
    pub errors: Counter,
    /// Connections made again after one failed (commands and pub/sub).
    pub reconnects: Counter,
    /// Publications read back from a channel's stream because pub/sub lost
    /// them (a gap, a reconnect, the position check).
    pub gaps_filled: Counter,
    /// Times a channel's local subscribers were told to resubscribe (4003):
    /// its history lost or a gap its stream no longer covered.
    pub resets: Counter,
}

impl Default for RedisMetrics {
    fn default() -> Self {
        Self {
            // 50 µs to about 3.3 s.
            command_seconds: Histogram::new((0..17).map(|i| 50e-6 * 2f64.powi(i))),
            errors: Counter::default(),
            reconnects: Counter::default(),
            gaps_filled: Counter::default(),
            resets: Counter::default(),
        }
    }
}

impl RedisMetrics {
    /// Registers them with `registry` (prefixed `tether_` by it).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "redis_command_seconds",
            "Round trip of a Redis command or script, from sending it to its answer",
            self.command_seconds.clone(),
        );
        registry.register(
            "redis_errors",
            "Redis commands that failed or timed out",
            self.errors.clone(),
        );
        registry.register(
            "redis_reconnects",
            "Redis connections made again after one failed (commands and pub/sub)",
            self.reconnects.clone(),
        );
        registry.register(
            "redis_gaps_filled",
            "Publications read back from a channel's Redis stream because pub/sub lost them",
            self.gaps_filled.clone(),
        );
        registry.register(
            "redis_resets",
            "Times a channel's local subscribers were told to resubscribe (4003): its history was lost",
            self.resets.clone(),
        );
    }
}

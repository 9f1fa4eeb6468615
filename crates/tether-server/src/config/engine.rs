//! The engine's settings: `[engine]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for [`EngineConfig::sweep_interval`].
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Default for [`EngineConfig::redis_urls`].
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default for [`EngineConfig::redis_prefix`].
pub const DEFAULT_REDIS_PREFIX: &str = "tether";
/// Default for [`EngineConfig::redis_command_timeout`].
pub const DEFAULT_REDIS_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Default for [`EngineConfig::redis_connect_timeout`].
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`EngineConfig::redis_pool_size`].
pub const DEFAULT_REDIS_POOL_SIZE: usize = 2;
/// Most connections [`EngineConfig::redis_pool_size`] may ask for.
pub const MAX_REDIS_POOL_SIZE: usize = 64;
/// Default for [`EngineConfig::redis_presence_ttl`].
pub const DEFAULT_REDIS_PRESENCE_TTL: Duration = Duration::from_secs(30);

/// Which engine keeps the state a cluster would share (offsets and epochs,
/// history, idempotency keys, presence).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EngineKind {
    /// In this process's memory: one node, nothing to run beside it.
    #[default]
    Memory,
    /// In Redis (or Valkey), shared by every node that names the same instances.
    Redis,
}

impl EngineKind {
    /// Every engine this build has.
    pub const ALL: [EngineKind; 2] = [EngineKind::Memory, EngineKind::Redis];

    /// The name in the file (and for `--engine`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Memory => "memory",
            EngineKind::Redis => "redis",
        }
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|kind| kind.as_str()).collect();
                format!(
                    "no engine `{name}` in this build (known: {})",
                    known.join(", ")
                )
            })
    }
}

/// Where the state a cluster would share lives: offsets and epochs,
/// history, idempotency keys, presence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Which engine: `memory` (this process) or `redis` (shared by the
    /// nodes naming the same `redis_urls`); `--engine redis://HOST:PORT`
    /// sets both. Default: [`EngineKind::Memory`].
    #[schemars(extend("x-alias" = "engine"))]
    pub kind: EngineKind,
    /// How often history past its age, idempotency keys past their window
    /// and channels with nothing left are forgotten. Default:
    /// [`DEFAULT_SWEEP_INTERVAL`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub sweep_interval: Duration,
    /// With `redis`: the instances, `redis://HOST:PORT[/DB]` (or `rediss://`);
    /// channels are spread over several by a hash of their names. Default:
    /// [`DEFAULT_REDIS_URL`].
    pub redis_urls: Vec<String>,
    /// With `redis`: the prefix of every key and pub/sub topic, so several
    /// clusters can share an instance. Default: [`DEFAULT_REDIS_PREFIX`].
    pub redis_prefix: String,
    /// With `redis`: how long a command may take before the request fails
    /// (error 112). Default: [`DEFAULT_REDIS_COMMAND_TIMEOUT`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub redis_command_timeout: Duration,
    /// With `redis`: how long opening a connection may take. Default:
    /// [`DEFAULT_REDIS_CONNECT_TIMEOUT`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub redis_connect_timeout: Duration,
    /// With `redis`: connections per instance that commands (publishes,
    /// history reads) are spread over; each pipelines what its callers send,
    /// so one is enough until a node's own CPU for Redis replies is the
    /// limit. Pub/sub has connections of its own. Default:
    /// [`DEFAULT_REDIS_POOL_SIZE`].
    pub redis_pool_size: usize,
    /// With `redis`: a client's presence lasts this long unless its node
    /// refreshes it (every third of it), so the clients of a node that died
    /// leave within it. Default: [`DEFAULT_REDIS_PRESENCE_TTL`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub redis_presence_ttl: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            kind: EngineKind::Memory,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            redis_urls: vec![DEFAULT_REDIS_URL.to_owned()],
            redis_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            redis_command_timeout: DEFAULT_REDIS_COMMAND_TIMEOUT,
            redis_connect_timeout: DEFAULT_REDIS_CONNECT_TIMEOUT,
            redis_pool_size: DEFAULT_REDIS_POOL_SIZE,
            redis_presence_ttl: DEFAULT_REDIS_PRESENCE_TTL,
        }
    }
}

impl EngineConfig {
    /// The `redis` engine on the instance at `url` (as `--engine URL` sets it).
    pub fn redis(url: impl Into<String>) -> Self {
        Self {
            kind: EngineKind::Redis,
            redis_urls: vec![url.into()],
            ..Self::default()
        }
    }

    /// Sets [`EngineConfig::sweep_interval`].
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = every;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_is_named_as_in_the_file_and_an_unknown_one_lists_the_known() {
        for kind in EngineKind::ALL {
            assert_eq!(kind.as_str().parse::<EngineKind>(), Ok(kind));
        }
        let error = "etcd".parse::<EngineKind>().unwrap_err();
        assert!(
            error.contains("`etcd`") && error.contains("memory, redis"),
            "{error}"
        );
    }
}

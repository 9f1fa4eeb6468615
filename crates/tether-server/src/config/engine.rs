//! The engine's settings: `[engine]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for [`EngineConfig::sweep_interval`].
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

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
}

impl EngineKind {
    /// Every engine this build has.
    pub const ALL: [EngineKind; 1] = [EngineKind::Memory];

    /// The name in the file (and for `--engine`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Memory => "memory",
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
    /// Which engine: `memory`, this process (the only one so far).
    /// Default: [`EngineKind::Memory`].
    #[schemars(extend("x-alias" = "engine"))]
    pub kind: EngineKind,
    /// How often history past its age, idempotency keys past their window
    /// and channels with nothing left are forgotten. Default:
    /// [`DEFAULT_SWEEP_INTERVAL`].
    #[serde(with = "super::duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub sweep_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            kind: EngineKind::Memory,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

impl EngineConfig {
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
        let error = "redis".parse::<EngineKind>().unwrap_err();
        assert!(
            error.contains("`redis`") && error.contains("memory"),
            "{error}"
        );
    }
}

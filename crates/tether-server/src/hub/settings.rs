//! The hub's own settings. They are declared, documented and defaulted in
//! the server's configuration ([`ServerConfig`]); the hub is handed only
//! these, so it depends on no other layer's settings.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{self, NamespaceOptions, ServerConfig};
use crate::engine::Retention;

/// What the hub needs to know: limits on what is published, and each
/// namespace's channel options.
#[derive(Debug, Clone, PartialEq)]
pub struct HubSettings {
    /// [`ServerConfig::max_channel_name`].
    pub max_channel_name: usize,
    /// [`ServerConfig::max_publish_size`].
    pub max_publish_size: usize,
    /// [`ServerConfig::max_data_depth`].
    pub max_data_depth: usize,
    /// [`ServerConfig::idempotency_window`].
    pub idempotency_window: Duration,
    /// [`ServerConfig::outbound_queue`]: the depth of each channel's stream.
    pub outbound_queue: usize,
    /// [`ServerConfig::channels`].
    pub channels: NamespaceOptions,
    /// [`ServerConfig::namespaces`].
    pub namespaces: HashMap<String, NamespaceOptions>,
}

impl HubSettings {
    /// The options for `channel`, by its namespace.
    pub fn namespace_of(&self, channel: &str) -> &NamespaceOptions {
        config::namespace_of(&self.channels, &self.namespaces, channel)
    }

    /// What the engine keeps of `channel`, by its namespace.
    pub fn retention(&self, channel: &str) -> Retention {
        let options = self.namespace_of(channel);
        Retention {
            history_size: options.history_size,
            history_ttl: options.history_ttl,
            idempotency_window: self.idempotency_window,
        }
    }
}

impl From<&ServerConfig> for HubSettings {
    fn from(config: &ServerConfig) -> Self {
        Self {
            max_channel_name: config.max_channel_name,
            max_publish_size: config.max_publish_size,
            max_data_depth: config.max_data_depth,
            idempotency_window: config.idempotency_window,
            outbound_queue: config.outbound_queue,
            channels: config.channels.clone(),
            namespaces: config.namespaces.clone(),
        }
    }
}

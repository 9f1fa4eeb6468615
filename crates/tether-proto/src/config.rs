//! Limits and options of the protocol layer, with their defaults.

use crate::deflate::DeflateConfig;

/// Default for [`Config::max_frame_size`]: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;
/// Default for [`Config::max_message_size`]: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
/// Default for [`Config::max_fragments`]: enough for a 4 MiB message in 64-byte
/// fragments, far below what a flood of empty fragments would need to matter.
pub const DEFAULT_MAX_FRAGMENTS: usize = 1 << 17;
/// Default for [`Config::max_header_bytes`]: 16 KiB, room for large cookies.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 << 10;
/// Most header lines accepted in a handshake.
pub const MAX_HEADERS: usize = 64;

/// Which end of the connection this is; it decides the masking rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opened the connection; masks what it sends.
    Client,
    /// Accepted the connection; never masks.
    Server,
}

/// Protocol limits and options.
///
/// ```
/// let config = tether_proto::Config::default().max_message_size(1 << 20);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame payload accepted; larger closes with 1009.
    /// Default: [`DEFAULT_MAX_FRAME_SIZE`].
    pub max_frame_size: usize,
    /// Largest message accepted, counted after decompression, so a deflate bomb
    /// stops at this size; larger closes with 1009. Default: [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: usize,
    /// Most frames in one message; more closes with 1009.
    /// Default: [`DEFAULT_MAX_FRAGMENTS`].
    pub max_fragments: usize,
    /// Largest opening handshake (request line and headers); larger is answered 431.
    /// Default: [`DEFAULT_MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// permessage-deflate (RFC 7692). Default: [`DeflateConfig::default`].
    pub deflate: DeflateConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            deflate: DeflateConfig::default(),
        }
    }
}

/// A configuration value out of its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Config::max_fragments`].
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.max_fragments = count;
        self
    }

    /// Sets [`Config::max_header_bytes`].
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// Sets [`Config::deflate`].
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.deflate = deflate;
        self
    }

    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_frame_size == 0 || self.max_message_size == 0 || self.max_fragments == 0 {
            return Err(ConfigError(
                "frame, message and fragment limits must be above 0".into(),
            ));
        }
        if self.max_header_bytes < 256 {
            return Err(ConfigError("max_header_bytes must be at least 256".into()));
        }
        self.deflate.validate()
    }
}

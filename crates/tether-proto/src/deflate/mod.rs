//! permessage-deflate (RFC 7692): negotiation and the per-connection codec.
//!
//! Memory is the cost to watch. A zlib compressor with a 2^15 window holds about
//! 256 KiB and an inflater about 40 KiB, per connection. By default both sides
//! use no context takeover: each message borrows a state from a small per-thread
//! pool and returns it when it ends, so an idle connection holds none (measured
//! by `cargo bench -p tether-cli --bench idle_memory`). Context takeover (both
//! flags off) compresses streams of similar messages better at that memory cost;
//! smaller windows (`*_max_window_bits`) shrink it.

mod codec;
mod negotiate;
mod pool;

pub use codec::{Deflater, Inflater};
pub use negotiate::{client_accept, client_offer, server_negotiate, Negotiated};

use crate::config::ConfigError;

/// Default compression level (zlib's scale, 0–9): fast, most of the gain for JSON.
pub const DEFAULT_LEVEL: u32 = 1;
/// Default largest window, 2^15 bytes: what the RFC assumes when none is negotiated.
pub const DEFAULT_MAX_WINDOW_BITS: u8 = 15;
/// Default for [`DeflateConfig::threshold`]: 0, every message is compressed once
/// compression is negotiated, as browsers do. Raising it skips tiny messages, on
/// which deflate gains nothing; the RFC allows either per message, but some peers
/// (the `kosoku` Autobahn runner among them) mishandle uncompressed messages on a
/// compressed connection.
pub const DEFAULT_THRESHOLD: usize = 0;

/// Settings for permessage-deflate. Names follow RFC 7692's parameters: `server_*`
/// constrain what the server sends, `client_*` what the client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Offer (client) or accept (server) permessage-deflate at all. Default: `true`.
    pub enabled: bool,
    /// Compression level, 0–9. Default: [`DEFAULT_LEVEL`].
    pub level: u32,
    /// Largest window the server compresses with; a server asks nothing of the
    /// client for it, a client requests it when below 15.
    /// Default: [`DEFAULT_MAX_WINDOW_BITS`].
    pub server_max_window_bits: u8,
    /// Largest window the client compresses with; a server asks the client for it
    /// when the client allows, a client compresses with no more.
    /// Default: [`DEFAULT_MAX_WINDOW_BITS`].
    pub client_max_window_bits: u8,
    /// The server resets its compressor after every message and frees it between
    /// messages. Default: `true`, so an idle compressed connection holds no
    /// compressor (about 256 KiB with a 2^15 window); turn off for a better ratio
    /// on streams of similar messages.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message; a server asks this of
    /// every client (a client hints it in its offer), which lets the server free
    /// its inflater between messages. Default: `true`.
    pub client_no_context_takeover: bool,
    /// Messages shorter than this are sent uncompressed. Default: [`DEFAULT_THRESHOLD`].
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            level: DEFAULT_LEVEL,
            server_max_window_bits: DEFAULT_MAX_WINDOW_BITS,
            client_max_window_bits: DEFAULT_MAX_WINDOW_BITS,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

impl DeflateConfig {
    /// permessage-deflate turned off.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Sets [`DeflateConfig::enabled`].
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// Sets [`DeflateConfig::level`].
    pub fn level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }

    /// Sets [`DeflateConfig::server_max_window_bits`].
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits;
        self
    }

    /// Sets [`DeflateConfig::client_max_window_bits`].
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits;
        self
    }

    /// Sets [`DeflateConfig::server_no_context_takeover`].
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets [`DeflateConfig::client_no_context_takeover`].
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets [`DeflateConfig::threshold`].
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Checks ranges: level 0–9, window bits 9–15 (zlib cannot compress with 8).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.level > 9 {
            return Err(ConfigError(format!(
                "deflate level {} is not in 0..=9",
                self.level
            )));
        }
        for bits in [self.server_max_window_bits, self.client_max_window_bits] {
            if !(9..=15).contains(&bits) {
                return Err(ConfigError(format!("window bits {bits} not in 9..=15")));
            }
        }
        Ok(())
    }
}

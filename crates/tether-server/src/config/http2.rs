//! HTTP/2's limits per connection: `[http2]`, for connections over TLS
//! (ALPN `h2`) and h2c.

use serde::{Deserialize, Serialize};

/// Default for [`Http2Config::max_concurrent_streams`]: the least RFC 9113
/// §6.5.2 recommends, many more than a browser's tabs on one host need.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default for [`Http2Config::max_header_list_size`], in bytes.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 << 10;
/// Default for [`Http2Config::stream_window`], in bytes.
pub const DEFAULT_STREAM_WINDOW: u32 = 1 << 20;
/// Default for [`Http2Config::connection_window`], in bytes: eight streams'
/// worth, so one stream whose session reads slowly cannot hold the window
/// its siblings need.
pub const DEFAULT_CONNECTION_WINDOW: u32 = 8 << 20;
/// Default for [`Http2Config::max_pending_resets`].
pub const DEFAULT_MAX_PENDING_RESETS: usize = 20;
/// Default for [`Http2Config::max_error_resets`].
pub const DEFAULT_MAX_ERROR_RESETS: usize = 1024;
/// The largest flow-control window HTTP/2 allows (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// What one HTTP/2 connection may ask of the server. Each WebSocket, SSE
/// stream and request is a stream of the connection; a limit broken ends
/// the stream or the connection (GOAWAY), never the server's other
/// connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Http2Config {
    /// Streams (WebSockets, SSE streams, requests) open at once on one
    /// connection (SETTINGS_MAX_CONCURRENT_STREAMS); one more is refused
    /// with RST_STREAM REFUSED_STREAM and the client may retry it.
    /// Default: [`DEFAULT_MAX_CONCURRENT_STREAMS`].
    pub max_concurrent_streams: u32,
    /// Largest header list of a request, in bytes as decoded
    /// (SETTINGS_MAX_HEADER_LIST_SIZE); a larger one is answered 431. It
    /// also bounds the CONTINUATION frames one request may send.
    /// Default: [`DEFAULT_MAX_HEADER_LIST_SIZE`].
    pub max_header_list_size: u32,
    /// Flow-control window of each stream: bytes a client may send on one
    /// stream before the server has read them.
    /// Default: [`DEFAULT_STREAM_WINDOW`].
    pub stream_window: u32,
    /// Flow-control window of the whole connection, shared by its streams.
    /// Default: [`DEFAULT_CONNECTION_WINDOW`].
    pub connection_window: u32,
    /// Streams a client may open and reset before the server has taken
    /// them up; past it the connection ends with GOAWAY
    /// (ENHANCE_YOUR_CALM), the defence against rapid reset floods
    /// (CVE-2023-44487). Default: [`DEFAULT_MAX_PENDING_RESETS`].
    pub max_pending_resets: usize,
    /// Streams the server may reset for the client's protocol errors on one
    /// connection before it ends the connection with GOAWAY: a client that
    /// keeps provoking resets costs one connection, not the server's CPU.
    /// Default: [`DEFAULT_MAX_ERROR_RESETS`].
    pub max_error_resets: usize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            stream_window: DEFAULT_STREAM_WINDOW,
            connection_window: DEFAULT_CONNECTION_WINDOW,
            max_pending_resets: DEFAULT_MAX_PENDING_RESETS,
            max_error_resets: DEFAULT_MAX_ERROR_RESETS,
        }
    }
}

impl Http2Config {
    /// Checks what HTTP/2 itself allows: windows of at least 65 535 bytes
    /// (the protocol's initial window) and at most 2^31 - 1, at least one
    /// stream, a header list that holds a WebSocket's CONNECT.
    pub fn validate(&self) -> Result<(), super::InvalidSetting> {
        use super::InvalidSetting;
        if self.max_concurrent_streams == 0 {
            return Err(InvalidSetting::new(
                "http2.max_concurrent_streams",
                0,
                "must be at least 1",
            ));
        }
        if self.max_header_list_size < 1024 {
            return Err(InvalidSetting::new(
                "http2.max_header_list_size",
                self.max_header_list_size,
                "must be at least 1024",
            ));
        }
        for (key, window) in [
            ("http2.stream_window", self.stream_window),
            ("http2.connection_window", self.connection_window),
        ] {
            if !(65_535..=MAX_WINDOW).contains(&window) {
                return Err(InvalidSetting::new(
                    key,
                    window,
                    format!("must be 65535 to {MAX_WINDOW}"),
                ));
            }
        }
        Ok(())
    }
}

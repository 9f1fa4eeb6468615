//! Settings of the I/O layer, wrapping the protocol limits.

use std::time::Duration;

use tether_proto::DeflateConfig;

use crate::budget::Budget;

/// Default for [`Config::handshake_timeout`]: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Config::close_timeout`]: 5 s.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`Config::read_chunk`]: 64 KiB. Reads land in a buffer shared
/// by the connections of a thread, so a large chunk costs no memory per
/// connection and lets one read take a whole burst of pipelined messages.
pub const DEFAULT_READ_CHUNK: usize = 64 << 10;
/// Default for [`Config::write_buffer_size`]: 64 KiB.
pub const DEFAULT_WRITE_BUFFER_SIZE: usize = 64 << 10;

/// Settings for a connection: protocol limits plus timeouts and buffer sizes.
///
/// ```
/// use std::time::Duration;
/// let config = tether::Config::default()
///     .handshake_timeout(Duration::from_secs(3))
///     .max_message_size(1 << 20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Protocol limits and compression. Default: [`tether_proto::Config::default`].
    pub protocol: tether_proto::Config,
    /// Longest time from accepting TCP (or starting to connect) to a finished
    /// opening handshake; a slowloris client is cut off here.
    /// Default: [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// How long to wait for the peer's close frame, and for a server to drop TCP,
    /// once this side has sent its close frame. Default: [`DEFAULT_CLOSE_TIMEOUT`].
    pub close_timeout: Duration,
    /// Bytes requested from the socket per read, into a per-thread buffer (a
    /// frame larger than this is read into its own). Default: [`DEFAULT_READ_CHUNK`].
    ///
    /// A read of 4 KiB or more is decoded where it landed, so a message over
    /// 1 KiB from it shares that buffer: one kept for long keeps up to a chunk
    /// alive (copy it, `Message::detached`, to let go; a `PreparedMessage`
    /// does). Smaller messages and shorter reads are copied and hold nothing
    /// shared.
    pub read_chunk: usize,
    /// Queued outgoing bytes that trigger a write when messages are fed without
    /// flushing. Default: [`DEFAULT_WRITE_BUFFER_SIZE`].
    pub write_buffer_size: usize,
    /// Answer pings with pongs automatically. Default: `true`.
    pub auto_pong: bool,
    /// Answer the peer's close frame as soon as it is read. Off, `recv` hands
    /// the [`Message::Close`](crate::Message::Close) over unanswered: the
    /// application may still send what it owes (replies to requests read
    /// before the close, as RFC 6455 §5.5.1 allows), then answers with
    /// [`WsWriter::close`](crate::WsWriter::close), which also ends TCP. It
    /// must answer promptly: the peer waits for it. Default: `true`.
    pub auto_close: bool,
    /// A process-wide bound, shared with other connections, on the bytes held
    /// for peers while their messages are read and inflated (see
    /// [`Budget`]). Default: none (each connection bounded by its limits alone).
    pub budget: Option<Budget>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: tether_proto::Config::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            read_chunk: DEFAULT_READ_CHUNK,
            write_buffer_size: DEFAULT_WRITE_BUFFER_SIZE,
            auto_pong: true,
            auto_close: true,
            budget: None,
        }
    }
}

impl Config {
    /// Sets [`Config::protocol`].
    pub fn protocol(mut self, protocol: tether_proto::Config) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets the protocol's largest accepted message (see [`tether_proto::Config::max_message_size`]).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.protocol.max_message_size = bytes;
        self
    }

    /// Sets the protocol's largest accepted frame (see [`tether_proto::Config::max_frame_size`]).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.protocol.max_frame_size = bytes;
        self
    }

    /// Sets permessage-deflate options (see [`DeflateConfig`]).
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.protocol.deflate = deflate;
        self
    }

    /// Turns permessage-deflate on or off.
    pub fn compression(mut self, on: bool) -> Self {
        self.protocol.deflate.enabled = on;
        self
    }

    /// Sets [`Config::handshake_timeout`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`Config::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`Config::read_chunk`].
    pub fn read_chunk(mut self, bytes: usize) -> Self {
        self.read_chunk = bytes;
        self
    }

    /// Sets [`Config::write_buffer_size`].
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.write_buffer_size = bytes;
        self
    }

    /// Sets [`Config::auto_pong`].
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    /// Sets [`Config::auto_close`].
    pub fn auto_close(mut self, on: bool) -> Self {
        self.auto_close = on;
        self
    }

    /// Shares `budget` with the other connections made with this config.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }
}

//! Where a subscriber stands in a channel once a frame is written: what a
//! slow consumer's `disconnect` push tells it to resume from.

use std::sync::Arc;

/// Where a session stands in a channel's stream once a frame is written:
/// what a client needs to resume without loss after a disconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The channel.
    pub channel: Arc<str>,
    /// The offset of the publication (or, for a subscribe reply, the newest
    /// offset at the time of subscribing).
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: Arc<str>,
}

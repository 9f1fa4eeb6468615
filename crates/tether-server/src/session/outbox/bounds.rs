//! What one session's queue may hold: frames and bytes of its own, and past
//! [`FREE_QUEUED`] a charge against the process-wide [`tether::Budget`] the
//! WebSocket readers share, so a client that asks for large replies (history
//! pages) and does not read them cannot make the server hold more than its
//! share.

use prometheus_client::metrics::gauge::Gauge;

/// Bytes a session may queue before they count against the process-wide
/// budget: a few replies' worth, so ordinary sessions never touch it.
pub const FREE_QUEUED: usize = 64 << 10;

/// What bounds one session's queue: the same for every session of a server,
/// so each queue holds one pointer to it.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// Frames queued at most (at least 1).
    pub frames: usize,
    /// Payload bytes queued at most (0: no bound); one frame of any size is
    /// taken into an empty queue.
    pub bytes: usize,
    /// Charged with the bytes queued past [`FREE_QUEUED`]; a reply that finds
    /// it full waits up to its wait time, then the session is cut off as a
    /// slow consumer.
    pub budget: Option<tether::Budget>,
    /// Items queued in every session's queue (`tether_queued_frames`).
    pub depth: Gauge,
}

/// Whether a frame fits now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Room {
    Yes,
    /// The session's own bound (frames or bytes) is reached.
    Full,
    /// The process-wide budget has no room.
    NoBudget,
}

/// What one queue holds against its bounds.
#[derive(Debug, Default)]
pub(super) struct Usage {
    /// Payload bytes queued.
    pub(super) bytes: usize,
    /// Bytes charged to the budget (those queued past [`FREE_QUEUED`]).
    charged: usize,
}

impl Usage {
    /// Whether a frame of `len` bytes fits beside `items` queued ones,
    /// charging the budget for it if it does (an [`Usage::added`] of it
    /// must follow).
    pub(super) fn room(&mut self, bounds: &Bounds, items: usize, len: usize) -> Room {
        if items >= bounds.frames.max(1)
            || (bounds.bytes > 0 && self.bytes > 0 && self.bytes + len > bounds.bytes)
        {
            return Room::Full;
        }
        if let Some(budget) = &bounds.budget {
            let want = (self.bytes + len).saturating_sub(FREE_QUEUED);
            if want > self.charged {
                if !budget.try_charge(want - self.charged) {
                    return Room::NoBudget;
                }
                self.charged = want;
            }
        }
        Room::Yes
    }

    /// Accounts for one item of `len` bytes entering the queue.
    pub(super) fn added(&mut self, bounds: &Bounds, len: usize) {
        self.bytes += len;
        bounds.depth.inc();
    }

    /// Accounts for `items` of `bytes` in all leaving the queue (taken,
    /// dropped or superseded), giving back what the budget no longer holds.
    pub(super) fn removed(&mut self, bounds: &Bounds, items: usize, bytes: usize) {
        bounds.depth.dec_by(items as i64);
        self.bytes -= bytes;
        let keep = self.bytes.saturating_sub(FREE_QUEUED);
        if self.charged > keep {
            if let Some(budget) = &bounds.budget {
                budget.release(self.charged - keep);
            }
            self.charged = keep;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_of_any_size_fits_an_empty_queue() {
        let bounds = Bounds {
            frames: 4,
            bytes: 100,
            ..Bounds::default()
        };
        let mut usage = Usage::default();
        assert_eq!(usage.room(&bounds, 0, 1000), Room::Yes);
        usage.added(&bounds, 1000);
        assert_eq!(usage.room(&bounds, 1, 1), Room::Full, "past the bytes");
        usage.removed(&bounds, 1, 1000);
        assert_eq!(usage.room(&bounds, 4, 1), Room::Full, "past the frames");
        assert_eq!(bounds.depth.get(), 0);
    }
}

//! A process-wide bound on the bytes held on behalf of peers.
//!
//! Each connection's limits bound what one peer can make the process hold; a
//! [`Budget`] bounds what all of them can together. Connections share one
//! (give every [`Config`](crate::Config) a clone): a message being assembled
//! or inflated past a small free allowance is charged to it, and a connection
//! that finds it full stops reading (the peer meets TCP backpressure) until
//! others give room back, or, after its wait, is closed with 1013
//! (try again later). Small messages never touch it, so well-behaved clients
//! keep being served while large ones queue.
//!
//! ```
//! use std::time::Duration;
//! let budget = tether::Budget::new(256 << 20, Duration::from_secs(2));
//! let config = tether::Config::default().budget(budget.clone());
//! assert_eq!(budget.used(), 0);
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes any connection may hold without charging the budget: two reads'
/// worth, so connections exchanging small messages never touch it, not even
/// with a partial frame left over from the last read.
pub const FREE_PER_CONNECTION: usize = 128 << 10;

/// A reasonable wait for room before a connection is closed with 1013: 5 s.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// The share of memory [`machine_default`] gives a budget: a quarter.
const MACHINE_SHARE: usize = 4;

/// A budget limit sized from the machine: a quarter of the memory this
/// process may use (the machine's, or its control group's limit when that is
/// lower); 1 GiB where neither can be read.
pub fn machine_default() -> usize {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| parse_mem_total(&info));
    let group = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|max| max.trim().parse::<usize>().ok());
    let usable = match (machine, group) {
        (Some(machine), Some(group)) => machine.min(group),
        (Some(bytes), None) | (None, Some(bytes)) => bytes,
        (None, None) => return 1 << 30,
    };
    usable / MACHINE_SHARE
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn parse_mem_total(info: &str) -> Option<usize> {
    let line = info.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Room is taken in steps of this much, so a large message costs an atomic
/// operation per step rather than per read.
const GRANT: usize = 256 << 10;

/// A shared bound on the bytes connections hold for their peers (see the
/// [module documentation](self)). Cloning shares it.
#[derive(Debug, Clone)]
pub struct Budget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limit: usize,
    wait: Duration,
    used: AtomicUsize,
    peak: AtomicUsize,
    waits: AtomicU64,
    refusals: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes; a connection that finds it full waits up
    /// to `wait` for room before it is closed with 1013 ([`DEFAULT_WAIT`] is
    /// a reasonable choice).
    pub fn new(limit: usize, wait: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                limit,
                wait,
                used: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                waits: AtomicU64::new(0),
                refusals: AtomicU64::new(0),
            }),
        }
    }

    /// The bound, in bytes.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// How long a connection waits for room before it is closed with 1013.
    pub fn wait_time(&self) -> Duration {
        self.shared.wait
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.shared.used.load(Ordering::Relaxed)
    }

    /// The most bytes charged at once since the budget was made.
    pub fn peak(&self) -> usize {
        self.shared.peak.load(Ordering::Relaxed)
    }

    /// Times a connection found the budget full and stopped reading.
    pub fn waits(&self) -> u64 {
        self.shared.waits.load(Ordering::Relaxed)
    }

    /// Connections closed with 1013 after waiting in vain.
    pub fn refusals(&self) -> u64 {
        self.shared.refusals.load(Ordering::Relaxed)
    }

    /// Charges `bytes` if they fit under the limit; false (nothing charged)
    /// if they do not. For holders other than the WebSocket readers (a
    /// server's outbound queues), which give the bytes back with
    /// [`Budget::release`].
    pub fn try_charge(&self, bytes: usize) -> bool {
        let shared = &*self.shared;
        let taken = shared
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|&after| after <= shared.limit)
            });
        match taken {
            Ok(before) => {
                shared.peak.fetch_max(before + bytes, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back `bytes` charged with [`Budget::try_charge`].
    pub fn release(&self, bytes: usize) {
        self.shared.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn count_wait(&self) {
        self.shared.waits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refusal(&self) {
        self.shared.refusals.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection's share of a [`Budget`]: how many grants it holds, a
/// `u32` so a connection's reader packs it beside its other small fields.
/// The reader gives them back when it needs less and when it ends.
#[derive(Debug, Default)]
pub(crate) struct Share {
    grants: u32,
}

impl Share {
    /// The most a connection holding this share may hold now.
    pub(crate) fn allowance(&self) -> usize {
        FREE_PER_CONNECTION + self.charged()
    }

    fn charged(&self) -> usize {
        self.grants as usize * GRANT
    }

    /// Makes the allowance at least `held` bytes if `budget` has room; false
    /// if it has not (nothing is charged then).
    pub(crate) fn cover(&mut self, budget: &Budget, held: usize) -> bool {
        if held <= self.allowance() {
            return true;
        }
        let Ok(want) = u32::try_from((held - FREE_PER_CONNECTION).div_ceil(GRANT)) else {
            return false;
        };
        if budget.try_charge((want - self.grants) as usize * GRANT) {
            self.grants = want;
            true
        } else {
            false
        }
    }

    /// Gives back to `budget` what is charged beyond `held` bytes.
    pub(crate) fn shrink_to(&mut self, budget: &Budget, held: usize) {
        if self.grants == 0 {
            return;
        }
        let keep = held.saturating_sub(FREE_PER_CONNECTION).div_ceil(GRANT) as u32;
        if keep < self.grants {
            budget.release((self.grants - keep) as usize * GRANT);
            self.grants = keep;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_holdings_are_free_and_large_ones_charged_in_steps() {
        let budget = Budget::new(1 << 20, DEFAULT_WAIT);
        let mut share = Share::default();
        assert!(share.cover(&budget, FREE_PER_CONNECTION));
        assert_eq!(budget.used(), 0);
        assert!(share.cover(&budget, FREE_PER_CONNECTION + 1));
        assert_eq!(budget.used(), GRANT);
        assert!(share.cover(&budget, FREE_PER_CONNECTION + 1 + GRANT));
        assert_eq!(budget.used(), 2 * GRANT);
        share.shrink_to(&budget, 10);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.peak(), 2 * GRANT);
    }

    #[test]
    fn sizes_the_default_from_the_machine() {
        let info = "MemTotal:        8043212 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_mem_total(info), Some(8043212 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
        assert!(machine_default() >= 16 << 20);
    }

    #[test]
    fn refuses_past_the_limit() {
        let budget = Budget::new(4 * GRANT, DEFAULT_WAIT);
        let (mut first, mut second) = (Share::default(), Share::default());
        assert!(first.cover(&budget, FREE_PER_CONNECTION + 3 * GRANT));
        assert!(!second.cover(&budget, FREE_PER_CONNECTION + 2 * GRANT));
        assert_eq!(budget.used(), 3 * GRANT, "a refusal charges nothing");
        first.shrink_to(&budget, 0);
        assert_eq!(budget.used(), 0);
        assert!(second.cover(&budget, FREE_PER_CONNECTION + 2 * GRANT));
    }
}

//! Handing freed memory back to the system.
//!
//! mimalloc frees large blocks into its arenas and returns their pages to the
//! system a moment later (its purge delay), but only when some thread calls
//! into it: a server that goes quiet after a burst of large messages would
//! keep their pages resident indefinitely. A small thread asks it to purge
//! what is due, so memory returns to about where it was within a few seconds
//! of the burst, busy or idle.
//!
//! Transparent huge pages are turned off for the process: the allocator
//! returns memory in 64 KiB spans, and a span inside a 2 MiB huge page stays
//! resident with the rest of it (measured: 50 concurrent deflate bombs left
//! 30 MiB resident with huge pages, 9 MiB without, from 13 and 6 MiB before).
//!
//! Pages a serving thread has emptied stay with that thread until it
//! collects them, which only it can do: [`on_park`], installed on every
//! serving runtime, collects when the thread goes idle, at most every
//! [`PARK_PERIOD`]; [`wake_up`], spawned on every serving runtime, makes an
//! idle thread wake (and park again) now and then, so the last collection
//! after a burst is not skipped for good.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often the allocator is asked to purge; each look is cheap when
/// nothing is due.
const PERIOD: Duration = Duration::from_millis(500);

/// Least time between two collections by one serving thread.
const PARK_PERIOD: Duration = Duration::from_millis(200);

thread_local! {
    static LAST_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// For a runtime's `on_thread_park`: the thread is about to wait for work,
/// so hand its emptied pages back to the allocator's shared arenas (from
/// where the reclaim thread returns them to the system).
pub fn on_park() {
    let now = Instant::now();
    let due = LAST_COLLECT.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < PARK_PERIOD => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        // SAFETY: as in `start`.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// mimalloc's own account of what it holds, for `/metrics`.
pub fn allocator_stats() -> tether_server::metrics::AllocatorStats {
    let mut committed = 0usize;
    let mut ignored = [0usize; 7];
    let [elapsed, user, system, rss, peak_rss, peak_commit, faults] = &mut ignored;
    // SAFETY: every pointer is to a live, writable `usize` of this frame.
    unsafe {
        libmimalloc_sys::mi_process_info(
            elapsed,
            user,
            system,
            rss,
            peak_rss,
            &mut committed,
            peak_commit,
            faults,
        );
    }
    tether_server::metrics::AllocatorStats {
        committed_bytes: committed as u64,
    }
}

/// How often [`wake_up`] wakes its runtime.
const WAKE_PERIOD: Duration = Duration::from_secs(1);

/// Wakes the runtime it runs on every [`WAKE_PERIOD`], for [`on_park`].
pub async fn wake_up() {
    let mut every = tokio::time::interval(WAKE_PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
    }
}

/// Turns transparent huge pages off for the process and starts the reclaim
/// thread, which runs until the process ends.
pub fn start() -> std::io::Result<()> {
    // SAFETY: `prctl` with integer arguments only; failure (an old kernel)
    // leaves huge pages on, which costs memory, not correctness.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    std::thread::Builder::new()
        .name("reclaim".into())
        .spawn(|| {
            // mimalloc collects only on behalf of a thread that has allocated.
            let warm = std::hint::black_box(vec![0u8; 64]);
            drop(warm);
            loop {
                std::thread::sleep(PERIOD);
                // SAFETY: `mi_collect` takes no pointers and may be called
                // from any thread at any time.
                unsafe { libmimalloc_sys::mi_collect(false) };
            }
        })
        .map(drop)
}

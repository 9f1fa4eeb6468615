//! zlib states kept per thread between messages.
//!
//! Without context takeover every message starts from a fresh zlib state: a
//! compressor with a 2^15 window is about 256 KiB, an inflater about 40 KiB.
//! Allocating and freeing one per message costs time and, interleaved with the
//! small long-lived allocations of many connections, fragments the heap (the
//! process grows though nothing is kept). Instead a thread keeps a few reset
//! states and lends them out: a message borrows one and gives it back when it
//! ends, so idle connections hold none and the heap stays compact.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress};

/// States kept per thread and kind; more are freed when given back.
const KEEP: usize = 4;

thread_local! {
    static COMPRESSORS: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
    static INFLATERS: RefCell<Vec<(u8, Decompress)>> = const { RefCell::new(Vec::new()) };
}

/// A compressor with `level` and a 2^`bits` window, fresh.
pub(crate) fn take_compressor(level: u32, bits: u8) -> Compress {
    let pooled = COMPRESSORS.with(|pool| {
        let mut pool = pool.borrow_mut();
        let at = pool
            .iter()
            .position(|(l, b, _)| *l == level && *b == bits)?;
        Some(pool.swap_remove(at).2)
    });
    pooled.unwrap_or_else(|| Compress::new_with_window_bits(Compression::new(level), false, bits))
}

/// Takes back a compressor after a message; it is reset for the next one.
pub(crate) fn give_compressor(level: u32, bits: u8, mut state: Compress) {
    state.reset();
    COMPRESSORS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEEP {
            pool.push((level, bits, state));
        }
    });
}

/// An inflater for raw deflate data with a 2^`bits` window, fresh. (A reset
/// keeps the window size, so pooled states are matched by it.)
pub(crate) fn take_inflater(bits: u8) -> Decompress {
    let pooled = INFLATERS.with(|pool| {
        let mut pool = pool.borrow_mut();
        let at = pool.iter().position(|(b, _)| *b == bits)?;
        Some(pool.swap_remove(at).1)
    });
    pooled.unwrap_or_else(|| Decompress::new_with_window_bits(false, bits))
}

/// Takes back an inflater after a message; it is reset for the next one.
pub(crate) fn give_inflater(bits: u8, mut state: Decompress) {
    state.reset(false);
    INFLATERS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEEP {
            pool.push((bits, state));
        }
    });
}

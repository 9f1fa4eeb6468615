//! A token bucket per connection: steady rate plus a burst allowance.

use std::sync::OnceLock;
use std::time::Instant;

/// Refills at a rate of tokens per second up to a burst; each request takes
/// one. The rate and burst are the server's settings, passed in rather than
/// kept by every connection's bucket.
///
/// Kept as one instant (the generic cell rate algorithm): when the bucket
/// will be full again. A take moves it one refill interval later, and is
/// refused when that would put it more than a burst of intervals ahead of
/// now. The same decisions as a count of tokens and the time of the last
/// refill, in the 8 bytes every session carries instead of 24.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Nanoseconds since [`epoch`] at which the bucket is full.
    full_at: u64,
}

/// A bucket's refill rate and size.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Tokens per second.
    pub per_second: f64,
    /// Most tokens the bucket holds (at least one).
    pub burst: u32,
}

impl Rate {
    fn burst(self) -> u64 {
        u64::from(self.burst.max(1))
    }

    /// Nanoseconds per token, at most what keeps a whole burst of them
    /// within 2^62 ns (146 years: a rate that slow, or not positive, never
    /// refills in practice), so the bucket's sums cannot overflow.
    fn interval(self) -> u64 {
        let slowest = (1 << 62) / self.burst();
        if self.per_second > 0.0 {
            // A float-to-integer cast saturates.
            ((1e9 / self.per_second).round() as u64).clamp(1, slowest)
        } else {
            slowest
        }
    }
}

/// The process's clock for buckets, in nanoseconds (584 years of range).
fn now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl TokenBucket {
    /// A full bucket (whatever the rate it is taken at).
    pub fn full() -> Self {
        Self { full_at: 0 }
    }

    /// Takes a token if one is there, refilled at `rate`.
    pub fn take(&mut self, rate: Rate) -> bool {
        self.take_at(now(), rate)
    }

    fn take_at(&mut self, now: u64, rate: Rate) -> bool {
        let interval = rate.interval();
        let tolerance = interval * rate.burst();
        let next = self.full_at.max(now) + interval;
        if next - now > tolerance {
            return false;
        }
        self.full_at = next;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_steady_rate() {
        let rate = Rate {
            per_second: 10.0,
            burst: 5,
        };
        let mut bucket = TokenBucket::full();
        let ms = |ms: u64| Duration::from_millis(ms).as_nanos() as u64;
        let start = ms(1000);
        assert!((0..5).all(|_| bucket.take_at(start, rate)));
        assert!(!bucket.take_at(start, rate));
        // 10 per second: one token every 100 ms.
        assert!(bucket.take_at(start + ms(100), rate));
        assert!(!bucket.take_at(start + ms(150), rate));
        // Never more than the burst, however long the pause.
        let later = start + ms(60_000);
        assert_eq!((0..10).filter(|_| bucket.take_at(later, rate)).count(), 5);
    }

    #[test]
    fn a_fractional_rate_and_no_rate() {
        let mut bucket = TokenBucket::full();
        let s = |s: u64| Duration::from_secs(s).as_nanos() as u64;
        let rate = Rate {
            per_second: 0.5,
            burst: 1,
        };
        assert!(bucket.take_at(s(10), rate));
        assert!(!bucket.take_at(s(11), rate));
        assert!(bucket.take_at(s(12), rate));
        let none = Rate {
            per_second: 0.0,
            burst: 2,
        };
        let mut bucket = TokenBucket::full();
        assert!(bucket.take_at(s(1), none) && bucket.take_at(s(1), none));
        assert!(!bucket.take_at(s(1000), none));
    }
}

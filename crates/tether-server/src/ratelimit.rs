//! A token bucket per connection: steady rate plus a burst allowance.

use std::time::Instant;

/// Refills at a rate of tokens per second up to a burst; each request takes
/// one. The rate and burst are the server's settings, passed in rather than
/// kept by every connection's bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
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
    fn burst(self) -> f64 {
        f64::from(self.burst.max(1))
    }
}

impl TokenBucket {
    /// A bucket full to `rate`'s burst.
    pub fn full(rate: Rate) -> Self {
        Self {
            tokens: rate.burst(),
            last: Instant::now(),
        }
    }

    /// Takes a token if one is there, refilled at `rate`.
    pub fn take(&mut self, rate: Rate) -> bool {
        self.take_at(Instant::now(), rate)
    }

    fn take_at(&mut self, now: Instant, rate: Rate) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
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
        let mut bucket = TokenBucket::full(rate);
        let start = bucket.last;
        assert!((0..5).all(|_| bucket.take_at(start, rate)));
        assert!(!bucket.take_at(start, rate));
        // 10 per second: one token every 100 ms.
        assert!(bucket.take_at(start + Duration::from_millis(100), rate));
        assert!(!bucket.take_at(start + Duration::from_millis(150), rate));
        // Never more than the burst, however long the pause.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.take_at(later, rate)).count(), 5);
    }
}

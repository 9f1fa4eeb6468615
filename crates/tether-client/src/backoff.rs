//! Reconnect delays: exponential backoff with full jitter, the same rule as
//! the JavaScript client's.

use std::time::Duration;

use rand::Rng;

/// The delay before reconnect attempt `attempt` (0 for the first): uniformly
/// random between `min` and `min * 2^attempt` (at most `max`), so clients
/// cut at the same moment do not come back at the same moment.
pub fn backoff(attempt: u32, min: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = min.saturating_mul(1u32 << attempt.min(30)).min(max);
    let spread = ceiling.saturating_sub(min);
    min + spread.mul_f64(rng.random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn stays_within_bounds_and_spreads() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(20));
        for attempt in 0..40 {
            let ceiling = (min * 2u32.pow(attempt.min(20))).min(max);
            let delays: Vec<_> = (0..200)
                .map(|_| backoff(attempt, min, max, &mut rng))
                .collect();
            assert!(
                delays.iter().all(|d| *d >= min && *d <= ceiling),
                "{attempt}"
            );
            if attempt >= 2 {
                // Full jitter: the delays cover the range, not one point.
                let (lo, hi) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
                assert!(*hi - *lo > (ceiling - min) / 2, "{attempt}: {lo:?}..{hi:?}");
            }
        }
        assert_eq!(backoff(0, min, max, &mut rng), min);
    }
}

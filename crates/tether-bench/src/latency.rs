//! Latency histograms (HDR: constant relative precision from 1 µs to a minute).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Three significant digits: 0.1 % error at any magnitude.
const SIGNIFICANT_DIGITS: u8 = 3;
/// The largest latency recorded, in microseconds; longer ones count as this.
const MAX_MICROS: u64 = 60_000_000;

/// A latency histogram in microseconds. Each task keeps its own and they are
/// merged at the end, so recording never contends.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
                .expect("valid histogram bounds"),
        }
    }
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        self.histogram.saturating_record(micros);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so this cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// p50 … max, or `None` when empty.
    pub fn summary(&self) -> Option<LatencySummary> {
        let h = &self.histogram;
        (!h.is_empty()).then(|| LatencySummary {
            count: h.len(),
            min_us: h.min() as f64,
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5) as f64,
            p90_us: h.value_at_quantile(0.9) as f64,
            p99_us: h.value_at_quantile(0.99) as f64,
            p999_us: h.value_at_quantile(0.999) as f64,
            max_us: h.max() as f64,
        })
    }

    /// The percentile curve for plotting: (percentile, microseconds) at
    /// logarithmically spaced points up to 99.999 %.
    pub fn curve(&self) -> Vec<(f64, f64)> {
        if self.histogram.is_empty() {
            return Vec::new();
        }
        (0..=50)
            .map(|i| {
                // "Nines" from 0 (p0) to 5 (p99.999), in tenths.
                let nines = f64::from(i) / 10.0;
                let quantile = 1.0 - 10f64.powf(-nines);
                (
                    quantile * 100.0,
                    self.histogram.value_at_quantile(quantile) as f64,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_and_merges() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for us in 1..=900 {
            a.record(Duration::from_micros(us));
        }
        for us in 901..=1000 {
            b.record(Duration::from_micros(us));
        }
        a.merge(&b);
        let s = a.summary().unwrap();
        assert_eq!(s.count, 1000);
        assert_eq!((s.min_us, s.max_us), (1.0, 1000.0));
        assert!((s.p50_us - 500.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{s:?}");
        let curve = a.curve();
        assert_eq!(curve.first().unwrap().0, 0.0);
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1), "monotonic");
        assert!(Latency::new().summary().is_none());
    }
}

//! Latency histograms (HDR: constant relative precision from 1 µs to a minute).

use std::sync::{Arc, Mutex, PoisonError};
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

/// One histogram that many tasks record into, through [`Recorder`]s. A
/// histogram of this range and precision is about 140 KiB, so a run with ten
/// thousand connections cannot give each its own.
#[derive(Debug, Clone, Default)]
pub struct SharedLatency(Arc<Mutex<Latency>>);

impl SharedLatency {
    /// A new task's way in.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            shared: self.clone(),
            pending: Vec::new(),
        }
    }

    /// What was recorded so far (recorders flush when dropped: take this once
    /// the recording tasks are done).
    pub fn take(&self) -> Latency {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Samples a [`Recorder`] buffers before adding them to the shared histogram
/// under its lock.
const RECORDER_BATCH: usize = 64;

/// One task's recorder: samples are buffered (256 bytes) and added to the
/// [`SharedLatency`] a batch at a time, so the lock is taken once per 64
/// samples; the rest is added when the recorder is dropped.
#[derive(Debug)]
pub struct Recorder {
    shared: SharedLatency,
    /// Microseconds, already clamped to the histogram's range.
    pending: Vec<u32>,
}

impl Recorder {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        if self.pending.capacity() == 0 {
            // Allocated on first use: a connection that records nothing
            // (an idle one) holds no buffer.
            self.pending.reserve_exact(RECORDER_BATCH);
        }
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        self.pending.push(micros as u32);
        if self.pending.len() == RECORDER_BATCH {
            self.flush();
        }
    }

    /// Adds the buffered samples to the shared histogram.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut shared = self.shared.0.lock().unwrap_or_else(PoisonError::into_inner);
        for &micros in &self.pending {
            shared.histogram.saturating_record(u64::from(micros));
        }
        self.pending.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
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

    #[test]
    fn recorders_add_up_in_the_shared_histogram() {
        let shared = SharedLatency::default();
        let mut a = shared.recorder();
        let mut b = shared.recorder();
        // More than a batch in one, less in the other: both flushed and the
        // remainders added when dropped.
        for us in 1..=100 {
            a.record(Duration::from_micros(us));
        }
        for us in 101..=110 {
            b.record(Duration::from_micros(us));
        }
        assert_eq!(shared.take().count(), 64, "one full batch so far");
        drop((a, b));
        let s = shared.take().summary().unwrap();
        assert_eq!((s.count, s.min_us, s.max_us), (46, 65.0, 110.0));
        let mut c = shared.recorder();
        c.record(Duration::from_secs(3600));
        drop(c);
        let max = shared.take().summary().unwrap().max_us;
        assert!(
            (59.9e6..60.1e6).contains(&max),
            "clamped to a minute: {max}"
        );
    }
}

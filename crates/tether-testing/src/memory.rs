//! The resident memory of a process, read as the load generator reads it
//! ([`tether_bench::procfs`]).

use tether_bench::procfs;

/// The anonymous resident memory of process `pid` (its heap and stacks,
/// not the mapped binary), in bytes.
pub fn rss_anon_bytes(pid: u32) -> usize {
    procfs::rss_anon_bytes(pid).expect("the process lives") as usize
}

/// The resident memory of this process, in bytes.
pub fn rss_bytes_of_self() -> usize {
    procfs::rss_bytes(std::process::id()).expect("this process lives") as usize
}

/// The highest reading of a memory figure while a test runs its load,
/// sampled every 5 ms on a task of its own from the reading at the start.
#[derive(Debug)]
pub struct Peak {
    peak: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Peak {
    /// Starts sampling `read` (for example `move || rss_anon_bytes(pid)`).
    pub fn sample(read: impl Fn() -> usize + Send + 'static) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let peak = std::sync::Arc::new(AtomicUsize::new(read()));
        let sampler = tokio::spawn({
            let peak = peak.clone();
            async move {
                loop {
                    peak.fetch_max(read(), Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        });
        Self { peak, sampler }
    }

    /// Stops sampling; the highest reading seen.
    pub fn stop(self) -> usize {
        self.sampler.abort();
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keeps_the_highest_reading() {
        let readings = std::sync::Arc::new(std::sync::Mutex::new(vec![5, 9, 3, 1]));
        let peak = Peak::sample({
            let readings = readings.clone();
            move || readings.lock().unwrap().pop().unwrap_or(0)
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(peak.stop(), 9);
    }
}

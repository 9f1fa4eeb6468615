//! Counting operations over a run: deadlines, a per-second timeline, and the
//! CPU time the server and the load generator used meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::procfs;
use crate::progress::Progress;

/// When a run stops: at a deadline, or after a number of operations, whichever
/// comes first.
#[derive(Debug)]
pub struct Budget {
    until: Instant,
    remaining: Option<AtomicU64>,
}

impl Budget {
    /// Stops after `duration`, or after `operations` if given.
    pub fn new(duration: Duration, operations: Option<u64>) -> Self {
        Self {
            until: Instant::now() + duration,
            remaining: operations.map(AtomicU64::new),
        }
    }

    /// Claims one operation; false once the run is over.
    pub fn take(&self) -> bool {
        self.take_at(Instant::now())
    }

    /// Claims one operation at `now`, a time the caller already read: a burst
    /// of claims then costs one clock read, not one each.
    pub fn take_at(&self, now: Instant) -> bool {
        if now >= self.until {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    /// Whether the deadline passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.until
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.until
    }
}

/// A shared operation counter.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a meter saw between start and finish.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Seconds from start to finish.
    pub elapsed: Duration,
    /// Operations counted.
    pub operations: u64,
    /// Operations in each whole second of the run.
    pub timeline: Vec<f64>,
    /// CPU seconds the server used during the run (summed over its
    /// processes: a cluster's nodes), if its PID was given.
    pub server_cpu_seconds: Option<f64>,
    /// CPU seconds each watched process used during the run, by its label
    /// (see [`Options::watched`](crate::Options::watched)).
    pub watched_cpu_seconds: Vec<(String, f64)>,
    /// CPU seconds this process (the load generator) used during the run.
    pub client_cpu_seconds: f64,
}

/// Counts operations from `start` to `finish`, sampling once a second.
#[derive(Debug)]
pub struct Meter {
    counter: Counter,
    started: Instant,
    /// The server's processes and their CPU time at the start.
    server: Vec<(u32, procfs::CpuTime)>,
    /// Other processes to report on, by label, and their CPU time at the start.
    watched: Vec<(String, u32, procfs::CpuTime)>,
    client_cpu: Option<procfs::CpuTime>,
    stop: watch::Sender<bool>,
    sampler: tokio::task::JoinHandle<Vec<f64>>,
}

impl Meter {
    /// Starts measuring; `progress` follows the count.
    pub fn start(server_pid: Option<u32>, progress: Progress) -> Self {
        Self::start_with(Counter::default(), server_pid, progress)
    }

    /// Starts measuring with a counter the scenario already handed out.
    pub fn start_with(counter: Counter, server_pid: Option<u32>, progress: Progress) -> Self {
        Self::start_watching(counter, server_pid.into_iter().collect(), &[], progress)
    }

    /// Starts measuring the server's processes `server_pids` (CPU summed),
    /// and the `watched` ones apart, counting into `counter`.
    pub fn start_watching(
        counter: Counter,
        server_pids: Vec<u32>,
        watched: &[(String, u32)],
        progress: Progress,
    ) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let sampled = counter.clone();
        let sampler = tokio::spawn(async move {
            let mut timeline = Vec::new();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            let mut last = 0;
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let now = sampled.get();
                        timeline.push((now - last) as f64);
                        last = now;
                        progress.set(now);
                    }
                    _ = stopped.changed() => {
                        progress.finish();
                        return timeline;
                    }
                }
            }
        });
        Self {
            counter,
            started: Instant::now(),
            server: server_pids
                .into_iter()
                .filter_map(|pid| Some((pid, procfs::CpuTime::read(pid).ok()?)))
                .collect(),
            watched: watched
                .iter()
                .filter_map(|(label, pid)| {
                    Some((label.clone(), *pid, procfs::CpuTime::read(*pid).ok()?))
                })
                .collect(),
            client_cpu: procfs::CpuTime::read(std::process::id()).ok(),
            stop,
            sampler,
        }
    }

    /// The counter the scenario's tasks add to.
    pub fn counter(&self) -> Counter {
        self.counter.clone()
    }

    /// When measuring started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops measuring.
    pub async fn finish(self) -> Measured {
        let elapsed = self.started.elapsed();
        let used = |pid: u32, before: &procfs::CpuTime| {
            procfs::CpuTime::read(pid)
                .ok()
                .map(|now| before.until(&now))
        };
        let server_cpu_seconds = (!self.server.is_empty())
            .then(|| {
                self.server
                    .iter()
                    .map(|(pid, before)| used(*pid, before))
                    .sum::<Option<f64>>()
            })
            .flatten();
        let watched_cpu_seconds = self
            .watched
            .iter()
            .filter_map(|(label, pid, before)| Some((label.clone(), used(*pid, before)?)))
            .collect();
        let client_cpu_seconds = match (&self.client_cpu, procfs::CpuTime::read(std::process::id()))
        {
            (Some(before), Ok(now)) => before.until(&now),
            _ => 0.0,
        };
        let _ = self.stop.send(true);
        let timeline = self.sampler.await.unwrap_or_default();
        Measured {
            elapsed,
            operations: self.counter.get(),
            timeline,
            server_cpu_seconds,
            watched_cpu_seconds,
            client_cpu_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_stops_at_the_count_or_the_deadline() {
        let budget = Budget::new(Duration::from_secs(60), Some(3));
        assert!(budget.take() && budget.take() && budget.take());
        assert!(!budget.take());
        let budget = Budget::new(Duration::ZERO, None);
        assert!(!budget.take());
        assert!(budget.expired());
    }
}

//! Readings from `/proc`: a process's CPU time and resident memory.

use std::io;

/// Clock ticks per second, the unit of `/proc/PID/stat` CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// User plus system CPU seconds `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; count fields after its ')'.
    let after = stat
        .rfind(')')
        .map(|at| &stat[at + 1..])
        .ok_or_else(|| io::Error::other("malformed /proc stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 here.
    let parse = |i: usize| -> io::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| io::Error::other("malformed /proc stat"))
    };
    Ok((parse(11)? + parse(12)?) / ticks_per_second())
}

/// A reading of a process's CPU time, to subtract from a later one.
///
/// `/proc/PID/stat` counts in clock ticks (10 ms), coarse against the 0.1 to
/// 0.3 CPU-s a fast server spends on a fan-out burst. So the reading also sums
/// each thread's `schedstat` run time (nanoseconds); an interval uses those
/// unless a thread present at its start has gone by its end (its time would
/// be lost), in which case it falls back to the ticks.
#[derive(Debug, Clone)]
pub struct CpuTime {
    ticks_seconds: f64,
    /// Thread ids and the sum of their run times, in nanoseconds.
    threads: Option<(Vec<u32>, u64)>,
}

impl CpuTime {
    /// Reads `pid`'s CPU time now.
    pub fn read(pid: u32) -> io::Result<Self> {
        Ok(Self {
            ticks_seconds: cpu_seconds(pid)?,
            threads: thread_run_times(pid).ok(),
        })
    }

    /// CPU seconds used from `self` until `later`.
    pub fn until(&self, later: &CpuTime) -> f64 {
        match (&self.threads, &later.threads) {
            (Some((before, start)), Some((after, end)))
                if before.iter().all(|tid| after.contains(tid)) =>
            {
                end.saturating_sub(*start) as f64 / 1e9
            }
            _ => later.ticks_seconds - self.ticks_seconds,
        }
    }
}

/// The ids of `pid`'s threads and the sum of their run times (nanoseconds),
/// from `/proc/PID/task/*/schedstat`.
fn thread_run_times(pid: u32) -> io::Result<(Vec<u32>, u64)> {
    let mut tids = Vec::new();
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A thread may end between listing and reading: it is then missing
        // from the list, which makes the interval fall back to ticks.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("malformed schedstat"))?;
        tids.push(tid);
        total += ns;
    }
    Ok((tids, total))
}

/// Resident memory of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib << 10)
        .ok_or_else(|| io::Error::other("no VmRSS in /proc status"))
}

/// The anonymous part of `pid`'s resident memory (what it allocated), in
/// bytes, as against the pages of files it maps (its own binary's among them).
pub fn rss_anon_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib << 10)
        .ok_or_else(|| io::Error::other("no RssAnon in /proc status"))
}

/// A process's resident memory, sampled every 5 ms by a task until dropped,
/// keeping the highest reading: the peak a burst of work costs.
#[derive(Debug)]
pub struct PeakRss {
    before: u64,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    /// Starts sampling `pid` (a reading now is the level before).
    pub fn start(pid: u32) -> io::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        let before = rss_bytes(pid)?;
        let peak = std::sync::Arc::new(AtomicU64::new(before));
        let sampled = peak.clone();
        let task = tokio::spawn(async move {
            while let Ok(rss) = rss_bytes(pid) {
                sampled.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        Ok(Self { before, peak, task })
    }

    /// The reading when sampling started.
    pub fn before(&self) -> u64 {
        self.before
    }

    /// The highest reading so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Threads of `pid`.
pub fn threads(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|rest| rest.trim().parse::<u64>().ok())
        .ok_or_else(|| io::Error::other("no Threads in /proc status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(pid).unwrap() >= before);
        let start = CpuTime::read(pid).unwrap();
        let mut y = 0u64;
        for i in 0..20_000_000u64 {
            y = y.wrapping_mul(17).wrapping_add(i);
        }
        std::hint::black_box(y);
        let used = start.until(&CpuTime::read(pid).unwrap());
        assert!(used > 0.0 && used < 60.0, "{used}");
        assert!(start.threads.is_some(), "schedstat is read");
        assert!(rss_bytes(pid).unwrap() > 1 << 20);
        assert!(threads(pid).unwrap() >= 1);
        let anon = rss_anon_bytes(pid).unwrap();
        assert!(anon > 0 && anon <= rss_bytes(pid).unwrap() + (1 << 20));
    }
}

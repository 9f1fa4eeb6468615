//! Accept loops that outlast running out of file descriptors.
//!
//! When the process holds as many descriptors as its limit allows, `accept`
//! fails at once with `EMFILE` (or `ENFILE`, `ENOBUFS`, `ENOMEM`) while the
//! pending connection stays in the kernel's backlog, so a loop that retries
//! right away spins a core and floods the log. [`AcceptBackoff`] waits
//! longer after each such failure (5 ms doubling to 1 s), lets the existing
//! connections go on, and notes when accepting works again.

use std::io;
use std::time::Duration;

/// First wait after an accept failed for want of resources.
const FIRST: Duration = Duration::from_millis(5);
/// Longest wait: how soon accepting resumes once descriptors are free again.
const LONGEST: Duration = Duration::from_secs(1);

/// Whether `error` means the process or the system is out of the resources a
/// new connection needs (descriptors, socket buffers, memory), rather than a
/// peer's fault (a connection reset before it was accepted).
pub fn out_of_resources(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// What an accept loop should do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// The peer's fault: accept the next one at once.
    Retry,
    /// Out of resources: wait this long first. `first` is set on the first
    /// failure of a run, the one worth a log line.
    Wait {
        /// How long.
        delay: Duration,
        /// The first failure since accepting last worked.
        first: bool,
    },
}

/// The backoff of one accept loop.
#[derive(Debug, Clone, Default)]
pub struct AcceptBackoff {
    /// The next wait; zero while accepting works.
    delay: Duration,
    /// Failures since accepting last worked.
    failures: u64,
}

impl AcceptBackoff {
    /// A loop whose accepts have not failed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// After a failed accept: what to do next.
    pub fn failed(&mut self, error: &io::Error) -> AfterFailure {
        if !out_of_resources(error) {
            return AfterFailure::Retry;
        }
        self.failures += 1;
        let first = self.delay.is_zero();
        self.delay = if first {
            FIRST
        } else {
            (self.delay * 2).min(LONGEST)
        };
        AfterFailure::Wait {
            delay: self.delay,
            first,
        }
    }

    /// After a successful accept: the number of failures of the run that
    /// just ended, if one did (worth a log line), and the backoff reset.
    pub fn succeeded(&mut self) -> Option<u64> {
        if self.failures == 0 {
            return None;
        }
        let failures = std::mem::take(&mut self.failures);
        self.delay = Duration::ZERO;
        Some(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn waits_longer_after_each_failure_for_want_of_descriptors() {
        let mut backoff = AcceptBackoff::new();
        let mut delays = Vec::new();
        for _ in 0..10 {
            match backoff.failed(&emfile()) {
                AfterFailure::Wait { delay, first } => delays.push((delay.as_millis(), first)),
                AfterFailure::Retry => panic!("EMFILE is not the peer's fault"),
            }
        }
        assert_eq!(delays[0], (5, true));
        assert_eq!(delays[1], (10, false));
        assert_eq!(delays[9], (1000, false), "capped at a second");
        assert_eq!(backoff.succeeded(), Some(10));
        assert_eq!(backoff.succeeded(), None);
        assert!(matches!(
            backoff.failed(&emfile()),
            AfterFailure::Wait { first: true, .. }
        ));
    }

    #[test]
    fn retries_at_once_after_a_peer_s_fault() {
        let mut backoff = AcceptBackoff::new();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.failed(&aborted), AfterFailure::Retry);
        assert_eq!(backoff.succeeded(), None);
    }
}

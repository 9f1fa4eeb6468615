//! Accept loops that outlast running out of file descriptors.
//!
//! When the process holds as many descriptors as its limit allows, `accept`
//! fails at once with `EMFILE` (or `ENFILE`, `ENOBUFS`, `ENOMEM`) while the
//! pending connection stays in the kernel's backlog, so a loop that retries
//! right away spins a core and floods the log. [`AcceptBackoff`] waits
//! longer after each such failure (5 ms doubling to 1 s), lets the existing
//! connections go on, and notes when accepting works again.
//!
//! Better still is not to get there: [`DescriptorHeadroom`] tells when an
//! accepted connection leaves fewer than [`DESCRIPTOR_RESERVE`] descriptors,
//! and such a connection is answered `503 Service Unavailable` at once
//! ([`refuse`]) instead of being served until the kernel refuses the next.

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

/// Descriptors a server keeps free below its limit, for what is not a client
/// socket: listeners, the runtime's, log and configuration files,
/// connections to other services, and refusals being written.
pub const DESCRIPTOR_RESERVE: usize = 64;

/// Tells when an accepted socket leaves too few descriptors below the
/// process's limit, so the server refuses it with 503 ([`refuse`]) before the
/// kernel starts refusing with `EMFILE`.
///
/// The kernel hands out the lowest free descriptor, so a socket numbered `n`
/// means descriptors `0..n` are all in use: no count to keep per connection.
#[derive(Debug, Clone, Copy)]
pub struct DescriptorHeadroom {
    refuse_from: usize,
}

impl DescriptorHeadroom {
    /// Headroom of [`DESCRIPTOR_RESERVE`] below the current limit (half the
    /// limit when that is smaller). Make a new one after `EMFILE`: the limit
    /// may have been lowered while the process runs.
    pub fn new() -> Self {
        let limit = descriptor_limit();
        Self {
            refuse_from: limit.saturating_sub(DESCRIPTOR_RESERVE).max(limit / 2),
        }
    }

    /// Whether `socket` was handed out within the reserve: refuse it.
    pub fn exhausted(&self, socket: &impl std::os::fd::AsRawFd) -> bool {
        usize::try_from(socket.as_raw_fd()).is_ok_and(|fd| fd >= self.refuse_from)
    }

    /// The lowest descriptor number that is refused.
    pub fn refuse_from(&self) -> usize {
        self.refuse_from
    }
}

impl Default for DescriptorHeadroom {
    fn default() -> Self {
        Self::new()
    }
}

/// One accept loop's guard against running out of descriptors: the
/// [`DescriptorHeadroom`] in force, read again after `EMFILE` (the limit may
/// have been lowered under the running process), and the run of refusals
/// under way, logged once as it starts and once as it ends.
#[derive(Debug, Default)]
pub struct DescriptorGuard {
    headroom: DescriptorHeadroom,
    refused: u64,
}

impl DescriptorGuard {
    /// A guard with the headroom below the current limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// After a failed accept: reads the limit again if the process ran out
    /// of resources.
    pub fn accept_failed(&mut self, error: &io::Error) {
        if out_of_resources(error) {
            self.headroom = DescriptorHeadroom::new();
        }
    }

    /// A socket just accepted: back to be served, or `None` once it has
    /// been refused ([`refuse`]) for arriving within the reserve.
    pub fn admit(&mut self, socket: tokio::net::TcpStream) -> Option<tokio::net::TcpStream> {
        if self.headroom.exhausted(&socket) {
            if self.refused == 0 {
                tracing::warn!(
                    descriptors = self.headroom.refuse_from(),
                    "near the descriptor limit: answering new connections with 503"
                );
            }
            self.refused += 1;
            refuse(socket);
            return None;
        }
        if self.refused > 0 {
            tracing::info!(
                refused = self.refused,
                "below the descriptor limit again: serving new connections"
            );
            self.refused = 0;
        }
        Some(socket)
    }
}

/// The process's soft limit on open descriptors (`usize::MAX` when it has
/// none or it cannot be read).
pub fn descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the struct it is given and nothing else.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if read != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return usize::MAX;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// What a refused connection is told.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
    Content-Type: text/plain\r\nContent-Length: 30\r\nConnection: close\r\n\r\n\
    server at its connection limit";

/// Answers a connection the server has no room for with `503 Service
/// Unavailable` (`Retry-After: 1`) and closes it, at once and without
/// waiting: the refusal holds its descriptor for no longer than the call, so
/// a flood of refusals cannot run the process out of descriptors itself.
/// What the client already sent is read first and dropped, so the close is
/// a FIN rather than a reset that could lose the answer.
pub fn refuse(socket: tokio::net::TcpStream) {
    let mut request = [0u8; 4096];
    let _ = socket.try_read(&mut request);
    // A fresh socket's send buffer takes the answer whole.
    let _ = socket.try_write(REFUSAL);
    drop(socket);
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
    fn refuses_descriptors_within_the_reserve() {
        let headroom = DescriptorHeadroom::new();
        let limit = descriptor_limit();
        assert!(headroom.refuse_from() < limit && headroom.refuse_from() >= limit / 2);
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(
            !headroom.exhausted(&file),
            "a fresh test process is far from its limit"
        );
    }

    #[test]
    fn retries_at_once_after_a_peer_s_fault() {
        let mut backoff = AcceptBackoff::new();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.failed(&aborted), AfterFailure::Retry);
        assert_eq!(backoff.succeeded(), None);
    }
}

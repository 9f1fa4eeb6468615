//! Waiting for what a test expects to happen, rather than sleeping for a
//! time it hopes is long enough.

use std::time::Duration;

/// Checks `condition` every few milliseconds until it holds, for at most
/// `within`; panics naming `what` if it never does.
pub async fn eventually(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

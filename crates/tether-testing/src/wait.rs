//! Waiting for what a test expects to happen, rather than sleeping for a
//! time it hopes is long enough.

use std::future::Future;
use std::time::Duration;

/// Checks `condition` every few milliseconds until it holds, for at most
/// `within`; panics naming `what` if it never does. The condition is async,
/// so it may ask the server (its metrics, a poll).
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_until_the_condition_holds() {
        let mut checks = 0;
        eventually("the third check", Duration::from_secs(1), || {
            checks += 1;
            std::future::ready(checks == 3)
        })
        .await;
        assert_eq!(checks, 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "never: not within")]
    async fn names_what_never_happened() {
        eventually("never", Duration::from_millis(100), || {
            std::future::ready(false)
        })
        .await;
    }
}

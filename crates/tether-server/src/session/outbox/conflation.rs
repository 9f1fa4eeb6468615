//! Which queued publication makes way for a new one when a session's queue
//! is full: the namespace's slow-consumer policy. Replies never do.

use std::sync::Arc;

use crate::config::SlowConsumerPolicy;

/// What the policy needs to know of a queued item.
pub(super) trait Queued {
    /// A publication, which may be dropped or conflated (a reply may not).
    fn droppable(&self) -> bool;
    /// Its conflation key (channel and publication key), if any.
    fn key(&self) -> Option<&Arc<str>>;
}

/// The index of the queued item that makes way for a publication with `key`
/// under `policy`; `None`: nothing does (`disconnect`, or only replies are
/// queued), and the new one is refused.
///
/// `latest-per-key` replaces the queued publication with the same key, or,
/// with none, drops the oldest, like `drop-oldest`.
pub(super) fn making_way<'a, T: Queued + 'a>(
    queued: impl IntoIterator<Item = &'a T> + Clone,
    policy: SlowConsumerPolicy,
    key: Option<&Arc<str>>,
) -> Option<usize> {
    let oldest = || queued.clone().into_iter().position(T::droppable);
    match policy {
        SlowConsumerPolicy::Disconnect => None,
        SlowConsumerPolicy::DropOldest => oldest(),
        SlowConsumerPolicy::LatestPerKey => key
            .and_then(|key| {
                queued
                    .clone()
                    .into_iter()
                    .position(|item| item.droppable() && item.key() == Some(key))
            })
            .or_else(oldest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(bool, Option<Arc<str>>);

    impl Queued for Item {
        fn droppable(&self) -> bool {
            self.0
        }
        fn key(&self) -> Option<&Arc<str>> {
            self.1.as_ref()
        }
    }

    #[test]
    fn each_policy_picks_its_victim_and_spares_replies() {
        let key = |k: &str| Some(Arc::<str>::from(k));
        let queue = [
            Item(false, None),
            Item(true, key("a")),
            Item(true, key("b")),
        ];
        let b = key("b");
        let pick = |policy| making_way(&queue, policy, b.as_ref());
        assert_eq!(pick(SlowConsumerPolicy::Disconnect), None);
        assert_eq!(pick(SlowConsumerPolicy::DropOldest), Some(1));
        assert_eq!(pick(SlowConsumerPolicy::LatestPerKey), Some(2));
        let unkeyed = making_way(&queue, SlowConsumerPolicy::LatestPerKey, None);
        assert_eq!(unkeyed, Some(1), "no key: the oldest publication");
        let replies = [Item(false, None)];
        assert_eq!(
            making_way(&replies, SlowConsumerPolicy::DropOldest, None),
            None
        );
    }
}

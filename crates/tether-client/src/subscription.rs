//! One channel as the application holds it: a stream of its events, ending
//! the subscription when dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::actor::Call;
use crate::events::SubscriptionEvent;

/// A subscription to one channel: its events (`Subscribed`, each
/// `Publication` once and in order, `Unrecovered`, `Join`, `Leave`,
/// `Failed`) through [`next`](Self::next) or as a [`futures_core::Stream`].
/// It lasts across reconnects; dropping it (or [`unsubscribe`](Self::unsubscribe))
/// leaves the channel.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    handle: u64,
    events: mpsc::UnboundedReceiver<SubscriptionEvent>,
    calls: mpsc::UnboundedSender<Call>,
}

impl Subscription {
    pub(crate) fn new(
        channel: String,
        handle: u64,
        events: mpsc::UnboundedReceiver<SubscriptionEvent>,
        calls: mpsc::UnboundedSender<Call>,
    ) -> Self {
        Self {
            channel,
            handle,
            events,
            calls,
        }
    }

    /// The channel's name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next event; None once the client is closed or the server refused
    /// the channel (after `Failed`).
    pub async fn next(&mut self) -> Option<SubscriptionEvent> {
        self.events.recv().await
    }

    /// Leaves the channel (as dropping the subscription does).
    pub fn unsubscribe(self) {}
}

impl futures_core::Stream for Subscription {
    type Item = SubscriptionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.calls.send(Call::Unsubscribe {
            channel: std::mem::take(&mut self.channel),
            handle: self.handle,
        });
    }
}

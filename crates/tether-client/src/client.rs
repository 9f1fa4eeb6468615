//! The client handle: cheap to clone, every clone driving one connection task.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tether_protocol::{Command, HistoryPage, PresenceList, Published};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::actor::{Actor, Call};
use crate::config::ClientConfig;
use crate::error::Error;
use crate::events::{Event, State, SubscriptionEvent};
use crate::subscription::Subscription;

/// Handles given out, so a late drop of an old subscription never ends a newer one.
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// Options of one publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// The idempotency key; a fresh random one when None. A publish retried
    /// with the same key is acknowledged with the first one's offset and
    /// delivered once.
    pub idempotency_key: Option<String>,
    /// What the publication is about, for `latest-per-key` namespaces.
    pub key: Option<String>,
}

/// A client of `tether serve`: one WebSocket connection, kept open (with
/// backoff and jitter between attempts) until [`close`](Self::close) or a
/// server that says not to reconnect. Clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    calls: mpsc::UnboundedSender<Call>,
    events: broadcast::Sender<Event>,
    state: watch::Receiver<State>,
    timeout: std::time::Duration,
}

impl Client {
    /// Starts connecting to the server `config.url`, on the current tokio runtime.
    pub fn new(config: ClientConfig) -> Self {
        let (calls, inbox) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(256);
        let (state_tx, state) = watch::channel(State::Connecting);
        let timeout = config.timeout;
        let actor = Actor::new(config, inbox, calls.downgrade(), events.clone(), state_tx);
        tokio::spawn(actor.run());
        Self {
            calls,
            events,
            state,
            timeout,
        }
    }

    /// `Client::new` with the defaults.
    pub fn connect(url: impl Into<String>) -> Self {
        Self::new(ClientConfig::new(url))
    }

    /// Connection events from now on (connecting, connected, disconnected,
    /// reconnecting). A receiver that falls 256 events behind skips ahead.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The connection state now.
    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// Waits until connected; `Err(Closed)` if the client stops first.
    pub async fn connected(&self) -> Result<(), Error> {
        let mut state = self.state.clone();
        let reached = state
            .wait_for(|s| *s != State::Connecting)
            .await
            .map_err(|_| Error::Closed)?;
        match *reached {
            State::Connected => Ok(()),
            _ => Err(Error::Closed),
        }
    }

    /// Subscribes to `channel`, from now: its events come through the
    /// returned [`Subscription`], which resumes from its last offset across
    /// reconnects. One live subscription per channel per client.
    pub async fn subscribe(&self, channel: impl Into<String>) -> Result<Subscription, Error> {
        let channel = channel.into();
        let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        let (events, inbox) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call::Subscribe {
                channel: channel.clone(),
                handle,
                events,
                reply,
            })
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)??;
        Ok(Subscription::new(
            channel,
            handle,
            inbox,
            self.calls.clone(),
        ))
    }

    /// Subscribes to `channel` and calls `handler` with each of its events,
    /// in order, on a task of its own, until the returned [`Handler`] is
    /// dropped (which leaves the channel).
    pub async fn subscribe_with<F>(
        &self,
        channel: impl Into<String>,
        mut handler: F,
    ) -> Result<Handler, Error>
    where
        F: FnMut(SubscriptionEvent) + Send + 'static,
    {
        let mut subscription = self.subscribe(channel).await?;
        let task = tokio::spawn(async move {
            while let Some(event) = subscription.next().await {
                handler(event);
            }
        });
        Ok(Handler { task })
    }

    /// Publishes `data` with a fresh idempotency key; the server's `{offset, epoch}`.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        data: &T,
    ) -> Result<Published, Error> {
        self.publish_with(channel, data, PublishOptions::default())
            .await
    }

    /// Publishes `data` with `options`.
    pub async fn publish_with<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        data: &T,
        options: PublishOptions,
    ) -> Result<Published, Error> {
        let data = RawValue::from_string(serde_json::to_string(data)?)?;
        let key = options.idempotency_key.unwrap_or_else(new_key);
        self.call(Command::Publish {
            channel: channel.to_owned(),
            data,
            idempotency_key: Some(key),
            key: options.key,
        })
        .await
    }

    /// Who is subscribed to `channel`.
    pub async fn presence(&self, channel: &str) -> Result<PresenceList, Error> {
        self.call(Command::Presence {
            channel: channel.to_owned(),
        })
        .await
    }

    /// The channel's retained publications, the newest `limit` if given.
    pub async fn history(&self, channel: &str, limit: Option<usize>) -> Result<HistoryPage, Error> {
        self.call(Command::History {
            channel: channel.to_owned(),
            limit,
        })
        .await
    }

    /// Closes the connection and stops reconnecting; waiting requests fail
    /// with `Closed` and subscriptions end.
    pub async fn close(&self) {
        let _ = self.calls.send(Call::Close);
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| *s == State::Disconnected).await;
    }

    /// Sends `command` (now, or once connected) and waits at most the
    /// request timeout for its reply.
    async fn call<T: DeserializeOwned>(&self, command: Command) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call::Request { command, reply })
            .map_err(|_| Error::Closed)?;
        let raw = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
            .map_err(|_| Error::Closed)??;
        Ok(serde_json::from_str(raw.get())?)
    }
}

/// A subscription driven by a handler ([`Client::subscribe_with`]); dropping
/// it stops the handler and leaves the channel.
#[derive(Debug)]
pub struct Handler {
    task: tokio::task::JoinHandle<()>,
}

impl Handler {
    /// Leaves the channel (as dropping does).
    pub fn unsubscribe(self) {}
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A new idempotency key: 128 random bits in hex.
fn new_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

//! The session layer: one [`Session`] per client, whatever carries it.
//!
//! - This module: the session itself, its subscriptions and the handling of
//!   its requests (exactly one reply each), with the rate limit and the
//!   channel permissions of its token.
//! - [`delivery`]: the task that sends what the session is owed, in order,
//!   into a [`sink::Sink`]: its queue, the channel streams it follows, the
//!   positions it reached, the lag policy.
//! - [`outbox`]: the session's bounded queue, which the hub pushes into
//!   through the [`Mailbox`](crate::hub::Mailbox) it declares.
//! - [`sink`]: what a transport implements to be delivered to.
//! - [`log`]: the numbered log that HTTP transports read from, so a broken
//!   stream or a lost poll answer is sent again.
//! - [`ending`]: how a session ends, whatever carries it: why, what it is
//!   still sent, its last word.
//! - [`resumable`]: sessions that outlive their requests (SSE, long-polling):
//!   unguessable ids, attach and detach, expiry after `session_ttl`.
//! - [`lifecycle`]: admission and the `disconnect` push, shared by every
//!   transport.
//! - [`tenure`]: a session's bookkeeping from open to close (limits, gauge,
//!   kick registry, log lines), the same for every transport.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tether::PreparedMessage;

use crate::auth::{Identity, Verifier};
use crate::config::{Access, ServerConfig};
use crate::hub::{ClientId, Hub, Left};
use crate::protocol::{
    Command, Connected, DisconnectCode, Empty, ErrorBody, ErrorCode, PresenceList, Reply, Request,
};
use crate::ratelimit::{Rate, TokenBucket};

pub mod delivery;
pub mod ending;
mod following;
pub mod lifecycle;
pub mod log;
pub mod outbox;
pub mod resumable;
pub mod sink;
pub mod state;
pub mod tenure;

use outbox::Outbox;

pub use state::{AppState, StartError};

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// What the transport should do after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the connection.
    Continue,
    /// End the session: say why with a `disconnect` push after the replies
    /// already queued, then close.
    Disconnect(DisconnectCode),
}

/// What every session of a server shares: token verification and the
/// server's settings.
#[derive(Debug)]
pub struct Shared {
    /// Verifies the tokens of `connect`.
    pub verifier: Verifier,
    /// The settings sessions run under.
    pub config: Arc<ServerConfig>,
}

/// One connected client.
#[derive(Debug)]
pub struct Session {
    id: ClientId,
    hub: Arc<Hub>,
    outbox: Outbox,
    subscriptions: Subscriptions,
    bucket: TokenBucket,
    /// Requests refused in a row by the rate limit.
    refused: u32,
    /// Token verification and the settings, one pointer for both.
    shared: Arc<Shared>,
    /// Boxed: most sessions never authenticate, and every one would carry
    /// the room.
    identity: Option<Box<Identity>>,
}

/// The channels a session is subscribed to, sorted: a connection has few
/// (at most `max_subscriptions`), and a sorted slice of one costs a tenth
/// of a hash set's first allocation. Boxed, not a vector: every session
/// carries it, and it changes only on a subscribe or an unsubscribe.
#[derive(Debug, Default)]
struct Subscriptions(Box<[Box<str>]>);

impl Subscriptions {
    fn find(&self, channel: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|c| c.as_ref().cmp(channel))
    }

    fn contains(&self, channel: &str) -> bool {
        self.find(channel).is_ok()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn insert(&mut self, channel: &str) {
        if let Err(at) = self.find(channel) {
            let mut grown = std::mem::take(&mut self.0).into_vec();
            grown.reserve_exact(1);
            grown.insert(at, channel.into());
            self.0 = grown.into_boxed_slice();
        }
    }

    fn remove(&mut self, channel: &str) {
        if let Ok(at) = self.find(channel) {
            let mut shrunk = std::mem::take(&mut self.0).into_vec();
            shrunk.remove(at);
            self.0 = shrunk.into_boxed_slice();
        }
    }
}

fn reply_frame<T: Serialize>(id: u64, result: Result<T, ErrorBody>) -> PreparedMessage {
    crate::hub::frame(&Reply::new(id, result))
}

impl Session {
    /// A session of `hub`, under its settings, whose outgoing frames go to
    /// `outbox`.
    pub fn new(hub: Arc<Hub>, shared: Arc<Shared>, outbox: Outbox) -> Self {
        let id: ClientId = hub
            .client_id(NEXT_CLIENT.fetch_add(1, Ordering::Relaxed))
            .into();
        Self {
            id,
            hub,
            outbox,
            subscriptions: Subscriptions::default(),
            bucket: TokenBucket::full(),
            refused: 0,
            shared,
            identity: None,
        }
    }

    fn rate(config: &ServerConfig) -> Rate {
        Rate {
            per_second: config.rate_limit,
            burst: config.rate_burst,
        }
    }

    /// The settings it runs under.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.shared.config
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.hub.metrics()
    }

    /// This client's id, as presence shows it.
    pub fn id(&self) -> &ClientId {
        &self.id
    }

    /// Whether this session is subscribed to `channel`.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.subscriptions.contains(channel)
    }

    /// Applies the rate limit to one incoming frame: `Err` holds the verdict for a
    /// refused one (error 109, or a disconnect with 4502 once the client has
    /// ignored a whole burst of refusals).
    async fn admit(&mut self, id: u64) -> Result<(), Verdict> {
        if self.bucket.take(Self::rate(self.config())) {
            self.refused = 0;
            return Ok(());
        }
        self.refused += 1;
        self.hub.metrics().rate_limited.inc();
        if self.refused > self.config().rate_burst {
            return Err(Verdict::Disconnect(DisconnectCode::RateLimited));
        }
        let error = ErrorCode::RateLimited.body(format!(
            "over {} requests per second",
            self.config().rate_limit
        ));
        self.send(reply_frame::<()>(id, Err(error))).await;
        Err(Verdict::Continue)
    }

    /// Handles one text frame: exactly one reply is queued for it.
    pub async fn handle_text(&mut self, text: &str) -> Verdict {
        let request = Request::parse(text);
        let id = match &request {
            Ok(request) => request.id,
            Err(bad) => bad.id,
        };
        if let Err(verdict) = self.admit(id).await {
            return verdict;
        }
        match request {
            Ok(request) => self.handle(request).await,
            Err(bad) => {
                tracing::debug!(client = %self.id, code = bad.error.code, "bad request");
                self.send(reply_frame::<()>(bad.id, Err(bad.error))).await;
            }
        }
        Verdict::Continue
    }

    /// Answers a binary frame, which the protocol does not use.
    pub async fn handle_binary(&mut self) -> Verdict {
        if let Err(verdict) = self.admit(0).await {
            return verdict;
        }
        let error = ErrorCode::BinaryNotSupported.body("send JSON in text frames");
        self.send(reply_frame::<()>(0, Err(error))).await;
        Verdict::Continue
    }

    async fn send(&self, frame: PreparedMessage) {
        let _ = self.outbox.reply(frame).await;
    }

    /// Whether this session may act on `channel` under the namespace's `access`.
    fn check_access(&self, channel: &str, access: Access) -> Result<(), ErrorBody> {
        let denied = |why: &str| Err(ErrorCode::PermissionDenied.body(why));
        match (&self.identity, access) {
            (_, Access::Nobody) => denied("clients may not do this in this namespace"),
            (None, Access::Anyone) if self.shared.verifier.anonymous() => Ok(()),
            (None, _) => Err(ErrorCode::Unauthorized.body("connect with a token first")),
            (Some(identity), _) if !identity.allows(channel) => Err(ErrorCode::PermissionDenied
                .body(format!("the token does not allow channel {channel:?}"))),
            (Some(identity), Access::Granted) if identity.channels.is_none() => {
                denied("this namespace needs a token that lists the channel")
            }
            (Some(_), _) => Ok(()),
        }
    }

    fn connect(&mut self, token: Option<String>) -> Result<Connected, ErrorBody> {
        match token {
            Some(token) => {
                let identity = self.shared.verifier.verify(&token)?;
                let result = Connected {
                    client: self.id.to_string(),
                    user: Some(identity.user.clone()),
                };
                self.identity = Some(Box::new(identity));
                Ok(result)
            }
            None if self.shared.verifier.anonymous() => Ok(Connected {
                client: self.id.to_string(),
                user: None,
            }),
            None => Err(ErrorCode::Unauthorized.body("a token is required")),
        }
    }

    /// Handles one parsed request (rate limit aside): exactly one reply is
    /// queued for it.
    pub async fn handle(&mut self, request: Request) {
        let id = request.id;
        // Reading presence and history needs what subscribing needs; leaving a
        // channel needs nothing.
        let checked = match &request.command {
            Command::Subscribe { channel, .. }
            | Command::Presence { channel }
            | Command::History { channel, .. } => {
                Some((channel, self.hub.namespace_of(channel).subscribe))
            }
            Command::Publish { channel, .. } => {
                Some((channel, self.hub.namespace_of(channel).publish))
            }
            Command::Unsubscribe { .. } | Command::Connect { .. } | Command::Ping => None,
        };
        if let Some((channel, access)) = checked {
            if let Err(error) = self.check_access(channel, access) {
                self.send(reply_frame::<()>(id, Err(error))).await;
                return;
            }
        }
        let frame = match request.command {
            Command::Connect { token } => reply_frame(id, self.connect(token)),
            Command::Ping => reply_frame(id, Ok(Empty {})),
            Command::Subscribe { channel, recover } => {
                if self.subscriptions.len() >= self.config().max_subscriptions {
                    let error = ErrorCode::TooManySubscriptions.body(format!(
                        "at most {} subscriptions",
                        self.config().max_subscriptions
                    ));
                    reply_frame::<()>(id, Err(error))
                } else {
                    // On success the hub queues the reply itself, ahead of live publications.
                    let user: Option<Arc<str>> =
                        self.identity.as_ref().map(|i| Arc::from(i.user.as_str()));
                    match self
                        .hub
                        .subscribe(
                            id,
                            &channel,
                            &self.id,
                            user.as_ref(),
                            &self.outbox.mailbox(),
                            recover.as_ref(),
                        )
                        .await
                    {
                        Ok(()) => {
                            self.subscriptions.insert(&channel);
                            return;
                        }
                        Err(error) => reply_frame::<()>(id, Err(error)),
                    }
                }
            }
            Command::Unsubscribe { channel } => {
                match self.hub.leave(&channel, &self.id) {
                    Ok(mut left) => {
                        self.subscriptions.remove(&channel);
                        let stop = left.stop.take();
                        let reply = reply_frame(id, Ok(Empty {}));
                        let _ = self.outbox.reply_following(reply, stop).await;
                        self.hub.announce_leave(&channel, &self.id, left).await;
                    }
                    Err(error) => self.send(reply_frame::<()>(id, Err(error))).await,
                }
                return;
            }
            Command::Publish {
                channel,
                data,
                idempotency_key,
                key,
            } => reply_frame(
                id,
                self.hub
                    .publish(&channel, data, idempotency_key, key.as_deref())
                    .await,
            ),
            Command::Presence { channel } => reply_frame(
                id,
                self.hub
                    .presence(&channel)
                    .await
                    .map(|clients| PresenceList { clients }),
            ),
            Command::History { channel, limit } => {
                reply_frame(id, self.hub.history(&channel, limit).await)
            }
        };
        self.send(frame).await;
    }

    /// Leaves every channel (presence leave for each); call when the connection
    /// ends. The writer stops each channel's stream where the session left it,
    /// so the client is not sent what happened after, its own leave included.
    pub async fn end(&mut self) {
        for (channel, left) in self.leave_all() {
            self.hub.announce_leave(&channel, &self.id, left).await;
        }
    }

    /// Leaves every channel here at once, queueing the stream stops; returns
    /// what the others still have to be told.
    fn leave_all(&mut self) -> Vec<(Box<str>, Left)> {
        let mut announcements = Vec::new();
        for channel in std::mem::take(&mut self.subscriptions).0.into_vec() {
            if let Ok(mut left) = self.hub.leave(&channel, &self.id) {
                if let Some(stop) = left.stop.take() {
                    self.outbox.push_follow(stop);
                }
                announcements.push((channel, left));
            }
        }
        announcements
    }
}

impl Drop for Session {
    /// A session dropped without [`Session::end`] (its task was aborted, say)
    /// still leaves: at once here, and the others are told from a task.
    fn drop(&mut self) {
        let announcements = self.leave_all();
        if announcements.is_empty() {
            return;
        }
        let (hub, client) = (self.hub.clone(), self.id.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for (channel, left) in announcements {
                    hub.announce_leave(&channel, &client, left).await;
                }
            });
        }
    }
}

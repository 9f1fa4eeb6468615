//! Sessions that outlive the requests carrying them: streams and polls come
//! and go (the HTTP transports), the session stays.
//!
//! Each has an unguessable key (128 random bits, apart from the client id
//! that presence shows others), lives in [`Resumables`], owns its
//! [`Session`] (subscriptions, rate limit, token), one bounded queue and the
//! [`EventLog`] its requests read. A driver task per session delivers into
//! the log and ends the session on a kick, a slow-consumer or rate-limit
//! disconnect, shutdown, an explicit close, or when nothing has been
//! attached for its [`Resumption::ttl`]; its channels then get their `leave`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
// The runtime's clock, which tests can pause and move on.
use tokio::time::Instant;

use super::delivery::Delivery;
use super::ending::{self, Ending, Flush, Patience};
use super::log::{EventLog, LogSink};
use super::tenure::Tenure;
use super::Session;
use crate::alarm::Alarm;
use crate::protocol::DisconnectCode;
use crate::registry::SessionGuard;
use crate::session::state::AppState;

/// What the transport that carries resumable sessions sets for them.
#[derive(Debug, Clone, Copy)]
pub struct Resumption {
    /// How long a session lives with no request attached.
    pub ttl: Duration,
    /// The bytes of messages its log holds unread before delivery waits.
    pub log_bytes: usize,
    /// How long its ending waits.
    pub patience: Patience,
}

/// How a session was asked to end from outside its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndRequest {
    /// The client closed it: nothing more is sent.
    Close,
    /// The session itself decided (the rate limit): the replies queued, then
    /// the `disconnect` push.
    Disconnect(DisconnectCode),
}

#[derive(Debug)]
struct Attach {
    /// Counts attaches: the newest one is the session's stream or held poll.
    generation: u64,
    /// Requests attached now.
    attached: usize,
    /// When the last one left (or the session opened).
    since: Instant,
    /// Asked to end, not yet acted on.
    end: Option<EndRequest>,
}

/// One resumable session.
#[derive(Debug)]
pub struct Resumable {
    key: Arc<str>,
    /// The transport's name (for metrics, logs, and keys used on another).
    transport: &'static str,
    client: Arc<str>,
    log: Arc<EventLog>,
    /// `None` once the session has ended (its log may still be read).
    session: tokio::sync::Mutex<Option<Session>>,
    attach: Mutex<Attach>,
    /// Attach, detach and end requests: the driver and attached requests
    /// wait here.
    changed: Notify,
    /// Counts attached requests.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Resumable {
    /// The session's secret key, which its requests carry.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The client id others see in presence.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The name of the transport that carries it, as it opened it.
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    /// What its requests read.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The session, to handle requests with; `None` once it has ended.
    pub async fn session(&self) -> tokio::sync::MutexGuard<'_, Option<Session>> {
        self.session.lock().await
    }

    fn attach_state(&self) -> MutexGuard<'_, Attach> {
        self.attach.lock().expect("attach lock")
    }

    /// Attaches a request (a stream, a poll): it supersedes the one
    /// attached before, which should end. Detached when dropped.
    pub fn attach(self: &Arc<Self>) -> Attachment {
        let generation = {
            let mut attach = self.attach_state();
            attach.generation += 1;
            attach.attached += 1;
            attach.generation
        };
        self.metrics.http_attached.inc();
        self.metrics.http_attaches.inc();
        self.changed.notify_waiters();
        Attachment {
            resumable: self.clone(),
            generation,
        }
    }

    /// Asks the driver to end the session.
    pub fn request_end(&self, why: EndRequest) {
        self.attach_state().end.get_or_insert(why);
        self.changed.notify_waiters();
    }

    /// When the session expires if nothing attaches first (`None` while
    /// something is attached).
    fn expiry(&self, ttl: Duration) -> Option<Instant> {
        let attach = self.attach_state();
        (attach.attached == 0).then(|| attach.since + ttl)
    }
}

/// A request attached to a session; detaches when dropped.
#[derive(Debug)]
pub struct Attachment {
    resumable: Arc<Resumable>,
    generation: u64,
}

impl Attachment {
    /// Resolves once a newer request has attached: at most one stream or
    /// poll per session is held. (A session's end closes its log, which
    /// ends the stream or answers the poll once its last message is out.)
    pub async fn superseded(&self) {
        loop {
            let changed = self.resumable.changed.notified();
            if self.resumable.attach_state().generation != self.generation {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        {
            let mut attach = self.resumable.attach_state();
            attach.attached -= 1;
            attach.since = Instant::now();
        }
        self.resumable.metrics.http_attached.dec();
        self.resumable.changed.notify_waiters();
    }
}

/// The registry of resumable sessions, by key.
#[derive(Debug, Default)]
pub struct Resumables {
    sessions: Mutex<HashMap<Arc<str>, Arc<Resumable>>>,
    /// This node's id in a cluster, which its keys end with.
    node: Option<Arc<str>>,
}

/// The node that holds the session `key` (what follows its last `.`),
/// when it was made on a node of a cluster.
pub fn node_of(key: &str) -> Option<&str> {
    key.rsplit_once('.')
        .map(|(_, node)| node)
        .filter(|node| crate::mesh::valid_node(node))
}

impl Resumables {
    /// The sessions of node `node` (None: a server alone).
    pub fn new(node: Option<Arc<str>>) -> Self {
        Self {
            sessions: Mutex::default(),
            node,
        }
    }

    /// A fresh session key: 128 bits from the operating system's
    /// CSPRNG-seeded generator, as 32 hex digits, then `.NODE` in a
    /// cluster so that any node can tell which one holds it.
    fn new_key(&self) -> Arc<str> {
        let bits: u128 = rand::random();
        let mut key = String::with_capacity(40);
        let _ = write!(key, "{bits:032x}");
        if let Some(node) = &self.node {
            let _ = write!(key, ".{node}");
        }
        key.into()
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Resumable>>> {
        self.sessions.lock().expect("resumables lock")
    }

    /// The session `key`, if it lives (its log may still hold its last
    /// messages after it ended).
    pub fn get(&self, key: &str) -> Option<Arc<Resumable>> {
        self.map().get(key).cloned()
    }

    /// Sessions held (live, or ended with their last messages unread).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// Forgets `key`: requests no longer find it (its driver still ends it).
    pub fn remove(&self, key: &str) {
        self.map().remove(key);
    }

    /// Opens a session carried by the transport named `transport`, admitted
    /// with `guard` for the client at `peer`, and starts its driver.
    pub fn open(
        state: &AppState,
        transport: &'static str,
        guard: SessionGuard,
        peer: Option<SocketAddr>,
        resumption: Resumption,
    ) -> Arc<Resumable> {
        let (session, inbox, alarm) = state.new_session();
        let log = Arc::new(EventLog::new(
            state.config.outbound_queue,
            resumption.log_bytes,
        ));
        let client = session.id().clone();
        let resumable = Arc::new(Resumable {
            key: state.resumables.new_key(),
            transport,
            client: client.clone(),
            log,
            session: tokio::sync::Mutex::new(Some(session)),
            attach: Mutex::new(Attach {
                generation: 0,
                attached: 0,
                since: Instant::now(),
                end: None,
            }),
            changed: Notify::new(),
            metrics: state.metrics.clone(),
        });
        state
            .resumables
            .map()
            .insert(resumable.key.clone(), resumable.clone());
        let tenure = Tenure::begin(state, guard, transport, &client, &alarm, None, peer);
        tokio::spawn(drive(
            resumable.clone(),
            state.clone(),
            tenure,
            resumption,
            inbox,
            alarm,
        ));
        resumable
    }
}

/// A resumable session's delivery task, aborted when dropped.
struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Flush for Running {
    async fn drain(mut self) {
        let _ = (&mut self.0).await;
    }

    fn abandon(self) {}
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs one resumable session: delivery into its log, and its end.
// Written out on purpose, see the comment in the body.
#[allow(clippy::manual_async_fn)]
fn drive(
    resumable: Arc<Resumable>,
    state: AppState,
    tenure: Tenure,
    resumption: Resumption,
    inbox: super::outbox::Inbox,
    alarm: Arc<Alarm>,
) -> impl std::future::Future<Output = ()> + Send {
    // A block, not an `async fn`, which would hold its arguments twice for
    // the session's whole life.
    async move {
        let ttl = resumption.ttl;
        let delivery = Running(tokio::spawn(
            Delivery::new(LogSink(resumable.log.clone()), state.metrics.clone(), inbox).run(),
        ));
        let ending = loop {
            let changed = resumable.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(end) = resumable.attach_state().end {
                break match end {
                    // Nobody reads a session its client closed.
                    EndRequest::Close => Ending::Gone("closed by client"),
                    EndRequest::Disconnect(code) => Ending::Disconnect(code),
                };
            }
            let expiry = resumable.expiry(ttl);
            if expiry.is_some_and(|at| at <= Instant::now()) {
                break Ending::Gone("expired");
            }
            tokio::select! {
                () = &mut changed => {}
                () = sleep_until(expiry) => {}
                raised = alarm.wait() => break Ending::of_alarm(raised),
            }
        };
        let ended = tenure.ending(resumable.client.clone());
        let session = resumable.session.lock().await.take();
        let patience = resumption.patience;
        let last = match session {
            Some(session) => ending::finish(session, ending, delivery, &patience).await,
            None => None,
        };
        let last = last.map(|goodbye| goodbye.push);
        let told = last.is_some();
        resumable.log.close_with(last.map(Bytes::from));
        if told {
            // Kept until the client has read its last message, or for as long
            // as it would have been kept waiting for the client to come back.
            let linger = match ending {
                Ending::Shutdown => ttl.min(patience.shutdown),
                _ => ttl,
            };
            let _ = tokio::time::timeout(linger, resumable.log.drained()).await;
        }
        state.resumables.remove(&resumable.key);
        ended.log(resumable.transport, ending.reason());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resumption() -> Resumption {
        let second = Duration::from_secs(1);
        Resumption {
            ttl: 30 * second,
            log_bytes: 1 << 20,
            patience: Patience {
                owed: second,
                shutdown: second,
                reconnect_window: second,
            },
        }
    }

    async fn open() -> (AppState, Arc<Resumable>) {
        let (state, _stop) = AppState::new(crate::ServerConfig::default()).unwrap();
        let guard = state.sessions.try_enter(None, 0, 0).unwrap();
        let resumable = Resumables::open(&state, "test", guard, None, resumption());
        (state, resumable)
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_lives_while_attached_and_its_ttl_after() {
        let (state, resumable) = open().await;
        let live = |state: &AppState| state.resumables.get(resumable.key()).is_some();
        let attached = resumable.attach();
        assert_eq!(state.metrics.http_attached.get(), 1);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(live(&state), "attached: no expiry");
        drop(attached);
        assert_eq!(state.metrics.http_attached.get(), 0);
        assert_eq!(state.metrics.http_attaches.get(), 1);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(live(&state), "within its ttl");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!live(&state), "expired");
        assert!(resumable.session().await.is_none(), "and ended");
        assert_eq!(state.sessions.live(), 0, "its place is given back");
        assert!(
            !state.sessions.kick(resumable.client()),
            "and its registry entry"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kick_ends_it_with_its_last_word_in_the_log() {
        let (state, resumable) = open().await;
        assert!(state.sessions.kick(resumable.client()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(resumable.session().await.is_none(), "ended");
        let read = resumable.log().read(0, 1 << 20, true).unwrap();
        assert!(read.ended);
        let last = read.messages.last().expect("the disconnect push");
        let push = std::str::from_utf8(&last.1).unwrap();
        let code = DisconnectCode::Kicked as u16;
        assert!(
            push.contains("disconnect") && push.contains(&code.to_string()),
            "{push}"
        );
        // Kept for the client to read it, then gone.
        assert!(state.resumables.get(resumable.key()).is_some());
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(state.resumables.get(resumable.key()).is_none());
    }
}

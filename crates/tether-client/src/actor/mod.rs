//! The connection task, one per client. It owns the link to the server and
//! everything that must survive it: reconnecting with backoff, resubscribing
//! every wanted channel from its last offset and epoch, sending unanswered
//! requests again, and delivering each publication once, in order.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use tether::{MaybeTlsStream, Message, WsWriter};
use tether_protocol::{Command, Request};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

use crate::backoff::backoff;
use crate::config::ClientConfig;
use crate::error::Error;
use crate::events::{Event, State, SubscriptionEvent};

mod channels;
mod messages;
mod tokens;

/// Server errors worth retrying a subscribe after: rate limited, unavailable.
const RETRIABLE: [u16; 2] = [109, 112];
/// Unauthorized: the client stops rather than retry the same token forever.
const UNAUTHORIZED: u16 = 111;

/// What a [`Client`](crate::Client) asks of its connection task.
pub(crate) enum Call {
    Subscribe {
        channel: String,
        handle: u64,
        events: mpsc::UnboundedSender<SubscriptionEvent>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Unsubscribe {
        channel: String,
        handle: u64,
    },
    Request {
        command: Command,
        reply: oneshot::Sender<Result<Box<RawValue>, Error>>,
    },
    /// A subscribe the server asked to retry later.
    Retry {
        channel: String,
    },
    Close,
}

/// One channel: who wants it, what the server holds, where it resumes from.
struct Channel {
    handle: Option<(u64, mpsc::UnboundedSender<SubscriptionEvent>)>,
    offset: u64,
    epoch: Option<String>,
    server: bool,
    in_flight: bool,
}

impl Channel {
    fn emit(&self, event: SubscriptionEvent) {
        if let Some((_, events)) = &self.handle {
            let _ = events.send(event);
        }
    }
}

/// Requests the task makes itself; they belong to one link.
enum Internal {
    Connect,
    Refresh,
    Ping,
    Subscribe { channel: String, recovering: bool },
    Unsubscribe { channel: String },
}

/// An application's request, kept until answered (sent again on a new link).
struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Box<RawValue>, Error>>,
    sent_on: u64,
}

/// How a link ended.
enum End {
    /// The application closed the client.
    Closed,
    Lost {
        code: u16,
        reason: String,
        reconnect: bool,
        after: Option<Duration>,
        stable: bool,
    },
}

fn lost(code: u16, reason: impl Into<String>) -> End {
    End::Lost {
        code,
        reason: reason.into(),
        reconnect: true,
        after: None,
        stable: false,
    }
}

/// The server's last word on a link (its `disconnect` push).
struct Advice {
    code: u16,
    reason: String,
    reconnect: bool,
    after: Option<Duration>,
}

/// One connection to the server.
struct Link {
    writer: WsWriter<MaybeTlsStream>,
    generation: u64,
    connected_at: Option<Instant>,
    outbox: Vec<String>,
    last_traffic: Instant,
    ping_sent: Option<Instant>,
    refresh_at: Option<Instant>,
    advice: Option<Advice>,
    close_code: Option<u16>,
    end: Option<End>,
}

/// A token fetch's outcome.
type Fetched = Result<String, String>;

/// Which kind of message a text frame holds.
#[derive(Deserialize)]
struct Kind {
    push: Option<IgnoredAny>,
}

pub(crate) struct Actor {
    config: ClientConfig,
    calls: mpsc::UnboundedReceiver<Call>,
    myself: mpsc::WeakUnboundedSender<Call>,
    events: broadcast::Sender<Event>,
    state: watch::Sender<State>,
    channels: HashMap<String, Channel>,
    requests: BTreeMap<u64, Pending>,
    internal: HashMap<u64, Internal>,
    next_id: u64,
    generation: u64,
    attempt: u32,
    rng: StdRng,
    token: Option<String>,
    /// Tokens fetched in the background for a refresh: the sender for the
    /// fetching task, the receiver for the link's loop.
    tokens: (
        mpsc::UnboundedSender<Fetched>,
        mpsc::UnboundedReceiver<Fetched>,
    ),
    refresh_failures: u32,
}

impl Actor {
    pub(crate) fn new(
        config: ClientConfig,
        calls: mpsc::UnboundedReceiver<Call>,
        myself: mpsc::WeakUnboundedSender<Call>,
        events: broadcast::Sender<Event>,
        state: watch::Sender<State>,
    ) -> Self {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            token: config.token.clone(),
            config,
            calls,
            myself,
            events,
            state,
            channels: HashMap::new(),
            requests: BTreeMap::new(),
            internal: HashMap::new(),
            next_id: 1,
            generation: 0,
            attempt: 0,
            rng,
            tokens: mpsc::unbounded_channel(),
            refresh_failures: 0,
        }
    }

    /// Connects, and reconnects, until closed or told not to.
    pub(crate) async fn run(mut self) {
        loop {
            self.state.send_replace(State::Connecting);
            let _ = self.events.send(Event::Connecting);
            let end = self.link().await;
            self.forget_link();
            match end {
                End::Closed => return self.finish(1000, "closed by the client".into()),
                End::Lost {
                    code,
                    reason,
                    reconnect,
                    after,
                    stable,
                } => {
                    if !reconnect {
                        return self.finish(code, reason);
                    }
                    if stable {
                        self.attempt = 0;
                    }
                    let _ = self.events.send(Event::Disconnected {
                        code,
                        reason,
                        reconnect: true,
                    });
                    let (min, max) = (
                        self.config.min_reconnect_delay,
                        self.config.max_reconnect_delay,
                    );
                    let delay =
                        after.unwrap_or_else(|| backoff(self.attempt, min, max, &mut self.rng));
                    self.attempt += 1;
                    let _ = self.events.send(Event::Reconnecting {
                        attempt: self.attempt,
                        delay,
                    });
                    if self.during(tokio::time::sleep(delay)).await.is_none() {
                        return self.finish(1000, "closed by the client".into());
                    }
                }
            }
        }
    }

    /// Stops for good: every waiting request and subscription ends.
    fn finish(&mut self, code: u16, reason: String) {
        self.state.send_replace(State::Disconnected);
        let _ = self.events.send(Event::Disconnected {
            code,
            reason,
            reconnect: false,
        });
        for (_, pending) in std::mem::take(&mut self.requests) {
            let _ = pending.reply.send(Err(Error::Closed));
        }
        self.channels.clear();
        self.calls.close();
    }

    /// Awaits `work` while taking calls (which wait for the next link); None once closed.
    async fn during<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Some(out),
                call = self.calls.recv() => match call {
                    None | Some(Call::Close) => return None,
                    Some(call) => self.handle(call, None),
                },
            }
        }
    }

    /// One link: open, authenticate, resume, serve until it ends.
    async fn link(&mut self) -> End {
        if let Some(get) = self.config.get_token.clone() {
            match self.during(get()).await {
                None => return End::Closed,
                Some(Ok(token)) => self.token = Some(token),
                Some(Err(error)) => return lost(0, format!("getting a token failed: {error}")),
            }
        }
        let mut builder =
            tether::ClientBuilder::new(self.config.websocket_url()).http2(self.config.http2);
        for (name, value) in &self.config.headers {
            builder = builder.header(name, value);
        }
        if let Some(tls) = &self.config.tls {
            builder = builder.tls_config(tls.clone());
        }
        let opening = tokio::time::timeout(self.config.connect_timeout, builder.connect());
        let ws = match self.during(opening).await {
            None => return End::Closed,
            Some(Ok(Ok((ws, _response)))) => ws,
            Some(Ok(Err(error))) => return lost(1006, error.to_string()),
            Some(Err(_)) => return lost(1006, "connecting timed out"),
        };
        self.generation += 1;
        let (mut reader, writer) = ws.split();
        let (frames, mut incoming) = mpsc::channel(64);
        let reading = tokio::spawn(async move {
            loop {
                let next = reader.recv().await.map_err(|e| e.to_string());
                let done = !matches!(next, Ok(Some(_)));
                if frames.send(next).await.is_err() || done {
                    return;
                }
            }
        });
        let mut link = Link {
            writer,
            generation: self.generation,
            connected_at: None,
            outbox: Vec::new(),
            last_traffic: Instant::now(),
            ping_sent: None,
            refresh_at: None,
            advice: None,
            close_code: None,
            end: None,
        };
        self.send_internal(
            &mut link,
            Internal::Connect,
            Command::Connect {
                token: self.token.clone(),
            },
        );
        let end = loop {
            if let Err(error) = flush(&mut link).await {
                break lost(1006, error);
            }
            if let Some(end) = link.end.take() {
                break end;
            }
            let heartbeat = match link.ping_sent {
                Some(sent) => sent + self.config.ping_timeout,
                None => link.last_traffic + self.config.ping_interval,
            };
            let refresh = link
                .refresh_at
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                frame = incoming.recv() => match frame {
                    Some(Ok(Some(message))) => {
                        link.last_traffic = Instant::now();
                        link.ping_sent = None;
                        match message {
                            Message::Text(text) => self.receive(&mut link, text.as_str()),
                            Message::Close(frame) => link.close_code = frame.map(|f| f.code.0),
                            _ => {}
                        }
                    }
                    Some(Ok(None)) | None => break self.ended(&link, "connection closed"),
                    Some(Err(error)) => break self.ended(&link, &error),
                },
                call = self.calls.recv() => match call {
                    None | Some(Call::Close) => {
                        let _ = link.writer.close(None).await;
                        break End::Closed;
                    }
                    Some(call) => self.handle(call, Some(&mut link)),
                },
                token = self.tokens.1.recv() => self.refreshed(&mut link, token),
                _ = sleep_until(heartbeat) => {
                    if link.ping_sent.is_some() {
                        break lost(4002, "no traffic within the heartbeat");
                    }
                    link.ping_sent = Some(Instant::now());
                    self.send_internal(&mut link, Internal::Ping, Command::Ping);
                }
                _ = sleep_until(refresh), if link.refresh_at.is_some() => {
                    link.refresh_at = None;
                    self.fetch_token();
                }
            }
        };
        reading.abort();
        match end {
            End::Lost {
                code,
                reason,
                reconnect,
                after,
                ..
            } => End::Lost {
                code,
                reason,
                reconnect,
                after,
                stable: link
                    .connected_at
                    .is_some_and(|at| at.elapsed() >= self.config.stable_after),
            },
            closed => closed,
        }
    }

    /// How a link that stopped reading ended: the server's advice, or its close code.
    fn ended(&self, link: &Link, what: &str) -> End {
        if let Some(advice) = &link.advice {
            return End::Lost {
                code: advice.code,
                reason: advice.reason.clone(),
                reconnect: advice.reconnect,
                after: advice.after,
                stable: false,
            };
        }
        let code = link.close_code.unwrap_or(1006);
        End::Lost {
            code,
            reason: what.to_owned(),
            // 4500-4999: the server says not to reconnect as is.
            reconnect: !(4500..=4999).contains(&code),
            after: None,
            stable: false,
        }
    }

    /// What the server held for the link that is gone.
    fn forget_link(&mut self) {
        self.internal.clear();
        self.channels.retain(|_, channel| {
            channel.server = false;
            channel.in_flight = false;
            channel.handle.is_some()
        });
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn send_internal(&mut self, link: &mut Link, what: Internal, command: Command) {
        let id = self.id();
        self.internal.insert(id, what);
        link.outbox.push(Request::new(id, command).to_json());
    }

    /// An application's call; `link` when there is one to send on.
    fn handle(&mut self, call: Call, link: Option<&mut Link>) {
        match call {
            Call::Subscribe {
                channel,
                handle,
                events,
                reply,
            } => {
                let entry = self.channels.entry(channel.clone()).or_insert(Channel {
                    handle: None,
                    offset: 0,
                    epoch: None,
                    server: false,
                    in_flight: false,
                });
                if entry.handle.is_some() {
                    let _ = reply.send(Err(Error::AlreadySubscribed(channel)));
                    return;
                }
                entry.handle = Some((handle, events));
                let _ = reply.send(Ok(()));
                if entry.server && !entry.in_flight {
                    // Still held on the server from a moment ago: live from now.
                    entry.emit(SubscriptionEvent::Subscribed {
                        epoch: entry.epoch.clone().unwrap_or_default(),
                        offset: entry.offset,
                        recovering: false,
                        recovered: false,
                    });
                }
                self.reconcile(&channel, link);
            }
            Call::Unsubscribe { channel, handle } => {
                if let Some(entry) = self.channels.get_mut(&channel) {
                    if entry.handle.as_ref().is_some_and(|(h, _)| *h == handle) {
                        entry.handle = None;
                        self.reconcile(&channel, link);
                    }
                }
            }
            Call::Request { command, reply } => {
                let id = self.id();
                let mut pending = Pending {
                    command,
                    reply,
                    sent_on: 0,
                };
                if let Some(link) = link.filter(|l| l.connected_at.is_some()) {
                    link.outbox
                        .push(Request::new(id, pending.command.clone()).to_json());
                    pending.sent_on = link.generation;
                }
                self.requests.insert(id, pending);
            }
            Call::Retry { channel } => self.reconcile(&channel, link),
            Call::Close => {}
        }
    }
}

/// Writes what a link has to send.
async fn flush(link: &mut Link) -> Result<(), String> {
    if link.outbox.is_empty() {
        return Ok(());
    }
    for text in link.outbox.drain(..) {
        link.writer
            .feed(Message::text(text))
            .await
            .map_err(|e| e.to_string())?;
    }
    link.writer.flush().await.map_err(|e| e.to_string())
}

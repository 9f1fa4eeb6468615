//! The WebSocket transport: upgrade inside axum (with the Origin check), then one
//! reader loop and one writer task per connection, with heartbeats and graceful
//! shutdown.

use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use tether::broadcast::Queued as Progress;
use tether::{Batch, CloseFrame, HandshakeError, Message, PreparedMessage, WebSocket, WsWriter};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::hub::{Outbox, StreamSubscription};
use crate::protocol::DisconnectCode;
use crate::registry::SessionGuard;
use crate::session::delivery::{Delivery, Written};
use crate::session::lifecycle::{self, disconnect_push, Refused};
use crate::session::sink::{Burst, Sink, SinkClosed};
use crate::session::{Session, Verdict};
use crate::state::AppState;

fn refuse(error: HandshakeError) -> Response {
    tracing::debug!(%error, "refused WebSocket handshake");
    tether::proto::handshake::reject_response(&error).map(Body::from)
}

/// `GET /connection/websocket`.
pub async fn upgrade(State(state): State<AppState>, mut request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let guard = match lifecycle::admit(&state, request.headers(), peer.map(|peer| peer.ip())) {
        Ok(guard) => guard,
        Err(Refused { status, reason }) => {
            return refuse(HandshakeError::Refused { status, reason })
        }
    };
    match tether::upgrade(&mut request, &state.config.websocket.connection, None) {
        Ok((response, pending)) => {
            tokio::spawn(async move {
                match pending.finish().await {
                    // A task of its own: one that went on from here would
                    // carry the pending upgrade's room for the connection's
                    // whole life (about 0.8 KiB each).
                    Ok(ws) => drop(tokio::spawn(serve(ws, state, guard, peer))),
                    Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
                }
            });
            response.map(|()| Body::empty())
        }
        Err(e) => {
            state.metrics.reject("bad_handshake");
            refuse(e)
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Sink for WsWriter<S> {
    type Burst<'a>
        = Batch<'a, S>
    where
        Self: 'a;

    async fn burst(&self) -> Batch<'_, S> {
        self.batch().await
    }
}

/// The WebSocket burst: frames go into the socket's buffer, a channel's
/// frames copied as the stream framed them once.
impl<S: AsyncRead + AsyncWrite + Unpin> Burst for Batch<'_, S> {
    fn has_room_for(&self, len: usize) -> bool {
        Batch::has_room_for(self, len)
    }

    fn put(&mut self, frame: &PreparedMessage) -> Result<(), SinkClosed> {
        Ok(self.queue_prepared(frame)?)
    }

    fn put_stream(
        &mut self,
        subscription: &mut StreamSubscription,
        until: u64,
        keep: impl FnMut(&Option<u64>) -> bool,
        on_each: impl FnMut(usize, &Option<u64>),
    ) -> Result<Progress, SinkClosed> {
        Ok(subscription.queue_filtered_into(self, until, keep, on_each)?)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkClosed>> {
        Batch::poll_flush(self, cx).map_err(SinkClosed::from)
    }
}

/// Sends the `disconnect` push and the close frame for `code`, bounded by
/// `timeout` (the socket may be full of a slow reader's backlog).
async fn goodbye<S>(writer: &WsWriter<S>, push: String, code: DisconnectCode, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bye = async {
        let _ = writer.send(push).await;
        let close = CloseFrame::new(code.close_code(), code.reason());
        let _ = writer.close(Some(close)).await;
    };
    let _ = tokio::time::timeout(timeout, bye).await;
}

/// How a connection's read loop ended, which decides what is still sent.
enum Ending {
    /// The client sent a close frame: the replies to what it asked before it
    /// are owed, then our close answers its own.
    ClientClosed(Option<CloseFrame>),
    /// The server ends the session: the replies already queued (the refusals
    /// that explain it), then the `disconnect` push and the close.
    Disconnect(DisconnectCode),
    /// Nothing more can be sent, or all of it was.
    Done,
}

/// Removes the session from the kick registry when it ends.
struct Unregister(
    std::sync::Arc<crate::registry::Sessions>,
    crate::hub::ClientId,
);

impl Drop for Unregister {
    fn drop(&mut self) {
        self.0.unregister(&self.1);
    }
}

/// A client's address in the log, `unknown` when there is none.
struct Peer(Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Resolves once shutdown has begun; never, if nobody can start it any more.
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs one connection until it closes.
///
/// `live` is the session's place in the registry, released when it ends;
/// `peer` is the client's address, for the log.
pub fn serve<S>(
    ws: WebSocket<S>,
    state: AppState,
    live: SessionGuard,
    peer: Option<SocketAddr>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let compressed = ws.is_compressed();
    let (mut reader, writer) = ws.split();
    // A block, not an `async fn`: an async fn's state keeps its arguments
    // twice (as passed, and moved into its body), and an idle connection
    // would carry the unsplit socket and the rest for its whole life
    // (3176 bytes of state this way, against 2400).
    async move {
        let _live = live;
        let metrics = state.metrics.clone();
        let _open = metrics.open("websocket");
        let config = state.config.clone();
        let (outbox, queue, overflow) = Outbox::bounded(state.queue_bounds());
        let mut session = Session::new(
            state.hub.clone(),
            config.clone(),
            state.verifier.clone(),
            outbox,
        );
        let opened = Instant::now();
        // Kept as they are and shown in the log lines: formatted, they would
        // be two more allocations every idle connection carries.
        let peer = Peer(peer);
        let client = session.id().clone();
        tracing::info!(%client, %peer, compressed, "connection open");
        let kicked = state.sessions.register(&client);
        let _registered = Unregister(state.sessions.clone(), client.clone());
        let written = Written::default();
        let mut writer_task = tokio::spawn(
            Delivery {
                sink: writer.clone(),
                metrics: metrics.clone(),
                written: written.clone(),
                overflow: overflow.clone(),
            }
            .run(queue),
        );
        let mut shutdown = state.shutdown.clone();
        let mut heartbeat = tokio::time::interval(config.websocket.ping_interval);
        heartbeat.tick().await;
        let mut last_heard = Instant::now();
        let close_timeout = config.websocket.connection.close_timeout;
        let (reason, ending) = loop {
            tokio::select! {
                message = reader.recv() => {
                    last_heard = Instant::now();
                    if let Ok(Some(message)) = &message {
                        if message.is_data() {
                            metrics.messages_in.inc();
                            metrics.bytes_in.inc_by(message.len() as u64);
                        }
                    }
                    let verdict = match message {
                        // Boxed: a request is handled in a moment, and an idle
                        // connection should not carry the room its state needs.
                        Ok(Some(Message::Text(text))) => Box::pin(session.handle_text(&text)).await,
                        Ok(Some(Message::Binary(_))) => Box::pin(session.handle_binary()).await,
                        Ok(Some(Message::Close(frame))) => {
                            let reason = match &frame {
                                Some(frame) => format!("closed by client: {} {:?}", frame.code.0, frame.reason.as_str()),
                                None => "closed by client".to_owned(),
                            };
                            break (reason, Ending::ClientClosed(frame));
                        }
                        Ok(Some(_)) => Verdict::Continue,
                        Ok(None) => break ("connection ended".to_owned(), Ending::Done),
                        Err(e) => break (format!("connection failed: {e}"), Ending::Done),
                    };
                    if let Verdict::Disconnect(code) = verdict {
                        metrics.disconnect(code as u16);
                        break (code.reason().to_owned(), Ending::Disconnect(code));
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > config.websocket.ping_interval + config.websocket.pong_timeout {
                        writer_task.abort();
                        let code = DisconnectCode::NoPong;
                        metrics.disconnect(code as u16);
                        Box::pin(goodbye(&writer, disconnect_push(code, None), code, close_timeout)).await;
                        break ("no pong within the heartbeat timeout".to_owned(), Ending::Done);
                    }
                    let _ = Box::pin(writer.send(Message::Ping(bytes::Bytes::new()))).await;
                }
                _ = kicked.notified() => {
                    let code = DisconnectCode::Kicked;
                    metrics.disconnect(code as u16);
                    break ("disconnected through the API".to_owned(), Ending::Disconnect(code));
                }
                _ = overflow.wait() => {
                    // The queue is full: stop writing it and tell the client to come back.
                    writer_task.abort();
                    let code = DisconnectCode::SlowConsumer;
                    metrics.disconnect(code as u16);
                    let push = lifecycle::slow_consumer_push(&written, Some(&session));
                    Box::pin(goodbye(&writer, push, code, close_timeout)).await;
                    break ("slow consumer".to_owned(), Ending::Done);
                }
                _ = stopping(&mut shutdown) => {
                    // Leave the channels first, so nothing new is queued, then let the
                    // writer flush what is queued before saying goodbye.
                    Box::pin(session.end()).await;
                    let after = lifecycle::reconnect_after(config.reconnect_window);
                    let push = disconnect_push(DisconnectCode::Shutdown, Some(after));
                    drop(session);
                    let flushed = Box::pin(tokio::time::timeout(config.shutdown_timeout, &mut writer_task)).await;
                    if flushed.is_err() {
                        writer_task.abort();
                    }
                    Box::pin(goodbye(&writer, push, DisconnectCode::Shutdown, close_timeout)).await;
                    // Wait briefly for the client's close frame, so it sees a clean close.
                    let _ = Box::pin(tokio::time::timeout(close_timeout, async { while let Ok(Some(_)) = reader.recv().await {} })).await;
                    let seconds = opened.elapsed().as_secs_f64();
                    tracing::info!(%client, %peer, seconds, reason = "server shutting down", "connection closed");
                    return;
                }
            }
        };
        if let Ending::Done = ending {
            writer_task.abort();
        }
        // Leaving the channels lets the queue run dry: the writer sends what is
        // queued (every reply owed) and ends.
        Box::pin(session.end()).await;
        drop(session);
        if !matches!(ending, Ending::Done) {
            // Boxed, like every rare path here: the connection's task stays small.
            Box::pin(async {
                if tokio::time::timeout(close_timeout, &mut writer_task)
                    .await
                    .is_err()
                {
                    writer_task.abort();
                }
                match ending {
                    Ending::ClientClosed(frame) => {
                        // Our close answers the client's (echoing its code, RFC
                        // 6455 §5.5.1) and ends TCP.
                        let echo = frame.map(|frame| CloseFrame::new(frame.code.0, ""));
                        let _ = tokio::time::timeout(close_timeout, writer.close(echo)).await;
                    }
                    Ending::Disconnect(code) => {
                        goodbye(&writer, disconnect_push(code, None), code, close_timeout).await;
                        // Read (and discard) until the client's close frame:
                        // dropping the socket with unread input would reset it and
                        // could lose our close frame.
                        let _ = tokio::time::timeout(close_timeout, async {
                            while let Ok(Some(_)) = reader.recv().await {}
                        })
                        .await;
                    }
                    Ending::Done => {}
                }
            })
            .await;
        }
        let seconds = opened.elapsed().as_secs_f64();
        tracing::info!(%client, %peer, seconds, %reason, "connection closed");
    }
}

//! The WebSocket transport: upgrade inside axum (with the Origin check), then one
//! reader loop and one writer task per connection, with heartbeats and graceful
//! shutdown.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use tether::{CloseFrame, HandshakeError, Message, WebSocket, WsWriter};
use tokio::io::{AsyncRead, AsyncWrite};

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use super::writer::{Writer, Written};
use crate::hub::Outbox;
use crate::protocol::{DisconnectCode, Push, StreamPosition};
use crate::registry::{Refusal, SessionGuard};
use crate::session::{Session, Verdict};
use crate::state::AppState;

fn refuse(error: HandshakeError) -> Response {
    tracing::debug!(%error, "refused WebSocket handshake");
    tether::proto::handshake::reject_response(&error).map(Body::from)
}

/// `GET /connection/websocket`.
pub async fn upgrade(State(state): State<AppState>, mut request: Request) -> Response {
    let origin = request
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if !state.config.origin_allowed(origin) {
        state.metrics.reject("origin");
        let reason = format!("origin {} is not allowed", origin.unwrap_or_default());
        return refuse(HandshakeError::Refused {
            status: 403,
            reason,
        });
    }
    if *state.shutdown.borrow() {
        state.metrics.reject("shutting_down");
        return refuse(HandshakeError::Refused {
            status: 503,
            reason: "shutting down".into(),
        });
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let ip = peer.map(|peer| peer.ip());
    let config = &state.config;
    let guard =
        match state
            .sessions
            .try_enter(ip, config.max_connections, config.max_connections_per_ip)
        {
            Ok(guard) => guard,
            Err(Refusal::TooManyConnections) => {
                state.metrics.reject("too_many_connections");
                let reason = "too many connections".into();
                return refuse(HandshakeError::Refused {
                    status: 503,
                    reason,
                });
            }
            Err(Refusal::TooManyFromIp) => {
                state.metrics.reject("too_many_from_ip");
                let reason = "too many connections from this address".into();
                return refuse(HandshakeError::Refused {
                    status: 429,
                    reason,
                });
            }
        };
    match tether::upgrade(&mut request, &state.config.websocket, None) {
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

fn disconnect_push(code: DisconnectCode, after: Option<Duration>) -> String {
    disconnect_push_at(code, after, BTreeMap::new())
}

fn disconnect_push_at(
    code: DisconnectCode,
    after: Option<Duration>,
    positions: BTreeMap<Cow<'_, str>, StreamPosition>,
) -> String {
    let push = Push::Disconnect {
        code: code as u16,
        reason: code.reason().into(),
        reconnect: code.reconnect(),
        reconnect_after_ms: after.map(|d| d.as_millis() as u64),
        positions,
    };
    push.to_json()
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

/// Decrements the open-connection gauge when the session ends, however it ends.
struct OpenConnection(std::sync::Arc<crate::metrics::Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

fn scopeguard(metrics: std::sync::Arc<crate::metrics::Metrics>) -> OpenConnection {
    OpenConnection(metrics)
}

/// Removes the session from the kick registry when it ends.
struct Unregister(std::sync::Arc<crate::registry::Sessions>, String);

impl Drop for Unregister {
    fn drop(&mut self) {
        self.0.unregister(&self.1);
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
/// `_live` is the session's place in the registry, released when it ends;
/// `peer` is the client's address, for the log.
pub async fn serve<S>(
    ws: WebSocket<S>,
    state: AppState,
    _live: SessionGuard,
    peer: Option<SocketAddr>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let metrics = state.metrics.clone();
    metrics.connections.inc();
    metrics.connections_accepted.inc();
    let _open = scopeguard(metrics.clone());
    let config = state.config.clone();
    let (outbox, queue, overflow) = Outbox::new(config.outbound_queue);
    let compressed = ws.is_compressed();
    let (mut reader, writer) = ws.split();
    let mut session = Session::new(
        state.hub.clone(),
        config.clone(),
        state.verifier.clone(),
        outbox,
    );
    let opened = Instant::now();
    let peer = peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string());
    let client = session.id().to_owned();
    tracing::info!(%client, %peer, compressed, "connection open");
    let kicked = state.sessions.register(&client);
    let _registered = Unregister(state.sessions.clone(), client.clone());
    let written = Written::default();
    let mut writer_task = tokio::spawn(
        Writer {
            socket: writer.clone(),
            metrics: metrics.clone(),
            written: written.clone(),
            overflow: overflow.clone(),
        }
        .run(queue),
    );
    let mut shutdown = state.shutdown.clone();
    let mut heartbeat = tokio::time::interval(config.ping_interval);
    heartbeat.tick().await;
    let mut last_heard = Instant::now();
    let close_timeout = config.websocket.close_timeout;
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
                if last_heard.elapsed() > config.ping_interval + config.pong_timeout {
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
                let written = written.lock().expect("positions lock").clone();
                let positions = written
                    .iter()
                    .filter(|(channel, _)| session.is_subscribed(channel))
                    .map(|(channel, at)| {
                        let position = StreamPosition { offset: at.offset, epoch: at.epoch.to_string() };
                        (Cow::Borrowed(&**channel), position)
                    })
                    .collect();
                let push = disconnect_push_at(code, None, positions);
                Box::pin(goodbye(&writer, push, code, close_timeout)).await;
                break ("slow consumer".to_owned(), Ending::Done);
            }
            _ = stopping(&mut shutdown) => {
                // Leave the channels first, so nothing new is queued, then let the
                // writer flush what is queued before saying goodbye.
                Box::pin(session.end()).await;
                let window = config.reconnect_window.as_millis().max(1) as u64;
                let after = Duration::from_millis(rand::random::<u64>() % window);
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

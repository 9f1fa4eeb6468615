//! The WebSocket transport: upgrade inside axum (with the Origin check), then
//! one task per connection ([`connection`]: reading, delivery, heartbeats and
//! the alarm, driven by hand), and its goodbye: the close, the `disconnect`
//! push, and graceful shutdown.

mod connection;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use tether::broadcast::Queued as Progress;
use tether::{
    Batch, CloseFrame, Finished, HandshakeError, PreparedMessage, WebSocket, WsReader, WsWriter,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::hub::{Outbox, StreamSubscription};
use crate::protocol::DisconnectCode;
use crate::registry::SessionGuard;
use crate::session::delivery::Delivery;
use crate::session::lifecycle::{self, disconnect_push, Refused};
use crate::session::sink::{Burst, Sink, SinkClosed};
use crate::session::Session;
use crate::state::AppState;
use connection::{Connection, Ending, Exit};

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
                // Over the TCP stream itself where the server accepted it
                // (`server::run` does): no boxed stream in between.
                match pending.finish_as::<tokio::net::TcpStream>().await {
                    // A task of its own: one that went on from here would
                    // carry the pending upgrade's room for the connection's
                    // whole life (about 0.8 KiB each).
                    Ok(Finished::Direct(ws)) => drop(tokio::spawn(serve(ws, state, guard, peer))),
                    Ok(Finished::Boxed(ws)) => drop(tokio::spawn(serve(ws, state, guard, peer))),
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

/// What a connection keeps for its ending besides its parts: its place in
/// the registry and the gauge, and what its log lines name.
struct Tail {
    _live: SessionGuard,
    _open: crate::metrics::OpenSession,
    registered: Unregister,
    /// The client's port, for the log (its address is in `_live`).
    port: u16,
    opened: Instant,
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
///
/// Kept as the port alone: the address is in the connection's
/// [`SessionGuard`] already, and a whole `SocketAddr` is 32 bytes.
#[derive(Clone, Copy)]
struct Peer {
    ip: Option<std::net::IpAddr>,
    port: u16,
}

impl Peer {
    fn of(live: &SessionGuard, port: u16) -> Self {
        Self {
            ip: live.ip(),
            port,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            Some(ip) => SocketAddr::new(ip, self.port).fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Runs one connection until it closes.
///
/// `live` is the session's place in the registry, released when it ends;
/// `peer` is the client's address, for the log. Must be called inside the
/// runtime (the first connection starts the shared heartbeat).
pub fn serve<S>(
    ws: WebSocket<S>,
    state: AppState,
    live: SessionGuard,
    peer: Option<SocketAddr>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Set up here rather than in the future below: what the future captures
    // it carries for the connection's whole life, and it needs none of the
    // shared state itself.
    let compressed = ws.is_compressed();
    let (reader, writer) = ws.split();
    let metrics = state.metrics.clone();
    let open = metrics.open("websocket");
    let config = state.config.clone();
    let (outbox, queue, alarm) = Outbox::bounded(state.queue_bounds());
    let session = Session::new(
        state.hub.clone(),
        config.clone(),
        state.verifier.clone(),
        outbox,
    );
    // Kept as they are and shown in the log lines: formatted, they would be
    // two more allocations every idle connection carries.
    let port = peer.map_or(0, |peer| peer.port());
    let peer = Peer::of(&live, port);
    let client = session.id().clone();
    tracing::info!(%client, %peer, compressed, "connection open");
    let period = config.websocket.ping_interval;
    state
        .sessions
        .register_with_heartbeat(&client, &alarm, period);
    let delivery = Delivery::new(writer.clone(), metrics.clone(), alarm.clone(), queue);
    let tail = Tail {
        _live: live,
        _open: open,
        registered: Unregister(state.sessions.clone(), client),
        port,
        opened: Instant::now(),
    };
    let connection = Connection::new(reader, session, delivery, alarm);
    Lifecycle::Steady(connection, Some(tail))
}

/// A connection, then its goodbye. By hand rather than an `async` block,
/// which would hold the connection twice (as captured, and as awaited).
// The large variant is the one a connection lives in; boxing it would cost
// an allocation, not save one.
#[allow(clippy::large_enum_variant)]
enum Lifecycle<S> {
    Steady(Connection<S>, Option<Tail>),
    /// Boxed: an ending is rare, and the connection's task stays small.
    Goodbye(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl<S> Future for Lifecycle<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                Lifecycle::Steady(connection, tail) => {
                    let exit = std::task::ready!(Pin::new(connection).poll(cx));
                    let tail = tail.take().expect("a tail until the goodbye");
                    *this = Lifecycle::Goodbye(Box::pin(goodbye_for(exit, tail)));
                }
                Lifecycle::Goodbye(goodbye) => return goodbye.as_mut().poll(cx),
            }
        }
    }
}

/// Reads (and discards) until the client's close frame, for at most
/// `timeout`: dropping the socket with unread input would reset it and could
/// lose our close frame.
async fn read_to_close<S>(reader: &mut WsReader<S>, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(timeout, async {
        while let Ok(Some(_)) = reader.recv().await {}
    })
    .await;
}

/// Ends a connection as its [`Ending`] says, then logs its close.
async fn goodbye_for<S>(exit: Exit<S>, tail: Tail)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Exit {
        mut reader,
        writer,
        mut session,
        delivery,
        reason,
        ending,
    } = exit;
    let config = session.config().clone();
    let close_timeout = config.websocket.connection.close_timeout;
    match ending {
        Ending::Shutdown => {
            // Leave the channels first, so nothing new is queued, then let
            // delivery flush what is queued before saying goodbye.
            session.end().await;
            drop(session);
            let after = lifecycle::reconnect_after(config.reconnect_window);
            let push = disconnect_push(DisconnectCode::Shutdown, Some(after));
            let _ = tokio::time::timeout(config.shutdown_timeout, delivery.drain()).await;
            goodbye(&writer, push, DisconnectCode::Shutdown, close_timeout).await;
            // Wait briefly for the client's close frame, so it sees a clean close.
            read_to_close(&mut reader, close_timeout).await;
        }
        Ending::NoPong | Ending::SlowConsumer => {
            // Nothing queued goes out: the client is not reading it.
            drop(delivery);
            let (code, push) = match ending {
                Ending::NoPong => (
                    DisconnectCode::NoPong,
                    disconnect_push(DisconnectCode::NoPong, None),
                ),
                _ => (
                    DisconnectCode::SlowConsumer,
                    lifecycle::slow_consumer_push(Some(&session)),
                ),
            };
            goodbye(&writer, push, code, close_timeout).await;
            session.end().await;
        }
        Ending::Done => {
            drop(delivery);
            session.end().await;
        }
        Ending::ClientClosed(frame) => {
            // Leaving the channels lets the queue run dry: delivery sends
            // what is queued (every reply owed) and ends.
            session.end().await;
            drop(session);
            let _ = tokio::time::timeout(close_timeout, delivery.drain()).await;
            // Our close answers the client's (echoing its code, RFC 6455
            // §5.5.1) and ends TCP.
            let echo = frame.map(|frame| CloseFrame::new(frame.code.0, ""));
            let _ = tokio::time::timeout(close_timeout, writer.close(echo)).await;
        }
        Ending::Disconnect(code) => {
            session.end().await;
            drop(session);
            let _ = tokio::time::timeout(close_timeout, delivery.drain()).await;
            goodbye(&writer, disconnect_push(code, None), code, close_timeout).await;
            read_to_close(&mut reader, close_timeout).await;
        }
    }
    let Tail {
        _live: live,
        registered: Unregister(_, client),
        port,
        opened,
        ..
    } = &tail;
    let peer = Peer::of(live, *port);
    let seconds = opened.elapsed().as_secs_f64();
    tracing::info!(%client, %peer, seconds, reason = reason.as_str(), "connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection is its task: the runtime allocates the task in steps
    /// of 128 bytes, about 104 of them its own, so every field here counts:
    /// at most 536 keeps the task within 640 bytes.
    #[test]
    fn an_idle_connection_stays_small() {
        let size = std::mem::size_of::<Lifecycle<tokio::net::TcpStream>>();
        eprintln!("a connection's future: {size} bytes");
        assert!(size <= 536, "{size} bytes");
    }
}

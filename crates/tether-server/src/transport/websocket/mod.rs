//! The WebSocket transport: upgrade inside axum (with the Origin check), then
//! one task per connection ([`connection`]: reading, delivery, heartbeats and
//! the alarm, driven by hand), and its goodbye: the close, the `disconnect`
//! push, and graceful shutdown.

mod connection;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use tether::broadcast::Queued as Progress;
use tether::{
    Batch, CloseFrame, Finished, HandshakeError, SplitStream, WebSocket, WsReader, WsWriter,
};

use crate::config::ServerConfig;
use crate::protocol::DisconnectCode;
use crate::registry::SessionGuard;
use crate::session::delivery::Delivery;
use crate::session::ending::{self, Ending, Goodbye, Patience};
use crate::session::lifecycle::{self, Refused};
use crate::session::sink::{Burst, Feed, Payload, Sink, SinkClosed};
use crate::session::state::AppState;
use crate::session::tenure::Tenure;
use connection::{Connection, Exit};

/// The transport's name in metrics and logs.
pub const NAME: &str = "websocket";

fn refuse(error: HandshakeError) -> Response {
    tracing::debug!(%error, "refused WebSocket handshake");
    tether::proto::handshake::reject_response(&error).map(Body::from)
}

/// Each connection's settings: `[websocket]` with the process's buffer
/// budget, and no automatic answer to a client's close: the connection
/// answers it itself, once the replies to what it read before are out.
fn connection_config(state: &AppState) -> tether::Config {
    let mut config = state.config.websocket.connection();
    config.auto_close = false;
    config.budget = state.budget.clone();
    config
}

/// `GET /connection/websocket` (HTTP/1.1 Upgrade), or `CONNECT` with
/// `:protocol websocket` over HTTP/2 (RFC 8441).
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
    match tether::upgrade(&mut request, &connection_config(&state), None) {
        Ok((response, pending)) => {
            state.metrics.count_websocket_upgrade(request.version());
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

impl<S: SplitStream + Send> Sink for WsWriter<S> {
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
impl<S: SplitStream> Burst for Batch<'_, S> {
    fn has_room_for(&self, len: usize) -> bool {
        Batch::has_room_for(self, len)
    }

    fn put(&mut self, payload: Payload<'_>) -> Result<(), SinkClosed> {
        Ok(self.queue_prepared(payload.framed())?)
    }

    fn put_feed(&mut self, feed: &mut Feed<'_>) -> Result<Progress, SinkClosed> {
        Ok(feed.frames_into(self)?)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkClosed>> {
        Batch::poll_flush(self, cx).map_err(SinkClosed::from)
    }
}

/// Sends the `disconnect` push and the close frame for `code`, bounded by
/// `timeout` (the socket may be full of a slow reader's backlog).
async fn goodbye<S>(writer: &WsWriter<S>, push: String, code: DisconnectCode, timeout: Duration)
where
    S: SplitStream,
{
    let bye = async {
        let _ = writer.send(push).await;
        let close = CloseFrame::new(code.close_code(), code.reason());
        let _ = writer.close(Some(close)).await;
    };
    let _ = tokio::time::timeout(timeout, bye).await;
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
    S: SplitStream + Send + 'static,
{
    // Set up here rather than in the future below: what the future captures
    // it carries for the connection's whole life, and it needs none of the
    // shared state itself.
    let compressed = ws.is_compressed();
    let (reader, writer) = ws.split();
    let (session, queue, alarm) = state.new_session();
    let client = session.id().clone();
    let period = state.config.websocket.ping_interval;
    let tenure = Tenure::begin(&state, live, NAME, &client, &alarm, Some(period), peer);
    tracing::debug!(%client, compressed, "permessage-deflate");
    let delivery = Delivery::new(writer.clone(), state.metrics.clone(), queue);
    let connection = Connection::new(reader, session, delivery, alarm);
    Lifecycle::Steady(connection, Some(tenure))
}

/// What an ending of a WebSocket session waits for, from `[websocket]` and
/// the server's shutdown settings.
fn patience(config: &ServerConfig) -> Patience {
    Patience {
        owed: config.websocket.close_timeout,
        shutdown: config.shutdown_timeout,
        reconnect_window: config.reconnect_window,
    }
}

/// A connection, then its goodbye. By hand rather than an `async` block,
/// which would hold the connection twice (as captured, and as awaited).
// The large variant is the one a connection lives in; boxing it would cost
// an allocation, not save one.
#[allow(clippy::large_enum_variant)]
enum Lifecycle<S: SplitStream> {
    Steady(Connection<S>, Option<Tenure>),
    /// Boxed: an ending is rare, and the connection's task stays small.
    Goodbye(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl<S> Future for Lifecycle<S>
where
    S: SplitStream + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                Lifecycle::Steady(connection, tenure) => {
                    let exit = std::task::ready!(Pin::new(connection).poll(cx));
                    let tenure = tenure.take().expect("a tenure until the goodbye");
                    *this = Lifecycle::Goodbye(Box::pin(goodbye_for(exit, tenure)));
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
    S: SplitStream,
{
    let _ = tokio::time::timeout(timeout, async {
        while let Ok(Some(_)) = reader.recv().await {}
    })
    .await;
}

/// Ends a connection as its [`Ending`] says, then logs its close.
async fn goodbye_for<S>(exit: Exit<S>, tenure: Tenure)
where
    S: SplitStream + Send + 'static,
{
    let Exit {
        mut reader,
        writer,
        session,
        delivery,
        reason,
        ending,
        close,
    } = exit;
    // Counted and reachable until the goodbye is over, however it ends.
    let ended = tenure.ending(session.id().clone());
    let patience = patience(session.config());
    let close_timeout = patience.owed;
    match ending::finish(session, ending, delivery, &patience).await {
        Some(Goodbye { code, push }) => {
            goodbye(&writer, push, code, close_timeout).await;
            if ending.flush_within(&patience).is_some() {
                // Wait briefly for the client's close frame, so it sees a
                // clean close.
                read_to_close(&mut reader, close_timeout).await;
            }
        }
        None if ending == Ending::ClientClosed => {
            // Our close answers the client's (echoing its code, RFC 6455
            // §5.5.1) and ends TCP.
            let echo = close.map(|frame| CloseFrame::new(frame.code.0, ""));
            let _ = tokio::time::timeout(close_timeout, writer.close(echo)).await;
        }
        None => {}
    }
    ended.log(NAME, &reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection is its task: the runtime allocates the task in steps
    /// of 128 bytes, 104 of them its own (tokio's header, scheduler, id and
    /// trailer), so every field here counts: at most 408 keeps the task
    /// within 512 bytes. (536 and a 640-byte task until 2026-12-02.)
    #[test]
    fn an_idle_connection_stays_small() {
        let size = std::mem::size_of::<Lifecycle<tokio::net::TcpStream>>();
        eprintln!("a connection's future: {size} bytes");
        assert!(size <= 408, "{size} bytes");
    }
}

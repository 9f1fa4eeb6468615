//! The WebSocket transport: upgrade inside axum, then one reader loop and one
//! writer task per connection.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use tether::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::hub::Outbox;
use crate::protocol::{DisconnectCode, Push};
use crate::server::AppState;
use crate::session::Session;

/// `GET /connection/websocket`.
pub async fn upgrade(State(state): State<AppState>, mut request: Request) -> Response {
    match tether::upgrade(&mut request, &state.config.websocket, None) {
        Ok((response, pending)) => {
            tokio::spawn(async move {
                match pending.finish().await {
                    Ok(ws) => serve(ws, state).await,
                    Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
                }
            });
            response.map(|()| Body::empty())
        }
        Err(e) => {
            tracing::debug!(error = %e, "refused WebSocket handshake");
            tether::proto::handshake::reject_response(&e).map(Body::from)
        }
    }
}

/// Runs one connection until it closes.
pub async fn serve<S>(ws: WebSocket<S>, state: AppState)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (outbox, mut queue, overflow) = Outbox::new(state.config.outbound_queue);
    let (mut reader, writer) = ws.split();
    let mut session = Session::new(state.hub.clone(), state.config.clone(), outbox);
    tracing::debug!(client = session.id(), "connection open");
    let drain = writer.clone();
    let writer_task = tokio::spawn(async move {
        // Drain the queue in batches: one flush per burst, not per message.
        while let Some(frame) = queue.recv().await {
            let mut next = Some(frame);
            while let Some(frame) = next.take() {
                // Frames are serde_json output, so always UTF-8.
                if let Ok(text) = Utf8Bytes::try_from(frame) {
                    if drain.feed(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                next = queue.try_recv().ok();
            }
            if drain.flush().await.is_err() {
                return;
            }
        }
    });
    let reason = loop {
        tokio::select! {
            message = reader.recv() => match message {
                Ok(Some(Message::Text(text))) => session.handle_text(&text).await,
                Ok(Some(Message::Binary(_))) => session.handle_binary().await,
                Ok(Some(Message::Close(frame))) => break format!("closed by client: {frame:?}"),
                Ok(Some(_)) => {}
                Ok(None) => break "connection ended".to_owned(),
                Err(e) => break format!("connection failed: {e}"),
            },
            _ = overflow.wait() => {
                // The queue is full: stop writing it and tell the client to come back.
                writer_task.abort();
                let code = DisconnectCode::SlowConsumer;
                let push = Push::Disconnect { code: code as u16, reason: "slow consumer", reconnect: code.reconnect() };
                let text = serde_json::to_string(&push).expect("push serialises");
                let bye = async {
                    let _ = writer.send(text).await;
                    let _ = writer.close(Some(CloseFrame::new(code as u16, "slow consumer"))).await;
                };
                // The socket may still be full of the backlog: give a slow (not dead)
                // reader the close timeout to reach the goodbye.
                let _ = tokio::time::timeout(state.config.websocket.close_timeout, bye).await;
                break "slow consumer".to_owned();
            }
        }
    };
    session.end();
    tracing::debug!(client = session.id(), %reason, "connection closed");
}

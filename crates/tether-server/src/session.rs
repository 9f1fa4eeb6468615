//! A client's session: its subscriptions and the handling of its requests,
//! independent of the transport that carries them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use crate::config::ServerConfig;
use crate::hub::{ClientId, Hub, Outbox};
use crate::protocol::{Command, ErrorBody, ErrorCode, Reply, Request};

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// One connected client.
#[derive(Debug)]
pub struct Session {
    id: ClientId,
    hub: Arc<Hub>,
    config: Arc<ServerConfig>,
    outbox: Outbox,
    subscriptions: HashSet<String>,
}

fn reply_frame<T: Serialize>(id: u64, result: Result<T, ErrorBody>) -> Bytes {
    let reply = match result {
        Ok(result) => Reply {
            id,
            result: Some(result),
            error: None,
        },
        Err(error) => Reply {
            id,
            result: None,
            error: Some(error),
        },
    };
    Bytes::from(serde_json::to_vec(&reply).expect("replies serialise"))
}

impl Session {
    /// A session whose outgoing frames go to `outbox`.
    pub fn new(hub: Arc<Hub>, config: Arc<ServerConfig>, outbox: Outbox) -> Self {
        let id: ClientId = format!("c{}", NEXT_CLIENT.fetch_add(1, Ordering::Relaxed)).into();
        Self {
            id,
            hub,
            config,
            outbox,
            subscriptions: HashSet::new(),
        }
    }

    /// This client's id, as presence shows it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Handles one text frame: exactly one reply is queued for it.
    pub async fn handle_text(&mut self, text: &str) {
        match Request::parse(text) {
            Ok(request) => self.handle(request).await,
            Err(bad) => {
                tracing::debug!(client = %self.id, code = bad.error.code, "bad request");
                self.send(reply_frame::<()>(bad.id, Err(bad.error))).await;
            }
        }
    }

    /// Answers a binary frame, which the protocol does not use.
    pub async fn handle_binary(&mut self) {
        let error = ErrorCode::BinaryNotSupported.body("send JSON in text frames");
        self.send(reply_frame::<()>(0, Err(error))).await;
    }

    async fn send(&self, frame: Bytes) {
        let _ = self.outbox.reply(frame).await;
    }

    async fn handle(&mut self, request: Request) {
        let id = request.id;
        let frame = match request.command {
            Command::Connect { .. } => reply_frame(id, Ok(json!({ "client": &*self.id }))),
            Command::Ping => reply_frame(id, Ok(json!({}))),
            Command::Subscribe { channel, recover } => {
                if self.subscriptions.len() >= self.config.max_subscriptions {
                    let error = ErrorCode::TooManySubscriptions
                        .body(format!("at most {} subscriptions", self.config.max_subscriptions));
                    reply_frame::<()>(id, Err(error))
                } else {
                    // On success the hub queues the reply itself, ahead of live publications.
                    match self.hub.subscribe(id, &channel, &self.id, &self.outbox, recover.as_ref()) {
                        Ok(()) => {
                            self.subscriptions.insert(channel);
                            return;
                        }
                        Err(error) => reply_frame::<()>(id, Err(error)),
                    }
                }
            }
            Command::Unsubscribe { channel } => {
                let result = self.hub.unsubscribe(&channel, &self.id);
                if result.is_ok() {
                    self.subscriptions.remove(&channel);
                }
                reply_frame(id, result.map(|()| json!({})))
            }
            Command::Publish { channel, data, idempotency_key } => {
                if self.config.namespace_of(&channel).client_publish {
                    reply_frame(id, self.hub.publish(&channel, data, idempotency_key))
                } else {
                    let error = ErrorCode::PermissionDenied.body("clients may not publish in this namespace");
                    reply_frame::<()>(id, Err(error))
                }
            }
            Command::Presence { channel } => {
                reply_frame(id, self.hub.presence(&channel).map(|clients| json!({ "clients": clients })))
            }
            Command::History { channel, limit } => reply_frame(
                id,
                self.hub.history(&channel, limit).map(|(epoch, offset, publications)| {
                    json!({ "epoch": epoch, "offset": offset, "publications": publications })
                }),
            ),
        };
        self.send(frame).await;
    }

    /// Leaves every channel (presence leave for each); call when the connection ends.
    pub fn end(&mut self) {
        for channel in self.subscriptions.drain() {
            let _ = self.hub.unsubscribe(&channel, &self.id);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end();
    }
}

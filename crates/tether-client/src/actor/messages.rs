//! What the server sends: replies (to the application's requests and the
//! task's own) and pushes (publications, delivered once and in order by
//! offset; joins and leaves; the last word before a disconnect).

use std::time::Duration;

use serde_json::value::RawValue;
use tether_protocol::{Connected, ErrorBody, Push, Reply, Request};
use tokio::time::Instant;

use super::{Actor, Advice, End, Internal, Kind, Link, UNAUTHORIZED};
use crate::error::Error;
use crate::events::{Event, Publication, State, SubscriptionEvent};

impl Actor {
    /// A text frame from the server.
    pub(super) fn receive(&mut self, link: &mut Link, text: &str) {
        match serde_json::from_str::<Kind>(text) {
            Ok(Kind { push: Some(_) }) => match serde_json::from_str::<Push<'static>>(text) {
                Ok(push) => self.push(link, push),
                Err(error) => tracing::warn!(%error, "unreadable push"),
            },
            Ok(Kind { push: None }) => match serde_json::from_str::<Reply<Box<RawValue>>>(text) {
                Ok(reply) => self.reply(link, reply.id, reply.into_result()),
                Err(error) => tracing::warn!(%error, "unreadable reply"),
            },
            Err(error) => tracing::warn!(%error, "unreadable message"),
        }
    }

    pub(super) fn push(&mut self, link: &mut Link, push: Push<'static>) {
        match push {
            Push::Publication {
                channel,
                offset,
                data,
            } => self.deliver(&channel, offset, data.into_owned()),
            Push::Join {
                channel,
                client,
                user,
            } => self.presence(
                &channel,
                true,
                client.into_owned(),
                user.map(|u| u.into_owned()),
            ),
            Push::Leave {
                channel,
                client,
                user,
            } => self.presence(
                &channel,
                false,
                client.into_owned(),
                user.map(|u| u.into_owned()),
            ),
            Push::Disconnect {
                code,
                reason,
                reconnect,
                reconnect_after_ms,
                ..
            } => {
                link.advice = Some(Advice {
                    code,
                    reason: reason.into_owned(),
                    reconnect,
                    after: reconnect_after_ms.map(Duration::from_millis),
                });
            }
        }
    }

    /// A join or leave, for a subscription the server holds.
    pub(super) fn presence(
        &self,
        channel: &str,
        joined: bool,
        client: String,
        user: Option<String>,
    ) {
        if let Some(entry) = self.channels.get(channel).filter(|e| e.server) {
            entry.emit(if joined {
                SubscriptionEvent::Join { client, user }
            } else {
                SubscriptionEvent::Leave { client, user }
            });
        }
    }

    /// A publication, delivered unless it was already.
    pub(super) fn deliver(&mut self, channel: &str, offset: u64, data: Box<RawValue>) {
        let Some(entry) = self.channels.get_mut(channel) else {
            return;
        };
        // Exactly once, in order: at or below the position it was delivered
        // already (by a recovery, or on the previous link).
        if !entry.server || entry.handle.is_none() || offset <= entry.offset {
            return;
        }
        entry.offset = offset;
        entry.emit(SubscriptionEvent::Publication(Publication { offset, data }));
    }

    pub(super) fn reply(
        &mut self,
        link: &mut Link,
        id: u64,
        outcome: Result<Box<RawValue>, ErrorBody>,
    ) {
        if let Some(pending) = self.requests.remove(&id) {
            let _ = pending.reply.send(outcome.map_err(Error::from));
            return;
        }
        match self.internal.remove(&id) {
            Some(Internal::Connect) => self.connected(link, outcome),
            Some(Internal::Refresh) => match outcome {
                Ok(_) => self.schedule_refresh(link),
                Err(error) if error.code == UNAUTHORIZED => {
                    link.end = Some(End::Lost {
                        code: UNAUTHORIZED,
                        reason: format!("unauthorized: {}", error.message),
                        reconnect: false,
                        after: None,
                        stable: false,
                    });
                }
                Err(error) => tracing::warn!(%error, "token refresh refused"),
            },
            Some(Internal::Ping) => {}
            Some(Internal::Subscribe {
                channel,
                recovering,
            }) => {
                self.subscribed(&channel, recovering, outcome, link);
            }
            Some(Internal::Unsubscribe { channel }) => {
                if let Some(entry) = self.channels.get_mut(&channel) {
                    entry.in_flight = false;
                    // Unsubscribed (or never was: 105); a later subscribe starts afresh.
                    entry.server = false;
                    entry.offset = 0;
                    entry.epoch = None;
                }
                self.reconcile(&channel, Some(link));
            }
            None if id == 0 => tracing::warn!(?outcome, "the server could not read a request"),
            None => {}
        }
    }

    pub(super) fn connected(&mut self, link: &mut Link, outcome: Result<Box<RawValue>, ErrorBody>) {
        let connected = outcome.and_then(|raw| {
            serde_json::from_str::<Connected>(raw.get()).map_err(|e| ErrorBody {
                code: 100,
                message: e.to_string(),
            })
        });
        let connected = match connected {
            Ok(connected) => connected,
            Err(error) => {
                let reconnect = error.code != UNAUTHORIZED;
                link.end = Some(End::Lost {
                    code: error.code,
                    reason: format!("connect refused: {}", error.message),
                    reconnect,
                    after: None,
                    stable: false,
                });
                return;
            }
        };
        link.connected_at = Some(Instant::now());
        self.state.send_replace(State::Connected);
        let _ = self.events.send(Event::Connected {
            client: connected.client,
            user: connected.user,
        });
        self.schedule_refresh(link);
        let channels: Vec<String> = self.channels.keys().cloned().collect();
        for channel in channels {
            self.reconcile(&channel, Some(link));
        }
        // Unanswered requests go again, oldest first (publishes keep their
        // idempotency keys, so none is delivered twice); abandoned ones are dropped.
        self.requests
            .retain(|_, pending| !pending.reply.is_closed());
        for (id, pending) in &mut self.requests {
            if pending.sent_on != link.generation {
                pending.sent_on = link.generation;
                link.outbox
                    .push(Request::new(*id, pending.command.clone()).to_json());
            }
        }
    }
}

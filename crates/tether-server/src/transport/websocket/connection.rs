//! One WebSocket connection between its handshake and its ending, driven by
//! hand rather than as an `async` block.
//!
//! Most connections are idle most of the time, and an idle connection should
//! cost little more than its socket. As a hand-written future, a connection
//! holds its parts (the socket's halves, the session, its delivery, a timer,
//! its alarm) and nothing else while it waits; the work that needs a future
//! (handling a request, sending a burst, answering a ping or a close) runs in
//! one boxed for just that long, which owns the parts it needs and hands them
//! back. Delivery runs beside a request being handled, so a reply waiting
//! for room in the queue is not waiting on itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tether::{CloseFrame, Incoming, Message, SplitStream, WsReader, WsWriter};

use crate::alarm::Alarm;
use crate::session::delivery::Delivery;
use crate::session::ending::{Ending, Flush};
use crate::session::tenure::millis;
use crate::session::{Session, Verdict};

/// Work that owns what it needs and returns it when done.
type Job<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a connection's one inbound job gives back when done.
enum Finished<S: SplitStream> {
    /// A ping or a close answered (or the stream failed): the reader, and
    /// what [`WsReader::recv`] would have returned.
    Settled(WsReader<S>, tether::Result<Option<Message>>),
    /// A request handled: the session, and what to do next.
    Handled(Session, Verdict),
}

/// A connection's delivery: waiting for something to send, sending a burst,
/// or over (the session ended, or the socket failed).
pub(super) enum Outbound<S: SplitStream> {
    /// Waiting for the queue or a stream.
    Idle(Delivery<WsWriter<S>>),
    /// Sending one burst; true when delivery goes on after it.
    Sending(Job<(Delivery<WsWriter<S>>, bool)>),
    /// Nothing more is delivered.
    Over,
}

impl<S: SplitStream + Send + 'static> Outbound<S> {
    /// Delivers what is left until the queue runs dry (the session has
    /// ended) or the socket fails.
    pub(super) async fn drain(self) {
        let delivery = match self {
            Outbound::Idle(delivery) => delivery,
            Outbound::Sending(burst) => match burst.await {
                (delivery, true) => delivery,
                (_, false) => return,
            },
            Outbound::Over => return,
        };
        delivery.run().await;
    }
}

impl<S: SplitStream + Send + 'static> Flush for Outbound<S> {
    fn drain(self) -> impl Future<Output = ()> + Send {
        Outbound::drain(self)
    }

    fn abandon(self) {}
}

/// A connection's parts when its steady state ends, for its goodbye.
pub(super) struct Exit<S: SplitStream> {
    pub(super) reader: WsReader<S>,
    pub(super) writer: WsWriter<S>,
    pub(super) session: Session,
    pub(super) delivery: Outbound<S>,
    /// For the log.
    pub(super) reason: String,
    pub(super) ending: Ending,
    /// The client's close frame, which ours echoes.
    pub(super) close: Option<CloseFrame>,
}

/// A connection in its steady state; resolves to its [`Exit`].
///
/// Every field counts: an idle connection is this struct, and the runtime
/// allocates its task in steps of 128 bytes.
pub(super) struct Connection<S: SplitStream> {
    /// Waiting for input (`None` while a ping or a close is answered).
    reader: Option<WsReader<S>>,
    /// Between requests (`None` while one is handled).
    session: Option<Session>,
    /// Answering a ping or a close, or handling a request, with the reader
    /// or the session it took.
    busy: Option<Job<Finished<S>>>,
    /// Its writer is where pings go too.
    delivery: Outbound<S>,
    /// Raised to end the session, and beaten by the registry's heartbeat.
    alarm: Arc<Alarm>,
    /// When the client was last heard from, and whether a ping is due.
    heard: Heard,
}

/// When the client was last heard from, in [`millis`], and in the top bit
/// (which a process's uptime in milliseconds never reaches) whether a
/// heartbeat asked for a ping, which goes out between bursts: 8 bytes, where
/// an `Instant` and a flag would take 24 of every idle connection.
#[derive(Clone, Copy)]
struct Heard(u64);

impl Heard {
    const PING_DUE: u64 = 1 << 63;

    fn now() -> Self {
        Self(millis() & !Self::PING_DUE)
    }

    /// How long since the client was heard from.
    fn silence(self) -> Duration {
        Duration::from_millis(millis().saturating_sub(self.0 & !Self::PING_DUE))
    }

    /// Heard from now; a ping already due stays due.
    fn heard(&mut self) {
        self.0 = Self::now().0 | (self.0 & Self::PING_DUE);
    }

    fn ping_due(self) -> bool {
        self.0 & Self::PING_DUE != 0
    }

    fn set_ping_due(&mut self, due: bool) {
        self.0 = if due {
            self.0 | Self::PING_DUE
        } else {
            self.0 & !Self::PING_DUE
        };
    }
}

impl<S: SplitStream + Send + 'static> Connection<S> {
    /// A connection of `session` over `reader` and `writer`, delivering with
    /// `delivery`, ended early (and its heartbeat beaten) by `alarm`.
    pub(super) fn new(
        reader: WsReader<S>,
        session: Session,
        delivery: Delivery<WsWriter<S>>,
        alarm: Arc<Alarm>,
    ) -> Self {
        Self {
            reader: Some(reader),
            session: Some(session),
            busy: None,
            delivery: Outbound::Idle(delivery),
            alarm,
            heard: Heard::now(),
        }
    }

    /// Sends bursts for as long as there is something to send.
    fn poll_delivery(&mut self, cx: &mut Context<'_>) {
        loop {
            match &mut self.delivery {
                Outbound::Idle(_) if self.heard.ping_due() => {
                    self.heard.set_ping_due(false);
                    let Outbound::Idle(delivery) =
                        std::mem::replace(&mut self.delivery, Outbound::Over)
                    else {
                        unreachable!("matched as idle")
                    };
                    self.delivery = Outbound::Sending(Box::pin(async move {
                        let ping = Message::Ping(bytes::Bytes::new());
                        // A failed socket shows in the next burst.
                        let _ = delivery.sink().send(ping).await;
                        (delivery, true)
                    }));
                }
                Outbound::Idle(delivery) => match delivery.poll_due(cx) {
                    Poll::Ready(true) => {
                        let Outbound::Idle(mut delivery) =
                            std::mem::replace(&mut self.delivery, Outbound::Over)
                        else {
                            unreachable!("matched as idle")
                        };
                        self.delivery = Outbound::Sending(Box::pin(async move {
                            let more = delivery.send_burst().await;
                            (delivery, more)
                        }));
                    }
                    Poll::Ready(false) => self.delivery = Outbound::Over,
                    Poll::Pending => return,
                },
                Outbound::Sending(burst) => match burst.as_mut().poll(cx) {
                    Poll::Ready((delivery, true)) => self.delivery = Outbound::Idle(delivery),
                    Poll::Ready((_, false)) => self.delivery = Outbound::Over,
                    Poll::Pending => return,
                },
                Outbound::Over => return,
            }
        }
    }

    /// The session, between requests.
    fn session(&self) -> &Session {
        self.session.as_ref().expect("session between requests")
    }

    /// Takes the parts for the goodbye; only between requests and reads.
    fn exit(&mut self, reason: String, ending: Ending) -> Exit<S> {
        self.exit_closed(reason, ending, None)
    }

    fn exit_closed(
        &mut self,
        reason: String,
        ending: Ending,
        close: Option<CloseFrame>,
    ) -> Exit<S> {
        let reader = self.reader.take().expect("exit between reads");
        Exit {
            writer: reader.writer(),
            reader,
            session: self.session.take().expect("exit between requests"),
            delivery: std::mem::replace(&mut self.delivery, Outbound::Over),
            reason,
            ending,
            close,
        }
    }

    /// Requests, pings and closes from the client, the heartbeat and the
    /// alarm: ready when the steady state ends.
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Exit<S>> {
        loop {
            // While a request is handled nothing more is read (the client
            // waits for its replies) and nothing else is heeded; likewise
            // while a ping or a close is answered.
            if let Some(busy) = &mut self.busy {
                let finished = ready!(busy.as_mut().poll(cx));
                self.busy = None;
                let settled = match finished {
                    Finished::Handled(session, verdict) => {
                        self.session = Some(session);
                        if let Verdict::Disconnect(code) = verdict {
                            let reason = code.reason().to_owned();
                            return Poll::Ready(self.exit(reason, Ending::Disconnect(code)));
                        }
                        continue;
                    }
                    Finished::Settled(reader, settled) => {
                        self.reader = Some(reader);
                        settled
                    }
                };
                let (reason, ending) = match settled {
                    Ok(Some(Message::Close(frame))) => {
                        let reason = match &frame {
                            Some(frame) => format!(
                                "closed by client: {} {:?}",
                                frame.code.0,
                                frame.reason.as_str()
                            ),
                            None => "closed by client".to_owned(),
                        };
                        return Poll::Ready(self.exit_closed(reason, Ending::ClientClosed, frame));
                    }
                    // A ping, answered.
                    Ok(Some(_)) => continue,
                    Ok(None) => (
                        "connection ended".to_owned(),
                        Ending::Gone("connection ended"),
                    ),
                    Err(e) => (
                        format!("connection failed: {e}"),
                        Ending::Gone("connection failed"),
                    ),
                };
                return Poll::Ready(self.exit(reason, ending));
            }
            if let Poll::Ready(raised) = self.alarm.poll_raised(cx) {
                let ending = Ending::of_alarm(raised);
                return Poll::Ready(self.exit(ending.reason().to_owned(), ending));
            }
            if self.alarm.take_beat() {
                let websocket = &self.session().config().websocket;
                if self.heard.silence() > websocket.ping_interval + websocket.pong_timeout {
                    let ending = Ending::NoPong;
                    return Poll::Ready(self.exit(ending.reason().to_owned(), ending));
                }
                self.heard.set_ping_due(true);
                self.poll_delivery(cx);
                continue;
            }
            let reader = self.reader.as_mut().expect("reader between reads");
            let incoming = ready!(reader.poll_recv(cx));
            self.heard.heard();
            match incoming {
                Ok(Incoming::Message(message)) => {
                    if message.is_data() {
                        let metrics = self.session().metrics();
                        metrics.messages_in.inc();
                        metrics.bytes_in.inc_by(message.len() as u64);
                    }
                    let mut session = match message {
                        Message::Text(_) | Message::Binary(_) => {
                            self.session.take().expect("session between requests")
                        }
                        // A pong: heard from.
                        _ => continue,
                    };
                    self.busy = Some(Box::pin(async move {
                        let verdict = match message {
                            Message::Text(text) => session.handle_text(&text).await,
                            _ => session.handle_binary().await,
                        };
                        Finished::Handled(session, verdict)
                    }));
                }
                Ok(Incoming::Settle(unsettled)) => {
                    let mut reader = self.reader.take().expect("reader between reads");
                    self.busy = Some(Box::pin(async move {
                        let settled = reader.settle(unsettled).await;
                        Finished::Settled(reader, settled)
                    }));
                }
                Ok(Incoming::Ended) => {
                    let ending = Ending::Gone("connection ended");
                    return Poll::Ready(self.exit(ending.reason().to_owned(), ending));
                }
                Err(e) => {
                    let reason = format!("connection failed: {e}");
                    return Poll::Ready(self.exit(reason, Ending::Gone("connection failed")));
                }
            }
        }
    }
}

impl<S: SplitStream + Send + 'static> Future for Connection<S> {
    type Output = Exit<S>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Exit<S>> {
        let this = self.get_mut();
        this.poll_delivery(cx);
        let exit = this.poll_inbound(cx);
        if exit.is_pending() {
            // A request handled just now may have queued its reply.
            this.poll_delivery(cx);
        }
        exit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hearing_from_the_client_keeps_a_due_ping_due() {
        let mut heard = Heard::now();
        assert!(!heard.ping_due());
        heard.set_ping_due(true);
        heard.heard();
        assert!(heard.ping_due(), "a ping asked for still goes out");
        assert!(heard.silence() < Duration::from_secs(1));
        heard.set_ping_due(false);
        assert!(!heard.ping_due());
        assert!(
            heard.silence() < Duration::from_secs(1),
            "the flag is not time"
        );
    }
}

//! How a session ends, the same whatever carries it: why ([`Ending`]), what
//! it is still sent, and its last word, the `disconnect` push ([`finish`]).
//! A transport supplies only its I/O: running its queue dry or dropping it
//! ([`Flush`]), and saying the last word on its link.

use std::future::Future;
use std::time::Duration;

use super::lifecycle::{disconnect_push, reconnect_after, slow_consumer_push};
use super::Session;
use crate::alarm::Raised;
use crate::protocol::DisconnectCode;

/// How long an ending waits, as the transport that carries the session sets
/// it from its own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// For the replies a client is owed when it or the server ends the
    /// session while it still reads.
    pub owed: Duration,
    /// For what is queued when the server shuts down.
    pub shutdown: Duration,
    /// The window a shutdown's reconnect advice is drawn from.
    pub reconnect_window: Duration,
}

/// Why a session ended, which decides what it is still sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client said it is done while still reading (a WebSocket close
    /// frame): the replies it is owed go out, and no push.
    ClientClosed,
    /// The server ends the session (a kick, the rate limit): the replies
    /// already queued (the refusals that explain it), then the push.
    Disconnect(DisconnectCode),
    /// The client went silent past the heartbeat: the push, nothing queued.
    NoPong,
    /// A `disconnect`-policy queue overflowed: the push with the positions
    /// reached, nothing queued.
    SlowConsumer,
    /// The server is stopping: what is queued, then the push with a jittered
    /// reconnect delay.
    Shutdown,
    /// Nobody can read anything more: the link broke, the client closed a
    /// session it no longer reads, or nothing came back for it in time.
    Gone(&'static str),
}

impl Ending {
    /// What an alarm that went off means, for every transport alike.
    pub fn of_alarm(raised: Raised) -> Self {
        if raised.overflow() {
            Ending::SlowConsumer
        } else if raised.kicked() {
            Ending::Disconnect(DisconnectCode::Kicked)
        } else if raised.reset() {
            Ending::Disconnect(DisconnectCode::Reset)
        } else {
            Ending::Shutdown
        }
    }

    /// Why, for the log.
    pub fn reason(self) -> &'static str {
        match self {
            Ending::ClientClosed => "closed by client",
            Ending::Disconnect(DisconnectCode::Kicked) => "disconnected through the API",
            Ending::Disconnect(code) => code.reason(),
            Ending::NoPong => "no pong within the heartbeat timeout",
            Ending::SlowConsumer => "slow consumer",
            Ending::Shutdown => "server shutting down",
            Ending::Gone(why) => why,
        }
    }

    /// The code counted in `tether_disconnects_total`: the server's own
    /// decisions to end a session, not shutdown (every session ends then).
    pub fn counted(self) -> Option<DisconnectCode> {
        match self {
            Ending::Disconnect(code) => Some(code),
            Ending::NoPong => Some(DisconnectCode::NoPong),
            Ending::SlowConsumer => Some(DisconnectCode::SlowConsumer),
            Ending::ClientClosed | Ending::Shutdown | Ending::Gone(_) => None,
        }
    }

    /// How long what is queued may take to go out; `None`: it is dropped,
    /// as nobody reads it.
    pub fn flush_within(self, patience: &Patience) -> Option<Duration> {
        match self {
            Ending::ClientClosed | Ending::Disconnect(_) => Some(patience.owed),
            Ending::Shutdown => Some(patience.shutdown),
            Ending::NoPong | Ending::SlowConsumer | Ending::Gone(_) => None,
        }
    }
}

/// The last word of a session: the `disconnect` push, and the code the
/// link closes with where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goodbye {
    /// Why, as the protocol numbers it.
    pub code: DisconnectCode,
    /// The push, serialised.
    pub push: String,
}

/// A session's outgoing queue as its ending uses it.
pub trait Flush {
    /// Sends what is queued, then resolves (the session has left its
    /// channels, so nothing new comes).
    fn drain(self) -> impl Future<Output = ()> + Send;

    /// Drops what is queued.
    fn abandon(self);
}

/// Ends `session` as `ending` says; returns the last word to send, if any.
/// A slow consumer's positions are read first, then the session leaves its
/// channels (so nothing new is queued), then `flush` runs dry within the
/// ending's time, or is abandoned.
pub async fn finish(
    mut session: Session,
    ending: Ending,
    flush: impl Flush,
    patience: &Patience,
) -> Option<Goodbye> {
    if let Some(code) = ending.counted() {
        session.metrics().disconnect(code as u16);
    }
    let goodbye = match ending {
        Ending::Disconnect(code) => Some((code, disconnect_push(code, None))),
        Ending::NoPong => Some((
            DisconnectCode::NoPong,
            disconnect_push(DisconnectCode::NoPong, None),
        )),
        Ending::SlowConsumer => Some((
            DisconnectCode::SlowConsumer,
            slow_consumer_push(Some(&session)),
        )),
        Ending::Shutdown => {
            let after = reconnect_after(patience.reconnect_window);
            Some((
                DisconnectCode::Shutdown,
                disconnect_push(DisconnectCode::Shutdown, Some(after)),
            ))
        }
        Ending::ClientClosed | Ending::Gone(_) => None,
    };
    match ending.flush_within(patience) {
        Some(within) => {
            session.end().await;
            drop(session);
            let _ = tokio::time::timeout(within, flush.drain()).await;
        }
        None => {
            flush.abandon();
            session.end().await;
        }
    }
    goodbye.map(|(code, push)| Goodbye { code, push })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_means_the_same_ending_everywhere() {
        let alarm = crate::alarm::Alarm::default();
        alarm.kick();
        assert_eq!(
            Ending::of_alarm(alarm.raised()),
            Ending::Disconnect(DisconnectCode::Kicked)
        );
        let alarm = crate::alarm::Alarm::default();
        alarm.trip();
        assert_eq!(Ending::of_alarm(alarm.raised()), Ending::SlowConsumer);
        let alarm = crate::alarm::Alarm::default();
        alarm.stop();
        assert_eq!(Ending::of_alarm(alarm.raised()), Ending::Shutdown);
    }

    #[test]
    fn only_a_reader_gets_what_is_queued() {
        let patience = Patience {
            owed: Duration::from_secs(1),
            shutdown: Duration::from_secs(2),
            reconnect_window: Duration::from_secs(3),
        };
        for (ending, flushes) in [
            (Ending::ClientClosed, true),
            (Ending::Disconnect(DisconnectCode::RateLimited), true),
            (Ending::Shutdown, true),
            (Ending::NoPong, false),
            (Ending::SlowConsumer, false),
            (Ending::Gone("expired"), false),
        ] {
            assert_eq!(
                ending.flush_within(&patience).is_some(),
                flushes,
                "{ending:?}"
            );
        }
        assert_eq!(Ending::Shutdown.counted(), None);
        assert_eq!(Ending::NoPong.counted(), Some(DisconnectCode::NoPong));
    }
}

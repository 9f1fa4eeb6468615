//! A session's time on the server, kept the same way whatever carries it:
//! its place under the connection limits, its count on the open-sessions
//! gauge, its entry in the registry the API kicks through (beaten by the
//! shared heartbeat when its transport pings), and the two log lines that
//! say when it opened and how it ended. A transport begins a [`Tenure`] when
//! it opens a session and turns it into an [`Ended`] when its ending starts;
//! everything is undone when that is dropped, however the ending goes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::alarm::Alarm;
use crate::hub::ClientId;
use crate::metrics::OpenSession;
use crate::registry::{SessionGuard, Sessions};
use crate::session::state::AppState;

/// Milliseconds since the first call in this process: a clock for
/// long-lived things (every idle connection) to note times in eight bytes.
pub fn millis() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Where the client is, for the log: the address admission recorded in the
/// guard, and the port, kept apart because a whole `SocketAddr` is 32 bytes
/// and every idle connection would carry it.
#[derive(Clone, Copy)]
struct Peer {
    ip: Option<IpAddr>,
    port: u16,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            Some(ip) => SocketAddr::new(ip, self.port).fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// What a live session holds for its bookkeeping (56 bytes: an idle
/// WebSocket connection carries it).
#[derive(Debug)]
pub struct Tenure {
    live: SessionGuard,
    _open: OpenSession,
    port: u16,
    /// When it opened, in [`millis`].
    opened: u64,
}

impl Tenure {
    /// Begins the tenure of the session of `client`, carried by `transport`
    /// and admitted with `live`: counted open, reachable by a kick through
    /// `alarm` (beaten every `heartbeat`, for a transport that pings), and
    /// logged. `peer` is the client's address, where the server has it.
    pub fn begin(
        state: &AppState,
        live: SessionGuard,
        transport: &'static str,
        client: &ClientId,
        alarm: &Arc<Alarm>,
        heartbeat: Option<Duration>,
        peer: Option<SocketAddr>,
    ) -> Self {
        let open = state.metrics.open(transport);
        match heartbeat {
            Some(period) => state
                .sessions
                .register_with_heartbeat(client, alarm, period),
            None => state.sessions.register(client, alarm),
        }
        let tenure = Self {
            live,
            _open: open,
            port: peer.map_or(0, |peer| peer.port()),
            opened: millis(),
        };
        let peer = tenure.peer();
        tracing::info!(%client, transport, %peer, "session open");
        tenure
    }

    fn peer(&self) -> Peer {
        Peer {
            ip: self.live.ip(),
            port: self.port,
        }
    }

    /// The session's ending has begun: it stays counted and reachable until
    /// the [`Ended`] is dropped.
    pub fn ending(self, client: ClientId) -> Ended {
        Ended {
            sessions: self.live.sessions().clone(),
            client,
            tenure: self,
        }
    }
}

/// A session whose ending is under way; when dropped it leaves the kick
/// registry, the gauge and the connection limits.
#[derive(Debug)]
pub struct Ended {
    sessions: Arc<Sessions>,
    client: ClientId,
    tenure: Tenure,
}

impl Ended {
    /// Logs how the session of `transport` ended.
    pub fn log(&self, transport: &'static str, reason: &str) {
        let client = &self.client;
        let peer = self.tenure.peer();
        let seconds = millis().saturating_sub(self.tenure.opened) as f64 / 1000.0;
        tracing::info!(%client, transport, %peer, seconds, reason, "session closed");
    }
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.sessions.unregister(&self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ended_session_leaves_the_registry_and_the_limits() {
        let (state, _stop) = AppState::new(crate::ServerConfig::default()).unwrap();
        let live = state.sessions.try_enter(None, 1, 0).unwrap();
        let alarm = Arc::new(Alarm::default());
        let client: ClientId = "c1".into();
        let tenure = Tenure::begin(&state, live, "test", &client, &alarm, None, None);
        assert!(state.sessions.try_enter(None, 1, 0).is_err(), "one at most");
        let ended = tenure.ending(client.clone());
        assert!(state.sessions.kick(&client), "reachable while it ends");
        ended.log("test", "done");
        drop(ended);
        assert!(!state.sessions.kick(&client));
        assert!(state.sessions.try_enter(None, 1, 0).is_ok());
    }
}

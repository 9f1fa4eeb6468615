//! What every transport does the same way at a session's edges: admission
//! (Origin allow-list, shutdown, total and per-IP limits) before it opens, and
//! the `disconnect` push that explains how it ended, with the resume
//! positions of a slow consumer and the jittered reconnect advice of a
//! shutdown.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;

use super::Session;
use crate::protocol::{DisconnectCode, Push, StreamPosition};
use crate::registry::{Refusal, SessionGuard};
use crate::session::state::AppState;

/// Why a new session was refused, as every transport answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The HTTP status: 403 (origin), 503 (shutting down, server full) or
    /// 429 (too many from this address).
    pub status: u16,
    /// For the client and the log.
    pub reason: String,
}

/// Admits a new session from `ip` whose request carries `headers`: its
/// Origin must be allowed, the server not shutting down, and the connection
/// limits not reached. The guard keeps its place until the session ends.
/// Refusals are counted in `tether_rejected_handshakes_total` by reason.
pub fn admit(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
) -> Result<SessionGuard, Refused> {
    check_origin(state, headers)?;
    let refuse = |metric: &str, status: u16, reason: &str| {
        state.metrics.reject(metric);
        Refused {
            status,
            reason: reason.to_owned(),
        }
    };
    if *state.shutdown.borrow() {
        return Err(refuse("shutting_down", 503, "shutting down"));
    }
    let config = &state.config;
    state
        .sessions
        .try_enter(ip, config.max_connections, config.max_connections_per_ip)
        .map_err(|refusal| match refusal {
            Refusal::TooManyConnections => {
                refuse("too_many_connections", 503, "too many connections")
            }
            Refusal::TooManyFromIp => refuse(
                "too_many_from_ip",
                429,
                "too many connections from this address",
            ),
        })
}

/// The Origin allow-list, for requests that open a session and for those
/// that act on one: a browser sends them cross-site with its cookies.
pub fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), Refused> {
    let origin = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if state.config.origin_allowed(origin) {
        return Ok(());
    }
    state.metrics.reject("origin");
    Err(Refused {
        status: 403,
        reason: format!("origin {} is not allowed", origin.unwrap_or_default()),
    })
}

/// A random delay below the reconnect window, so clients told to go by a
/// shutdown do not all come back at once.
pub fn reconnect_after(window: Duration) -> Duration {
    let window = window.as_millis().max(1) as u64;
    Duration::from_millis(rand::random::<u64>() % window)
}

/// The `disconnect` push for `code`.
pub fn disconnect_push(code: DisconnectCode, after: Option<Duration>) -> String {
    disconnect_push_at(code, after, BTreeMap::new())
}

/// The `disconnect` push for a slow consumer: where each channel it is still
/// subscribed to stands, so it resumes from history without a gap.
pub fn slow_consumer_push(session: Option<&Session>) -> String {
    let Some(session) = session else {
        return disconnect_push_at(DisconnectCode::SlowConsumer, None, BTreeMap::new());
    };
    let written = session.outbox.written();
    let positions = written
        .iter()
        .filter(|at| session.is_subscribed(&at.channel))
        .map(|at| {
            let position = StreamPosition {
                offset: at.offset,
                epoch: at.epoch.to_string(),
            };
            (Cow::Owned(at.channel.to_string()), position)
        })
        .collect();
    disconnect_push_at(DisconnectCode::SlowConsumer, None, positions)
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

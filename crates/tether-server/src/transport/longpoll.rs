//! HTTP long-polling: a session opened by `POST /connection/longpoll`, whose
//! messages a client fetches with polls that wait up to `http.poll_timeout`.
//!
//! - The open's body holds the first requests (one, an array, or none),
//!   answered in the first poll; the answer is the session's key.
//! - `GET` (or `POST`) `/connection/longpoll/{session}?cursor=N` answers at
//!   once when messages follow `N`, otherwise when one comes or the timeout
//!   passes, with everything queued up to `http.max_poll_bytes`. `N` is the
//!   `cursor` of the last answer received (0 at first): it acknowledges
//!   what came up to it, so an answer lost on the way is sent again by the
//!   next poll, which carries the old cursor.
//! - `&wait_ms=W` waits at most `W` ms instead (0: answer at once, for
//!   short polling).
//! - One poll per session is held: a second one ends the first with an
//!   empty answer. A session with no poll for `http.session_ttl` ends.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::commands::{self, error, no_store, refused, Body};
use super::Peer;
use crate::protocol::http::SessionOpened;
use crate::protocol::ErrorCode;
use crate::session::lifecycle;
use crate::session::log::Read;
use crate::session::state::AppState;

/// The transport's name in metrics and logs.
pub const NAME: &str = "longpoll";

/// `POST /connection/longpoll`: opens a session.
pub async fn open(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match commands::read_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    // Read before anything opens: a broken body opens no session.
    let requests = match commands::requests(&body, commands::Empty::Allowed) {
        Ok(requests) => requests,
        Err(body) => return error(body),
    };
    let guard = match lifecycle::admit(&state, &headers, peer.map(|peer| peer.ip())) {
        Ok(guard) => guard,
        Err(refusal) => return refused(refusal),
    };
    let resumable = commands::open_session(&state, NAME, guard, peer);
    if let Err(response) = commands::run(&state, &resumable, &requests).await {
        // Nothing of a session whose first requests could not be read.
        resumable.request_end(crate::session::resumable::EndRequest::Close);
        return *response;
    }
    let opened = SessionOpened {
        session: resumable.key().to_owned(),
        client: resumable.client().to_owned(),
    };
    let mut response = axum::Json(opened).into_response();
    no_store(&mut response);
    response
}

/// The query of a poll.
#[derive(Debug, Deserialize)]
pub struct PollQuery {
    /// The `cursor` of the last answer received; 0 (the default) at first.
    #[serde(default)]
    cursor: u64,
    /// How long to wait for messages, in milliseconds, at most
    /// `http.poll_timeout`; 0 answers at once (short polling).
    wait_ms: Option<u64>,
}

/// `GET /connection/longpoll/{session}?cursor=N`: the next messages.
pub async fn poll(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    query: Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refusal) = lifecycle::check_origin(&state, &headers) {
        return refused(refusal);
    }
    let resumable = match commands::find(&state, &key, Some(NAME)) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Ok(Query(PollQuery { cursor, wait_ms })) = query else {
        return error(ErrorCode::BadCursor.body("the cursor (and wait_ms) must be numbers"));
    };
    let http = &state.config.http;
    let wait = wait_ms.map_or(http.poll_timeout, |ms| {
        http.poll_timeout.min(std::time::Duration::from_millis(ms))
    });
    // Held from here: a newer poll ends this one.
    let attachment = resumable.attach();
    let log = resumable.log();
    let mut read = match log.read(cursor, http.max_poll_bytes, true) {
        Ok(read) => read,
        Err(e) => return error(ErrorCode::BadCursor.body(e)),
    };
    if read.messages.is_empty() && !read.ended && !wait.is_zero() {
        tokio::select! {
            () = log.wait_after(cursor) => {
                read = match log.read(cursor, http.max_poll_bytes, true) {
                    Ok(read) => read,
                    Err(e) => return error(ErrorCode::BadCursor.body(e)),
                };
            }
            () = tokio::time::sleep(wait) => {}
            () = attachment.superseded() => {}
        }
    }
    drop(attachment);
    answer(&read)
}

/// A poll's answer, written out around the messages as they were
/// serialised for delivery (never parsed again).
fn answer(read: &Read) -> Response {
    let size: usize = read.messages.iter().map(|(_, m)| m.len() + 1).sum();
    let mut out = Vec::with_capacity(size + 64);
    out.extend_from_slice(b"{\"cursor\":");
    out.extend_from_slice(read.cursor.to_string().as_bytes());
    out.extend_from_slice(b",\"messages\":[");
    for (at, (_, message)) in read.messages.iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        out.extend_from_slice(message);
    }
    out.push(b']');
    if read.ended {
        out.extend_from_slice(b",\"ended\":true");
    }
    out.push(b'}');
    let mut response = (StatusCode::OK, Bytes::from(out)).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::PollAnswer;

    #[tokio::test]
    async fn an_answer_parses_as_the_protocol_type() {
        let read = Read {
            messages: vec![
                (4, Bytes::from_static(b"{\"id\":1,\"result\":{}}")),
                (5, Bytes::from_static(b"{\"push\":\"leave\"}")),
            ],
            cursor: 5,
            ended: true,
        };
        let response = answer(&read);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let parsed: PollAnswer = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed.cursor, 5);
        assert_eq!(parsed.messages.len(), 2);
        assert!(parsed.ended);
    }
}

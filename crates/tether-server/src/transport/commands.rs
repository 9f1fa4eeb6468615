//! The requests of an SSE or long-poll session, which travel as POSTs
//! (`POST /connection/session/{session}`, one request or a JSON array of
//! them), and its explicit close (`DELETE` on the same path). Each request
//! gets exactly one reply, on the session's stream or in its polls, as over
//! WebSocket; the POST itself answers 202 with how many it read.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::value::RawValue;

use crate::protocol::api::ApiError;
use crate::protocol::http::Accepted;
use crate::protocol::{ErrorBody, ErrorCode};
use crate::registry::SessionGuard;
use crate::session::ending::Patience;
use crate::session::lifecycle::{self, Refused};
use crate::session::resumable::{EndRequest, Resumable, Resumables, Resumption};
use crate::session::state::AppState;
use crate::session::Verdict;

/// Opens a session of the HTTP transport `transport`, admitted with `guard`
/// for the client at `peer`, resumable as `[http]` says: it lives
/// `session_ttl` with nothing attached, its log holds four polls' worth of
/// unread bytes, and what an ending owes the client waits up to that same
/// `session_ttl` for it to come back and read it.
pub(crate) fn open_session(
    state: &AppState,
    transport: &'static str,
    guard: SessionGuard,
    peer: Option<std::net::SocketAddr>,
) -> Arc<Resumable> {
    let config = &state.config;
    let resumption = Resumption {
        ttl: config.http.session_ttl,
        log_bytes: config.http.max_poll_bytes.saturating_mul(4),
        patience: Patience {
            owed: config.http.session_ttl,
            shutdown: config.shutdown_timeout,
            reconnect_window: config.reconnect_window,
        },
    };
    Resumables::open(state, transport, guard, peer, resumption)
}

/// An error answer: the status of `body`'s code, and the body as the HTTP
/// API spells errors.
pub(crate) fn error(body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(body.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_with(status, body)
}

pub(crate) fn error_with(status: StatusCode, body: ErrorBody) -> Response {
    let mut response = (status, Json(ApiError { error: body })).into_response();
    no_store(&mut response);
    response
}

/// Marks an answer as not to be cached by the browser or a proxy.
pub(crate) fn no_store(response: &mut Response) {
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
}

/// The answer to a session that was refused.
pub(crate) fn refused(refused: Refused) -> Response {
    let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let code = match refused.status {
        403 => ErrorCode::PermissionDenied,
        429 => ErrorCode::RateLimited,
        _ => ErrorCode::Unavailable,
    };
    error_with(status, code.body(refused.reason))
}

/// The answer for a key that names no live session.
pub(crate) fn unknown_session() -> Response {
    error(ErrorCode::UnknownSession.body("no such session: open a new one"))
}

/// The session `key` carried by the transport named `transport` (any, for
/// `None`), or the 404 answer. A key of another transport is unknown here too.
pub(crate) fn find(
    state: &AppState,
    key: &str,
    transport: Option<&str>,
) -> Result<Arc<Resumable>, Box<Response>> {
    match state.resumables.get(key) {
        Some(found) if transport.map_or(true, |name| name == found.transport()) => Ok(found),
        _ => Err(Box::new(unknown_session())),
    }
}

/// A command body read whole, up to `http.max_command_body` (else 413).
pub(crate) type Body = Result<Bytes, BytesRejection>;

/// Whether a body may hold no request: an opening's may (its first
/// requests are optional), a POST to a session's may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Empty {
    /// An empty body (or `[]`) is no request.
    Allowed,
    /// An empty body is refused (400, code 100).
    Refused,
}

/// The requests in `body`: one JSON value, or a JSON array of them. A body
/// that is not JSON is refused whole (400, code 100) before any of it is
/// handled; a value that is JSON but not a request is handed over as text,
/// and gets its error reply the way a WebSocket frame would.
pub(crate) fn requests(body: &[u8], empty: Empty) -> Result<Vec<&str>, ErrorBody> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ErrorCode::BadRequest.body("the body is not UTF-8"))?;
    let trimmed = text.trim_ascii();
    let list = if trimmed.is_empty() {
        Vec::new()
    } else {
        let value: &RawValue = serde_json::from_str(trimmed).map_err(|e| {
            ErrorCode::BadRequest.body(format!(
                "the body is not JSON (one request, or an array of them): {e}"
            ))
        })?;
        if trimmed.starts_with('[') {
            let list: Vec<&RawValue> = serde_json::from_str(value.get())
                .map_err(|e| ErrorCode::BadRequest.body(format!("not an array: {e}")))?;
            list.into_iter().map(RawValue::get).collect()
        } else {
            vec![value.get()]
        }
    };
    if list.is_empty() && empty == Empty::Refused {
        return Err(ErrorCode::BadRequest.body("the body holds no request"));
    }
    Ok(list)
}

/// Reads `body` (the bytes or axum's rejection, 413 past the limit).
pub(crate) fn read_body(body: Body) -> Result<Bytes, Box<Response>> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::MessageTooLarge
        } else {
            ErrorCode::BadRequest
        };
        Box::new(error_with(status, code.body(rejection.body_text())))
    })
}

/// Hands `requests` to the session; returns how many it held. A request
/// that ends the session (past the rate limit) stops the rest.
pub(crate) async fn run(
    state: &AppState,
    resumable: &Resumable,
    requests: &[&str],
) -> Result<usize, Box<Response>> {
    let mut session = resumable.session().await;
    let Some(session) = session.as_mut() else {
        return Err(Box::new(unknown_session()));
    };
    let metrics = &state.metrics;
    for text in requests {
        metrics.messages_in.inc();
        metrics.bytes_in.inc_by(text.len() as u64);
        if let Verdict::Disconnect(code) = session.handle_text(text).await {
            resumable.request_end(EndRequest::Disconnect(code));
            break;
        }
    }
    Ok(requests.len())
}

/// `POST /connection/session/{session}`: requests for the session.
pub async fn post(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = lifecycle::check_origin(&state, &headers) {
        return refused(refusal);
    }
    let resumable = match find(&state, &key, None) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let body = match read_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let requests = match requests(&body, Empty::Refused) {
        Ok(requests) => requests,
        Err(body) => return error(body),
    };
    match run(&state, &resumable, &requests).await {
        Ok(accepted) => {
            let mut response = (StatusCode::ACCEPTED, Json(Accepted { accepted })).into_response();
            no_store(&mut response);
            response
        }
        Err(response) => *response,
    }
}

/// `DELETE /connection/session/{session}`: the client is done; the session
/// leaves its channels at once. 204, or 404 for an unknown session.
pub async fn close(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = lifecycle::check_origin(&state, &headers) {
        return refused(refusal);
    }
    match find(&state, &key, None) {
        Ok(resumable) => {
            // Gone from here on: a request after this answer must not find
            // it, whenever its driver gets to run.
            state.resumables.remove(&key);
            resumable.request_end(EndRequest::Close);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(response) => *response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_holds_one_request_or_an_array_of_them() {
        fn one(body: &[u8]) -> Result<Vec<&str>, ErrorBody> {
            requests(body, Empty::Refused)
        }
        assert_eq!(one(br#"{"id":1,"op":"ping"}"#).unwrap().len(), 1);
        let two = one(br#"[{"id":1,"op":"ping"}, {"id":2,"op":"ping"}]"#).unwrap();
        assert_eq!(
            two,
            vec![r#"{"id":1,"op":"ping"}"#, r#"{"id":2,"op":"ping"}"#]
        );
        // JSON that is no request is the session's to answer (error 100).
        assert_eq!(one(br#"{"op":"nope"}"#).unwrap(), vec![r#"{"op":"nope"}"#]);
        assert_eq!(one(b"[1]").unwrap(), vec!["1"]);
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_whole() {
        for body in [
            &b"{oops"[..],
            b"not json",
            b"[1,",
            b"{\"id\":1} trailing",
            &[0xff, 0xfe],
            b"",
            b"  ",
            b"[]",
        ] {
            let refused = requests(body, Empty::Refused).unwrap_err();
            assert_eq!(refused.code, 100, "{:?}", String::from_utf8_lossy(body));
        }
        // An opening may hold no request, but not a broken one.
        assert!(requests(b"", Empty::Allowed).unwrap().is_empty());
        assert!(requests(b"[]", Empty::Allowed).unwrap().is_empty());
        assert_eq!(requests(b"{oops", Empty::Allowed).unwrap_err().code, 100);
    }

    #[tokio::test]
    async fn a_deleted_session_is_gone_as_soon_as_the_answer_is() {
        let (state, _stop) = AppState::new(crate::ServerConfig::default()).unwrap();
        let guard = lifecycle::admit(&state, &HeaderMap::new(), None).unwrap();
        let resumable = open_session(&state, super::super::longpoll::NAME, guard, None);
        let key = resumable.key().to_owned();
        let answer = close(State(state.clone()), Path(key.clone()), HeaderMap::new()).await;
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        // No await in between: the session's task has not run yet, and a
        // request arriving now must not find the session alive.
        assert!(find(&state, &key, None).is_err());
    }
}

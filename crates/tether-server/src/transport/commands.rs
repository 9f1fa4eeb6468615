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
use crate::session::lifecycle::{self, Refused};
use crate::session::resumable::{EndRequest, Resumable};
use crate::session::Verdict;
use crate::state::AppState;

/// An error answer: the status of `body`'s code, and the body as the HTTP
/// API spells errors.
pub(crate) fn error(body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(body.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_with(status, body)
}

fn error_with(status: StatusCode, body: ErrorBody) -> Response {
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

/// The session `key` carried by `kind`, or the 404 answer. A key of the
/// other transport is unknown here too.
pub(crate) fn find(
    state: &AppState,
    key: &str,
    kind: Option<crate::session::resumable::Kind>,
) -> Result<Arc<Resumable>, Box<Response>> {
    match state.resumables.get(key) {
        Some(found) if kind.is_none() || kind == Some(found.kind()) => Ok(found),
        _ => Err(Box::new(unknown_session())),
    }
}

/// A command body read whole, up to `http.max_command_body` (else 413).
pub(crate) type Body = Result<Bytes, BytesRejection>;

/// The requests in `body`: none (empty), one JSON request, or a JSON array
/// of them. Each is handed over as text, so a malformed one gets its error
/// reply the way a WebSocket frame would.
fn requests(body: &[u8]) -> Result<Vec<&str>, ErrorBody> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ErrorCode::BadRequest.body("the body is not UTF-8"))?;
    let trimmed = text.trim_ascii();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if !trimmed.starts_with('[') {
        return Ok(vec![trimmed]);
    }
    let list: Vec<&RawValue> = serde_json::from_str(trimmed).map_err(|e| {
        ErrorCode::BadRequest.body(format!("the body is not a JSON array of requests: {e}"))
    })?;
    Ok(list.into_iter().map(RawValue::get).collect())
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

/// Hands the requests in `body` to the session; returns how many it held.
/// A request that ends the session (past the rate limit) stops the rest.
pub(crate) async fn run(
    state: &AppState,
    resumable: &Resumable,
    body: &[u8],
) -> Result<usize, Box<Response>> {
    let requests = requests(body).map_err(|e| Box::new(error(e)))?;
    let mut session = resumable.session().await;
    let Some(session) = session.as_mut() else {
        return Err(Box::new(unknown_session()));
    };
    let metrics = &state.metrics;
    for text in &requests {
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
    match run(&state, &resumable, &body).await {
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
    fn a_body_holds_none_one_or_an_array_of_requests() {
        assert!(requests(b"  ").unwrap().is_empty());
        assert_eq!(requests(br#"{"id":1,"op":"ping"}"#).unwrap().len(), 1);
        let two = requests(br#"[{"id":1,"op":"ping"}, {"id":2,"op":"ping"}]"#).unwrap();
        assert_eq!(
            two,
            vec![r#"{"id":1,"op":"ping"}"#, r#"{"id":2,"op":"ping"}"#]
        );
        // A malformed single request is the session's to answer (error 100).
        assert_eq!(requests(b"{oops").unwrap(), vec!["{oops"]);
        assert_eq!(requests(b"[1,").unwrap_err().code, 100);
        assert_eq!(requests(&[0xff, 0xfe]).unwrap_err().code, 100);
    }
}

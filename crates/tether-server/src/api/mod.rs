//! The HTTP API: publish from back ends, inspect channels, health checks.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::protocol::api::{
    ApiError, BroadcastBody, BroadcastResult, BroadcastResults, ChannelInfo, ChannelList,
    DisconnectBody, HistoryQuery, PublishBody,
};
use crate::protocol::{Empty, ErrorBody, ErrorCode, PresenceList};
use crate::session::state::AppState;

fn error(body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(body.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_with(status, body)
}

fn error_with(status: StatusCode, body: ErrorBody) -> Response {
    (status, Json(ApiError { error: body })).into_response()
}

/// A request body read whole (up to [`ServerConfig::max_api_body`], else
/// axum's rejection answers 413).
///
/// [`ServerConfig::max_api_body`]: crate::ServerConfig::max_api_body
type Body = Result<Bytes, BytesRejection>;

/// Parses a request body as JSON whatever its `Content-Type` says: `curl -d`
/// labels it a form, and refusing that with 415 helps nobody. Errors are 400
/// (not JSON, or not this shape) and 413 (too large).
fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, Box<Response>> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::MessageTooLarge
        } else {
            ErrorCode::BadRequest
        };
        Box::new(error_with(status, code.body(rejection.body_text())))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = ErrorCode::BadRequest.body(format!("the body is not a valid request: {e}"));
        Box::new(error(message))
    })
}

/// Requires `Authorization: apikey KEY` when an API key is configured.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given.and_then(|v| v.strip_prefix("apikey ")) != Some(key.as_str()) {
            return error_with(
                StatusCode::UNAUTHORIZED,
                ErrorCode::PermissionDenied.body("missing or wrong API key"),
            );
        }
    }
    next.run(request).await
}

/// `POST /api/publish`: `{"channel": "...", "data": ...}` → `{"offset": n, "epoch": "..."}`.
pub async fn publish(State(state): State<AppState>, body: Body) -> Response {
    let body: PublishBody = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    match state
        .hub
        .publish(
            &body.channel,
            body.data,
            body.idempotency_key,
            body.key.as_deref(),
        )
        .await
    {
        Ok(published) => Json(published).into_response(),
        Err(e) => error(e),
    }
}

/// `POST /api/broadcast`: the same data to many channels; one result per channel,
/// in order, each `{"offset", "epoch"}` or `{"error"}`.
pub async fn broadcast(State(state): State<AppState>, body: Body) -> Response {
    let body: BroadcastBody = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let mut results = Vec::with_capacity(body.channels.len());
    for channel in body.channels {
        let outcome = state
            .hub
            .publish(&channel, body.data.clone(), None, None)
            .await;
        let (offset, epoch, error) = match outcome {
            Ok(published) => (Some(published.offset), Some(published.epoch), None),
            Err(error) => (None, None, Some(error)),
        };
        results.push(BroadcastResult {
            channel,
            offset,
            epoch,
            error,
        });
    }
    Json(BroadcastResults { results }).into_response()
}

/// `POST /api/disconnect`: closes a client's connection (4501, no reconnect).
pub async fn disconnect(State(state): State<AppState>, body: Body) -> Response {
    let body: DisconnectBody = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if state.sessions.kick(&body.client) {
        Json(Empty {}).into_response()
    } else {
        error_with(
            StatusCode::NOT_FOUND,
            ErrorCode::BadRequest.body(format!("no client {}", body.client)),
        )
    }
}

/// `GET /api/channels`: channels with subscribers.
pub async fn channels(State(state): State<AppState>) -> Response {
    let channels = state
        .hub
        .channels()
        .into_iter()
        .map(|(name, subscribers)| ChannelInfo { name, subscribers })
        .collect();
    Json(ChannelList { channels }).into_response()
}

/// `GET /api/presence/{channel}`.
pub async fn presence(State(state): State<AppState>, Path(channel): Path<String>) -> Response {
    match state.hub.presence(&channel).await {
        Ok(clients) => Json(PresenceList { clients }).into_response(),
        Err(e) => error(e),
    }
}

/// `GET /api/history/{channel}?limit=N`.
pub async fn history(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return error(ErrorCode::BadRequest.body(rejection.body_text())),
    };
    match state.hub.history(&channel, query.limit).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => error(e),
    }
}

/// `GET /healthz`: the process is up.
pub async fn healthy() -> &'static str {
    "ok\n"
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /readyz`: 200 while accepting connections, 503 once shutdown began or
/// while the engine cannot answer (Redis away), so a load balancer sends
/// new clients elsewhere.
pub async fn ready(State(state): State<AppState>) -> Response {
    if *state.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if !state.hub.ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "engine unavailable\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

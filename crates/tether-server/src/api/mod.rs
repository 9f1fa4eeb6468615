//! The HTTP API: publish from back ends, inspect channels, health checks.

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::protocol::{ErrorBody, ErrorCode};
use crate::server::AppState;

fn error(status: StatusCode, body: ErrorBody) -> Response {
    (status, Json(json!({ "error": body }))).into_response()
}

fn status_for(body: &ErrorBody) -> StatusCode {
    match body.code {
        c if c == ErrorCode::PermissionDenied as u16 => StatusCode::FORBIDDEN,
        c if c == ErrorCode::MessageTooLarge as u16 => StatusCode::PAYLOAD_TOO_LARGE,
        c if c == ErrorCode::NotAvailable as u16 => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A JSON request body, or the 4xx answer for one that is not valid.
type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn json_body<T>(body: JsonBody<T>) -> Result<T, Box<Response>> {
    body.map(|Json(body)| body).map_err(|rejection| {
        let message = ErrorCode::BadRequest.body(rejection.body_text());
        Box::new(error(rejection.status(), message))
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
            return error(
                StatusCode::UNAUTHORIZED,
                ErrorCode::PermissionDenied.body("missing or wrong API key"),
            );
        }
    }
    next.run(request).await
}

/// Body of `POST /api/publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    channel: String,
    data: Box<RawValue>,
    #[serde(default)]
    idempotency_key: Option<String>,
    /// Conflation key for `latest-per-key` namespaces.
    #[serde(default)]
    key: Option<String>,
}

/// `POST /api/publish`: `{"channel": "...", "data": ...}` → `{"offset": n, "epoch": "..."}`.
pub async fn publish(State(state): State<AppState>, body: JsonBody<PublishBody>) -> Response {
    let body = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    match state.hub.publish(
        &body.channel,
        body.data,
        body.idempotency_key,
        body.key.as_deref(),
    ) {
        Ok(published) => Json(published).into_response(),
        Err(e) => error(status_for(&e), e),
    }
}

/// Body of `POST /api/broadcast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastBody {
    channels: Vec<String>,
    data: Box<RawValue>,
}

/// `POST /api/broadcast`: the same data to many channels; one result per channel,
/// in order, each `{"offset", "epoch"}` or `{"error"}`.
pub async fn broadcast(State(state): State<AppState>, body: JsonBody<BroadcastBody>) -> Response {
    let body = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let results: Vec<_> = body
        .channels
        .iter()
        .map(|channel| match state.hub.publish(channel, body.data.clone(), None, None) {
            Ok(published) => json!({ "channel": channel, "offset": published.offset, "epoch": published.epoch }),
            Err(e) => json!({ "channel": channel, "error": e }),
        })
        .collect();
    Json(json!({ "results": results })).into_response()
}

/// Body of `POST /api/disconnect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectBody {
    client: String,
}

/// `POST /api/disconnect`: closes a client's connection (4501, no reconnect).
pub async fn disconnect(State(state): State<AppState>, body: JsonBody<DisconnectBody>) -> Response {
    let body = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if state.sessions.kick(&body.client) {
        Json(json!({})).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            ErrorCode::BadRequest.body(format!("no client {}", body.client)),
        )
    }
}

/// `GET /api/channels`: channels with subscribers.
pub async fn channels(State(state): State<AppState>) -> Response {
    let channels: Vec<_> = state
        .hub
        .channels()
        .into_iter()
        .map(|(name, subscribers)| json!({"name": name, "subscribers": subscribers}))
        .collect();
    Json(json!({ "channels": channels })).into_response()
}

/// `GET /api/presence/{channel}`.
pub async fn presence(State(state): State<AppState>, Path(channel): Path<String>) -> Response {
    match state.hub.presence(&channel) {
        Ok(clients) => Json(json!({ "clients": clients })).into_response(),
        Err(e) => error(status_for(&e), e),
    }
}

/// Query of `GET /api/history/{channel}`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    limit: Option<usize>,
}

/// `GET /api/history/{channel}?limit=N`.
pub async fn history(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    match state.hub.history(&channel, query.limit) {
        Ok((epoch, offset, publications)) => {
            Json(json!({ "epoch": epoch, "offset": offset, "publications": publications }))
                .into_response()
        }
        Err(e) => error(status_for(&e), e),
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

/// `GET /readyz`: 200 while accepting connections, 503 once shutdown began, so
/// a load balancer stops sending new clients.
pub async fn ready(State(state): State<AppState>) -> Response {
    if *state.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

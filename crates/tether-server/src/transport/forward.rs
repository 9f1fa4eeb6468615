//! HTTP sessions without sticky routing: a poll, a command POST or an SSE
//! reconnect that names a session another node of the cluster holds is
//! forwarded to that node over the [`Exchange`], which runs it through its
//! own router and streams the answer back; this node relays it as it comes.
//! (Phoenix routes long-polls to the process holding the session the same
//! way.) The session never moves, so nothing about it is copied or merged.
//!
//! - A session key ends with `.NODE`: the node holding it.
//! - A node that no longer listens (it died) is known at once (PUBLISH
//!   reached no one); the request is then answered here, as for a session
//!   that ended: 404 for a poll or a POST, a new session with
//!   `recovered: false` per channel for an SSE reconnect. The client's
//!   reopening recovers what history holds.
//! - No answer (Redis away, the node stalled) is 503 before anything was
//!   sent, or a cut stream after: the client polls again with the same
//!   cursor, or reconnects with its `Last-Event-ID`, and loses nothing.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};

use super::commands::{error, error_with};
use super::sse::parse_event_id;
use crate::mesh::{Exchange, MeshError};
use crate::protocol::ErrorCode;
use crate::session::resumable::node_of;
use crate::session::state::AppState;

/// Headers that belong to one hop, not to the request or answer.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
];

/// A request or answer head as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    /// The request's method (absent in an answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    /// The request's path and query (absent in an answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    /// The answer's status (absent in a request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    headers: Vec<(String, String)>,
}

fn header_list(headers: &HeaderMap, skip: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()) && !skip(name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

fn headers_from(list: &[(String, String)]) -> HeaderMap {
    list.iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect()
}

/// The node holding the session a request names, if it names one: in the
/// path of a poll or a command POST, or in the `Last-Event-ID` (header or
/// query) of an SSE reconnect.
fn owner(request: &Request) -> Option<String> {
    let path = request.uri().path();
    let key = if let Some(key) = path
        .strip_prefix("/connection/longpoll/")
        .or_else(|| path.strip_prefix("/connection/session/"))
    {
        key.to_owned()
    } else if path == "/connection/sse" {
        let id = match request.headers().get("last-event-id") {
            Some(id) => id.to_str().ok()?.to_owned(),
            None => {
                #[derive(Deserialize)]
                struct Resume {
                    last_event_id: Option<String>,
                }
                let Query(resume) = Query::<Resume>::try_from_uri(request.uri()).ok()?;
                resume.last_event_id?
            }
        };
        parse_event_id(&id)?.0.to_owned()
    } else {
        return None;
    };
    node_of(&key).map(str::to_owned)
}

/// Middleware on the session routes: forwards a request for another node's
/// session there (see the module documentation).
pub async fn to_owner(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(exchange) = state.exchange.clone() else {
        return next.run(request).await;
    };
    let Some(node) = owner(&request).filter(|node| node != exchange.node()) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let limit = state.config.http.max_command_body;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return error_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::MessageTooLarge.body(format!("the body is over {limit} bytes")),
        );
    };
    let head = Head {
        method: Some(parts.method.to_string()),
        uri: Some(parts.uri.to_string()),
        status: None,
        headers: header_list(&parts.headers, |_| false),
    };
    let http = &state.config.http;
    // Long enough for a held poll, and for an idle stream's heartbeat.
    let silence = http.poll_timeout.max(http.sse_heartbeat) + Duration::from_secs(5);
    let mut answer = match exchange.call(&node, encode(&head, &body), silence).await {
        Ok(Some(answer)) => answer,
        Ok(None) => {
            // It has died: what its sessions were is gone with it.
            state.metrics.count_forwarded("gone");
            tracing::info!(%node, path = %parts.uri.path(), "session of a node that is gone");
            return next.run(Request::from_parts(parts, Body::from(body))).await;
        }
        Err(failure) => return unavailable(&state, &node, &failure),
    };
    let head = match answer.next().await {
        Some(Ok(head)) => head,
        Some(Err(failure)) => return unavailable(&state, &node, &failure),
        None => return unavailable(&state, &node, &MeshError::Broken(node.clone())),
    };
    let Some((
        Head {
            status: Some(status),
            headers,
            ..
        },
        _,
    )) = decode(&head)
    else {
        return unavailable(&state, &node, &MeshError::Broken(node.clone()));
    };
    state.metrics.count_forwarded("answered");
    let metrics = state.metrics.clone();
    let body = answer.into_stream().map(move |part| {
        part.inspect_err(|failure| {
            metrics.count_forwarded("failed");
            tracing::info!(%failure, "a forwarded answer was cut short");
        })
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = headers_from(&headers);
    response
}

fn unavailable(state: &AppState, node: &str, failure: &MeshError) -> Response {
    state.metrics.count_forwarded("failed");
    tracing::warn!(%node, %failure, "a request for another node's session got no answer");
    error(ErrorCode::Unavailable.body(format!(
        "the node holding this session did not answer ({failure}); try again"
    )))
}

/// A head, a newline, and the body.
fn encode(head: &Head, body: &[u8]) -> Bytes {
    let mut out = serde_json::to_vec(head).expect("a head serialises");
    out.push(b'\n');
    out.extend_from_slice(body);
    out.into()
}

fn decode(bytes: &Bytes) -> Option<(Head, Bytes)> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let head = serde_json::from_slice(&bytes[..end]).ok()?;
    Some((head, bytes.slice(end + 1..)))
}

/// Answers a request forwarded by another node through `app` (this node's
/// router): the answer's head, then its body as it comes.
pub fn answer(app: Router, payload: Bytes) -> BoxStream<'static, Bytes> {
    let Some(request) = decode(&payload).and_then(|(head, body)| {
        let method = Method::from_bytes(head.method?.as_bytes()).ok()?;
        let uri: Uri = head.uri?.parse().ok()?;
        let mut request = Request::new(Body::from(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers_from(&head.headers);
        Some(request)
    }) else {
        tracing::warn!("unreadable request forwarded by another node");
        let head = Head {
            method: None,
            uri: None,
            status: Some(StatusCode::BAD_REQUEST.as_u16()),
            headers: Vec::new(),
        };
        return futures_util::stream::once(async move { encode(&head, b"") }).boxed();
    };
    futures_util::stream::once(async move {
        let mut app = app;
        // A router is always ready.
        let Ok(response) = tower_service::Service::call(&mut app, request).await;
        let (parts, body) = response.into_parts();
        // The calling node's own layers add what depends on its client.
        let mut headers = header_list(&parts.headers, |name| name.starts_with("access-control-"));
        // A whole answer keeps its length (not chunked on the calling node).
        if let Some(length) = axum::body::HttpBody::size_hint(&body).exact() {
            headers.push(("content-length".to_owned(), length.to_string()));
        }
        let head = Head {
            method: None,
            uri: None,
            status: Some(parts.status.as_u16()),
            headers,
        };
        let body = body
            .into_data_stream()
            .take_while(|part| std::future::ready(part.is_ok()))
            .filter_map(|part| std::future::ready(part.ok()));
        futures_util::stream::once(async move { encode(&head, b"") }).chain(body)
    })
    .flatten()
    .boxed()
}

/// Wires `exchange` to answer forwarded requests with `app`, until it stops.
pub async fn serve(exchange: std::sync::Arc<Exchange>, app: Router) {
    exchange
        .run(move |payload| answer(app.clone(), payload))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, last_event_id: Option<&str>) -> Request {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(id) = last_event_id {
            builder = builder.header("last-event-id", id);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn the_owner_is_read_from_wherever_the_request_names_its_session() {
        let key = "0123456789abcdef0123456789abcdef.a1b2c3";
        let owner_of = |uri: &str, id: Option<&str>| owner(&request(uri, id));
        let node = Some("a1b2c3".to_owned());
        assert_eq!(
            owner_of(&format!("/connection/longpoll/{key}?cursor=3"), None),
            node
        );
        assert_eq!(owner_of(&format!("/connection/session/{key}"), None), node);
        assert_eq!(
            owner_of("/connection/sse", Some(&format!("{key}-17"))),
            node
        );
        assert_eq!(
            owner_of(&format!("/connection/sse?last_event_id={key}-17"), None),
            node
        );
        // A single node's keys name none; nor does a new SSE session.
        assert_eq!(
            owner_of("/connection/longpoll/0123456789abcdef", None),
            None
        );
        assert_eq!(owner_of("/connection/sse?subscribe=a", None), None);
        assert_eq!(owner_of("/connection/longpoll/x.bad-node", None), None);
        assert_eq!(owner_of("/api/publish", None), None);
    }

    #[test]
    fn a_head_and_body_travel_together() {
        let head = Head {
            method: Some("POST".into()),
            uri: Some("/connection/session/k.a1?x=1".into()),
            status: None,
            headers: vec![("origin".into(), "http://a".into())],
        };
        let bytes = encode(&head, b"[{\"id\":1}]\n");
        let (back, body) = decode(&bytes).unwrap();
        assert_eq!(back.uri, head.uri);
        assert_eq!(back.headers, head.headers);
        assert_eq!(&body[..], b"[{\"id\":1}]\n");
    }
}

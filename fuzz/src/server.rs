//! Fuzz entry points for `tether serve`: one session handling a sequence of
//! requests, and the HTTP endpoints (the API and the HTTP transports' session
//! commands) given arbitrary bodies. Each runs on a runtime of its own,
//! dropped at the end with every task the input started.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tether_server::session::state::AppState;
use tether_server::session::Verdict;
use tether_server::ServerConfig;

/// Requests taken from one input, so a case stays quick.
const MAX_REQUESTS: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A server's state, and the sender whose drop would start its shutdown.
fn state() -> (AppState, tokio::sync::watch::Sender<bool>) {
    let mut config = ServerConfig::default();
    config.max_buffered_bytes = Some(0);
    AppState::new(config).expect("the default config is valid")
}

/// The text of a queued frame, which must be JSON.
fn json_of(frame: &tether::PreparedMessage) -> serde_json::Value {
    let bytes = match frame.message() {
        tether::Message::Text(text) => text.as_bytes().to_vec(),
        other => panic!("the server sent a {other:?} frame"),
    };
    serde_json::from_slice(&bytes).expect("every frame the server sends is JSON")
}

/// One session given each line of `data` as a text frame (a line that is
/// not UTF-8 as a binary one). After every request exactly one reply is
/// queued (pushes aside), every frame is JSON, and a verdict to disconnect
/// ends the session as the transport would.
pub fn session_requests(data: &[u8]) {
    runtime().block_on(async {
        let (state, _running) = state();
        let (mut session, mut inbox, _overflow) = state.new_session();
        for line in data.split(|&byte| byte == b'\n').take(MAX_REQUESTS) {
            let verdict = match std::str::from_utf8(line) {
                Ok(text) => session.handle_text(text).await,
                Err(_) => session.handle_binary().await,
            };
            let mut queued = Vec::new();
            inbox.take_all(&mut queued);
            let replies = queued
                .iter()
                .filter_map(|item| item.frame.as_ref())
                .map(json_of)
                .filter(|frame| frame.get("push").is_none())
                .count();
            match verdict {
                Verdict::Continue => assert_eq!(replies, 1, "one reply per request"),
                Verdict::Disconnect(_) => break,
            }
        }
        session.end().await;
    });
}

/// The endpoint the first byte of an input picks; the rest is its body (or,
/// for the GETs, its path and query).
fn request_for(selector: u8, rest: &[u8], session: Option<&str>) -> Option<Request<Body>> {
    let text = String::from_utf8_lossy(rest);
    let (method, uri) = match selector % 7 {
        0 => (Method::POST, "/api/publish".to_owned()),
        1 => (Method::POST, "/api/broadcast".to_owned()),
        2 => (Method::POST, "/api/disconnect".to_owned()),
        3 => (Method::GET, format!("/api/history/{text}")),
        4 => (Method::GET, format!("/api/presence/{text}")),
        5 => (Method::POST, "/connection/longpoll".to_owned()),
        _ => (Method::POST, format!("/connection/session/{}", session?)),
    };
    let body = match method {
        Method::GET => Body::empty(),
        _ => Body::from(rest.to_vec()),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body)
        .ok()?;
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    request.extensions_mut().insert(ConnectInfo(peer));
    Some(request)
}

/// Sends `request` to the server's router; its status and body.
async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = tower_service::Service::call(&mut router.clone(), request)
        .await
        .expect("the router answers every request");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes().to_vec())
        .unwrap_or_default();
    (status, body)
}

/// HTTP requests to the API and to a long-poll session, one per line of
/// `data` (first byte: the endpoint). None is answered with a 5xx, and every
/// answer with a JSON body names an error code when it is not a success.
pub fn api_requests(data: &[u8]) {
    runtime().block_on(async {
        let (state, _running) = state();
        let router = tether_server::server::router(state);
        // A session to send commands to, opened as a client would.
        let open = request_for(5, b"{}", None).expect("a valid request");
        let (status, body) = call(&router, open).await;
        assert_eq!(status, StatusCode::OK);
        let opened: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        let session = opened["session"].as_str().map(str::to_owned);
        for line in data.split(|&byte| byte == b'\n').take(MAX_REQUESTS) {
            let Some((&selector, rest)) = line.split_first() else {
                continue;
            };
            let Some(request) = request_for(selector, rest, session.as_deref()) else {
                continue;
            };
            let (status, body) = call(&router, request).await;
            assert!(!status.is_server_error(), "answered {status}");
            if !status.is_success() && !body.is_empty() {
                let answer: serde_json::Value =
                    serde_json::from_slice(&body).expect("errors are JSON");
                assert!(answer["error"]["code"].is_u64(), "{answer}");
            }
        }
    });
}

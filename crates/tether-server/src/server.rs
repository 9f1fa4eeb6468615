//! Wiring: the router and the serve loop with graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tether::http2_server::{Http2Body, Http2Server};
use tether::listen::AfterFailure;
use tokio::net::{TcpListener, TcpStream};

use crate::api;
use crate::config::ServerConfig;
use crate::demo;
use crate::hub::Hub;
use crate::session::state::AppState;
use crate::transport;

/// The HTTP routes: demo, the transports (WebSocket, SSE, long-polling), API,
/// health.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/publish", post(api::publish))
        .route("/api/broadcast", post(api::broadcast))
        .route("/api/disconnect", post(api::disconnect))
        .route("/api/channels", get(api::channels))
        .route("/api/presence/{channel}", get(api::presence))
        .route("/api/history/{channel}", get(api::history))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_key,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_api_body,
        ));
    // The HTTP transports' requests, bounded like a WebSocket message; a
    // transport switched off is not routed at all (404).
    let mut http = Router::new();
    if state.config.http.sse {
        http = http.route("/connection/sse", get(transport::sse::open));
    }
    if state.config.http.longpoll {
        http = http
            .route("/connection/longpoll", post(transport::longpoll::open))
            .route(
                "/connection/longpoll/{session}",
                get(transport::longpoll::poll).post(transport::longpoll::poll),
            );
    }
    if state.config.http.sse || state.config.http.longpoll {
        http = http.route(
            "/connection/session/{session}",
            post(transport::commands::post).delete(transport::commands::close),
        );
    }
    let http = http
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            transport::forward::to_owner,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.http.max_command_body,
        ))
        .layer(cors(&state.config));
    let mut router = Router::new()
        .route("/", get(demo::index))
        .route("/app.js", get(demo::app))
        .route("/style.css", get(demo::style))
        .route("/tether.js", get(demo::client))
        .route("/tether/{module}", get(demo::client))
        .route("/healthz", get(api::healthy))
        .route("/readyz", get(api::ready))
        .route("/metrics", get(api::metrics));
    if state.config.websocket.enabled {
        router = router.route(
            "/connection/websocket",
            get(transport::websocket::upgrade).connect(transport::websocket::upgrade),
        );
    }
    router.merge(api).merge(http).with_state(state)
}

/// Cross-origin access to the HTTP transports, for pages served from
/// another origin: the origins of `allowed_origins` (with credentials), or
/// any origin while the list is empty (without: sessions are named by their
/// keys, not by cookies). Preflights for the JSON POSTs are answered here;
/// a request from an origin that is not allowed is refused by the transport
/// with 403.
fn cors(config: &ServerConfig) -> tower_http::cors::CorsLayer {
    use http::header::{HeaderName, CONTENT_TYPE};
    use http::Method;
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([CONTENT_TYPE, HeaderName::from_static("last-event-id")])
        .max_age(std::time::Duration::from_secs(600));
    if config.allowed_origins.is_empty() {
        return layer.allow_origin(Any);
    }
    let origins = config
        .allowed_origins
        .iter()
        .filter_map(|origin| origin.parse().ok())
        .collect::<Vec<http::HeaderValue>>();
    layer
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
}

/// The HTTP/2 server for TLS (ALPN `h2`) and h2c connections, keeping to
/// `limits`; its preface must come within `header_timeout`, as an HTTP/1.1
/// request head must. WebSockets on it are written straight into h2's
/// streams ([`tether::http2_server`]).
fn http2_server(
    header_timeout: std::time::Duration,
    limits: &crate::config::Http2Config,
) -> Http2Server {
    Http2Server::new()
        .handshake_timeout(header_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size)
        .stream_window(limits.stream_window)
        .connection_window(limits.connection_window)
        .max_pending_resets(limits.max_pending_resets)
        .max_error_resets(limits.max_error_resets)
}

/// Serves one HTTP/1.1 connection (upgrades allowed); its request head must
/// come within `header_timeout` (slowloris).
async fn serve_http1<I>(
    io: I,
    app: Router,
    peer: std::net::SocketAddr,
    header_timeout: std::time::Duration,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            tower_service::Service::call(&mut app.clone(), request)
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(error) = connection.await {
        tracing::debug!(%peer, %error, "HTTP connection ended");
    }
}

/// Serves one HTTP/2 connection; how it ended is logged and counted.
async fn serve_http2<I>(
    io: I,
    app: Router,
    peer: std::net::SocketAddr,
    server: &Http2Server,
    metrics: &crate::metrics::Metrics,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Http2Body>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        tower_service::Service::call(&mut app.clone(), request)
    });
    if let Err(error) = server.serve_connection(io, service).await {
        connection_failed(metrics, peer, &error);
    }
}

/// Whether the client's first bytes are HTTP/2's connection preface (RFC
/// 9113 §3.4), looked at without taking them from the socket.
async fn sends_http2_preface(tcp: &TcpStream) -> std::io::Result<bool> {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut first = [0; 24];
    loop {
        let n = tcp.peek(&mut first).await?;
        if n == 0 || first[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // Part of it so far; peeking again at once would spin.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Logs and counts a connection that ended in error. An HTTP/2 connection
/// the server ended for the client's error (h2 sent GOAWAY: a reset flood,
/// a CONTINUATION flood, a malformed frame) is logged at info and counted
/// by error code; anything else (a client that went away) at debug.
fn connection_failed(
    metrics: &crate::metrics::Metrics,
    peer: std::net::SocketAddr,
    error: &(dyn std::error::Error + 'static),
) {
    let h2 = std::iter::successors(Some(error), |e| e.source())
        .find_map(|e| e.downcast_ref::<h2::Error>())
        .filter(|h2| h2.is_go_away() && !h2.is_remote())
        .and_then(h2::Error::reason);
    match h2 {
        Some(reason) => {
            // RFC 9113 §7 names codes 0x0-0xd; h2 names them the same.
            let code = if u32::from(reason) <= 0xd {
                format!("{reason:?}")
            } else {
                "other".to_owned()
            };
            metrics.count_http2_error(&code);
            tracing::info!(%peer, code, %error, "HTTP/2 connection ended for the client's error");
        }
        None => tracing::debug!(%peer, %error, "HTTP connection ended"),
    }
}

/// Sweeps the hub every `period` ([`EngineConfig::sweep_interval`]) while it
/// exists: idle channels forgotten, history expired by age (reads expire
/// history themselves, so this only bounds memory).
///
/// [`EngineConfig::sweep_interval`]: crate::config::EngineConfig::sweep_interval
async fn sweep(hub: std::sync::Weak<Hub>, period: std::time::Duration) {
    let mut every = tokio::time::interval(period);
    loop {
        every.tick().await;
        match hub.upgrade() {
            Some(hub) => {
                hub.sweep();
            }
            None => return,
        }
    }
}

/// Serves on `listener` until `shutdown` resolves. Then it refuses new
/// sessions, tells every client to go (close 1001 with a jittered reconnect
/// delay) after flushing what is queued for it, and returns once all sessions
/// ended or [`ServerConfig::shutdown_timeout`] passed. Connections are still
/// accepted meanwhile: an HTTP session's next request (a long-poll client
/// polls on a new connection) must reach its goodbye.
///
/// Each connection's request head must arrive within the WebSocket handshake
/// timeout, so clients trickling headers (slowloris) are cut off.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tls, certificates) = crate::tls::acceptor(&config.tls)?.unzip();
    let watcher = certificates.map(|certificates| tokio::spawn(crate::tls::watch(certificates)));
    let (state, stop) = AppState::new(config).map_err(std::io::Error::other)?;
    tracing::info!(
        "tether serve listening on {}://{}{}",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        if tls.is_some() {
            " (HTTP/2 and HTTP/1.1)"
        } else {
            ""
        }
    );
    let sweeper = tokio::spawn(sweep(
        Arc::downgrade(&state.hub),
        state.config.engine.sweep_interval,
    ));
    let sessions = state.sessions.clone();
    let timeout = state.config.shutdown_timeout;
    let app = router(state.clone());
    // Requests other nodes forward here, for the sessions this node holds.
    let answering = state
        .exchange
        .clone()
        .map(|exchange| tokio::spawn(transport::forward::serve(exchange, app.clone())));
    let mut acceptor = Acceptor {
        listener,
        metrics: state.metrics.clone(),
        header_timeout: state.config.websocket.handshake_timeout,
        app,
        tls,
        h2c: state.config.tls.h2c,
        http2: Arc::new(http2_server(
            state.config.websocket.handshake_timeout,
            &state.config.http2,
        )),
        backoff: tether::listen::AcceptBackoff::new(),
        descriptors: tether::listen::DescriptorGuard::new(),
    };
    acceptor.serve_until(shutdown).await;
    let _ = stop.send(true);
    sessions.stop_all();
    sweeper.abort();
    // Still answering while sessions flush: another node may be relaying
    // one of their last polls.
    let live = sessions.live();
    if live > 0 {
        tracing::info!(live, "waiting for sessions to close");
        let drained = tokio::time::timeout(timeout, sessions.all_closed());
        let mut timed_out = false;
        acceptor
            .serve_until(async {
                timed_out = drained.await.is_err();
            })
            .await;
        if timed_out {
            tracing::warn!(
                live = sessions.live(),
                "shutdown timeout: dropping remaining sessions"
            );
        }
    }
    for task in [answering, watcher].into_iter().flatten() {
        task.abort();
    }
    Ok(())
}

/// The accept loop's state, kept across the serving and the draining.
struct Acceptor {
    listener: TcpListener,
    metrics: Arc<crate::metrics::Metrics>,
    header_timeout: std::time::Duration,
    app: Router,
    /// With `[tls]`: every connection is TLS, then HTTP/2 or HTTP/1.1.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Without TLS: HTTP/2 with prior knowledge too.
    h2c: bool,
    /// Serves the HTTP/2 connections (TLS with ALPN `h2`, and h2c).
    http2: Arc<Http2Server>,
    backoff: tether::listen::AcceptBackoff,
    descriptors: tether::listen::DescriptorGuard,
}

impl Acceptor {
    /// Accepts and serves connections until `until` resolves.
    async fn serve_until(&mut self, until: impl Future<Output = ()>) {
        tokio::pin!(until);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut until => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        self.metrics.accept_failed(tether::listen::out_of_resources(&error));
                        self.descriptors.accept_failed(&error);
                        match self.backoff.failed(&error) {
                            AfterFailure::Retry => tracing::debug!(%error, "accept failed"),
                            // Out of descriptors and the like: the others are
                            // served meanwhile, and the backlog waits.
                            AfterFailure::Wait { delay, first } => {
                                if first {
                                    tracing::warn!(%error, "accept failed: backing off until descriptors free");
                                }
                                tokio::select! {
                                    () = &mut until => return,
                                    () = tokio::time::sleep(delay) => {}
                                }
                            }
                        }
                        continue;
                    }
                },
            };
            if let Some(failures) = self.backoff.succeeded() {
                tracing::info!(failures, "accepting again");
            }
            // Near the descriptor limit: 503 now, rather than EMFILE for the
            // next connection and every one after it.
            let Some(tcp) = self.descriptors.admit(tcp) else {
                self.metrics.reject("descriptors");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let app = self.app.clone();
            let header_timeout = self.header_timeout;
            let (http2, metrics) = (self.http2.clone(), self.metrics.clone());
            if let Some(tls) = &self.tls {
                let tls = tls.clone();
                tokio::spawn(async move {
                    // The handshake, like a request head, must come in time.
                    let stream = match tokio::time::timeout(header_timeout, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            metrics.tls_connections.inc();
                            stream
                        }
                        Ok(Err(error)) => {
                            metrics.reject("tls_handshake");
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics.reject("tls_handshake");
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        serve_http2(stream, app, peer, &http2, &metrics).await;
                    } else {
                        serve_http1(stream, app, peer, header_timeout).await;
                    }
                });
                continue;
            }
            let h2c = self.h2c;
            tokio::spawn(async move {
                if h2c {
                    // Prior knowledge: the preface, like a request head,
                    // must come in time.
                    match tokio::time::timeout(header_timeout, sends_http2_preface(&tcp)).await {
                        Ok(Ok(true)) => return serve_http2(tcp, app, peer, &http2, &metrics).await,
                        Ok(Ok(false)) => {}
                        Ok(Err(error)) => {
                            return tracing::debug!(%peer, %error, "connection failed before its first request");
                        }
                        Err(_) => return tracing::debug!(%peer, "no request in time"),
                    }
                }
                // The socket itself, so a WebSocket on it is written with
                // no boxed stream in between (`finish_as::<TcpStream>`).
                serve_http1(tcp, app, peer, header_timeout).await;
            });
        }
    }
}

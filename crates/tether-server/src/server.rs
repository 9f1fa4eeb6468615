//! Wiring: the router, shared state, and the serve loop with graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::hub::Hub;
use crate::transport;
use crate::{api, demo};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Channels and subscribers.
    pub hub: Arc<Hub>,
}

/// The HTTP routes: WebSocket endpoint, API, health.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/publish", post(api::publish))
        .route("/api/channels", get(api::channels))
        .route("/api/presence/{channel}", get(api::presence))
        .route("/api/history/{channel}", get(api::history))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_key,
        ));
    Router::new()
        .route("/", get(demo::index))
        .route("/app.js", get(demo::app))
        .route("/style.css", get(demo::style))
        .route("/connection/websocket", get(transport::websocket::upgrade))
        .route("/healthz", get(api::healthy))
        .route("/readyz", get(api::healthy))
        .merge(api)
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let state = AppState {
        hub: Arc::new(Hub::new(config.clone())),
        config,
    };
    tracing::info!(
        "tether serve listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

//! The demo at `/`: a chat room and a live leaderboard, embedded in the binary,
//! and the JavaScript client it runs on, at `/tether.js` and `/tether/*.js`.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../../web/index.html");
const APP: &str = include_str!("../../../web/app.js");
const STYLE: &str = include_str!("../../../web/style.css");
/// The JavaScript client (clients/js) by the path it is served at: the entry
/// module and the modules it imports, ES modules with no build step.
pub const CLIENT: &[(&str, &str)] = &[
    ("/tether.js", include_str!("../../../clients/js/tether.js")),
    (
        "/tether/client.js",
        include_str!("../../../clients/js/tether/client.js"),
    ),
    (
        "/tether/emitter.js",
        include_str!("../../../clients/js/tether/emitter.js"),
    ),
    (
        "/tether/errors.js",
        include_str!("../../../clients/js/tether/errors.js"),
    ),
    (
        "/tether/links.js",
        include_str!("../../../clients/js/tether/links.js"),
    ),
    (
        "/tether/options.js",
        include_str!("../../../clients/js/tether/options.js"),
    ),
    (
        "/tether/shared.js",
        include_str!("../../../clients/js/tether/shared.js"),
    ),
    (
        "/tether/subscription.js",
        include_str!("../../../clients/js/tether/subscription.js"),
    ),
    (
        "/tether/worker.js",
        include_str!("../../../clients/js/tether/worker.js"),
    ),
];

/// `GET /`.
pub async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

/// `GET /app.js`.
pub async fn app() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP,
    )
}

/// `GET /style.css`.
pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

/// `GET /tether.js` and `GET /tether/{module}`: the JavaScript client, for
/// `import { Client } from "/tether.js"`; 404 for a module it does not have.
pub async fn client(uri: Uri) -> Response {
    match CLIENT.iter().find(|(path, _)| *path == uri.path()) {
        Some((_, source)) => (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                // Revalidated on every load, so a new server's client is
                // never mixed with an old one's modules.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *source,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

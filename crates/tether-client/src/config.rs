//! The client's settings, each with its default.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A function that fetches a token (JWT), called at every connect and
/// before the token expires; an `Err` is retried with backoff.
pub type TokenSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Everything [`Client::new`](crate::Client::new) needs; every field but the
/// URL has a default (the JavaScript client's).
#[derive(Clone)]
pub struct ClientConfig {
    /// The server: `ws://`, `wss://`, `http://` or `https://`, with or without
    /// the `/connection/websocket` path.
    pub url: String,
    /// A fixed token sent in `connect`.
    pub token: Option<String>,
    /// Fetches a token at every connect and `token_refresh_margin` before it expires.
    pub get_token: Option<TokenSource>,
    /// Extra headers for the WebSocket handshake (say, a cookie or an API gateway's key).
    pub headers: Vec<(String, String)>,
    /// Smallest reconnect delay. Default 500 ms.
    pub min_reconnect_delay: Duration,
    /// Largest reconnect delay. Default 20 s.
    pub max_reconnect_delay: Duration,
    /// Connected this long, the backoff starts again from its minimum. Default 10 s.
    pub stable_after: Duration,
    /// Silence on the connection this long, and the client pings. Default 25 s.
    pub ping_interval: Duration,
    /// No traffic this long after the ping, and the connection is dead. Default 10 s.
    pub ping_timeout: Duration,
    /// How long a request waits for its reply, reconnects included. Default 10 s.
    pub timeout: Duration,
    /// How long opening a connection may take. Default 10 s.
    pub connect_timeout: Duration,
    /// Refresh a token this long before it expires (at most half its life). Default 30 s.
    pub token_refresh_margin: Duration,
    /// Seeds the jitter, for reproducible delays in tests and simulations.
    pub seed: Option<u64>,
    /// Whom to trust for `wss://` and `https://` (say, a private CA's
    /// `tether::tls::client_config(Some(pem))`). Default: the webpki roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Open each connection's WebSocket over HTTP/2 (RFC 8441; TLS with
    /// ALPN `h2`, or h2c for `ws://`) rather than HTTP/1.1. The server must
    /// allow extended CONNECT, as `tether serve` with TLS or h2c does.
    /// Default: off.
    pub http2: bool,
}

impl ClientConfig {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            get_token: None,
            headers: Vec::new(),
            min_reconnect_delay: Duration::from_millis(500),
            max_reconnect_delay: Duration::from_secs(20),
            stable_after: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            token_refresh_margin: Duration::from_secs(30),
            seed: None,
            tls: None,
            http2: false,
        }
    }

    /// Trusting `tls` for `wss://` and `https://`.
    pub fn tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Over HTTP/2 (see [`ClientConfig::http2`](Self::http2)).
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// With a fixed token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// With a function that fetches tokens.
    pub fn get_token<F, Fut>(mut self, fetch: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.get_token = Some(Arc::new(move || Box::pin(fetch())));
        self
    }

    /// With a handshake header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The WebSocket endpoint of the server.
    pub(crate) fn websocket_url(&self) -> String {
        let url = self.url.trim_end_matches('/');
        let url = if let Some(rest) = url.strip_prefix("http") {
            format!("ws{rest}")
        } else {
            url.to_owned()
        };
        if url.ends_with("/connection/websocket") {
            url
        } else {
            format!("{url}/connection/websocket")
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("get_token", &self.get_token.as_ref().map(|_| "fn"))
            .field("headers", &self.headers.len())
            .field("min_reconnect_delay", &self.min_reconnect_delay)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("ping_interval", &self.ping_interval)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.as_ref().map(|_| "custom"))
            .field("http2", &self.http2)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_websocket_endpoint() {
        for (given, want) in [
            (
                "http://127.0.0.1:8080",
                "ws://127.0.0.1:8080/connection/websocket",
            ),
            (
                "https://example.com/",
                "wss://example.com/connection/websocket",
            ),
            (
                "ws://h:1/connection/websocket",
                "ws://h:1/connection/websocket",
            ),
            ("wss://h/base", "wss://h/base/connection/websocket"),
        ] {
            assert_eq!(ClientConfig::new(given).websocket_url(), want);
        }
    }
}

//! Client side: open `ws://` and `wss://` connections, over HTTP/1.1 or
//! (see [`crate::http2`]) as streams of an HTTP/2 connection.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response};
use tether_proto::handshake::{
    build_request, generate_key, parse_response, validate_response, ClientAccepted, ClientRequest,
};
use tether_proto::{HandshakeError, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::error::{Error, Http2Error, Result, UrlError};
use crate::http2::Http2Connection;
use crate::stream::MaybeTlsStream;
use crate::tls;
use crate::websocket::WebSocket;

/// Connects to a `ws://` or `wss://` URL with default settings.
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
    ClientBuilder::new(url).connect().await
}

/// Options for opening a client connection.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// let (mut ws, _response) = tether::ClientBuilder::new("wss://example.com/feed")
///     .protocol("chat")
///     .header("Authorization", "Bearer t0k3n")
///     .compression(true)
///     .connect()
///     .await?;
/// ws.send("hello").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    config: Config,
    protocols: Vec<String>,
    headers: HeaderMap,
    tls: Option<Arc<rustls::ClientConfig>>,
    invalid_header: Option<String>,
    http2: bool,
}

/// Where to connect, taken from a URL.
pub(crate) struct Target {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    host_header: String,
    path: String,
}

pub(crate) fn parse_url(raw: &str) -> Result<Target> {
    let url = url::Url::parse(raw).map_err(|source| UrlError::Parse {
        url: raw.to_owned(),
        source,
    })?;
    let tls = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(UrlError::Scheme(other.to_owned()).into()),
    };
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => return Err(UrlError::NoHost(raw.to_owned()).into()),
    };
    if url.fragment().is_some() {
        // RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs.
        return Err(UrlError::Fragment(raw.to_owned()).into());
    }
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let shown = match url.host() {
        Some(url::Host::Ipv6(_)) => format!("[{host}]"),
        _ => host.clone(),
    };
    let host_header = match url.port() {
        Some(port) => format!("{shown}:{port}"),
        None => shown,
    };
    let mut path = url.path().to_owned();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok(Target {
        tls,
        host,
        port,
        host_header,
        path,
    })
}

impl ClientBuilder {
    /// Options for connecting to `url` (`ws://host[:port]/path?query` or `wss://…`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            config: Config::default(),
            protocols: Vec::new(),
            headers: HeaderMap::new(),
            tls: None,
            invalid_header: None,
            http2: false,
        }
    }

    /// Replaces the connection settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Offers a subprotocol (call again for more, in order of preference).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds a request header (`Origin`, `Authorization`, `Cookie`, …).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(name), Ok(value)) => {
                self.headers.append(name, value);
            }
            _ => self.invalid_header = Some(format!("{name}: {value}")),
        }
        self
    }

    /// Offers permessage-deflate (on by default).
    pub fn compression(mut self, on: bool) -> Self {
        self.config.protocol.deflate.enabled = on;
        self
    }

    /// Uses this TLS configuration for `wss://` (default: webpki roots).
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Opens the WebSocket as a stream of a new HTTP/2 connection (RFC
    /// 8441 extended CONNECT) rather than over HTTP/1.1: TLS with ALPN `h2`
    /// for `wss://`, HTTP/2 in the clear with prior knowledge (h2c) for
    /// `ws://`. The server must allow extended CONNECT. To put several
    /// WebSockets on one connection, open it with
    /// [`ClientBuilder::open_http2`] and each WebSocket with
    /// [`ClientBuilder::connect_over`].
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// Opens TCP (and TLS for `wss://`), then performs the handshake, all within
    /// [`Config::handshake_timeout`].
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
        let timeout = self.config.handshake_timeout;
        match tokio::time::timeout(timeout, self.connect_inner()).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout("connect and opening handshake")),
        }
    }

    /// Opens an HTTP/2 connection to the URL's server (TLS with ALPN `h2`
    /// for `wss://`, h2c for `ws://`) and waits for its SETTINGS to allow
    /// extended CONNECT, within [`Config::handshake_timeout`]. Only the URL's
    /// host and port and the TLS configuration are used here.
    pub async fn open_http2(&self) -> Result<Http2Connection> {
        let target = parse_url(&self.url)?;
        let tls = self.client_tls(&target)?;
        let timeout = self.config.handshake_timeout;
        match tokio::time::timeout(timeout, Http2Connection::open(&target, tls)).await {
            Ok(result) => result,
            Err(_) => Err(Http2Error::NoExtendedConnect.into()),
        }
    }

    /// [`ClientBuilder::open_http2`] over a stream the caller opened that
    /// already speaks HTTP/2 once written to: TCP for h2c, or TLS that
    /// negotiated ALPN `h2` (a socket bound to a chosen source address, a
    /// proxy tunnel). The URL's scheme still sets `:scheme`.
    pub async fn open_http2_on<S>(&self, stream: S) -> Result<Http2Connection>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let target = parse_url(&self.url)?;
        let timeout = self.config.handshake_timeout;
        match tokio::time::timeout(timeout, Http2Connection::over(stream, target.tls)).await {
            Ok(result) => result,
            Err(_) => Err(Http2Error::NoExtendedConnect.into()),
        }
    }

    /// Opens the WebSocket on a new stream of `connection`, for the path of
    /// the URL given to [`ClientBuilder::new`], within
    /// [`Config::handshake_timeout`]. The connection and its other streams
    /// are unaffected by this WebSocket's close or failure.
    pub async fn connect_over(
        self,
        connection: &Http2Connection,
    ) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
        let target = parse_url(&self.url)?;
        let timeout = self.config.handshake_timeout;
        let opening = async {
            let request = self.request(&target)?;
            connection.websocket(request, &self.config).await
        };
        match tokio::time::timeout(timeout, opening).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout("opening handshake over HTTP/2")),
        }
    }

    /// The TLS configuration for `target`, or `None` for `ws://`.
    fn client_tls(&self, target: &Target) -> Result<Option<Arc<rustls::ClientConfig>>> {
        if !target.tls {
            return Ok(None);
        }
        Ok(Some(match &self.tls {
            Some(config) => config.clone(),
            None => tls::client_config(None)?,
        }))
    }

    async fn connect_inner(self) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
        let target = parse_url(&self.url)?;
        if self.http2 {
            let tls = self.client_tls(&target)?;
            let connection = Http2Connection::open(&target, tls).await?;
            let request = self.request(&target)?;
            return connection.websocket(request, &self.config).await;
        }
        let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        tcp.set_nodelay(true)?;
        let stream = match self.client_tls(&target)? {
            Some(config) => {
                let tls = tls::connect(config, &target.host, tcp).await?;
                MaybeTlsStream::ClientTls(Box::new(tls))
            }
            None => MaybeTlsStream::Plain(tcp),
        };
        self.handshake(stream, &target).await
    }

    /// Performs the handshake over a stream the caller opened (a proxy tunnel, a
    /// Unix socket), for the URL given to [`ClientBuilder::new`].
    pub async fn connect_on<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        stream: S,
    ) -> Result<(WebSocket<S>, Response<()>)> {
        let target = parse_url(&self.url)?;
        let timeout = self.config.handshake_timeout;
        match tokio::time::timeout(timeout, self.handshake(stream, &target)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout("opening handshake")),
        }
    }

    /// What this builder asks of the server at `target`.
    fn request(&self, target: &Target) -> Result<ClientRequest> {
        if let Some(bad) = &self.invalid_header {
            return Err(Error::InvalidHeader(bad.clone()));
        }
        Ok(ClientRequest {
            host: target.host_header.clone(),
            path: target.path.clone(),
            key: generate_key(rand::random()),
            protocols: self.protocols.clone(),
            headers: self.headers.clone(),
            deflate: self.config.protocol.deflate.clone(),
        })
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        mut stream: S,
        target: &Target,
    ) -> Result<(WebSocket<S>, Response<()>)> {
        let request = self.request(target)?;
        let mut out = Vec::with_capacity(512);
        build_request(&request, &mut out);
        stream.write_all(&out).await?;
        stream.flush().await?;
        let max = self.config.protocol.max_header_bytes;
        let mut buf = BytesMut::with_capacity(1024);
        let (response, head_len) = loop {
            if let Some(parsed) = parse_response(&buf, max)? {
                break parsed;
            }
            buf.reserve(1024);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(HandshakeError::ConnectionClosed.into());
            }
        };
        buf.advance(head_len);
        let accepted = validate_response(&response, &request)?;
        Ok((
            client_websocket(stream, &accepted, &self.config, &buf),
            response,
        ))
    }
}

/// The client WebSocket over `stream` once the server agreed to `accepted`;
/// `read` are bytes already read past the handshake.
pub(crate) fn client_websocket<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    accepted: &ClientAccepted,
    config: &Config,
    read: &[u8],
) -> WebSocket<S> {
    WebSocket::opened(
        stream,
        Role::Client,
        accepted.deflate.as_ref(),
        config,
        accepted.protocol.clone(),
        read,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TlsError;

    #[test]
    fn parses_urls_into_targets() {
        let t = parse_url("ws://example.com/chat?room=1").unwrap();
        assert_eq!(
            (t.tls, t.port, t.host_header.as_str(), t.path.as_str()),
            (false, 80, "example.com", "/chat?room=1")
        );
        let t = parse_url("wss://127.0.0.1:9443").unwrap();
        assert_eq!(
            (t.tls, t.port, t.host_header.as_str(), t.path.as_str()),
            (true, 9443, "127.0.0.1:9443", "/")
        );
        let t = parse_url("ws://[::1]:8080/x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.host_header.as_str()),
            ("::1", "[::1]:8080")
        );
    }

    #[test]
    fn rejects_other_schemes_and_fragments() {
        let error = |url| match parse_url(url) {
            Err(Error::Url(error)) => *error,
            other => panic!("{url}: {:?}", other.map(|t| t.host)),
        };
        assert!(matches!(error("http://example.com"), UrlError::Scheme(s) if s == "http"));
        assert!(matches!(
            error("ws://example.com/#frag"),
            UrlError::Fragment(_)
        ));
        // The URL parser's own error is kept.
        let UrlError::Parse { source, .. } = error("not a url") else {
            panic!("not a parse error");
        };
        assert_eq!(source, url::ParseError::RelativeUrlWithoutBase);
    }

    #[test]
    fn tls_errors_keep_their_kind() {
        let error = tls::server_config(b"", b"").unwrap_err();
        assert!(
            matches!(&error, Error::Tls(tls) if matches!(**tls, TlsError::Missing("private key"))),
            "{error:?}"
        );
        let error = tls::client_config(Some(b"no pem here")).unwrap_err();
        assert!(
            matches!(&error, Error::Tls(tls) if matches!(**tls, TlsError::Missing("certificate"))),
            "{error:?}"
        );
    }
}

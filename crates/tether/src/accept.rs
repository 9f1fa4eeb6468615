//! Server side: accept a WebSocket on a raw stream (TCP or TLS).

use bytes::{Buf, BytesMut};
use http::{HeaderMap, Request};
use tether_proto::handshake::{
    accept_response, parse_request, reject_response, validate_request, write_response, UpgradeOffer,
};
use tether_proto::{HandshakeError, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::websocket::WebSocket;

/// The application's answer to an upgrade request it accepts.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    /// The subprotocol to select; must be one the client offered, or it is ignored.
    pub protocol: Option<String>,
    /// Extra response headers (cookies, server name).
    pub headers: HeaderMap,
}

impl Accept {
    /// Selects `protocol`.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }
}

/// Accepts a WebSocket on `stream` with default settings, taking any request that
/// is a valid upgrade.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<WebSocket<S>> {
    accept_with(stream, &Config::default(), |_, _| Ok(Accept::default())).await
}

/// Accepts a WebSocket on `stream`. `decide` sees the request (path, headers) and
/// what it offers (Origin, subprotocols) and accepts it or refuses it with an error
/// whose status is sent back (e.g. `HandshakeError::Refused { status: 403, .. }` for
/// a foreign Origin). Invalid requests are answered 400, 405, 426 or 431 without
/// calling `decide`. The whole handshake must finish within
/// [`Config::handshake_timeout`].
pub async fn accept_with<S, F>(mut stream: S, config: &Config, decide: F) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request<()>, &UpgradeOffer) -> std::result::Result<Accept, HandshakeError>,
{
    let handshake = async {
        let max = config.protocol.max_header_bytes;
        let mut buf = BytesMut::with_capacity(1024);
        let (request, head_len) = loop {
            match parse_request(&buf, max) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(e) => return Err(e.into()),
            }
            buf.reserve(1024);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(HandshakeError::ConnectionClosed.into());
            }
        };
        buf.advance(head_len);
        let offer = validate_request(&request)?;
        let answer = decide(&request, &offer)?;
        let (mut response, negotiated) =
            accept_response(&offer, answer.protocol.as_deref(), &config.protocol.deflate);
        response.headers_mut().extend(answer.headers);
        let protocol = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((buf, response, negotiated, protocol))
    };
    // Boxed, so the handshake's buffers and parsed request live on the heap
    // only while it runs: a future awaiting this one (a connection's task)
    // stays small for the life of the connection.
    let handshake = Box::pin(tokio::time::timeout(config.handshake_timeout, handshake));
    let outcome = match handshake.await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::Timeout("opening handshake")),
    };
    let (rest, response, negotiated, protocol) = match outcome {
        Ok(done) => done,
        Err(Error::Handshake(e)) if e.status().is_some() => {
            tracing::debug!(error = %e, "refusing WebSocket handshake");
            let rejection = reject_response(&e);
            let mut out = Vec::new();
            write_response(&rejection, rejection.body().as_bytes(), &mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return Err(e.into());
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(256);
    write_response(&response, b"", &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(WebSocket::opened(
        stream,
        Role::Server,
        negotiated.as_ref(),
        config,
        protocol,
        &rest,
    ))
}

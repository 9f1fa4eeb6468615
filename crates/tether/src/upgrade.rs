//! Upgrading a request inside a hyper (or axum) HTTP server.

use std::io;

use http::{Request, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tether_proto::deflate::Negotiated;
use tether_proto::handshake::{
    accept_connect_response, accept_response, validate_connect, validate_request,
};
use tether_proto::{HandshakeError, Role};
use tokio::sync::oneshot;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::http2_server::{Http2Stream, Http2Tunnel};
use crate::websocket::WebSocket;

/// The stream of an upgraded connection: hyper's, or a stream of an
/// HTTP/2 connection served by [`crate::http2_server::Http2Server`].
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradedStream {
    /// hyper's upgraded connection (HTTP/1.1, or HTTP/2 served by hyper).
    Hyper(TokioIo<Upgraded>),
    /// An HTTP/2 stream written straight into h2.
    Http2(Http2Stream),
}

crate::stream::delegate_io!(UpgradedStream { Hyper, Http2 });

/// Who hands the connection over once the answer is out.
#[derive(Debug)]
enum Handover {
    Hyper(OnUpgrade),
    Http2(oneshot::Receiver<Http2Stream>),
}

/// Validates `request` as a WebSocket upgrade and builds the `101` response to
/// return from the handler, selecting `protocol` if the client offered it;
/// over HTTP/2, an extended CONNECT (RFC 8441) is validated and answered
/// `200` instead (hyper's server must `enable_connect_protocol`). After
/// the handler returns the response, [`PendingUpgrade::finish`] yields the
/// connection. On error, answer with [`HandshakeError::status`] (see
/// [`tether_proto::handshake::reject_response`]).
///
/// ```no_run
/// # async fn handler(mut req: http::Request<hyper::body::Incoming>) -> http::Response<String> {
/// match tether::upgrade(&mut req, &tether::Config::default(), None) {
///     Ok((response, pending)) => {
///         tokio::spawn(async move {
///             let mut ws = pending.finish().await?;
///             while let Some(message) = ws.recv().await? {
///                 if message.is_data() {
///                     ws.send(message).await?;
///                 }
///             }
///             Ok::<_, tether::Error>(())
///         });
///         response.map(|()| String::new())
///     }
///     Err(e) => tether_proto::handshake::reject_response(&e),
/// }
/// # }
/// ```
pub fn upgrade<B>(
    request: &mut Request<B>,
    config: &Config,
    protocol: Option<&str>,
) -> Result<(Response<()>, PendingUpgrade), HandshakeError> {
    let (response, negotiated) = if request.method() == http::Method::CONNECT {
        // `:protocol` travels beside the headers, as hyper's extension.
        let extensions = request.extensions();
        let asked = extensions
            .get::<hyper::ext::Protocol>()
            .map(|p| p.as_str().to_owned())
            .or_else(|| {
                extensions
                    .get::<h2::ext::Protocol>()
                    .map(|p| p.as_str().to_owned())
            });
        let offer = validate_connect(request, asked.as_deref())?;
        accept_connect_response(&offer, protocol, &config.protocol.deflate)
    } else {
        let offer = validate_request(request)?;
        accept_response(&offer, protocol, &config.protocol.deflate)
    };
    let tunnel = request
        .extensions()
        .get::<Http2Tunnel>()
        .and_then(Http2Tunnel::take);
    let on_upgrade = match tunnel {
        Some(stream) => Handover::Http2(stream),
        None => Handover::Hyper(hyper::upgrade::on(request)),
    };
    let protocol = response
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((
        response,
        PendingUpgrade {
            on_upgrade,
            config: config.clone(),
            negotiated,
            protocol,
        },
    ))
}

/// A connection that becomes a WebSocket once hyper has sent the `101` response.
#[derive(Debug)]
pub struct PendingUpgrade {
    on_upgrade: Handover,
    config: Config,
    negotiated: Option<Negotiated>,
    protocol: Option<String>,
}

/// What [`PendingUpgrade::finish_as`] yields: the WebSocket over the
/// connection's own stream when it is of the type asked for, else over
/// hyper's boxed stream, as [`PendingUpgrade::finish`] gives it.
#[derive(Debug)]
pub enum Finished<T> {
    /// Over the connection's own stream.
    Direct(WebSocket<T>),
    /// Over hyper's boxed stream (the connection was of another type).
    Boxed(WebSocket<UpgradedStream>),
}

impl PendingUpgrade {
    /// Waits for hyper to hand over the connection.
    pub async fn finish(mut self) -> Result<WebSocket<UpgradedStream>> {
        let upgraded = self.upgraded().await?;
        Ok(self.websocket(upgraded, &[]))
    }

    /// [`PendingUpgrade::finish`], with hyper's stream wrapped by `wrap`
    /// first: WebSockets that arrive as HTTP/2 streams then share a type
    /// with those accepted on raw sockets
    /// (`finish_with(MaybeTlsStream::Http2)`).
    pub async fn finish_with<T, W>(mut self, wrap: W) -> Result<WebSocket<T>>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        W: FnOnce(UpgradedStream) -> T,
    {
        let upgraded = self.upgraded().await?;
        Ok(self.websocket(wrap(upgraded), &[]))
    }

    /// [`PendingUpgrade::finish`], but over the connection's own stream when
    /// it is a `T` (the server's `TcpStream`, say, served as `TokioIo<T>`):
    /// no boxed stream between the WebSocket and the socket, one allocation
    /// less per connection, and the bytes hyper read past the request handed
    /// to the decoder.
    pub async fn finish_as<T>(mut self) -> Result<Finished<T>>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let upgraded = match &mut self.on_upgrade {
            Handover::Hyper(on_upgrade) => on_upgrade
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e)))?,
            Handover::Http2(_) => {
                let stream = self.upgraded().await?;
                return Ok(Finished::Boxed(self.websocket(stream, &[])));
            }
        };
        Ok(match upgraded.downcast::<TokioIo<T>>() {
            Ok(parts) => Finished::Direct(self.websocket(parts.io.into_inner(), &parts.read_buf)),
            Err(upgraded) => {
                Finished::Boxed(self.websocket(UpgradedStream::Hyper(TokioIo::new(upgraded)), &[]))
            }
        })
    }

    async fn upgraded(&mut self) -> Result<UpgradedStream> {
        match &mut self.on_upgrade {
            Handover::Hyper(on_upgrade) => on_upgrade
                .await
                .map(|upgraded| UpgradedStream::Hyper(TokioIo::new(upgraded)))
                .map_err(|e| Error::Io(std::io::Error::other(e))),
            Handover::Http2(stream) => stream.await.map(UpgradedStream::Http2).map_err(|_| {
                Error::Io(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the HTTP/2 stream ended before its answer went out",
                ))
            }),
        }
    }

    /// The WebSocket over `stream`, whose first bytes `read` were already read.
    fn websocket<S>(self, stream: S, read: &[u8]) -> WebSocket<S>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        WebSocket::opened(
            stream,
            Role::Server,
            self.negotiated.as_ref(),
            &self.config,
            self.protocol,
            read,
        )
    }
}

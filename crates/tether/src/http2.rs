//! Client WebSockets over HTTP/2 (RFC 8441): one connection to a server,
//! each WebSocket an extended CONNECT on a stream of its own.
//!
//! The streams share the connection's TCP (and TLS) but not its flow
//! control: each has its own window, so a WebSocket whose reader stalls
//! holds back only itself. A stream's close or reset leaves the connection
//! and the other streams up. hyper's HTTP/2 client does the framing; the
//! WebSocket frames ride in its DATA frames exactly as over HTTP/1.1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tether_proto::handshake::{build_connect, validate_connect_response, ClientRequest};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::connect::{client_websocket, Target};
use crate::error::{Http2Error, Result};
use crate::stream::MaybeTlsStream;
use crate::tls;
use crate::websocket::WebSocket;

/// The ALPN name of HTTP/2 over TLS.
const H2: &[u8] = b"h2";

/// An HTTP/2 connection to one server, on which WebSockets open as
/// streams: see [`ClientBuilder::open_http2`] and
/// [`ClientBuilder::connect_over`]. Clones share the connection, which
/// closes once every clone and every WebSocket on it are gone.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// let url = "wss://example.com/connection/websocket";
/// let connection = tether::ClientBuilder::new(url).open_http2().await?;
/// let (mut a, _) = tether::ClientBuilder::new(url).connect_over(&connection).await?;
/// let (mut b, _) = tether::ClientBuilder::new(url).connect_over(&connection).await?;
/// a.send("on stream 1").await?;
/// b.send("on stream 3, same TCP connection").await?;
/// # Ok(()) }
/// ```
///
/// [`ClientBuilder::open_http2`]: crate::ClientBuilder::open_http2
/// [`ClientBuilder::connect_over`]: crate::ClientBuilder::connect_over
#[derive(Debug, Clone)]
pub struct Http2Connection {
    sender: SendRequest<Empty<Bytes>>,
    /// `:scheme` of every request: `https` or `http`.
    scheme: &'static str,
}

impl Http2Connection {
    /// Opens TCP to `target`, TLS with ALPN `h2` when `tls` is given (else
    /// HTTP/2 with prior knowledge), the HTTP/2 preface, and waits for the
    /// server to allow extended CONNECT.
    pub(crate) async fn open(
        target: &Target,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        tcp.set_nodelay(true)?;
        match tls {
            Some(config) => {
                let mut config = (*config).clone();
                config.alpn_protocols = vec![H2.to_vec()];
                let stream = tls::connect(Arc::new(config), &target.host, tcp).await?;
                if stream.get_ref().1.alpn_protocol() != Some(H2) {
                    return Err(Http2Error::NotNegotiated.into());
                }
                Self::over(stream, true).await
            }
            None => Self::over(tcp, false).await,
        }
    }

    /// HTTP/2 over `stream`, which speaks it already (h2c, or TLS that
    /// negotiated `h2`); `https` sets `:scheme`.
    pub(crate) async fn over<T>(stream: T, https: bool) -> Result<Self>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Ok(Self {
            sender: handshake(stream).await?,
            scheme: if https { "https" } else { "http" },
        })
    }

    /// Whether the connection is gone (closed by either side or failed):
    /// no new WebSocket can open on it.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Opens a WebSocket for `request` on a new stream.
    pub(crate) async fn websocket(
        &self,
        request: ClientRequest,
        config: &Config,
    ) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
        let mut connect = build_connect(&request, self.scheme)?;
        connect
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let mut sender = self.sender.clone();
        sender.ready().await?;
        let mut response = sender.send_request(connect.map(|()| Empty::new())).await?;
        let accepted = validate_connect_response(&response, &request)?;
        let on_upgrade = hyper::upgrade::on(&mut response);
        let (head, _) = response.into_parts();
        let stream = crate::UpgradedStream::Hyper(TokioIo::new(on_upgrade.await?));
        let ws = client_websocket(MaybeTlsStream::Http2(stream), &accepted, config, &[]);
        Ok((ws, Response::from_parts(head, ())))
    }
}

/// The client's HTTP/2 preface and SETTINGS over `io`, then the wait for
/// the server's SETTINGS to allow extended CONNECT, which RFC 8441 §3
/// requires before the first one is sent. The connection is driven by a
/// task of its own until it closes. hyper reads the server's frames in yet
/// another task and signals no event when SETTINGS arrive, so the driver
/// looks at the flag after short pauses that grow (the SETTINGS are the
/// server's first frame: they come within a round trip), and reports the
/// first look that finds it set; the caller's handshake timeout bounds the
/// wait for a server that never allows it.
async fn handshake<T>(io: T) -> Result<SendRequest<Empty<Bytes>>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await?;
    let (allowed, on_allowed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut connection = std::pin::pin!(connection);
        let mut allowed = Some(allowed);
        let mut pause = Duration::from_micros(100);
        let ended = loop {
            tokio::select! {
                ended = connection.as_mut() => break ended,
                // Looks until the flag is set or the opener gave up waiting.
                () = tokio::time::sleep(pause), if allowed.as_ref().is_some_and(|tx| !tx.is_closed()) => {
                    if connection.is_extended_connect_protocol_enabled() {
                        let _ = allowed.take().map(|tx| tx.send(()));
                    }
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "HTTP/2 connection ended");
        }
    });
    // The connection ending first drops the sender: it never allowed it.
    on_allowed
        .await
        .map_err(|_| Http2Error::NoExtendedConnect)?;
    Ok(sender)
}

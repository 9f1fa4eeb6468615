//! Upgrading a request inside a hyper (or axum) HTTP server.

use http::{Request, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tether_proto::deflate::Negotiated;
use tether_proto::handshake::{accept_response, validate_request};
use tether_proto::{Decoder, Encoder, HandshakeError, Role};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::websocket::WebSocket;

/// The stream of an upgraded hyper connection.
pub type UpgradedStream = TokioIo<Upgraded>;

/// Validates `request` as a WebSocket upgrade and builds the `101` response to
/// return from the handler, selecting `protocol` if the client offered it. After
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
    let offer = validate_request(request)?;
    let on_upgrade = hyper::upgrade::on(request);
    let (response, negotiated) = accept_response(&offer, protocol, &config.protocol.deflate);
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
    on_upgrade: OnUpgrade,
    config: Config,
    negotiated: Option<Negotiated>,
    protocol: Option<String>,
}

impl PendingUpgrade {
    /// Waits for hyper to hand over the connection.
    pub async fn finish(self) -> Result<WebSocket<UpgradedStream>> {
        let upgraded = self
            .on_upgrade
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let inflater = self.negotiated.as_ref().map(|n| n.inflater());
        let decoder = Decoder::new(Role::Server, self.config.protocol.clone(), inflater);
        let (deflater, threshold) = match &self.negotiated {
            Some(n) => (n.deflater(), n.threshold),
            None => (None, 0),
        };
        let encoder = Encoder::new(Role::Server, deflater, threshold);
        let compressed = self.negotiated.is_some();
        Ok(WebSocket::from_parts(
            TokioIo::new(upgraded),
            decoder,
            encoder,
            &self.config,
            self.protocol,
            compressed,
        ))
    }
}

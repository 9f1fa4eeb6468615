//! The WebSocket opening over HTTP/2 (RFC 8441): an extended CONNECT
//! request on a stream of its own, answered `200`. The frames then flow on
//! that stream exactly as over HTTP/1.1.
//!
//! `:protocol` is a pseudo-header that `http` types do not carry; the HTTP/2
//! library gives it (hyper: `hyper::ext::Protocol` in the request's
//! extensions) and the caller passes it here.

use http::{header, Method, Request, Response, StatusCode, Version};

use super::server::{answer, offer, UpgradeOffer};
use crate::deflate::Negotiated;
use crate::{DeflateConfig, HandshakeError};

/// The version every WebSocket request must name.
const WEBSOCKET_VERSION: &str = "13";

/// What a valid extended CONNECT asks for (its `key` is empty: there is
/// none over HTTP/2).
pub type ConnectOffer = UpgradeOffer;

/// Checks an extended CONNECT against RFC 8441 §4-5: method CONNECT over
/// HTTP/2 or later, `:protocol` `websocket` (given as `protocol`),
/// `Sec-WebSocket-Version: 13`, and no `Sec-WebSocket-Key`; subprotocols
/// and extensions are offered as over HTTP/1.1.
pub fn validate_connect<B>(
    request: &Request<B>,
    protocol: Option<&str>,
) -> Result<ConnectOffer, HandshakeError> {
    if request.method() != Method::CONNECT {
        return Err(HandshakeError::NotGet(request.method().to_string()));
    }
    if request.version() < Version::HTTP_2 {
        return Err(HandshakeError::HttpVersion);
    }
    match protocol {
        None => return Err(HandshakeError::MissingProtocol),
        Some(p) if !p.eq_ignore_ascii_case("websocket") => {
            return Err(HandshakeError::UnknownProtocol(p.to_owned()))
        }
        Some(_) => {}
    }
    let headers = request.headers();
    if headers.contains_key(header::SEC_WEBSOCKET_KEY) {
        return Err(HandshakeError::KeyOverConnect);
    }
    let version = headers.get(header::SEC_WEBSOCKET_VERSION);
    if version.map(|v| v.as_bytes()) != Some(WEBSOCKET_VERSION.as_bytes()) {
        return Err(HandshakeError::UnsupportedVersion(
            version.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        ));
    }
    Ok(offer(headers, http::HeaderValue::from_static("")))
}

/// The `200` answer to an extended CONNECT, with `protocol` (if the client
/// offered it) and permessage-deflate if `deflate` allows; the agreed
/// compression parameters beside it.
pub fn accept_connect_response(
    offer: &ConnectOffer,
    protocol: Option<&str>,
    deflate: &DeflateConfig,
) -> (Response<()>, Option<Negotiated>) {
    answer(
        Response::builder().status(StatusCode::OK),
        offer,
        protocol,
        deflate,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare() -> http::request::Builder {
        Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://example.com/connection/websocket")
    }

    fn connect() -> http::request::Builder {
        bare().header("sec-websocket-version", "13")
    }

    #[test]
    fn a_websocket_extended_connect_is_accepted_with_200() {
        let request = connect()
            .header("origin", "https://example.com")
            .header("sec-websocket-protocol", "chat, superchat")
            .header(
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            )
            .body(())
            .unwrap();
        let offer = validate_connect(&request, Some("websocket")).unwrap();
        assert_eq!(offer.protocols, ["chat", "superchat"]);
        assert_eq!(offer.origin.as_deref(), Some("https://example.com"));
        let (response, negotiated) =
            accept_connect_response(&offer, Some("chat"), &DeflateConfig::default());
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("sec-websocket-accept").is_none());
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
        assert!(negotiated.is_some());
        assert!(response.headers()["sec-websocket-extensions"]
            .to_str()
            .unwrap()
            .starts_with("permessage-deflate"));
        // Not offered: not selected.
        let (response, _) =
            accept_connect_response(&offer, Some("other"), &DeflateConfig::default());
        assert!(response.headers().get("sec-websocket-protocol").is_none());
    }

    #[test]
    fn a_malformed_extended_connect_gets_its_status() {
        let plain = connect().body(()).unwrap();
        let cases = [
            (validate_connect(&plain, None), 405),
            (validate_connect(&plain, Some("webtransport")), 501),
            (
                validate_connect(
                    &connect()
                        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                        .body(())
                        .unwrap(),
                    Some("websocket"),
                ),
                400,
            ),
            (
                validate_connect(
                    &bare()
                        .header("sec-websocket-version", "8")
                        .body(())
                        .unwrap(),
                    Some("websocket"),
                ),
                426,
            ),
            (
                validate_connect(
                    &Request::builder()
                        .method(Method::CONNECT)
                        .version(Version::HTTP_2)
                        .body(())
                        .unwrap(),
                    Some("websocket"),
                ),
                426,
            ),
            (
                validate_connect(
                    &connect().method(Method::GET).body(()).unwrap(),
                    Some("websocket"),
                ),
                405,
            ),
            (
                validate_connect(
                    &connect().version(Version::HTTP_11).body(()).unwrap(),
                    Some("websocket"),
                ),
                400,
            ),
        ];
        for (n, (outcome, status)) in cases.into_iter().enumerate() {
            let Err(error) = outcome else {
                panic!("case {n} was accepted");
            };
            assert_eq!(error.status(), Some(status), "case {n}: {error}");
        }
    }
}

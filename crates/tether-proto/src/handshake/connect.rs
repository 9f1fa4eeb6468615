//! The WebSocket opening over HTTP/2 (RFC 8441), both roles: an extended
//! CONNECT request on a stream of its own, answered `200`. The frames then flow on
//! that stream exactly as over HTTP/1.1.
//!
//! `:protocol` is a pseudo-header that `http` types do not carry; the HTTP/2
//! library gives it (hyper: `hyper::ext::Protocol` in the request's
//! extensions) and the caller passes it here.

use http::{header, Method, Request, Response, StatusCode, Version};

use super::client::{agreed, ClientAccepted, ClientRequest};
use super::server::{answer, offer, UpgradeOffer};
use super::WEBSOCKET_VERSION;
use crate::deflate::{client_offer, Negotiated};
use crate::{DeflateConfig, HandshakeError};

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

/// The extended CONNECT that opens a WebSocket for `request` on a new
/// HTTP/2 stream (its `key` is not used: RFC 8441 has none). `scheme` is
/// `https` or `http`, for `:scheme`; `request.host` becomes `:authority`.
/// The caller attaches `:protocol: websocket` (hyper:
/// `hyper::ext::Protocol`) and must not send it before the server's
/// SETTINGS allow extended CONNECT (RFC 8441 §3).
pub fn build_connect(request: &ClientRequest, scheme: &str) -> Result<Request<()>, HandshakeError> {
    let path = if request.path.is_empty() {
        "/"
    } else {
        &request.path
    };
    let mut builder = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri(format!("{scheme}://{}{path}", request.host))
        .header(header::SEC_WEBSOCKET_VERSION, WEBSOCKET_VERSION);
    if !request.protocols.is_empty() {
        builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, request.protocols.join(", "));
    }
    if let Some(offer) = client_offer(&request.deflate) {
        builder = builder.header(header::SEC_WEBSOCKET_EXTENSIONS, offer);
    }
    let mut built = builder
        .body(())
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    for (name, value) in &request.headers {
        built.headers_mut().append(name, value.clone());
    }
    Ok(built)
}

/// Checks the answer to [`build_connect`]'s request: any 2xx status opens
/// the WebSocket (RFC 8441 §5), and, as over HTTP/1.1, only a subprotocol
/// and extension parameters that were offered may be selected.
pub fn validate_connect_response<B>(
    response: &Response<B>,
    request: &ClientRequest,
) -> Result<ClientAccepted, HandshakeError> {
    if !response.status().is_success() {
        return Err(HandshakeError::UnexpectedStatus(response.status().as_u16()));
    }
    agreed(response.headers(), request)
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

    fn client_request() -> ClientRequest {
        ClientRequest {
            host: "example.com:8443".into(),
            path: "/connection/websocket?v=1".into(),
            protocols: vec!["chat".into(), "superchat".into()],
            headers: [(
                header::ORIGIN,
                http::HeaderValue::from_static("https://example.com"),
            )]
            .into_iter()
            .collect(),
            ..ClientRequest::default()
        }
    }

    #[test]
    fn the_client_connect_is_what_the_server_accepts() {
        let request = build_connect(&client_request(), "https").unwrap();
        assert_eq!(request.method(), Method::CONNECT);
        assert_eq!(
            request.uri().to_string(),
            "https://example.com:8443/connection/websocket?v=1"
        );
        assert!(request.headers().get(header::SEC_WEBSOCKET_KEY).is_none());
        assert_eq!(request.headers()["origin"], "https://example.com");
        let offer = validate_connect(&request, Some("websocket")).unwrap();
        assert_eq!(offer.protocols, ["chat", "superchat"]);
        let (response, negotiated) =
            accept_connect_response(&offer, Some("superchat"), &DeflateConfig::default());
        let accepted = validate_connect_response(&response, &client_request()).unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("superchat"));
        assert_eq!(accepted.deflate.is_some(), negotiated.is_some());
        assert!(accepted.deflate.is_some());
    }

    #[test]
    fn the_client_refuses_a_failed_or_overreaching_answer() {
        let request = client_request();
        let status = |code: u16| Response::builder().status(code).body(()).unwrap();
        for code in [400, 404, 426, 501] {
            let error = validate_connect_response(&status(code), &request).unwrap_err();
            assert!(
                matches!(error, HandshakeError::UnexpectedStatus(c) if c == code),
                "{error}"
            );
        }
        // Any 2xx opens it (RFC 8441 §5).
        assert!(validate_connect_response(&status(204), &request).is_ok());
        let chose = |name: &str, value: &str| {
            Response::builder()
                .status(200)
                .header(name, value)
                .body(())
                .unwrap()
        };
        assert!(matches!(
            validate_connect_response(&chose("sec-websocket-protocol", "mqtt"), &request),
            Err(HandshakeError::UnexpectedProtocol(p)) if p == "mqtt"
        ));
        let plain = ClientRequest {
            deflate: DeflateConfig {
                enabled: false,
                ..DeflateConfig::default()
            },
            ..client_request()
        };
        assert!(validate_connect_response(
            &chose("sec-websocket-extensions", "permessage-deflate"),
            &plain
        )
        .is_err());
    }
}

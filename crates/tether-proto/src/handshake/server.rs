//! Server side: parse and validate the client's request, answer 101 or an error.

use http::header::HeaderName;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};

use super::headers::{has_token, is_token};
use super::{accept_key, WEBSOCKET_VERSION};
use crate::config::MAX_HEADERS;
use crate::deflate::{server_negotiate, DeflateConfig, Negotiated};
use crate::error::HandshakeError;

/// Parses an HTTP/1.1 request head from the front of `buf`.
///
/// Returns `Ok(None)` until the blank line that ends the head has arrived, and
/// fails with [`HandshakeError::HeadersTooLarge`] (431) once `max_header_bytes`
/// have arrived without it. On success, also returns the head's length: anything
/// after it is already WebSocket data.
pub fn parse_request(
    buf: &[u8],
    max_header_bytes: usize,
) -> Result<Option<(Request<()>, usize)>, HandshakeError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let status = match parsed.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::HeadersTooLarge {
                max: max_header_bytes,
            })
        }
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    let len = match status {
        httparse::Status::Partial if buf.len() >= max_header_bytes => {
            return Err(HandshakeError::HeadersTooLarge {
                max: max_header_bytes,
            })
        }
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) if len > max_header_bytes => {
            return Err(HandshakeError::HeadersTooLarge {
                max: max_header_bytes,
            })
        }
        httparse::Status::Complete(len) => len,
    };
    let malformed = |what: &str| HandshakeError::Malformed(what.to_owned());
    // Filled in place: `Request::builder` moves the whole request through
    // each call, which was a visible share of a handshake's time.
    let mut request = Request::new(());
    *request.method_mut() = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| malformed("bad method"))?;
    *request.uri_mut() = parsed
        .path
        .unwrap_or("/")
        .parse::<Uri>()
        .map_err(|_| malformed("bad request target"))?;
    *request.version_mut() = if parsed.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let headers = request.headers_mut();
    headers.reserve(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| malformed("bad header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| malformed("bad header value"))?;
        headers.append(name, value);
    }
    Ok(Some((request, len)))
}

/// What a valid upgrade request asks for; the application decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeOffer {
    /// `Sec-WebSocket-Key`.
    pub key: HeaderValue,
    /// `Origin`, if sent (browsers always send it): check it against an allow-list
    /// to stop Cross-Site WebSocket Hijacking.
    pub origin: Option<String>,
    /// Offered subprotocols, in the client's order of preference.
    pub protocols: Vec<String>,
    /// Raw `Sec-WebSocket-Extensions` values joined with commas.
    pub extensions: Option<String>,
}

/// Checks a request against RFC 6455 §4.2.1: GET, HTTP/1.1 or later, `Host`,
/// `Upgrade: websocket`, `Connection: upgrade`, a 16-byte base64 key, version 13.
pub fn validate_request<B>(request: &Request<B>) -> Result<UpgradeOffer, HandshakeError> {
    if request.method() != Method::GET {
        return Err(HandshakeError::NotGet(request.method().to_string()));
    }
    if request.version() < Version::HTTP_11 {
        return Err(HandshakeError::HttpVersion);
    }
    let headers = request.headers();
    // HTTP/2+ carry the authority in the URI instead of Host.
    if !headers.contains_key(header::HOST) && request.version() == Version::HTTP_11 {
        return Err(HandshakeError::MissingHost);
    }
    if !all_values(headers, header::UPGRADE).any(|v| has_token(v, "websocket")) {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !all_values(headers, header::CONNECTION).any(|v| has_token(v, "upgrade")) {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let version = headers.get(header::SEC_WEBSOCKET_VERSION);
    if version.map(|v| v.as_bytes()) != Some(WEBSOCKET_VERSION.as_bytes()) {
        return Err(HandshakeError::UnsupportedVersion(
            version.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        ));
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) if is_valid_key(key.as_bytes()) => key.clone(),
        _ => return Err(HandshakeError::InvalidKey),
    };
    Ok(offer(headers, key))
}

/// What `headers` offer beside the key: origin, subprotocols, extensions.
pub(super) fn offer(headers: &HeaderMap, key: HeaderValue) -> UpgradeOffer {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let protocols = joined(headers, header::SEC_WEBSOCKET_PROTOCOL)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|p| is_token(p))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let extensions = joined(headers, header::SEC_WEBSOCKET_EXTENSIONS);
    UpgradeOffer {
        key,
        origin,
        protocols,
        extensions,
    }
}

fn all_values(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &[u8]> {
    headers.get_all(name).into_iter().map(|v| v.as_bytes())
}

fn joined(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn is_valid_key(key: &[u8]) -> bool {
    use base64::Engine as _;
    // RFC 6455 §4.1: a base64-encoded 16-byte value, so always 24 characters.
    key.len() == 24
        && matches!(base64::engine::general_purpose::STANDARD.decode(key), Ok(raw) if raw.len() == 16)
}

/// Builds the `101 Switching Protocols` answer to `offer`, with `protocol` (which
/// must be one the client offered) and permessage-deflate if `deflate` allows.
/// Returns the response and the agreed compression parameters.
pub fn accept_response(
    offer: &UpgradeOffer,
    protocol: Option<&str>,
    deflate: &DeflateConfig,
) -> (Response<()>, Option<Negotiated>) {
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            accept_key(offer.key.as_bytes()),
        );
    answer(response, offer, protocol, deflate)
}

/// `response` with the subprotocol chosen (if offered) and the extensions
/// agreed, and the compression parameters agreed.
pub(super) fn answer(
    mut response: http::response::Builder,
    offer: &UpgradeOffer,
    protocol: Option<&str>,
    deflate: &DeflateConfig,
) -> (Response<()>, Option<Negotiated>) {
    if let Some(protocol) = protocol.filter(|p| offer.protocols.iter().any(|o| o == p)) {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    let negotiated = offer
        .extensions
        .as_deref()
        .and_then(|ext| server_negotiate(deflate, ext));
    if let Some((_, answer)) = &negotiated {
        response = response.header(header::SEC_WEBSOCKET_EXTENSIONS, answer.as_str());
    }
    let response = response
        .body(())
        .expect("static header names and valid values");
    (response, negotiated.map(|(n, _)| n))
}

/// The error answer for a failed handshake: its status, `Sec-WebSocket-Version: 13`
/// for a version mismatch (RFC 6455 §4.4), and the reason as a plain-text body.
pub fn reject_response(error: &HandshakeError) -> Response<String> {
    let status = error.status().unwrap_or(400);
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONNECTION, "close");
    if matches!(error, HandshakeError::UnsupportedVersion(_)) {
        response = response.header(header::SEC_WEBSOCKET_VERSION, WEBSOCKET_VERSION);
    }
    if matches!(error, HandshakeError::NotGet(_)) {
        response = response.header(header::ALLOW, "GET");
    }
    let body = match error {
        HandshakeError::Refused { reason, .. } => format!("{reason}\n"),
        other => format!("{other}\n"),
    };
    response.body(body).expect("valid status and headers")
}

/// Serialises a response head, and `body` (for rejections), for a raw socket.
pub fn write_response<B>(response: &Response<B>, body: &[u8], out: &mut Vec<u8>) {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(bytes: &[u8]) -> Request<()> {
        parse_request(bytes, 16 << 10).unwrap().unwrap().0
    }

    fn with_header(name: &str, value: Option<&str>) -> Vec<u8> {
        let text = std::str::from_utf8(RFC_REQUEST).unwrap();
        let mut lines: Vec<String> = text
            .split("\r\n")
            .filter(|l| {
                !l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .map(str::to_owned)
            .collect();
        lines.truncate(lines.len() - 2);
        if let Some(value) = value {
            lines.push(format!("{name}: {value}"));
        }
        format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
    }

    #[test]
    fn accepts_the_rfc_example_request() {
        let (request, len) = parse_request(RFC_REQUEST, 16 << 10).unwrap().unwrap();
        assert_eq!(len, RFC_REQUEST.len());
        let offer = validate_request(&request).unwrap();
        assert_eq!(offer.origin.as_deref(), Some("http://example.com"));
        assert_eq!(offer.protocols, ["chat", "superchat"]);
        let (response, deflate) = accept_response(&offer, Some("chat"), &DeflateConfig::default());
        assert_eq!(response.status(), 101);
        assert_eq!(
            response.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
        assert!(deflate.is_none());
        let mut bytes = Vec::new();
        write_response(&response, b"", &mut bytes);
        assert!(bytes.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(bytes.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn waits_for_the_end_of_the_head() {
        for cut in 0..RFC_REQUEST.len() {
            assert!(
                matches!(parse_request(&RFC_REQUEST[..cut], 16 << 10), Ok(None)),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn reports_bytes_after_the_head() {
        let mut bytes = RFC_REQUEST.to_vec();
        bytes.extend_from_slice(b"\x81\x80");
        assert_eq!(
            parse_request(&bytes, 16 << 10).unwrap().unwrap().1,
            RFC_REQUEST.len()
        );
    }

    #[test]
    fn matches_header_tokens_ignoring_case() {
        let bytes = with_header("Connection", Some("keep-alive, UPGRADE"));
        let bytes = String::from_utf8(bytes)
            .unwrap()
            .replace("Upgrade: websocket", "upgrade: WebSocket");
        assert!(validate_request(&parse(bytes.as_bytes())).is_ok());
    }

    #[test]
    fn rejects_requests_missing_required_headers() {
        let cases = [
            ("Sec-WebSocket-Key", None, HandshakeError::InvalidKey, 400),
            (
                "Sec-WebSocket-Key",
                Some("short"),
                HandshakeError::InvalidKey,
                400,
            ),
            (
                "Upgrade",
                Some("h2c"),
                HandshakeError::NotWebSocketUpgrade,
                400,
            ),
            (
                "Connection",
                Some("keep-alive"),
                HandshakeError::MissingConnectionUpgrade,
                400,
            ),
            ("Host", None, HandshakeError::MissingHost, 400),
            (
                "Sec-WebSocket-Version",
                Some("8"),
                HandshakeError::UnsupportedVersion(Some("8".into())),
                426,
            ),
            (
                "Sec-WebSocket-Version",
                None,
                HandshakeError::UnsupportedVersion(None),
                426,
            ),
        ];
        for (name, value, error, status) in cases {
            let err = validate_request(&parse(&with_header(name, value))).unwrap_err();
            assert_eq!(err, error, "{name}: {value:?}");
            assert_eq!(err.status(), Some(status));
        }
    }

    #[test]
    fn answers_wrong_version_with_426_and_the_supported_version() {
        let response = reject_response(&HandshakeError::UnsupportedVersion(Some("8".into())));
        assert_eq!(response.status(), 426);
        assert_eq!(response.headers()["sec-websocket-version"], "13");
    }

    #[test]
    fn rejects_other_methods_and_http_1_0() {
        let post = String::from_utf8(RFC_REQUEST.to_vec())
            .unwrap()
            .replacen("GET", "POST", 1);
        assert_eq!(
            validate_request(&parse(post.as_bytes()))
                .unwrap_err()
                .status(),
            Some(405)
        );
        let old = String::from_utf8(RFC_REQUEST.to_vec())
            .unwrap()
            .replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert_eq!(
            validate_request(&parse(old.as_bytes())),
            Err(HandshakeError::HttpVersion)
        );
    }

    #[test]
    fn rejects_oversized_heads_with_431() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(20_000));
        let err = parse_request(big.as_bytes(), 16 << 10).unwrap_err();
        assert_eq!(err.status(), Some(431));
        let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
        let err = parse_request(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), 16 << 10)
            .unwrap_err();
        assert_eq!(err.status(), Some(431));
    }

    #[test]
    fn rejects_garbage_with_400() {
        let err = parse_request(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            16 << 10,
        )
        .unwrap_err();
        assert_eq!(err.status(), Some(400));
    }

    #[test]
    fn rejects_a_target_http_cannot_hold_with_400_and_keeps_repeated_headers() {
        // httparse takes any visible characters as the target; `http::Uri`
        // does not take an unclosed IPv6 host.
        let head = b"GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n";
        let err = parse_request(head, 16 << 10).unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert!(err.to_string().contains("request target"), "{err}");
        let head = b"GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
        let (request, len) = parse_request(head, 16 << 10).unwrap().unwrap();
        assert_eq!(len, head.len());
        let values: Vec<_> = request.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"], "repeated headers are kept in order");
    }

    #[test]
    fn ignores_a_subprotocol_the_client_did_not_offer() {
        let offer = validate_request(&parse(RFC_REQUEST)).unwrap();
        let (response, _) = accept_response(&offer, Some("mqtt"), &DeflateConfig::default());
        assert!(response.headers().get("sec-websocket-protocol").is_none());
    }

    #[test]
    fn negotiates_deflate_from_joined_extension_headers() {
        let bytes = with_header(
            "Sec-WebSocket-Extensions",
            Some("permessage-deflate; client_max_window_bits"),
        );
        let offer = validate_request(&parse(&bytes)).unwrap();
        let (response, negotiated) = accept_response(&offer, None, &DeflateConfig::default());
        assert_eq!(
            response.headers()["sec-websocket-extensions"],
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(negotiated.unwrap().inflate_window_bits, 15);
    }
}

//! Client side: build the upgrade request, validate the server's answer.

use base64::Engine as _;
use http::{header, HeaderMap, Response, StatusCode, Version};

use super::headers::has_token;
use super::{accept_key, WEBSOCKET_VERSION};
use crate::config::MAX_HEADERS;
use crate::deflate::{client_accept, client_offer, DeflateConfig, Negotiated};
use crate::error::HandshakeError;

/// A fresh `Sec-WebSocket-Key` from 16 random bytes the caller supplies (the
/// protocol crate has no randomness of its own).
pub fn generate_key(nonce: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

/// What a client asks for in its opening handshake.
#[derive(Debug, Clone, Default)]
pub struct ClientRequest {
    /// `Host` value: host, and `:port` when not the scheme's default.
    pub host: String,
    /// Request target: path and query, e.g. `/chat?room=1`.
    pub path: String,
    /// `Sec-WebSocket-Key`, from [`generate_key`].
    pub key: String,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Extra headers (`Origin`, `Authorization`, cookies).
    pub headers: HeaderMap,
    /// Compression to offer.
    pub deflate: DeflateConfig,
}

/// Writes the request head for `request`.
pub fn build_request(request: &ClientRequest, out: &mut Vec<u8>) {
    let path = if request.path.is_empty() {
        "/"
    } else {
        &request.path
    };
    out.extend_from_slice(format!("GET {path} HTTP/1.1\r\n").as_bytes());
    let mut line = |name: &str, value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    line("Host", request.host.as_bytes());
    line("Upgrade", b"websocket");
    line("Connection", b"Upgrade");
    line("Sec-WebSocket-Key", request.key.as_bytes());
    line("Sec-WebSocket-Version", WEBSOCKET_VERSION.as_bytes());
    if !request.protocols.is_empty() {
        line(
            "Sec-WebSocket-Protocol",
            request.protocols.join(", ").as_bytes(),
        );
    }
    if let Some(offer) = client_offer(&request.deflate) {
        line("Sec-WebSocket-Extensions", offer.as_bytes());
    }
    for (name, value) in &request.headers {
        line(name.as_str(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the server's response head from the front of `buf`; `Ok(None)` until it
/// is complete. Also returns the head's length.
pub fn parse_response(
    buf: &[u8],
    max_header_bytes: usize,
) -> Result<Option<(Response<()>, usize)>, HandshakeError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_header_bytes => len,
        Ok(httparse::Status::Partial) if buf.len() < max_header_bytes => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::HeadersTooLarge {
                max: max_header_bytes,
            })
        }
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    let mut response = Response::builder()
        .status(parsed.code.unwrap_or(0))
        .version(if parsed.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        });
    for h in parsed.headers.iter() {
        response = response.header(h.name, h.value);
    }
    let response = response
        .body(())
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    Ok(Some((response, len)))
}

/// What the server agreed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAccepted {
    /// The subprotocol the server selected, one of those offered.
    pub protocol: Option<String>,
    /// Compression parameters, if the server accepted permessage-deflate.
    pub deflate: Option<Negotiated>,
}

/// Checks the server's response against RFC 6455 §4.1: status 101, `Upgrade`,
/// `Connection`, the accept hash, and only offered subprotocols and extensions.
pub fn validate_response<B>(
    response: &Response<B>,
    request: &ClientRequest,
) -> Result<ClientAccepted, HandshakeError> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::UnexpectedStatus(response.status().as_u16()));
    }
    let headers = response.headers();
    let token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| has_token(v.as_bytes(), token))
    };
    if !token(header::UPGRADE, "websocket") {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !token(header::CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let expected = accept_key(request.key.as_bytes());
    if headers
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(|v| v.as_bytes())
        != Some(expected.as_bytes())
    {
        return Err(HandshakeError::BadAccept);
    }
    agreed(headers, request)
}

/// What the server's answer selected, checked to be among what `request`
/// offered: the subprotocol and the compression parameters.
pub(super) fn agreed(
    headers: &HeaderMap,
    request: &ClientRequest,
) -> Result<ClientAccepted, HandshakeError> {
    let protocol = match headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        None => None,
        Some(value) => {
            let value = value.to_str().unwrap_or_default().trim().to_owned();
            if !request.protocols.contains(&value) {
                return Err(HandshakeError::UnexpectedProtocol(value));
            }
            Some(value)
        }
    };
    let extensions: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let deflate = match extensions.as_slice() {
        [] => None,
        values => Some(client_accept(&request.deflate, &values.join(", "))?),
    };
    Ok(ClientAccepted { protocol, deflate })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ClientRequest {
        ClientRequest {
            host: "server.example.com".into(),
            path: "/chat".into(),
            key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
            protocols: vec!["chat".into()],
            headers: HeaderMap::new(),
            deflate: DeflateConfig::default(),
        }
    }

    fn response(extra: &str) -> Response<()> {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
        );
        parse_response(head.as_bytes(), 16 << 10)
            .unwrap()
            .unwrap()
            .0
    }

    #[test]
    fn builds_a_valid_request() {
        let mut out = Vec::new();
        build_request(&request(), &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with("GET /chat HTTP/1.1\r\nHost: server.example.com\r\n"),
            "{text}"
        );
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(text
            .contains("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits\r\n"));
        // Our own server-side validation accepts what the client side builds.
        let (parsed, _) = super::super::parse_request(&out, 16 << 10)
            .unwrap()
            .unwrap();
        assert!(super::super::validate_request(&parsed).is_ok());
    }

    #[test]
    fn accepts_the_rfc_response() {
        let accepted =
            validate_response(&response("Sec-WebSocket-Protocol: chat\r\n"), &request()).unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("chat"));
        assert_eq!(accepted.deflate, None);
    }

    #[test]
    fn rejects_a_wrong_accept_hash() {
        let head =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n";
        let response = parse_response(head.as_bytes(), 1024).unwrap().unwrap().0;
        assert_eq!(
            validate_response(&response, &request()),
            Err(HandshakeError::BadAccept)
        );
    }

    #[test]
    fn rejects_non_101_and_unoffered_choices() {
        let head = "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n";
        let forbidden = parse_response(head.as_bytes(), 1024).unwrap().unwrap().0;
        assert_eq!(
            validate_response(&forbidden, &request()),
            Err(HandshakeError::UnexpectedStatus(403))
        );
        assert!(matches!(
            validate_response(&response("Sec-WebSocket-Protocol: mqtt\r\n"), &request()),
            Err(HandshakeError::UnexpectedProtocol(_))
        ));
        assert!(matches!(
            validate_response(
                &response("Sec-WebSocket-Extensions: x-other\r\n"),
                &request()
            ),
            Err(HandshakeError::UnexpectedExtension(_))
        ));
    }

    #[test]
    fn accepts_negotiated_compression() {
        let accepted = validate_response(
            &response(
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
            ),
            &request(),
        )
        .unwrap();
        assert!(accepted.deflate.unwrap().inflate_no_context_takeover);
    }
}

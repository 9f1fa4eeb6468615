//! The opening handshake (RFC 6455 §4) for both roles, and its HTTP/2 form,
//! the extended CONNECT of RFC 8441 (both roles).
//!
//! Requests and responses are `http` types, so the same validation serves a raw
//! socket (parsed here with httparse) and an upgrade inside a hyper/axum handler.

mod client;
mod connect;
pub mod headers;
mod server;

pub use client::{
    build_request, generate_key, parse_response, validate_response, ClientAccepted, ClientRequest,
};
pub use connect::{
    accept_connect_response, build_connect, validate_connect, validate_connect_response,
    ConnectOffer,
};
pub use server::{
    accept_response, parse_request, reject_response, validate_request, write_response, UpgradeOffer,
};

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// RFC 6455 §1.3 (the last characters are the letters x, capital O, o). appended to the client's key before hashing.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The only protocol version defined (RFC 6455 §4.1).
pub const WEBSOCKET_VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_the_rfc_accept_example() {
        // RFC 6455 §1.3 (the last characters are the letters x, capital O, o).
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}

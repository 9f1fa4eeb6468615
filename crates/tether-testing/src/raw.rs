//! A WebSocket opened by hand: the handshake written byte for byte, the
//! socket left as it is after the server's `101`, for tests that send what
//! no client library would.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The RFC 6455 §1.3 sample key.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Opens a WebSocket at `path` with the extra `headers` (each line ending in
/// CRLF) and reads the answer's head, which must be `101`; returns the
/// socket, positioned at the first frame.
pub async fn raw_websocket(addr: SocketAddr, path: &str, headers: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("the server accepts");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    tcp.write_all(request.as_bytes())
        .await
        .expect("the handshake is written");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.expect("the answer's head"));
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

//! One HTTP/1.1 request, on a connection of its own, written byte for byte
//! as given (no client library between the test and the server).

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request with exactly the extra `headers` lines given (each ending in
/// CRLF; no Content-Type unless there is one): its status and body text.
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("the server accepts");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes())
        .await
        .expect("the request is written");
    let mut response = String::new();
    tcp.read_to_string(&mut response)
        .await
        .expect("the answer is read");
    let status = response[9..12].parse().expect("a status");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// A JSON request (`Content-Type: application/json` and `headers`): its
/// status and body as JSON (`Null` when it is not).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, Value) {
    let head = format!("Content-Type: application/json\r\n{headers}");
    let (status, body) = http_raw(addr, method, path, body, &head).await;
    (
        status,
        serde_json::from_str(body.trim()).unwrap_or(Value::Null),
    )
}

//! `tether serve` over HTTP/2 (RFC 8441): the tether client's WebSockets as
//! streams of one connection, over TLS and h2c; malformed extended CONNECTs
//! answered with their statuses; reset and CONTINUATION floods and
//! oversized header lists costing only their own stream or connection
//! while other clients carry on.

mod common;

use common::next_json;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tether::{ClientBuilder, Http2Connection, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Socket = WebSocket<tether::MaybeTlsStream>;

/// Sends `command` and returns the reply with its id, skipping pushes.
async fn call(ws: &mut Socket, command: Value) -> Value {
    let id = command["id"].clone();
    ws.send(command.to_string()).await.unwrap();
    loop {
        let reply = next_json(ws).await;
        if reply["id"] == id {
            return reply;
        }
    }
}

/// Publishes `data` to `channel` from `ws`, subscribed to it, and waits for
/// both the reply and the publication's coming back, in either order.
async fn publish_and_receive(ws: &mut Socket, id: u64, channel: &str, data: Value) {
    let command = serde_json::json!({"id": id, "op": "publish", "channel": channel, "data": data});
    ws.send(command.to_string()).await.unwrap();
    let (mut replied, mut received) = (false, false);
    while !(replied && received) {
        let message = next_json(ws).await;
        if message["id"] == id {
            assert!(message.get("error").is_none(), "{message}");
            replied = true;
        } else if message["push"] == "publication" && message["data"] == data {
            received = true;
        }
    }
}

/// The next publication pushed on `ws`.
async fn publication(ws: &mut Socket) -> Value {
    loop {
        let push = next_json(ws).await;
        if push["push"] == "publication" {
            return push;
        }
    }
}

async fn h2c_server() -> (common::Child, u16) {
    common::spawn(&["serve", "--log", "warn", "--h2c", "true"], Stdio::null()).await
}

/// The value of the first line of `/metrics` that starts with `prefix`.
async fn metric(port: u16, prefix: &str) -> f64 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (_, text) = tether_testing::http::http_raw(addr, "GET", "/metrics", "", "").await;
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Ten WebSockets on one connection speak the server's protocol: each
/// subscribes, one publishes, all receive; one closes and the others go on.
async fn ten_clients_on_one_connection(url: &str, builder: impl Fn() -> ClientBuilder) {
    let connection = builder().open_http2().await.unwrap();
    let mut sockets = Vec::new();
    for id in 0..10 {
        let (mut ws, response) = builder().connect_over(&connection).await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let reply = call(
            &mut ws,
            serde_json::json!({"id": 1, "op": "subscribe", "channel": "h2"}),
        )
        .await;
        assert!(reply.get("error").is_none(), "{id}: {reply}");
        sockets.push(ws);
    }
    publish_and_receive(&mut sockets[0], 2, "h2", "to ten".into()).await;
    for ws in &mut sockets[1..] {
        assert_eq!(publication(ws).await["data"], "to ten");
    }
    let mut gone = sockets.remove(4);
    gone.close(None).await.unwrap();
    publish_and_receive(&mut sockets[0], 3, "h2", "to nine".into()).await;
    for ws in &mut sockets[1..] {
        assert_eq!(publication(ws).await["data"], "to nine");
    }
    assert!(!connection.is_closed());
}

#[tokio::test]
async fn the_tether_client_runs_ten_websockets_on_one_http2_connection_over_tls_and_h2c() {
    let (_plain, port) = h2c_server().await;
    let url = format!("ws://127.0.0.1:{port}/connection/websocket");
    ten_clients_on_one_connection(&url, || ClientBuilder::new(&url)).await;
    assert_eq!(
        metric(port, r#"tether_websocket_upgrades_total{http="2"}"#).await,
        10.0
    );

    let certificate = common::TestCertificate::new();
    let (_tls, port) = common::serve_tls(&certificate, &[]).await;
    let trust = certificate.trust();
    let url = format!("wss://localhost:{port}/connection/websocket");
    ten_clients_on_one_connection(&url, || ClientBuilder::new(&url).tls_config(trust.clone()))
        .await;
    // One more, with `http2(true)`: a connection of its own.
    let (mut ws, response) = ClientBuilder::new(&url)
        .tls_config(trust.clone())
        .http2(true)
        .connect()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let reply = call(&mut ws, serde_json::json!({"id": 9, "op": "ping"})).await;
    assert_eq!(reply["id"], 9);
}

/// A bystander: a WebSocket on its own HTTP/2 connection, subscribed.
async fn bystander(port: u16) -> (Http2Connection, Socket) {
    let url = format!("ws://127.0.0.1:{port}/connection/websocket");
    let connection = ClientBuilder::new(&url).open_http2().await.unwrap();
    let (mut ws, _) = ClientBuilder::new(&url)
        .connect_over(&connection)
        .await
        .unwrap();
    call(
        &mut ws,
        serde_json::json!({"id": 1, "op": "subscribe", "channel": "calm"}),
    )
    .await;
    (connection, ws)
}

/// The bystander still gets what is published.
async fn still_served(ws: &mut Socket, n: u64) {
    publish_and_receive(ws, 100 + n, "calm", n.into()).await;
}

/// An HTTP/2 client of our own making (hyper's), h2c to `port`.
async fn raw_client(port: u16) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// The status of a CONNECT to the WebSocket route with `protocol` and
/// `headers`.
async fn connect_status(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    port: u16,
    protocol: Option<&'static str>,
    headers: &[(&str, &str)],
) -> u16 {
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://127.0.0.1:{port}/connection/websocket"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Empty::new()).unwrap();
    if let Some(protocol) = protocol {
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static(protocol));
    }
    sender.ready().await.unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A CONNECT to send: what it is, its `:protocol`, its headers, the status
/// it must get.
type Case = (
    &'static str,
    Option<&'static str>,
    Vec<(&'static str, &'static str)>,
    u16,
);

#[tokio::test]
async fn malformed_extended_connects_and_oversized_headers_get_their_status() {
    let (_serve, port) = h2c_server().await;
    let (_keep, mut calm) = bystander(port).await;
    let mut sender = raw_client(port).await;
    let version = ("sec-websocket-version", "13");
    let cases: [Case; 5] = [
        // A plain CONNECT (no :protocol) has no :path, only an authority:
        // no route is there.
        ("no :protocol", None, vec![version], 404),
        (
            "unknown :protocol",
            Some("webtransport"),
            vec![version],
            501,
        ),
        (
            "a Sec-WebSocket-Key",
            Some("websocket"),
            vec![version, ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")],
            400,
        ),
        (
            "version 8",
            Some("websocket"),
            vec![("sec-websocket-version", "8")],
            426,
        ),
        (
            "the valid one, on the same connection",
            Some("websocket"),
            vec![version],
            200,
        ),
    ];
    for (what, protocol, headers, status) in cases {
        assert_eq!(
            connect_status(&mut sender, port, protocol, &headers).await,
            status,
            "{what}"
        );
    }
    // A header list past `http2.max_header_list_size` (16 KiB): 431 for
    // that request, and the connection serves the next one.
    let big = "x".repeat(20 << 10);
    let status = connect_status(
        &mut sender,
        port,
        Some("websocket"),
        &[version, ("x-padding", big.as_str())],
    )
    .await;
    assert_eq!(status, 431, "oversized header list");
    assert_eq!(
        connect_status(&mut sender, port, Some("websocket"), &[version]).await,
        200
    );
    assert!(
        metric(port, r#"tether_rejected_handshakes_total{reason="#).await >= 1.0,
        "rejections are counted"
    );
    still_served(&mut calm, 1).await;
}

/// An HTTP/2 frame: 9 bytes of header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The HPACK block of `GET http://127.0.0.1/healthz`: static-table
/// entries and literals without indexing (RFC 7541).
fn get_healthz() -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.extend_from_slice(&[0x04, 8]); // :path, literal value
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x01, 9]); // :authority, literal value
    block.extend_from_slice(b"127.0.0.1");
    block
}

/// A raw h2c connection that has sent its preface and SETTINGS.
async fn raw_connection(port: u16) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    tcp.write_all(&hello).await.unwrap();
    tcp
}

/// Reads frames until a GOAWAY, whose error code it returns, or the end of
/// the connection (`None`).
async fn goaway(tcp: &mut tokio::net::TcpStream) -> Option<u32> {
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if tcp.read_exact(&mut head).await.is_err() {
                return None;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            if tcp.read_exact(&mut payload).await.is_err() {
                return None;
            }
            if head[3] == GOAWAY {
                return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server ended the connection in time")
}

#[tokio::test]
async fn a_rapid_reset_flood_ends_only_its_own_connection() {
    let (_serve, port) = h2c_server().await;
    let (_keep, mut calm) = bystander(port).await;
    let mut tcp = raw_connection(port).await;
    // CVE-2023-44487: open and cancel streams as fast as TCP carries them.
    let mut flood = Vec::new();
    for n in 0..2000u32 {
        let stream = 2 * n + 1;
        flood.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &get_healthz(),
        ));
        flood.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes())); // CANCEL
    }
    // The server may close before it has read it all.
    let _ = tcp.write_all(&flood).await;
    assert_eq!(goaway(&mut tcp).await, Some(ENHANCE_YOUR_CALM));
    let counted = r#"tether_http2_errors_total{reason="ENHANCE_YOUR_CALM"}"#;
    tether_testing::eventually("the flood counted", Duration::from_secs(5), || async {
        metric(port, counted).await >= 1.0
    })
    .await;
    still_served(&mut calm, 2).await;
}

#[tokio::test]
async fn a_continuation_flood_ends_only_its_own_connection() {
    let (_serve, port) = h2c_server().await;
    let (_keep, mut calm) = bystander(port).await;
    let mut tcp = raw_connection(port).await;
    // One header block that never ends: HEADERS without END_HEADERS, then
    // CONTINUATION frames of literal headers, 40 MB if the server took them.
    let mut flood = frame(HEADERS, END_STREAM, 1, &get_healthz());
    let mut field = vec![0x00, 5]; // literal without indexing, new name
    field.extend_from_slice(b"x-pad");
    field.extend_from_slice(&[0x7f, 0x81, 0x1f]); // value length 127 + 4001 = 4128
    field.extend(std::iter::repeat_n(b'y', 4128));
    let continuation = frame(CONTINUATION, 0, 1, &field);
    let mut sent = 0;
    let write = async {
        tcp.write_all(&flood).await?;
        for _ in 0..10_000 {
            tcp.write_all(&continuation).await?;
            sent += 1;
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), write).await;
    flood.clear();
    assert!(sent < 10_000, "the server read 40 MB of one header block");
    let code = goaway(&mut tcp).await;
    assert!(code.is_some_and(|code| code != 0), "{code:?}");
    tether_testing::eventually("the flood counted", Duration::from_secs(5), || async {
        metric(port, "tether_http2_errors_total{").await >= 1.0
    })
    .await;
    still_served(&mut calm, 3).await;
}

/// Whether the server closes `tcp` (end of stream or an error) within
/// `within`, reading and dropping whatever it sends first.
async fn closed_within(tcp: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let read = async {
        let mut scrap = [0u8; 1024];
        loop {
            match tcp.read(&mut scrap).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

#[tokio::test]
async fn a_preface_that_stalls_is_cut_off_at_the_handshake_timeout() {
    let (_serve, port) = common::spawn(
        &[
            "serve",
            "--log",
            "warn",
            "--h2c",
            "true",
            "--websocket.handshake-timeout",
            "1s",
        ],
        Stdio::null(),
    )
    .await;
    let (_keep, mut calm) = bystander(port).await;
    // Half of HTTP/2's preface, then nothing: neither HTTP/1.1 nor HTTP/2 yet.
    let mut half = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut half, Duration::from_secs(5)).await,
        "half a preface held the connection"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "cut off before the timeout"
    );
    still_served(&mut calm, 4).await;
}

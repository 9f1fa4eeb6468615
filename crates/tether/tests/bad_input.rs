//! Hostile input against a server: each malformed handshake gets its HTTP status,
//! each malformed frame its close code, memory stays bounded, and a well-behaved
//! client on the same server never notices.

mod common;

use std::time::Duration;

use common::{echo_server, EchoServer};
use tether::{Config, Message};
use tether_testing::{deflate_bomb, rss_bytes_of_self};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HANDSHAKE: &str =
    "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// Sends a raw request and returns the response head and body.
async fn raw_request(server: &EchoServer, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
        .await
        .expect("server answered")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a WebSocket by hand, so the test can send any bytes afterwards.
async fn raw_socket(server: &EchoServer, extensions: Option<&str>) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut request = HANDSHAKE.to_owned();
    if let Some(ext) = extensions {
        request.push_str(&format!("Sec-WebSocket-Extensions: {ext}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    tether_testing::masked_frame(first, [0x11, 0x22, 0x33, 0x44], payload)
}

/// Reads the server's close frame and returns its code, then expects the server
/// to end TCP.
async fn close_code_after(mut tcp: TcpStream, bytes: &[u8]) -> u16 {
    let _ = tcp.write_all(bytes).await;
    let read = async {
        let mut head = [0u8; 2];
        loop {
            tcp.read_exact(&mut head).await.unwrap();
            let len = (head[1] & 0x7f) as usize;
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.unwrap();
            if head[0] & 0x0f == 0x8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
                return code;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("server closed in time")
}

#[tokio::test]
async fn answers_malformed_handshakes_with_their_status() {
    let server = echo_server(Config::default()).await;
    let no_key = HANDSHAKE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "") + "\r\n";
    assert!(raw_request(&server, no_key.as_bytes())
        .await
        .starts_with("HTTP/1.1 400"));

    let version = HANDSHAKE.replace("Version: 13", "Version: 8") + "\r\n";
    let answer = raw_request(&server, version.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{answer}"
    );

    let upgrade = HANDSHAKE.replace("Upgrade: websocket", "Upgrade: h2c") + "\r\n";
    assert!(raw_request(&server, upgrade.as_bytes())
        .await
        .starts_with("HTTP/1.1 400"));

    let post = HANDSHAKE.replacen("GET", "POST", 1) + "\r\n";
    assert!(raw_request(&server, post.as_bytes())
        .await
        .starts_with("HTTP/1.1 405"));

    let huge = format!("{HANDSHAKE}Cookie: {}\r\n\r\n", "c".repeat(64 << 10));
    assert!(raw_request(&server, huge.as_bytes())
        .await
        .starts_with("HTTP/1.1 431"));

    let garbage = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n";
    assert!(raw_request(&server, garbage)
        .await
        .starts_with("HTTP/1.1 400"));
}

#[tokio::test]
async fn cuts_off_a_slowloris_handshake() {
    let server = echo_server(Config::default().handshake_timeout(Duration::from_millis(500))).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let started = std::time::Instant::now();
    for byte in HANDSHAKE.bytes() {
        if tcp.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(5) {
            panic!("server kept a trickling handshake open for 5 s");
        }
    }
    let mut rest = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(result.is_ok());
}

#[tokio::test]
async fn closes_malformed_frames_with_their_code_and_spares_other_clients() {
    let config = Config::default()
        .max_message_size(1 << 20)
        .max_frame_size(1 << 20);
    let mut protocol = config.protocol.clone();
    protocol.max_fragments = 100;
    let server = echo_server(config.protocol(protocol)).await;
    let (mut good, _) = tether::connect(&server.url("/")).await.unwrap();

    let mut len_high_bit = vec![0x82, 0xff];
    len_high_bit.extend_from_slice(&(1u64 << 63).to_be_bytes());
    len_high_bit.extend_from_slice(&[1, 2, 3, 4]);
    let mut one_tebibyte = vec![0x82, 0xff];
    one_tebibyte.extend_from_slice(&(1u64 << 40).to_be_bytes());
    one_tebibyte.extend_from_slice(&[1, 2, 3, 4]);
    let mut fragment_flood = frame(0x02, b"");
    for _ in 0..200 {
        fragment_flood.extend(frame(0x00, b""));
    }
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("reserved opcode", frame(0x83, b""), 1002),
        ("reserved control opcode", frame(0x8b, b""), 1002),
        ("RSV1 without deflate", frame(0xc1, b"x"), 1002),
        ("RSV2", frame(0xa1, b"x"), 1002),
        ("RSV3", frame(0x91, b"x"), 1002),
        ("oversize ping", frame(0x89, &[0; 126]), 1002),
        ("fragmented ping", frame(0x09, b""), 1002),
        ("unmasked frame", b"\x81\x02hi".to_vec(), 1002),
        ("continuation first", frame(0x80, b"x"), 1002),
        ("invalid UTF-8", frame(0x81, b"caf\xc3\x28"), 1007),
        ("UTF-16 surrogate", frame(0x81, b"\xed\xa0\x80"), 1007),
        ("close code 1005", frame(0x88, &1005u16.to_be_bytes()), 1002),
        ("close code 999", frame(0x88, &999u16.to_be_bytes()), 1002),
        ("close with 1-byte payload", frame(0x88, b"\x03"), 1002),
        ("close reason not UTF-8", frame(0x88, b"\x03\xe8\xff"), 1007),
        ("length with high bit", len_high_bit, 1002),
        ("1 TiB frame", one_tebibyte, 1009),
        (
            "message over the limit",
            frame(0x82, &vec![0; (1 << 20) + 1]),
            1009,
        ),
        ("fragment flood", fragment_flood, 1009),
    ];
    for (name, bytes, expected) in cases {
        let tcp = raw_socket(&server, None).await;
        assert_eq!(close_code_after(tcp, &bytes).await, expected, "{name}");
        good.send(name).await.unwrap();
        assert_eq!(
            good.recv().await.unwrap(),
            Some(Message::text(name)),
            "good client after {name}"
        );
    }
}

#[tokio::test]
async fn stops_a_deflate_bomb_with_bounded_memory() {
    let server = echo_server(Config::default().max_message_size(1 << 20)).await;
    let (mut good, _) = tether::connect(&server.url("/")).await.unwrap();
    // 256 MiB of zeros in about 256 KiB on the wire.
    let bomb = deflate_bomb(256 << 20);
    assert!(bomb.len() < 512 << 10, "bomb is {} bytes", bomb.len());
    let before = rss_bytes_of_self();
    let tcp = raw_socket(&server, Some("permessage-deflate")).await;
    assert_eq!(close_code_after(tcp, &frame(0xc2, &bomb)).await, 1009);
    let grown = rss_bytes_of_self().saturating_sub(before);
    assert!(grown < 32 << 20, "RSS grew by {} MiB", grown >> 20);
    good.send("after the bomb").await.unwrap();
    assert_eq!(
        good.recv().await.unwrap(),
        Some(Message::text("after the bomb"))
    );
}

#[tokio::test]
async fn stops_a_deflate_bomb_split_over_fragments() {
    let server = echo_server(Config::default().max_message_size(1 << 20)).await;
    let bomb = deflate_bomb(64 << 20);
    let mut bytes = frame(0x42, &bomb[..bomb.len() / 2]);
    bytes.extend(frame(0x80, &bomb[bomb.len() / 2..]));
    let tcp = raw_socket(&server, Some("permessage-deflate")).await;
    assert_eq!(close_code_after(tcp, &bytes).await, 1009);
}

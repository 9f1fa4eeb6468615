//! Client and server against each other over real loopback sockets.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::echo_server;
use tether::{ClientBuilder, CloseCode, CloseFrame, Config, Message};

#[tokio::test]
async fn echoes_text_and_binary() {
    let server = echo_server(Config::default()).await;
    let (mut ws, response) = tether::connect(&server.url("/any/path?x=1")).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.send("hello").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text("hello")));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::binary(vec![0u8, 1, 2, 255]))
    );
    ws.send("").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text("")));
    ws.close(Some(CloseFrame::new(1000, "done"))).await.unwrap();
}

#[tokio::test]
async fn echoes_16_mib_with_and_without_compression() {
    for compress in [false, true] {
        let server = echo_server(Config::default().compression(compress)).await;
        let (mut ws, _) = ClientBuilder::new(server.url("/"))
            .compression(compress)
            .connect()
            .await
            .unwrap();
        assert_eq!(ws.is_compressed(), compress);
        let payload: Vec<u8> = (0..16u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        ws.send(Message::binary(payload.clone())).await.unwrap();
        match ws.recv().await.unwrap() {
            Some(Message::Binary(got)) => {
                assert!(got == payload, "16 MiB echo differs (compress {compress})")
            }
            other => panic!("expected binary, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn reassembles_fragmented_messages_with_pings_between() {
    let server = echo_server(Config::default()).await;
    let (mut ws, _) = tether::connect(&server.url("/")).await.unwrap();
    ws.feed_fragment("frag", true, false).await.unwrap();
    ws.feed(Message::Ping(Bytes::from_static(b"mid")))
        .await
        .unwrap();
    ws.feed_fragment("men", false, false).await.unwrap();
    ws.feed_fragment("ted", false, true).await.unwrap();
    ws.flush().await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::Pong(Bytes::from_static(b"mid")))
    );
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text("fragmented")));
}

#[tokio::test]
async fn compresses_a_stream_of_messages_with_context_takeover() {
    let server = echo_server(Config::default()).await;
    let (mut ws, _) = ClientBuilder::new(server.url("/"))
        .compression(true)
        .connect()
        .await
        .unwrap();
    assert!(ws.is_compressed());
    for i in 0..200 {
        let text = format!("{{\"seq\":{i},\"price\":{},\"symbol\":\"ABC\"}}", i * 7);
        ws.send(text.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::text(text)));
    }
}

#[tokio::test]
async fn negotiates_deflate_parameters_both_ways() {
    let server_deflate = tether::DeflateConfig::default()
        .client_max_window_bits(10)
        .server_no_context_takeover(true);
    let server = echo_server(Config::default().deflate(server_deflate)).await;
    let client_deflate = tether::DeflateConfig::default().server_max_window_bits(12);
    let (mut ws, response) = ClientBuilder::new(server.url("/"))
        .config(Config::default().deflate(client_deflate))
        .connect()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_no_context_takeover; client_max_window_bits=10"
    );
    let text = "window ".repeat(5000);
    ws.send(text.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text(text)));
}

#[tokio::test]
async fn answers_pings_with_the_same_payload() {
    let server = echo_server(Config::default()).await;
    let (mut ws, _) = tether::connect(&server.url("/")).await.unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::Pong(Bytes::from_static(b"are you there")))
    );
    // An unsolicited pong is accepted and ignored.
    ws.send(Message::Pong(Bytes::from_static(b"unsolicited")))
        .await
        .unwrap();
    ws.send("still open").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text("still open")));
}

#[tokio::test]
async fn echoes_the_close_code_and_ends_the_connection() {
    let server = echo_server(Config::default()).await;
    for code in [1000u16, 1001, 3000, 4999] {
        let (mut ws, _) = tether::connect(&server.url("/")).await.unwrap();
        ws.send(Message::Close(Some(CloseFrame::new(code, "bye"))))
            .await
            .unwrap();
        match ws.recv().await.unwrap() {
            Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode(code)),
            other => panic!("expected close, got {other:?}"),
        }
        assert_eq!(ws.recv().await.unwrap(), None);
        assert!(matches!(
            ws.send("late").await,
            Err(tether::Error::AlreadyClosed)
        ));
    }
}

#[tokio::test]
async fn refuses_a_foreign_origin_with_403() {
    let server = echo_server(Config::default()).await;
    let err = ClientBuilder::new(server.url("/"))
        .header("Origin", "http://evil.example")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tether::Error::Handshake(tether::HandshakeError::UnexpectedStatus(403))
        ),
        "{err}"
    );
    let ok = ClientBuilder::new(server.url("/"))
        .header("Origin", "http://allowed.example")
        .connect()
        .await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn selects_an_offered_subprotocol() {
    let server = echo_server(Config::default()).await;
    let (ws, _) = ClientBuilder::new(server.url("/"))
        .protocol("v2.other")
        .protocol("chat")
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("chat"));
    let (ws, _) = ClientBuilder::new(server.url("/"))
        .protocol("v2.other")
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.protocol(), None);
}

#[tokio::test]
async fn split_halves_send_and_receive_at_the_same_time() {
    let server = echo_server(Config::default()).await;
    let (ws, _) = tether::connect(&server.url("/")).await.unwrap();
    let (mut reader, writer) = ws.split();
    const COUNT: usize = 2000;
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            writer.send(format!("message {i}")).await.unwrap();
        }
        writer
    });
    for i in 0..COUNT {
        assert_eq!(
            reader.recv().await.unwrap(),
            Some(Message::text(format!("message {i}")))
        );
    }
    let writer = sender.await.unwrap();
    writer.close(None).await.unwrap();
    assert_eq!(reader.recv().await.unwrap(), Some(Message::Close(None)));
}

#[tokio::test]
async fn closes_with_1009_when_the_peer_sends_too_much() {
    let server = echo_server(Config::default().max_message_size(1024)).await;
    let (mut ws, _) = ClientBuilder::new(server.url("/"))
        .compression(false)
        .connect()
        .await
        .unwrap();
    ws.send(Message::binary(vec![0u8; 2048])).await.unwrap();
    match ws.recv().await.unwrap() {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::TOO_BIG),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

#[tokio::test]
async fn times_out_a_handshake_that_never_finishes() {
    let server = echo_server(Config::default().handshake_timeout(Duration::from_millis(300))).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "server kept a stalled handshake open");
}

/// A server that completes the handshake and then never answers anything.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tcp.read(&mut buf).await.unwrap();
        let request = String::from_utf8_lossy(&buf[..n]).into_owned();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = tether::proto::handshake::accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        tcp.write_all(response.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    (addr, task)
}

#[tokio::test]
async fn gives_up_on_a_peer_that_never_answers_the_close() {
    let (addr, server) = silent_server().await;
    let config = Config::default().close_timeout(Duration::from_millis(300));
    let (ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .config(config)
        .connect()
        .await
        .unwrap();
    let (mut reader, writer) = ws.split();
    writer.close(None).await.unwrap();
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), reader.recv())
        .await
        .expect("reader gave up in time");
    assert!(matches!(result, Err(ref e) if e.is_timeout()), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    server.abort();
}

#[tokio::test]
async fn a_cancelled_send_leaves_the_stream_intact() {
    use tether::{Role, WebSocket};
    let (a, b) = tokio::io::duplex(256);
    let config = Config::default();
    let mut server = WebSocket::from_raw(a, Role::Server, &config);
    let mut client = WebSocket::from_raw(b, Role::Client, &config);
    let big = "x".repeat(10_000);
    // Nobody reads yet: the send blocks after 256 bytes and is cancelled mid-frame.
    let cancelled = tokio::time::timeout(Duration::from_millis(50), server.send(big.clone())).await;
    assert!(cancelled.is_err());
    let reader = tokio::spawn(async move {
        let first = client.recv().await.unwrap();
        let second = client.recv().await.unwrap();
        (first, second)
    });
    server.send("after").await.unwrap();
    let (first, second) = reader.await.unwrap();
    assert_eq!(first, Some(Message::text(big)));
    assert_eq!(second, Some(Message::text("after")));
}

/// With `auto_close` off, a server still owes replies to the requests it read
/// before the client's close frame: they go out first, then its close answers
/// the client's and ends TCP.
#[tokio::test]
async fn sends_what_it_owes_before_answering_a_deferred_close() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let config = Config::default().auto_close(false);
        let ws = tether::accept_with(tcp, &config, |_, _| Ok(tether::Accept::default()))
            .await
            .unwrap();
        let (mut reader, writer) = ws.split();
        let mut owed = Vec::new();
        let close = loop {
            match reader.recv().await.unwrap() {
                Some(Message::Text(text)) => owed.push(format!("re: {text}")),
                Some(Message::Close(frame)) => break frame.expect("a close code"),
                other => panic!("unexpected {other:?}"),
            }
        };
        for reply in owed {
            writer.send(reply).await.unwrap();
        }
        writer
            .close(Some(CloseFrame::new(close.code.0, "")))
            .await
            .unwrap();
        assert_eq!(
            reader.recv().await.unwrap(),
            None,
            "nothing after the close"
        );
    });
    let (mut ws, _) = tether::connect(&format!("ws://{addr}/")).await.unwrap();
    // Both requests and the close leave in one write.
    ws.feed("one").await.unwrap();
    ws.feed("two").await.unwrap();
    ws.send(Message::Close(Some(CloseFrame::new(1000, "bye"))))
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.recv())
            .await
            .expect("in time")
            .unwrap()
        {
            Some(Message::Text(text)) => seen.push(text.to_string()),
            Some(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode(1000));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["re: one", "re: two"]);
    assert_eq!(ws.recv().await.unwrap(), None);
    server.await.unwrap();
}

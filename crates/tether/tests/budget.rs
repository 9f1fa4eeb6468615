//! The buffer budget shared by connections: a large message waits while
//! another holds the room it needs and goes on when that is given back; one
//! that can never fit is closed with 1013 after the wait; small messages
//! are served all along; the budget is back to zero once messages are done.

mod common;

use std::time::Duration;

use common::echo_server;
use tether::{Budget, Config, Message};
use tether_testing::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw WebSocket connection, after the handshake.
async fn raw(addr: std::net::SocketAddr) -> TcpStream {
    tether_testing::raw_websocket(addr, "/", "").await
}

/// The header of a masked binary frame of `len` bytes, with a zero mask key
/// (so the payload goes as it is).
fn header(len: usize) -> Vec<u8> {
    let mut out = vec![0x82, 0x80 | 127];
    out.extend((len as u64).to_be_bytes());
    out.extend([0; 4]);
    out
}

/// Reads one server frame: (opcode, payload length, first two payload bytes).
async fn read_frame(tcp: &mut TcpStream) -> (u8, usize, [u8; 2]) {
    let read = async {
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head).await.unwrap();
        let len = match head[1] & 0x7f {
            126 => tcp.read_u16().await.unwrap() as usize,
            127 => tcp.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        let first = [
            payload.first().copied().unwrap_or(0),
            payload.get(1).copied().unwrap_or(0),
        ];
        (head[0] & 0x0f, len, first)
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answered")
}

/// An echo server taking messages up to 4 MiB, sharing `budget`.
async fn large_message_server(budget: &Budget) -> common::EchoServer {
    let config = Config::default()
        .max_message_size(4 << 20)
        .max_frame_size(4 << 20)
        .budget(budget.clone());
    echo_server(config).await
}

async fn small_round_trip(url: &str) {
    let (mut ws, _) = tether::connect(url).await.unwrap();
    ws.send("small").await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(2), ws.recv()).await;
    assert_eq!(echoed.unwrap().unwrap(), Some(Message::text("small")));
}

#[tokio::test]
async fn a_large_message_waits_for_room_and_goes_on_when_it_frees() {
    const SIZE: usize = 2 << 20;
    let budget = Budget::new(3 << 20, Duration::from_secs(10));
    let server = large_message_server(&budget).await;
    // The first holds room for its whole frame, half of it sent.
    let mut first = raw(server.addr).await;
    first.write_all(&header(SIZE)).await.unwrap();
    first.write_all(&vec![1u8; SIZE / 2]).await.unwrap();
    let charged = || std::future::ready(budget.used() >= SIZE);
    eventually(
        "the first frame charged whole",
        Duration::from_secs(5),
        charged,
    )
    .await;
    // The second needs as much again: more than is left, so it waits.
    let mut second = raw(server.addr).await;
    second.write_all(&header(SIZE)).await.unwrap();
    let writing = tokio::spawn(async move {
        second.write_all(&vec![2u8; SIZE]).await.unwrap();
        second
    });
    let waiting = || std::future::ready(budget.waits() == 1);
    eventually("the second waits for room", Duration::from_secs(5), waiting).await;
    // Small messages go on meanwhile.
    small_round_trip(&server.url("/")).await;
    // The first finishes; its room goes to the second.
    first.write_all(&vec![1u8; SIZE / 2]).await.unwrap();
    assert_eq!(read_frame(&mut first).await, (0x2, SIZE, [1, 1]));
    let mut second = writing.await.unwrap();
    assert_eq!(read_frame(&mut second).await, (0x2, SIZE, [2, 2]));
    assert_eq!(budget.refusals(), 0);
    assert!(budget.peak() <= budget.limit());
    let returned = || std::future::ready(budget.used() == 0);
    eventually("all given back", Duration::from_secs(5), returned).await;
}

#[tokio::test]
async fn a_message_that_cannot_fit_is_closed_with_1013_after_the_wait() {
    let budget = Budget::new(1 << 20, Duration::from_millis(300));
    let server = large_message_server(&budget).await;
    let mut tcp = raw(server.addr).await;
    let started = std::time::Instant::now();
    tcp.write_all(&header(2 << 20)).await.unwrap();
    let _ = tcp.write_all(&[0u8; 64 << 10]).await;
    let (opcode, _, code) = read_frame(&mut tcp).await;
    assert_eq!((opcode, u16::from_be_bytes(code)), (0x8, 1013));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        (budget.waits(), budget.refusals(), budget.used()),
        (1, 1, 0)
    );
    small_round_trip(&server.url("/")).await;
}

#[tokio::test]
async fn a_compressed_message_is_inflated_only_as_far_as_its_room() {
    // Room for one 1 MiB message: a second bomb at once waits, then gets
    // its own 1009 once the first is done; the budget never goes over.
    let budget = Budget::new(1 << 20, Duration::from_secs(10));
    let server = echo_server(
        Config::default()
            .max_message_size(900 << 10)
            .budget(budget.clone()),
    )
    .await;
    let (mut good, _) = tether::connect(&server.url("/")).await.unwrap();
    let mut closes = Vec::new();
    let mut bombs = Vec::new();
    for _ in 0..4 {
        let deflate = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
        bombs.push(tether_testing::raw_websocket(server.addr, "/", deflate).await);
    }
    let zeros = tether_testing::deflate_bomb(64 << 20);
    for tcp in &mut bombs {
        let mut frame = vec![0xc2, 0x80 | 127];
        frame.extend((zeros.len() as u64).to_be_bytes());
        frame.extend([0; 4]);
        frame.extend_from_slice(&zeros);
        let _ = tcp.write_all(&frame).await;
    }
    for tcp in &mut bombs {
        let (opcode, _, code) = read_frame(tcp).await;
        closes.push((opcode, u16::from_be_bytes(code)));
    }
    assert_eq!(closes, vec![(0x8, 1009); 4]);
    assert!(budget.peak() <= budget.limit());
    good.send("still here").await.unwrap();
    assert_eq!(
        good.recv().await.unwrap(),
        Some(Message::text("still here"))
    );
}

//! `tether echo`: `/broadcast` sends every message to every client on it, the
//! sender included; every other path echoes to the sender only.

mod common;

use std::process::Stdio;
use std::time::Duration;

use tether::{MaybeTlsStream, Message, WebSocket};

async fn next_text(ws: &mut WebSocket<MaybeTlsStream>) -> String {
    let message = tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .expect("a message in time")
        .unwrap()
        .expect("connection open");
    match message {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Waits until every client is in the room. A client joins before it reads
/// anything, so once its own hello comes back it is in; once the last one's
/// hello reaches every client, no hello is left unread anywhere.
async fn join_all(room: &mut [&mut WebSocket<MaybeTlsStream>]) {
    let hello = |n: usize| format!("hello from {n}");
    for (n, ws) in room.iter_mut().enumerate() {
        ws.send(hello(n).as_str()).await.unwrap();
        while next_text(ws).await != hello(n) {}
    }
    // The last one has read its own already.
    let others = room.len() - 1;
    let last = hello(others);
    for ws in room.iter_mut().take(others) {
        while next_text(ws).await != last {}
    }
}

#[tokio::test]
async fn broadcast_reaches_every_client_on_the_path_and_echo_stays_private() {
    let (_server, port) = common::spawn(&["echo"], Stdio::null()).await;
    let mut room = Vec::new();
    for compress in [true, false, true] {
        let url = format!("ws://127.0.0.1:{port}/broadcast");
        let (ws, _) = tether::ClientBuilder::new(url)
            .compression(compress)
            .connect()
            .await
            .unwrap();
        room.push(ws);
    }
    let (mut echo, _) = tether::connect(&format!("ws://127.0.0.1:{port}/anything"))
        .await
        .unwrap();
    join_all(&mut room.iter_mut().collect::<Vec<_>>()).await;
    room[1].send("to everyone").await.unwrap();
    room[2].send("and again").await.unwrap();
    for ws in &mut room {
        // Per sender, order is kept; between senders it may interleave.
        let mut got = vec![next_text(ws).await, next_text(ws).await];
        got.sort();
        assert_eq!(got, ["and again", "to everyone"]);
    }
    echo.send("just me").await.unwrap();
    assert_eq!(next_text(&mut echo).await, "just me");
    for ws in &mut room {
        let nothing = tokio::time::timeout(Duration::from_millis(200), ws.recv()).await;
        assert!(
            nothing.is_err(),
            "echo traffic stays off the broadcast path"
        );
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_with_1008_and_the_others_get_everything() {
    let (_server, port) = common::spawn(&["echo"], Stdio::null()).await;
    let url = format!("ws://127.0.0.1:{port}/broadcast");
    // Uncompressed, so the bytes really pile up.
    let plain = || {
        tether::ClientBuilder::new(url.clone())
            .compression(false)
            .connect()
    };
    let (mut sender, _) = plain().await.unwrap();
    let (mut stalled, _) = plain().await.unwrap();
    join_all(&mut [&mut sender, &mut stalled]).await;
    // Far more than the room's 4096 messages and the socket buffers hold: the
    // stalled client falls behind; the sender reads its own copies as it goes.
    let payload = "x".repeat(4096);
    let total = 12_000;
    let (mut reader, writer) = sender.split();
    let (progress, mut seen) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut received = 0;
        while received < total {
            match tokio::time::timeout(Duration::from_secs(20), reader.recv()).await {
                Ok(Ok(Some(Message::Text(_)))) => received += 1,
                other => panic!("sender lost its copies after {received}: {other:?}"),
            }
            let _ = progress.send(received);
        }
        received
    });
    for sent in 0..total {
        // Keep the sender well within the room's bound: it must read its own
        // copies to count as a well-behaved client.
        seen.wait_for(|received| sent - received < 1000)
            .await
            .unwrap();
        writer.send(payload.as_str()).await.unwrap();
    }
    assert_eq!(
        reading.await.unwrap(),
        total,
        "a reading client loses nothing"
    );
    // Now the stalled client reads: what the socket held, then the close.
    let mut got = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.recv()).await {
            Ok(Ok(Some(Message::Text(_)))) => got += 1,
            Ok(Ok(Some(Message::Close(frame)))) => break frame,
            other => panic!("expected the close after {got} messages, got {other:?}"),
        }
    };
    assert!(got < total, "it fell behind");
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, tether::CloseCode::POLICY);
}

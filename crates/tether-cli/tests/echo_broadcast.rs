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
    // A client joins the room just after its handshake; give the last one a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
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

//! A service on the Rust client: follows `chat:lobby` (every message once, in
//! order, across reconnects) and greets it once connected.
//! `cargo run -p tether-client --example chat -- http://127.0.0.1:8080`

use serde_json::json;
use tether_client::{Client, ClientConfig, Event, SubscriptionEvent};

#[tokio::main]
async fn main() -> Result<(), tether_client::Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let client = Client::new(ClientConfig::new(url)); // .token(jwt) or .get_token(|| async { ... })
    let mut events = client.events();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Event::Reconnecting { attempt, delay } = event {
                eprintln!("reconnecting in {delay:?} (attempt {attempt})");
            }
        }
    });
    let mut lobby = client.subscribe("chat:lobby").await?;
    client.connected().await?;
    let ack = client
        .publish(
            "chat:lobby",
            &json!({"type": "message", "user": "bot", "text": "hello"}),
        )
        .await?;
    eprintln!("said hello at offset {}", ack.offset);
    while let Some(event) = lobby.next().await {
        match event {
            SubscriptionEvent::Publication(p) => println!("{} {}", p.offset, p.data),
            SubscriptionEvent::Unrecovered { .. } => {
                eprintln!("missed messages: reload from history")
            }
            SubscriptionEvent::Join { client, .. } => eprintln!("{client} joined"),
            _ => {}
        }
    }
    Ok(())
}

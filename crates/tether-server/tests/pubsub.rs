//! The server over real sockets: publications in order with their offsets,
//! fan-out, recovery from history, idempotent publishing, presence, history
//! by age, and the HTTP API's publish, broadcast and disconnect.

mod common;

use std::time::Duration;

use common::{http, start, Client};
use serde_json::json;
use tether::Message;
use tether_server::{NamespaceOptions, ServerConfig};
use tether_testing::{eventually, Conversation};

#[tokio::test]
async fn delivers_publications_with_increasing_offsets() {
    let server = start(ServerConfig::default()).await;
    let mut subscriber = Client::connect(&server).await;
    let mut publisher = Client::connect(&server).await;
    let reply = subscriber
        .call(json!({"op": "subscribe", "channel": "scores:match-42"}))
        .await;
    assert_eq!(reply["result"]["offset"], 0);
    for n in 1..=3 {
        let ack = publisher
            .call(json!({"op": "publish", "channel": "scores:match-42", "data": {"home": n}}))
            .await;
        assert_eq!(ack["result"]["offset"], n);
        let push = subscriber.publication().await;
        assert_eq!(
            push,
            json!({"push": "publication", "channel": "scores:match-42", "offset": n, "data": {"home": n}})
        );
    }
}

#[tokio::test]
async fn fans_out_to_500_subscribers_in_order() {
    let server = start(ServerConfig::default()).await;
    let mut subscribers = Vec::new();
    for n in 0..500 {
        // Half compressed, half plain: each kind shares one frame per publication.
        let mut client = Client::connect_with(&server, n % 2 == 0).await;
        client
            .call(json!({"op": "subscribe", "channel": "feed"}))
            .await;
        subscribers.push(client);
    }
    let mut publisher = Client::connect(&server).await;
    const COUNT: u64 = 20;
    for n in 1..=COUNT {
        publisher
            .call(json!({"op": "publish", "channel": "feed", "data": n}))
            .await;
    }
    let checks = subscribers.into_iter().map(|mut client| {
        tokio::spawn(async move {
            for n in 1..=COUNT {
                let push = client.publication().await;
                assert_eq!(
                    (push["offset"].as_u64(), push["data"].as_u64()),
                    (Some(n), Some(n))
                );
            }
        })
    });
    for check in checks {
        check.await.unwrap();
    }
}

#[tokio::test]
async fn recovers_exactly_the_missed_publications() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    let reply = client
        .call(json!({"op": "subscribe", "channel": "chat:lobby"}))
        .await;
    let epoch = reply["result"]["epoch"].as_str().unwrap().to_owned();
    let mut publisher = Client::connect(&server).await;
    for n in 1..=3 {
        publisher
            .call(json!({"op": "publish", "channel": "chat:lobby", "data": n}))
            .await;
    }
    for n in 1..=3 {
        assert_eq!(client.publication().await["offset"], n);
    }
    drop(client); // a lost connection
    for n in 4..=6 {
        publisher
            .call(json!({"op": "publish", "channel": "chat:lobby", "data": n}))
            .await;
    }
    let mut back = Client::connect(&server).await;
    let reply = back
        .call(json!({"op": "subscribe", "channel": "chat:lobby", "recover": {"offset": 3, "epoch": epoch}}))
        .await;
    assert_eq!(reply["result"]["recovered"], true);
    let offsets: Vec<u64> = reply["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [4, 5, 6]);
    publisher
        .call(json!({"op": "publish", "channel": "chat:lobby", "data": 7}))
        .await;
    assert_eq!(back.publication().await["offset"], 7);
}

#[tokio::test]
async fn says_not_recovered_when_history_no_longer_covers_the_gap() {
    let config = ServerConfig::default().channels(NamespaceOptions::default().history_size(2));
    let server = start(config).await;
    let mut publisher = Client::connect(&server).await;
    let first = publisher
        .call(json!({"op": "publish", "channel": "c", "data": 1}))
        .await;
    let epoch = first["result"]["epoch"].as_str().unwrap().to_owned();
    for n in 2..=6 {
        publisher
            .call(json!({"op": "publish", "channel": "c", "data": n}))
            .await;
    }
    let mut client = Client::connect(&server).await;
    let reply = client
        .call(json!({"op": "subscribe", "channel": "c", "recover": {"offset": 1, "epoch": epoch}}))
        .await;
    assert_eq!(reply["result"]["recovered"], false);
    assert_eq!(reply["result"]["offset"], 6);
    let mut other = Client::connect(&server).await;
    let reply = other
        .call(
            json!({"op": "subscribe", "channel": "c", "recover": {"offset": 6, "epoch": "stale"}}),
        )
        .await;
    assert_eq!(
        reply["result"]["recovered"], false,
        "a different epoch cannot be recovered"
    );
}

#[tokio::test]
async fn delivers_an_idempotent_publish_once() {
    let server = start(ServerConfig::default()).await;
    let mut subscriber = Client::connect(&server).await;
    subscriber
        .call(json!({"op": "subscribe", "channel": "orders"}))
        .await;
    let mut publisher = Client::connect(&server).await;
    let mut offsets = Vec::new();
    for _ in 0..3 {
        let ack = publisher
            .call(json!({"op": "publish", "channel": "orders", "data": {"id": 9}, "idempotency_key": "order-9"}))
            .await;
        offsets.push(ack["result"]["offset"].as_u64().unwrap());
    }
    assert_eq!(offsets, [1, 1, 1]);
    publisher
        .call(json!({"op": "publish", "channel": "orders", "data": "next"}))
        .await;
    assert_eq!(subscriber.publication().await["offset"], 1);
    assert_eq!(
        subscriber.publication().await["data"],
        "next",
        "the retries were not delivered"
    );
}

#[tokio::test]
async fn tracks_presence_with_join_and_leave() {
    let server = start(ServerConfig::default()).await;
    let mut alice = Client::connect(&server).await;
    alice
        .call(json!({"op": "subscribe", "channel": "room"}))
        .await;
    let mut bob = Client::connect(&server).await;
    bob.call(json!({"op": "subscribe", "channel": "room"}))
        .await;
    let join = alice.push().await;
    assert_eq!(join["push"], "join");
    let presence = alice
        .call(json!({"op": "presence", "channel": "room"}))
        .await;
    assert_eq!(presence["result"]["clients"].as_array().unwrap().len(), 2);
    drop(bob);
    let leave = alice.push().await;
    assert_eq!(
        (leave["push"].clone(), leave["client"].clone()),
        (json!("leave"), join["client"].clone())
    );
}

#[tokio::test]
async fn http_api_publish_reaches_websocket_subscribers() {
    let server = start(ServerConfig::default().api_key(Some("secret".into()))).await;
    let mut client = Client::connect(&server).await;
    client
        .call(json!({"op": "subscribe", "channel": "news"}))
        .await;
    let body = r#"{"channel":"news","data":{"headline":"tether ships"}}"#;
    let (status, _) = http(server.addr, "POST", "/api/publish", body, "").await;
    assert_eq!(status, 401, "the API key is required");
    let (status, reply) = http(
        server.addr,
        "POST",
        "/api/publish",
        body,
        "Authorization: apikey secret\r\n",
    )
    .await;
    assert_eq!((status, reply["offset"].clone()), (200, json!(1)));
    assert_eq!(
        client.publication().await["data"]["headline"],
        "tether ships"
    );
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/publish",
        "{oops",
        "Authorization: apikey secret\r\n",
    )
    .await;
    assert_eq!(status, 400);
    let (status, history) = http(
        server.addr,
        "GET",
        "/api/history/news",
        "",
        "Authorization: apikey secret\r\n",
    )
    .await;
    assert_eq!((status, history["offset"].clone()), (200, json!(1)));
    let (status, _) = http(server.addr, "GET", "/healthz", "", "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn api_broadcasts_and_disconnects_clients() {
    let server = start(ServerConfig::default()).await;
    let mut one = Client::connect(&server).await;
    let mut two = Client::connect(&server).await;
    one.call(json!({"op": "subscribe", "channel": "a"})).await;
    two.call(json!({"op": "subscribe", "channel": "b"})).await;
    let body = r#"{"channels":["a","b","bad name"],"data":{"alert":true}}"#;
    let (status, reply) = http(server.addr, "POST", "/api/broadcast", body, "").await;
    assert_eq!(status, 200);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(
        (results[0]["offset"].clone(), results[1]["offset"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(results[2]["error"]["code"], 102);
    assert_eq!(one.publication().await["data"]["alert"], true);
    assert_eq!(two.publication().await["data"]["alert"], true);

    let client = two.call(json!({"op": "connect"})).await["result"]["client"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/disconnect",
        &format!(r#"{{"client":"{client}"}}"#),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let mut code = None;
    while let Ok(Some(message)) = two.ws.recv().await {
        if let Message::Close(Some(frame)) = message {
            code = Some(frame.code.0);
        }
    }
    assert_eq!(code, Some(4501));
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/disconnect",
        r#"{"client":"c999999"}"#,
        "",
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn expires_history_by_age() {
    let options = NamespaceOptions::default().history_ttl(Some(Duration::from_millis(300)));
    let server = start(ServerConfig::default().namespace("live", options)).await;
    let mut publisher = Client::connect(&server).await;
    let ack = publisher
        .call(json!({"op": "publish", "channel": "live:feed", "data": 1}))
        .await;
    let epoch = ack["result"]["epoch"].clone();
    publisher
        .call(json!({"op": "publish", "channel": "live:feed", "data": 2}))
        .await;
    let mut fresh = Client::connect(&server).await;
    let reply = fresh
        .call(json!({"op": "subscribe", "channel": "live:feed", "recover": {"offset": 0, "epoch": epoch}}))
        .await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    assert_eq!(reply["result"]["publications"].as_array().unwrap().len(), 2);
    // Past the TTL the publications are gone, whenever the sweep runs.
    let addr = server.addr;
    let expired = || async move {
        let (_, page) = http(addr, "GET", "/api/history/live:feed", "", "").await;
        page["publications"] == json!([])
    };
    eventually("history expired", Duration::from_secs(5), expired).await;
    let history = publisher
        .call(json!({"op": "history", "channel": "live:feed"}))
        .await;
    assert_eq!(history["result"]["publications"], json!([]), "{history}");
    let mut late = Client::connect(&server).await;
    let reply = late
        .call(json!({"op": "subscribe", "channel": "live:feed", "recover": {"offset": 0, "epoch": epoch}}))
        .await;
    assert_eq!(
        reply["result"]["recovered"], false,
        "expired history no longer covers the gap: {reply}"
    );
    assert_eq!(reply["result"]["offset"], 2, "offsets go on");
}

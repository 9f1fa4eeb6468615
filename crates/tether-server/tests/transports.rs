//! The server's scenarios, each written once and run over WebSocket,
//! Server-Sent Events and long-polling: the same semantics on all three.

mod common;

use std::time::Duration;

use common::transports::{AnyClient, Opening, Transport};
use common::{hs256, http, now, start};
use serde_json::{json, Value};
use tether_server::{HttpConfig, NamespaceOptions, ServerConfig};
use tether_testing::Conversation;

on_every_transport!(
    fans_out_in_order_to_every_subscriber,
    recovers_exactly_the_missed_publications,
    says_not_recovered_when_history_is_exhausted_or_the_epoch_changed,
    tracks_presence_and_a_client_that_vanished,
    authenticates_with_jwt_and_channel_claims,
    refuses_a_foreign_origin_with_403,
    refuses_a_flood_with_109_then_disconnects_with_4502,
    delivers_an_idempotent_publish_once,
    cuts_off_a_slow_consumer_with_the_position_to_resume_from,
    keeps_a_slow_subscriber_with_the_newest_under_drop_oldest_and_latest_per_key,
    advises_a_jittered_reconnect_on_shutdown,
    delivers_what_the_http_api_publishes,
);

/// Sessions of the HTTP transports that vanish are over within a second.
fn quick_expiry() -> ServerConfig {
    ServerConfig::default()
        .http(HttpConfig::default().session_ttl(Duration::from_secs(1)))
        .heartbeat(Duration::from_millis(300), Duration::from_millis(300))
}

fn offsets(publications: &Value) -> Vec<u64> {
    publications
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect()
}

async fn fans_out_in_order_to_every_subscriber(transport: Transport) {
    let server = start(ServerConfig::default()).await;
    let mut subscribers = Vec::new();
    for _ in 0..10 {
        let mut client = AnyClient::open(&server, transport).await;
        let reply = client
            .call(json!({"op": "subscribe", "channel": "feed"}))
            .await;
        assert_eq!(reply["result"]["offset"], 0, "{reply}");
        subscribers.push(client);
    }
    let mut publisher = AnyClient::open(&server, transport).await;
    const COUNT: u64 = 30;
    for n in 1..=COUNT {
        let ack = publisher
            .call(json!({"op": "publish", "channel": "feed", "data": {"n": n}}))
            .await;
        assert_eq!(ack["result"]["offset"], n);
    }
    for mut client in subscribers {
        for n in 1..=COUNT {
            let push = client.publication().await;
            assert_eq!(
                push,
                json!({"push": "publication", "channel": "feed", "offset": n, "data": {"n": n}})
            );
        }
    }
}

async fn recovers_exactly_the_missed_publications(transport: Transport) {
    let server = start(ServerConfig::default()).await;
    let mut client = AnyClient::open(&server, transport).await;
    let reply = client
        .call(json!({"op": "subscribe", "channel": "chat:lobby"}))
        .await;
    let epoch = reply["result"]["epoch"].as_str().unwrap().to_owned();
    let mut publisher = AnyClient::open(&server, Transport::WebSocket).await;
    for n in 1..=3 {
        publisher
            .call(json!({"op": "publish", "channel": "chat:lobby", "data": n}))
            .await;
    }
    for n in 1..=3 {
        assert_eq!(client.publication().await["offset"], n);
    }
    client.vanish();
    for n in 4..=6 {
        publisher
            .call(json!({"op": "publish", "channel": "chat:lobby", "data": n}))
            .await;
    }
    let mut back = AnyClient::open(&server, transport).await;
    let reply = back
        .call(json!({"op": "subscribe", "channel": "chat:lobby", "recover": {"offset": 3, "epoch": epoch}}))
        .await;
    assert_eq!(reply["result"]["recovered"], true);
    assert_eq!(offsets(&reply["result"]["publications"]), [4, 5, 6]);
    publisher
        .call(json!({"op": "publish", "channel": "chat:lobby", "data": 7}))
        .await;
    assert_eq!(back.publication().await["offset"], 7);
}

async fn says_not_recovered_when_history_is_exhausted_or_the_epoch_changed(transport: Transport) {
    let config = ServerConfig::default().channels(NamespaceOptions::default().history_size(2));
    let server = start(config).await;
    let mut client = AnyClient::open(&server, transport).await;
    let first = client
        .call(json!({"op": "publish", "channel": "c", "data": 1}))
        .await;
    let epoch = first["result"]["epoch"].as_str().unwrap().to_owned();
    for n in 2..=6 {
        client
            .call(json!({"op": "publish", "channel": "c", "data": n}))
            .await;
    }
    let reply = client
        .call(json!({"op": "subscribe", "channel": "c", "recover": {"offset": 1, "epoch": epoch}}))
        .await;
    assert_eq!(reply["result"]["recovered"], false);
    assert_eq!(reply["result"]["offset"], 6);
    let mut other = AnyClient::open(&server, transport).await;
    let reply = other
        .call(
            json!({"op": "subscribe", "channel": "c", "recover": {"offset": 6, "epoch": "stale"}}),
        )
        .await;
    assert_eq!(reply["result"]["recovered"], false);
    assert_eq!(reply["result"]["epoch"], json!(epoch));
}

async fn tracks_presence_and_a_client_that_vanished(transport: Transport) {
    let server = start(quick_expiry()).await;
    let mut watcher = AnyClient::open(&server, transport).await;
    watcher
        .call(json!({"op": "subscribe", "channel": "room"}))
        .await;
    let mut other = AnyClient::open(&server, transport).await;
    other
        .call(json!({"op": "subscribe", "channel": "room"}))
        .await;
    let join = watcher.push().await;
    assert_eq!(join["push"], "join", "{join}");
    let joined = join["client"].clone();
    if let Some(client) = &other.client {
        assert_eq!(joined, json!(client));
    }
    let presence = watcher
        .call(json!({"op": "presence", "channel": "room"}))
        .await;
    assert_eq!(presence["result"]["clients"].as_array().unwrap().len(), 2);
    // Gone without a word: the socket dropped, or no more polls or stream.
    other.vanish();
    let started = std::time::Instant::now();
    let leave = watcher.push().await;
    assert_eq!(
        (&leave["push"], &leave["client"]),
        (&json!("leave"), &joined)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let presence = watcher
        .call(json!({"op": "presence", "channel": "room"}))
        .await;
    assert_eq!(presence["result"]["clients"].as_array().unwrap().len(), 1);
}

async fn authenticates_with_jwt_and_channel_claims(transport: Transport) {
    let auth = tether_server::auth::AuthConfig::default().hmac_secret("s3cret");
    let server = start(ServerConfig::default().auth(auth)).await;
    let mut client = AnyClient::open(&server, transport).await;
    let reply = client
        .call(json!({"op": "subscribe", "channel": "chat:lobby"}))
        .await;
    assert_eq!(
        reply["error"]["code"], 111,
        "anonymous access is off: {reply}"
    );
    let expired = hs256("s3cret", json!({"sub": "alice", "exp": now() - 3600}));
    let reply = client
        .call(json!({"op": "connect", "token": expired}))
        .await;
    assert_eq!(reply["error"]["code"], 111, "{reply}");
    let forged = hs256(
        "not-the-secret",
        json!({"sub": "alice", "exp": now() + 3600}),
    );
    let reply = client.call(json!({"op": "connect", "token": forged})).await;
    assert_eq!(reply["error"]["code"], 111, "{reply}");
    let token = hs256(
        "s3cret",
        json!({"sub": "alice", "exp": now() + 3600, "channels": ["chat:lobby"]}),
    );
    let reply = client.call(json!({"op": "connect", "token": token})).await;
    assert_eq!(reply["result"]["user"], "alice", "{reply}");
    let reply = client
        .call(json!({"op": "subscribe", "channel": "chat:lobby"}))
        .await;
    assert!(reply.get("result").is_some(), "{reply}");
    let reply = client
        .call(json!({"op": "subscribe", "channel": "chat:other"}))
        .await;
    assert_eq!(reply["error"]["code"], 103, "{reply}");
}

async fn refuses_a_foreign_origin_with_403(transport: Transport) {
    let config = ServerConfig::default().allowed_origins(vec!["http://app.example".into()]);
    let server = start(config).await;
    let evil = Opening {
        origin: Some("http://evil.example".into()),
    };
    let refused = AnyClient::open_with(&server, transport, evil).await;
    assert_eq!(refused.err().map(|r| r.0), Some(403));
    let good = Opening {
        origin: Some("http://app.example".into()),
    };
    let mut client = AnyClient::open_with(&server, transport, good)
        .await
        .expect("an allowed origin opens");
    if transport != Transport::WebSocket {
        // A request for the session from another site is refused too.
        let path = format!("/connection/session/{}", client.key());
        let ping = r#"{"id":9,"op":"ping"}"#;
        let (status, body) = http(
            server.addr,
            "POST",
            &path,
            ping,
            "Origin: http://evil.example\r\n",
        )
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!(103)),
            "{body}"
        );
    }
    let reply = client.call(json!({"op": "ping"})).await;
    assert!(reply.get("result").is_some(), "{reply}");
}

async fn refuses_a_flood_with_109_then_disconnects_with_4502(transport: Transport) {
    let server = start(ServerConfig::default().rate_limit(5.0, 5)).await;
    let mut client = AnyClient::open(&server, transport).await;
    let pings: Vec<Value> = (1..=40).map(|id| json!({"id": id, "op": "ping"})).collect();
    client.send_all(&pings).await;
    let (mut ok, mut limited, mut push) = (0, 0, None);
    for message in client.rest().await {
        if message.get("push").is_some() {
            push = Some(message);
            continue;
        }
        assert!(push.is_none(), "nothing after the disconnect push");
        match message["error"]["code"].as_u64() {
            Some(109) => limited += 1,
            None => ok += 1,
            other => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(ok, 5, "the burst is served");
    assert!(limited >= 1, "then requests are refused with 109");
    let push = push.expect("a disconnect push says why");
    assert_eq!(
        (&push["push"], &push["code"], &push["reconnect"]),
        (&json!("disconnect"), &json!(4502), &json!(false))
    );
}

async fn delivers_an_idempotent_publish_once(transport: Transport) {
    let server = start(ServerConfig::default()).await;
    let mut subscriber = AnyClient::open(&server, transport).await;
    subscriber
        .call(json!({"op": "subscribe", "channel": "orders"}))
        .await;
    let mut publisher = AnyClient::open(&server, transport).await;
    let publish = json!({"op": "publish", "channel": "orders", "data": {"id": 7}, "idempotency_key": "order-7"});
    let first = publisher.call(publish.clone()).await;
    let retry = publisher.call(publish).await;
    assert_eq!(
        first["result"], retry["result"],
        "the retry gets the same answer"
    );
    let after = publisher
        .call(json!({"op": "publish", "channel": "orders", "data": {"id": 8}}))
        .await;
    assert_eq!(after["result"]["offset"], 2);
    assert_eq!(subscriber.publication().await["data"], json!({"id": 7}));
    assert_eq!(subscriber.publication().await["data"], json!({"id": 8}));
}

async fn cuts_off_a_slow_consumer_with_the_position_to_resume_from(transport: Transport) {
    let config = ServerConfig::default()
        .outbound_queue(16)
        .channels(NamespaceOptions::default().history_size(1000));
    let server = start(config).await;
    let mut slow = AnyClient::open(&server, transport).await;
    let reply = slow
        .call(json!({"op": "subscribe", "channel": "firehose"}))
        .await;
    let epoch = reply["result"]["epoch"].clone();
    slow.pause();
    let mut publisher = AnyClient::open(&server, Transport::WebSocket).await;
    const COUNT: u64 = 600;
    let data = "x".repeat(8 << 10);
    for _ in 0..COUNT {
        publisher
            .call(json!({"op": "publish", "channel": "firehose", "data": data}))
            .await;
    }
    slow.resume().await;
    // What it got is in order without a gap, then the push says where it is.
    let mut last = 0;
    let mut advice = None;
    for message in slow.rest().await {
        if message["push"] == "publication" {
            assert!(advice.is_none(), "nothing after the disconnect push");
            last += 1;
            assert_eq!(message["offset"], last);
        } else if message["push"] == "disconnect" {
            advice = Some(message);
        }
    }
    let advice = advice.expect("a slow consumer is told");
    assert_eq!(advice["code"], 4001, "{advice}");
    let position = advice["positions"]["firehose"].clone();
    assert_eq!(position, json!({"offset": last, "epoch": epoch}));
    assert!(last < COUNT, "cut off before the end");
    let mut back = AnyClient::open(&server, transport).await;
    let reply = back
        .call(json!({"op": "subscribe", "channel": "firehose", "recover": position}))
        .await;
    assert_eq!(reply["result"]["recovered"], true);
    let recovered = offsets(&reply["result"]["publications"]);
    assert_eq!(recovered, ((last + 1)..=COUNT).collect::<Vec<_>>());
}

async fn keeps_a_slow_subscriber_with_the_newest_under_drop_oldest_and_latest_per_key(
    transport: Transport,
) {
    use tether_server::SlowConsumerPolicy;
    let config = ServerConfig::default()
        .outbound_queue(16)
        .namespace(
            "ticks",
            NamespaceOptions::default().slow_consumer(SlowConsumerPolicy::DropOldest),
        )
        .namespace(
            "prices",
            NamespaceOptions::default().slow_consumer(SlowConsumerPolicy::LatestPerKey),
        );
    let server = start(config).await;
    let mut publisher = AnyClient::open(&server, Transport::WebSocket).await;
    const COUNT: u64 = 400;
    let pad = "p".repeat(16 << 10);
    let symbols = ["EURUSD", "GBPUSD", "USDJPY"];
    for channel in ["ticks:x", "prices:fx"] {
        let mut slow = AnyClient::open(&server, transport).await;
        slow.call(json!({"op": "subscribe", "channel": channel}))
            .await;
        slow.pause();
        for n in 1..=COUNT {
            let symbol = symbols[(n % 3) as usize];
            let data = json!({"symbol": symbol, "price": n, "pad": pad});
            publisher
                .call(json!({"op": "publish", "channel": channel, "data": data, "key": symbol}))
                .await;
        }
        slow.resume().await;
        let mut seen = Vec::new();
        loop {
            let push = slow.publication().await;
            let offset = push["offset"].as_u64().unwrap();
            seen.push((
                offset,
                push["data"]["symbol"].clone(),
                push["data"]["price"].clone(),
            ));
            if offset == COUNT {
                break;
            }
        }
        assert!(
            seen.len() < COUNT as usize,
            "{channel}: some were left out ({})",
            seen.len()
        );
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "{channel}: in order"
        );
        if channel == "prices:fx" {
            for (i, symbol) in symbols.iter().enumerate() {
                let newest = (1..=COUNT).rev().find(|n| (n % 3) as usize == i).unwrap();
                assert!(
                    seen.iter()
                        .any(|(_, s, p)| s == symbol && *p == json!(newest)),
                    "{symbol} at {newest}"
                );
            }
        }
        // Still connected.
        let reply = slow.call(json!({"op": "ping"})).await;
        assert!(reply.get("result").is_some(), "{channel}: {reply}");
    }
}

async fn advises_a_jittered_reconnect_on_shutdown(transport: Transport) {
    let config = ServerConfig::default().shutdown(Duration::from_secs(5), Duration::from_secs(3));
    let server = start(config).await;
    let mut client = AnyClient::open(&server, transport).await;
    client
        .call(json!({"op": "subscribe", "channel": "c"}))
        .await;
    let stopping = tokio::spawn(server.shut_down(Duration::from_secs(10)));
    let rest = client.rest().await;
    let advice = rest.last().expect("a disconnect push");
    assert_eq!(
        (&advice["push"], &advice["code"]),
        (&json!("disconnect"), &json!(4000)),
        "{advice}"
    );
    assert!(advice["reconnect_after_ms"].as_u64().unwrap() < 3000);
    stopping.await.unwrap();
}

async fn delivers_what_the_http_api_publishes(transport: Transport) {
    let server = start(ServerConfig::default()).await;
    let mut client = AnyClient::open(&server, transport).await;
    client
        .call(json!({"op": "subscribe", "channel": "news"}))
        .await;
    let body = r#"{"channel": "news", "data": {"headline": "hi"}}"#;
    let (status, answer) = http(server.addr, "POST", "/api/publish", body, "").await;
    assert_eq!((status, &answer["offset"]), (200, &json!(1)));
    let push = client.publication().await;
    assert_eq!(push["data"], json!({"headline": "hi"}));
}

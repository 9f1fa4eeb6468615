//! HTTP sessions with no sticky routing: two nodes on one real
//! `redis-server`; a long-poll or SSE session opened on one is polled,
//! posted to, resumed and closed through the other, which forwards each
//! request to the node holding the session. A key naming a node that does
//! not exist is an unknown session, answered at once.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use tether_server::{EngineConfig, ServerConfig};
use tether_testing::RedisServer;

use common::transports::{AnyClient, Transport};
use common::{http, metrics, start, Conversation, Server};

async fn node(redis: &RedisServer) -> Server {
    let mut config = ServerConfig::default();
    config.engine = EngineConfig::redis(redis.url());
    start(config).await
}

async fn poll(server: &Server, key: &str, cursor: u64) -> (u16, Value) {
    let path = format!("/connection/longpoll/{key}?cursor={cursor}");
    http(server.addr, "GET", &path, "", "").await
}

async fn forwarded(server: &Server, outcome: &str) -> f64 {
    let samples = metrics(server).await;
    let name = format!("tether_forwarded_requests_total{{outcome=\"{outcome}\"}}");
    samples.get(&name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn a_long_poll_session_is_served_through_any_node() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let subscribe = r#"{"id":1,"op":"subscribe","channel":"news"}"#;
    let (status, opened) = http(a.addr, "POST", "/connection/longpoll", subscribe, "").await;
    assert_eq!(status, 200, "{opened}");
    let key = opened["session"].as_str().unwrap().to_owned();
    assert!(key.contains('.'), "a cluster's key names its node: {key}");

    // Polled through b: the subscribe reply a holds.
    let (status, answer) = poll(&b, &key, 0).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["messages"][0]["id"], 1);
    let cursor = answer["cursor"].as_u64().unwrap();

    // A request posted through b is handled by a's session.
    let path = format!("/connection/session/{key}");
    let publish = r#"{"id":2,"op":"publish","channel":"news","data":"via b"}"#;
    let (status, accepted) = http(b.addr, "POST", &path, publish, "").await;
    assert_eq!((status, &accepted["accepted"]), (202, &json!(1)));

    // A poll held on b answers when a's session gets something.
    let held = {
        let b_addr = b.addr;
        let key = key.clone();
        tokio::spawn(async move {
            let mut messages = Vec::new();
            let mut cursor = cursor;
            while messages.len() < 3 {
                let path = format!("/connection/longpoll/{key}?cursor={cursor}");
                let (status, answer) = http(b_addr, "GET", &path, "", "").await;
                assert_eq!(status, 200, "{answer}");
                cursor = answer["cursor"].as_u64().unwrap();
                messages.extend(answer["messages"].as_array().unwrap().iter().cloned());
            }
            messages
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = r#"{"channel":"news","data":"via the API on a"}"#;
    let (status, _) = http(a.addr, "POST", "/api/publish", body, "").await;
    assert_eq!(status, 200);
    let messages = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held poll answers")
        .unwrap();
    let data: Vec<&Value> = messages
        .iter()
        .filter(|m| m["push"] == "publication")
        .map(|m| &m["data"])
        .collect();
    assert_eq!(data, [&json!("via b"), &json!("via the API on a")]);
    assert!(messages.iter().any(|m| m["id"] == 2), "{messages:?}");

    // Closed through b: gone on a too.
    let (status, _) = http(b.addr, "DELETE", &path, "", "").await;
    assert_eq!(status, 204);
    let (status, _) = poll(&a, &key, 0).await;
    assert_eq!(status, 404);
    assert!(forwarded(&b, "answered").await >= 5.0);
    assert_eq!(
        forwarded(&a, "answered").await,
        0.0,
        "nothing went the other way"
    );
}

#[tokio::test]
async fn an_sse_session_resumes_through_another_node_with_nothing_lost() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut first = AnyClient::open(&a, Transport::Sse).await;
    let reply = first
        .call(json!({"op": "subscribe", "channel": "news"}))
        .await;
    assert_eq!(reply["result"]["offset"], 0, "{reply}");
    for n in 1..=3 {
        let body = format!(r#"{{"channel":"news","data":{n}}}"#);
        http(a.addr, "POST", "/api/publish", &body, "").await;
    }
    for n in 1..=3 {
        assert_eq!(first.publication().await["data"], n);
    }
    let last = first.last_event_id().unwrap();
    let key = first.key().to_owned();
    first.vanish();
    // Published while no stream is open: the session on a keeps them.
    for n in 4..=5 {
        let body = format!(r#"{{"channel":"news","data":{n}}}"#);
        http(b.addr, "POST", "/api/publish", &body, "").await;
    }
    let header = format!("Last-Event-ID: {last}\r\n");
    let mut back = AnyClient::open_sse(&b, "/connection/sse", &header)
        .await
        .expect("b relays a's stream");
    assert_eq!(back.key(), key, "the same session, held by a");
    for n in 4..=5 {
        assert_eq!(back.publication().await["data"], n);
    }
    // Requests go on through b.
    let reply = back
        .call(json!({"op": "publish", "channel": "news", "data": 6}))
        .await;
    assert_eq!(reply["result"]["offset"], 6, "{reply}");
    assert_eq!(back.publication().await["data"], 6);
}

#[tokio::test]
async fn a_key_naming_no_live_node_is_an_unknown_session() {
    let redis = RedisServer::start().await;
    let b = node(&redis).await;
    for key in [
        "0123456789abcdef0123456789abcdef.ffffff",
        "0123456789abcdef0123456789abcdef.zz9",
    ] {
        let (status, body) = poll(&b, key, 0).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!(113)),
            "{key}"
        );
        let path = format!("/connection/session/{key}");
        let (status, _) = http(b.addr, "POST", &path, r#"{"id":1,"op":"ping"}"#, "").await;
        assert_eq!(status, 404);
    }
    assert_eq!(forwarded(&b, "gone").await, 4.0);
    // An SSE reconnect for it starts a new session here.
    let header = "Last-Event-ID: 0123456789abcdef0123456789abcdef.ffffff-3\r\n";
    let fresh = AnyClient::open_sse(&b, "/connection/sse", header)
        .await
        .unwrap();
    assert!(!fresh.key().starts_with("0123456789abcdef"));
}

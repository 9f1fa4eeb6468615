//! What only the HTTP transports have: sessions that outlive their requests
//! (SSE resume by `Last-Event-ID`, long-poll cursors, expiry) and the bad
//! input their endpoints must refuse, each without effect on a well-behaved
//! session on the same server.

mod common;

use std::time::Duration;

use common::transports::{AnyClient, Transport};
use common::{http, http_raw, start, Server};
use serde_json::{json, Value};
use tether_server::{HttpConfig, ServerConfig};

/// A long-poll client that keeps working while the others misbehave: it
/// gets a publication at the end of each test.
async fn bystander(server: &Server) -> AnyClient {
    let mut client = AnyClient::open(server, Transport::LongPoll).await;
    client
        .call(json!({"op": "subscribe", "channel": "calm"}))
        .await;
    client
}

async fn still_served(server: &Server, client: &mut AnyClient) {
    let body = r#"{"channel": "calm", "data": "still here"}"#;
    let (status, _) = http(server.addr, "POST", "/api/publish", body, "").await;
    assert_eq!(status, 200);
    assert_eq!(client.publication().await["data"], "still here");
}

/// Opens a long-poll session without a poller: the test polls itself.
async fn open_longpoll(server: &Server, body: &str) -> String {
    let (status, opened) = http(server.addr, "POST", "/connection/longpoll", body, "").await;
    assert_eq!(status, 200, "{opened}");
    opened["session"].as_str().unwrap().to_owned()
}

async fn poll(server: &Server, key: &str, cursor: u64) -> (u16, Value) {
    let path = format!("/connection/longpoll/{key}?cursor={cursor}");
    http(server.addr, "GET", &path, "", "").await
}

#[tokio::test]
async fn a_poll_answer_lost_on_the_way_is_fetched_again_by_its_cursor() {
    let http_config = HttpConfig::default().poll_timeout(Duration::from_millis(200));
    let server = start(ServerConfig::default().http(http_config)).await;
    let key = open_longpoll(&server, r#"[{"id":1,"op":"subscribe","channel":"news"}]"#).await;
    let (_, first) = poll(&server, &key, 0).await;
    assert_eq!(first["cursor"], 1);
    assert_eq!(first["messages"][0]["id"], 1);
    for n in 1..=3 {
        let body = format!(r#"{{"channel":"news","data":{n}}}"#);
        http(server.addr, "POST", "/api/publish", &body, "").await;
    }
    let (_, answer) = poll(&server, &key, 1).await;
    assert_eq!(answer["cursor"], 4);
    // That answer is "lost": the same cursor again gets the same messages.
    let (_, again) = poll(&server, &key, 1).await;
    assert_eq!(again, answer);
    let (status, _) = poll(&server, &key, 4).await;
    assert_eq!(status, 200, "acknowledging moves on");
    // Going back behind what was acknowledged, or ahead of what was sent: 409.
    let (status, body) = poll(&server, &key, 2).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!(114)),
        "{body}"
    );
    let (status, body) = poll(&server, &key, 99).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!(114)),
        "{body}"
    );
    let path = format!("/connection/longpoll/{key}?cursor=minus-one");
    let (status, _) = http(server.addr, "GET", &path, "", "").await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_poll_waits_for_messages_and_answers_empty_at_its_timeout() {
    let http_config = HttpConfig::default().poll_timeout(Duration::from_millis(300));
    let server = start(ServerConfig::default().http(http_config)).await;
    let key = open_longpoll(&server, "").await;
    let started = std::time::Instant::now();
    let (status, answer) = poll(&server, &key, 0).await;
    assert_eq!(
        (status, &answer),
        (200, &json!({"cursor": 0, "messages": []}))
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Short polling: wait_ms=0 answers at once.
    let started = std::time::Instant::now();
    let path = format!("/connection/longpoll/{key}?cursor=0&wait_ms=0");
    let (status, _) = http(server.addr, "GET", &path, "", "").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_millis(250));
    // A message that comes while a poll waits answers it at once.
    let waiting = {
        let key = key.clone();
        let addr = server.addr;
        tokio::spawn(async move {
            let path = format!("/connection/longpoll/{key}?cursor=0");
            http(addr, "GET", &path, "", "").await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ping = r#"{"id":5,"op":"ping"}"#;
    let (status, _) = http(
        server.addr,
        "POST",
        &format!("/connection/session/{key}"),
        ping,
        "",
    )
    .await;
    assert_eq!(status, 202);
    let (_, answer) = waiting.await.unwrap();
    assert_eq!(answer["messages"], json!([{"id": 5, "result": {}}]));
}

#[tokio::test]
async fn a_second_poll_ends_the_first_with_an_empty_answer() {
    let server = start(ServerConfig::default()).await;
    let mut calm = bystander(&server).await;
    let key = open_longpoll(&server, "").await;
    // A flood of polls for one session: each ends the one before it.
    let polls: Vec<_> = (0..50)
        .map(|_| {
            let (addr, key) = (server.addr, key.clone());
            tokio::spawn(async move {
                let path = format!("/connection/longpoll/{key}?cursor=0");
                http(addr, "GET", &path, "", "").await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ping = r#"{"id":1,"op":"ping"}"#;
    http(
        server.addr,
        "POST",
        &format!("/connection/session/{key}"),
        ping,
        "",
    )
    .await;
    let mut answered = 0;
    for poll in polls {
        let (status, answer) = tokio::time::timeout(Duration::from_secs(5), poll)
            .await
            .expect("no poll is left hanging")
            .unwrap();
        assert_eq!(status, 200);
        answered += answer["messages"].as_array().unwrap().len();
    }
    assert_eq!(answered, 1, "only the held poll got the reply");
    still_served(&server, &mut calm).await;
}

#[tokio::test]
async fn sse_resumes_after_its_stream_breaks_with_nothing_lost_or_repeated() {
    let server = start(ServerConfig::default()).await;
    let mut client = AnyClient::open(&server, Transport::Sse).await;
    client
        .call(json!({"op": "subscribe", "channel": "news"}))
        .await;
    let publish = |n: u64| async move {
        let body = format!(r#"{{"channel":"news","data":{n}}}"#);
        http(server.addr, "POST", "/api/publish", &body, "").await
    };
    for n in 1..=3 {
        publish(n).await;
    }
    for n in 1..=3 {
        assert_eq!(client.publication().await["offset"], n);
    }
    client.pause();
    for n in 4..=6 {
        publish(n).await;
    }
    // The stream breaks; EventSource comes back with Last-Event-ID.
    let key = client.key().to_owned();
    let opened = client.reconnect_sse().await;
    assert_eq!(opened["session"], json!(key), "the same session goes on");
    client.resume().await;
    for n in 4..=7 {
        if n == 7 {
            publish(7).await;
        }
        assert_eq!(client.publication().await["offset"], n);
    }
    // A flood of streams for one session: each new one ends the one before.
    for _ in 0..20 {
        client.reconnect_sse().await;
    }
    publish(8).await;
    assert_eq!(client.publication().await["offset"], 8);
}

#[tokio::test]
async fn sse_starts_over_with_recovered_false_once_its_session_expired() {
    let http_config = HttpConfig::default().session_ttl(Duration::from_millis(300));
    let server = start(ServerConfig::default().http(http_config)).await;
    let mut first = AnyClient::open_sse(&server, "/connection/sse?subscribe=news,chat:x", "")
        .await
        .unwrap();
    // The query's subscriptions are requests 1 and 2.
    assert!(first.reply_to(1).await["result"]["epoch"].is_string());
    assert!(first.reply_to(2).await["result"]["epoch"].is_string());
    let last = first.last_event_id().unwrap();
    let old_key = first.key().to_owned();
    first.vanish();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let header = format!("Last-Event-ID: {last}\r\n");
    let mut back = AnyClient::open_sse(&server, "/connection/sse?subscribe=news", &header)
        .await
        .unwrap();
    assert_ne!(back.key(), old_key, "a new session");
    let reply = back.reply_to(1).await;
    assert_eq!(reply["result"]["recovered"], false, "{reply}");
    // A Last-Event-ID ahead of what the session sent is refused.
    let forged = format!("Last-Event-ID: {}-999\r\n", back.key());
    let refused = AnyClient::open_sse(&server, "/connection/sse", &forged).await;
    assert_eq!(refused.err().map(|r| r.0), Some(409));
}

#[tokio::test]
async fn unknown_forged_and_foreign_session_keys_get_404() {
    let server = start(ServerConfig::default()).await;
    let mut calm = bystander(&server).await;
    let mut other = AnyClient::open(&server, Transport::LongPoll).await;
    let forged = "0123456789abcdef0123456789abcdef";
    for key in [forged, "nope", "%2e%2e%2fetc%2fpasswd", &"a".repeat(5000)] {
        let (status, body) = poll(&server, key, 0).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!(113)),
            "{key}"
        );
        let path = format!("/connection/session/{key}");
        let (status, _) = http(server.addr, "POST", &path, r#"{"id":1,"op":"ping"}"#, "").await;
        assert_eq!(status, 404);
        let (status, _) = http(server.addr, "DELETE", &path, "", "").await;
        assert_eq!(status, 404);
    }
    // What others see of a session (its client id) does not reach it.
    let client_id = other.client.clone().unwrap();
    let (status, _) = poll(&server, &client_id, 0).await;
    assert_eq!(status, 404);
    // A long-poll key does not open another session's SSE stream.
    let header = format!("Last-Event-ID: {}-0\r\n", other.key());
    let stream = AnyClient::open_sse(&server, "/connection/sse", &header)
        .await
        .unwrap();
    assert_ne!(stream.key(), other.key());
    assert_eq!(other.key().len(), 32, "128 bits in hex");
    let reply = other.call(json!({"op": "ping"})).await;
    assert!(reply.get("result").is_some());
    still_served(&server, &mut calm).await;
}

#[tokio::test]
async fn bad_bodies_get_their_status_and_content_type_is_not_required() {
    let http_config = HttpConfig::default().max_command_body(1024);
    let server = start(ServerConfig::default().http(http_config)).await;
    let mut calm = bystander(&server).await;
    let key = open_longpoll(&server, "").await;
    let path = format!("/connection/session/{key}");
    let big = format!(
        r#"{{"id":1,"op":"publish","channel":"c","data":"{}"}}"#,
        "x".repeat(2000)
    );
    let (status, body) = http(server.addr, "POST", &path, &big, "").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!(108)),
        "{body}"
    );
    let (status, body) = http(server.addr, "POST", "/connection/longpoll", &big, "").await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = http(server.addr, "POST", &path, "[1,", "").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!(100)),
        "{body}"
    );
    // Malformed JSON inside a valid body is the session's to answer.
    let (status, _) = http(server.addr, "POST", &path, "{oops", "").await;
    assert_eq!(status, 202);
    for content_type in [
        "",
        "Content-Type: text/plain\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\n",
    ] {
        let (status, _) = http_raw(
            server.addr,
            "POST",
            &path,
            r#"{"id":2,"op":"ping"}"#,
            content_type,
        )
        .await;
        assert_eq!(status, 202, "{content_type:?}");
    }
    let (_, answer) = poll(&server, &key, 0).await;
    let messages = answer["messages"].as_array().unwrap();
    assert_eq!(messages[0]["error"]["code"], 100, "{answer}");
    assert_eq!(messages.len(), 4, "one reply per request: {answer}");
    still_served(&server, &mut calm).await;
}

#[tokio::test]
async fn a_closed_session_leaves_its_channels_at_once() {
    let server = start(ServerConfig::default()).await;
    let mut watcher = AnyClient::open(&server, Transport::WebSocket).await;
    watcher
        .call(json!({"op": "subscribe", "channel": "room"}))
        .await;
    let key = open_longpoll(&server, r#"{"id":1,"op":"subscribe","channel":"room"}"#).await;
    assert_eq!(watcher.push().await["push"], "join");
    let (status, _) = http(
        server.addr,
        "DELETE",
        &format!("/connection/session/{key}"),
        "",
        "",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(watcher.push().await["push"], "leave");
    let (status, _) = poll(&server, &key, 0).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn ten_thousand_abandoned_sessions_expire_and_are_forgotten() {
    let http_config = HttpConfig::default().session_ttl(Duration::from_millis(500));
    let config = ServerConfig::default()
        .http(http_config)
        .connection_limits(0, 0);
    let server = start(config).await;
    let mut calm = bystander(&server).await;
    const SESSIONS: usize = 10_000;
    let mut opened = 0;
    // Opened over a few connections at a time, each session subscribed.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move {
                for _ in 0..SESSIONS / 8 {
                    let body = r#"{"id":1,"op":"subscribe","channel":"abandoned"}"#;
                    let (status, _) = http(addr, "POST", "/connection/longpoll", body, "").await;
                    assert_eq!(status, 200);
                }
                SESSIONS / 8
            })
        })
        .collect();
    for task in tasks {
        opened += task.await.unwrap();
    }
    assert_eq!(opened, SESSIONS);
    let gauge = r#"tether_connections{transport="longpoll"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = http_raw(server.addr, "GET", "/metrics", "", "").await;
        let open: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix(gauge))
            .map_or(0.0, |v| v.trim().parse().unwrap());
        let subscriptions: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix("tether_subscriptions "))
            .map_or(0.0, |v| v.trim().parse().unwrap());
        // Only the bystander is left, with its one subscription.
        if open == 1.0 && subscriptions == 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} sessions still open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    still_served(&server, &mut calm).await;
}

#[tokio::test]
async fn pages_of_an_allowed_origin_may_call_across_origins() {
    let config = ServerConfig::default().allowed_origins(vec!["https://app.example".into()]);
    let server = start(config).await;
    let key = open_longpoll(&server, "").await;
    let path = format!("/connection/session/{key}");
    let preflight = "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n";
    let (status, head) = http_head(&server, "OPTIONS", &path, preflight).await;
    assert!((200..300).contains(&status), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-credentials: true"),
        "{head}"
    );
    assert!(head.contains("post"), "{head}");
    let (_, head) = http_head(
        &server,
        "GET",
        &format!("/connection/longpoll/{key}?cursor=0&wait_ms=0"),
        "Origin: https://app.example\r\n",
    )
    .await;
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    // Another origin gets no grant, and its requests are refused.
    let (_, head) = http_head(
        &server,
        "OPTIONS",
        &path,
        &preflight.replace("app.example", "evil.example"),
    )
    .await;
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{head}"
    );
}

/// A request's status and response head.
async fn http_head(server: &Server, method: &str, path: &str, headers: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n{headers}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let head = response.split("\r\n\r\n").next().unwrap().to_owned();
    (head[9..12].parse().unwrap(), head)
}

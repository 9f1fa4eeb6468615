//! What only the HTTP transports have: sessions that outlive their requests
//! (SSE resume by `Last-Event-ID`, long-poll cursors, expiry) and the bad
//! input their endpoints must refuse, each without effect on a well-behaved
//! session on the same server.

mod common;

use std::time::Duration;

use common::transports::{AnyClient, Transport};
use common::{http, http_raw, metrics, start, Server};
use serde_json::{json, Value};
use tether_server::{HttpConfig, ServerConfig};
use tether_testing::{eventually, Conversation};

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
    let held = || async { metrics(&server).await.get("tether_http_attached") == Some(&1.0) };
    eventually("the poll is held", Duration::from_secs(5), held).await;
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
    // A poll ends only once a newer one has attached: when all but one
    // have ended, every one has attached and the newest is held.
    let superseded = || {
        let ended = polls.iter().filter(|poll| poll.is_finished()).count();
        std::future::ready(ended == polls.len() - 1)
    };
    eventually(
        "all but the newest poll ended",
        Duration::from_secs(10),
        superseded,
    )
    .await;
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
    let gone = || async {
        let samples = metrics(&server).await;
        samples.get(r#"tether_connections{transport="sse"}"#) == Some(&0.0)
    };
    eventually("the session expired", Duration::from_secs(10), gone).await;
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
    // A body that is not JSON, or holds nothing, is refused whole.
    for broken in ["{oops", "not json", "", "[]", r#"{"id":1} {"id":2}"#] {
        let (status, body) = http(server.addr, "POST", &path, broken, "").await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!(100)),
            "{broken:?}: {body}"
        );
    }
    // JSON that is not a request is the session's to answer, as over WebSocket.
    let (status, _) = http(server.addr, "POST", &path, r#"{"op":"nope"}"#, "").await;
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
    // An opening whose body is not JSON opens no session.
    for broken in ["{oops", "not json", "[1,"] {
        let (status, body) = http(server.addr, "POST", "/connection/longpoll", broken, "").await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!(100)),
            "{body}"
        );
        assert!(body.get("session").is_none(), "{body}");
    }
    still_served(&server, &mut calm).await;
}

#[tokio::test]
async fn a_poll_after_the_session_was_deleted_never_finds_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(ServerConfig::default()).await;
    let mut calm = bystander(&server).await;
    // The end used to be left to the session's task: a poll right after
    // the 204 could still find the session. Both requests go at once on one
    // connection, so the poll is read the moment the 204 is written.
    for _ in 0..200 {
        let key = open_longpoll(&server, "").await;
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let requests = format!(
            "DELETE /connection/session/{key} HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /connection/longpoll/{key}?cursor=0&wait_ms=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(requests.as_bytes()).await.unwrap();
        let mut answers = String::new();
        tcp.read_to_string(&mut answers).await.unwrap();
        let statuses: Vec<&str> = answers
            .match_indices("HTTP/1.1 ")
            .map(|(at, _)| &answers[at + 9..at + 12])
            .collect();
        assert_eq!(statuses, ["204", "404"], "{answers}");
        assert!(answers.contains("\"code\":113"), "{answers}");
    }
    still_served(&server, &mut calm).await;
}

/// A poll that may find the server gone: `None` when the connection is refused.
async fn try_poll(addr: std::net::SocketAddr, key: &str, cursor: u64) -> Option<(u16, Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "GET /connection/longpoll/{key}?cursor={cursor} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1)?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

#[tokio::test]
async fn a_long_poll_client_gets_its_shutdown_advice_even_on_a_new_connection() {
    let server = start(ServerConfig::default()).await;
    let addr = server.addr;
    let key = open_longpoll(&server, r#"{"id":1,"op":"subscribe","channel":"room"}"#).await;
    let (_, first) = poll(&server, &key, 0).await;
    assert_eq!(first["messages"][0]["id"], 1, "{first}");
    // A poll held when the server is told to stop, then polls as the docs
    // show them, each on a new connection.
    let client = tokio::spawn(async move {
        let mut cursor = first["cursor"].as_u64().unwrap();
        let mut messages = Vec::new();
        for _ in 0..20 {
            let Some((status, answer)) = try_poll(addr, &key, cursor).await else {
                break;
            };
            if status != 200 {
                break;
            }
            messages.extend(answer["messages"].as_array().unwrap().iter().cloned());
            cursor = answer["cursor"].as_u64().unwrap();
            if answer["ended"] == true {
                break;
            }
        }
        messages
    });
    // Shutdown with its default 10 s timeout: a session that got its
    // goodbye does not keep the server waiting for it.
    let started = std::time::Instant::now();
    server.shut_down(Duration::from_secs(8)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let messages = client.await.unwrap();
    let goodbye = messages
        .iter()
        .find(|m| m["push"] == "disconnect")
        .unwrap_or_else(|| panic!("no disconnect push: {messages:?}"));
    assert_eq!(goodbye["code"], 4000, "{goodbye}");
    assert_eq!(goodbye["reconnect"], true, "{goodbye}");
    assert!(goodbye["reconnect_after_ms"].is_u64(), "{goodbye}");
}

/// The status a request with `headers` gets (Host and Content-Length
/// besides), read from the first line of the answer.
async fn status_of_head(server: &Server, method: &str, path: &str, headers: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n{headers}\r\n");
    // A server that refuses a long head may close before it is all written.
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut line = [0u8; 12];
    tcp.read_exact(&mut line).await.unwrap();
    std::str::from_utf8(&line[9..12]).unwrap().parse().unwrap()
}

#[tokio::test]
async fn request_heads_of_the_http_transports_are_bounded() {
    let server = start(ServerConfig::default()).await;
    let mut calm = bystander(&server).await;
    let lines = |count: usize, value: &str| -> String {
        (0..count)
            .map(|n| format!("X-Test-{n}: {value}\r\n"))
            .collect()
    };
    for (path, method) in [("/connection/sse", "GET"), ("/connection/longpoll", "POST")] {
        let status = |headers: String| status_of_head(&server, method, path, headers);
        // One 64 KiB header line is served.
        assert_eq!(status(lines(1, &"x".repeat(64 << 10))).await, 200, "{path}");
        // 100 header lines in all (Host and Content-Length are two of them).
        assert_eq!(status(lines(98, "a")).await, 200, "{path}");
        assert_eq!(status(lines(99, "a")).await, 431, "{path}");
        // A head past hyper's read buffer (about 400 KiB).
        assert_eq!(status(lines(1, &"x".repeat(1 << 20))).await, 431, "{path}");
    }
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
    let expired = || async {
        let samples = metrics(&server).await;
        // Only the bystander is left, with its one subscription.
        samples.get(gauge) == Some(&1.0) && samples.get("tether_subscriptions") == Some(&1.0)
    };
    eventually(
        "every abandoned session expired",
        Duration::from_secs(30),
        expired,
    )
    .await;
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

//! Promises docs/PROTOCOL.md makes, held against clients that push at the
//! edges: data nested too deep to read back, requests pipelined with the close
//! frame, a client kicked or rate-limited (each told why with a `disconnect`
//! push), and HTTP API bodies labelled as anything but JSON.

mod common;

use std::time::Duration;

use common::{http, start, Client};
use serde_json::{json, Value};
use tether::Message;
use tether_server::ServerConfig;
use tether_testing::Conversation;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `depth` nested arrays around a number.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn refuses_data_nested_too_deep_and_history_stays_readable() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    let deep = nested(200);
    let request = format!(r#"{{"id":1,"op":"publish","channel":"x:deep","data":{deep}}}"#);
    assert!(request.len() < 500, "a small request");
    client.ws.send(request).await.unwrap();
    let reply = client.reply_to(1).await;
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    let path = "/api/publish";
    let body = format!(r#"{{"channel":"x:deep","data":{deep}}}"#);
    let (status, answer) = http(server.addr, "POST", path, &body, "").await;
    assert_eq!((status, &answer["error"]["code"]), (400, &json!(100)));
    // At the limit it is accepted, and reads back over both interfaces.
    let limit = tether_server::config::DEFAULT_MAX_DATA_DEPTH;
    let ok = client
        .call(json!({"op": "publish", "channel": "x:deep", "data": serde_json::from_str::<Value>(&nested(limit)).unwrap()}))
        .await;
    assert_eq!(ok["result"]["offset"], 1, "{ok}");
    let history = client
        .call(json!({"op": "history", "channel": "x:deep"}))
        .await;
    assert_eq!(history["result"]["publications"][0]["offset"], 1);
    let (status, page) = http(server.addr, "GET", "/api/history/x:deep", "", "").await;
    assert_eq!(status, 200);
    assert_eq!(page["publications"].as_array().unwrap().len(), 1);
    // The connection is still up and served.
    assert!(client.call(json!({"op": "ping"})).await["result"].is_object());
}

/// A masked client frame (RFC 6455 §5.2) with a fixed key.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    assert!(payload.len() < 126);
    frame.push(0x80 | payload.len() as u8);
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Opens a raw WebSocket connection (no library) to the server's endpoint.
async fn raw_connect(server: &common::Server) -> TcpStream {
    tether_testing::raw_websocket(server.addr, "/connection/websocket", "").await
}

/// Every frame the server sends until it ends TCP: (opcode, payload).
async fn frames_until_eof(tcp: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut bytes))
        .await
        .expect("the server ends TCP")
        .unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let (len, header) = match bytes[at + 1] & 0x7f {
            126 => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 => panic!("no frame here is that long"),
            len => (len as usize, 2),
        };
        frames.push((opcode, bytes[at + header..at + header + len].to_vec()));
        at += header + len;
    }
    frames
}

fn text(frame: &(u8, Vec<u8>)) -> Value {
    assert_eq!(frame.0, 1, "a text frame");
    serde_json::from_slice(&frame.1).unwrap()
}

#[tokio::test]
async fn replies_to_requests_that_arrive_with_the_close_before_closing() {
    let server = start(ServerConfig::default()).await;
    let mut tcp = raw_connect(&server).await;
    let mut burst = client_frame(1, br#"{"id":1,"op":"subscribe","channel":"chat:x"}"#);
    burst.extend(client_frame(1, br#"{"id":2,"op":"ping"}"#));
    burst.extend(client_frame(8, &1000u16.to_be_bytes()));
    tcp.write_all(&burst).await.unwrap();
    let frames = frames_until_eof(&mut tcp).await;
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(text(&frames[0])["id"], 1);
    assert!(text(&frames[0])["result"]["epoch"].is_string());
    assert_eq!(text(&frames[1]), json!({"id": 2, "result": {}}));
    assert_eq!(
        frames[2],
        (8, 1000u16.to_be_bytes().to_vec()),
        "our close echoes 1000"
    );
}

#[tokio::test]
async fn acknowledges_a_publish_that_arrives_with_the_close() {
    let server = start(ServerConfig::default()).await;
    let mut subscriber = Client::connect(&server).await;
    subscriber
        .call(json!({"op": "subscribe", "channel": "news"}))
        .await;
    let mut tcp = raw_connect(&server).await;
    let mut burst = client_frame(
        1,
        br#"{"id":7,"op":"publish","channel":"news","data":"hi"}"#,
    );
    burst.extend(client_frame(8, &1000u16.to_be_bytes()));
    tcp.write_all(&burst).await.unwrap();
    let frames = frames_until_eof(&mut tcp).await;
    assert_eq!(text(&frames[0])["id"], 7);
    assert_eq!(text(&frames[0])["result"]["offset"], 1);
    assert_eq!(frames.last().unwrap().0, 8);
    assert_eq!(subscriber.publication().await["data"], "hi");
}

/// Reads to the close frame: the `disconnect` pushes on the way, and the close.
async fn pushes_and_close(client: &mut Client) -> (Vec<Value>, Option<tether::CloseFrame>) {
    let mut pushes = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.ws.recv())
            .await
            .expect("in time")
            .unwrap();
        match message {
            Some(Message::Text(text)) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["push"] == "disconnect" {
                    pushes.push(value);
                }
            }
            Some(Message::Close(frame)) => return (pushes, frame),
            Some(_) => {}
            None => return (pushes, None),
        }
    }
}

#[tokio::test]
async fn an_api_kick_sends_a_disconnect_push_before_the_close() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    let connected = client.call(json!({"op": "connect"})).await;
    let id = connected["result"]["client"].as_str().unwrap().to_owned();
    let body = json!({"client": id}).to_string();
    let (status, _) = http(server.addr, "POST", "/api/disconnect", &body, "").await;
    assert_eq!(status, 200);
    let (pushes, close) = pushes_and_close(&mut client).await;
    assert_eq!(
        pushes,
        [
            json!({"push": "disconnect", "code": 4501, "reason": "disconnected by the server", "reconnect": false})
        ]
    );
    assert_eq!(close.unwrap().code.0, 4501);
}

#[tokio::test]
async fn a_rate_limit_disconnect_is_explained_by_a_push_after_the_refusals() {
    let server = start(ServerConfig::default().rate_limit(1.0, 3)).await;
    let mut client = Client::connect(&server).await;
    for id in 1..=10 {
        let request = json!({"id": id, "op": "ping"}).to_string();
        if client.ws.send(request).await.is_err() {
            break;
        }
    }
    let mut refused = 0;
    let (pushes, close) = loop {
        let message = client.ws.recv().await.unwrap();
        match message {
            Some(Message::Text(text)) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["push"] == "disconnect" {
                    let (mut rest, close) = pushes_and_close(&mut client).await;
                    rest.insert(0, value);
                    break (rest, close);
                }
                if value["error"]["code"] == 109 {
                    refused += 1;
                }
            }
            other => panic!("expected the push first, got {other:?}"),
        }
    };
    assert_eq!(refused, 3, "one refusal per token of the burst");
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0]["code"], 4502);
    assert_eq!(pushes[0]["reconnect"], false);
    assert_eq!(close.unwrap().code.0, 1008);
}

/// `POST /api/publish` with the given Content-Type header line (or none).
async fn post(server: &common::Server, content_type: &str, body: &str) -> (u16, String) {
    common::http_raw(server.addr, "POST", "/api/publish", body, content_type).await
}

#[tokio::test]
async fn the_api_reads_a_json_body_whatever_its_content_type() {
    let server = start(ServerConfig::default()).await;
    let body = r#"{"channel": "scores:match-42", "data": {"home": 3}}"#;
    for content_type in [
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "Content-Type: text/plain\r\n",
        "",
        "Content-Type: application/json; charset=utf-8\r\n",
    ] {
        let (status, answer) = post(&server, content_type, body).await;
        assert_eq!(status, 200, "{content_type:?}: {answer}");
        assert!(answer.contains("\"offset\""), "{answer}");
    }
    let (status, answer) = post(&server, "", "channel=x&data=1").await;
    assert_eq!(status, 400, "{answer}");
    let error: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(error["error"]["code"], 100);
}

#[tokio::test]
async fn the_api_refuses_an_oversize_body_with_413() {
    let server = start(ServerConfig::default()).await;
    let data = "x".repeat(tether_server::config::DEFAULT_MAX_API_BODY);
    let body = json!({"channel": "c", "data": data}).to_string();
    let (status, answer) = post(&server, "", &body).await;
    assert_eq!(status, 413, "{answer}");
    let error: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(error["error"]["code"], 108);
    // Under the body limit but over the publication limit: 413 as well.
    let data = "x".repeat(tether_server::config::DEFAULT_MAX_PUBLISH_SIZE + 1);
    let body = json!({"channel": "c", "data": data}).to_string();
    let (status, _) = post(&server, "", &body).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn the_api_answers_a_bad_query_with_a_json_error() {
    let server = start(ServerConfig::default()).await;
    let (status, answer) = http(server.addr, "GET", "/api/history/c?limit=many", "", "").await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!(100)),
        "{answer}"
    );
}

//! Slow and broken peers against the real `tether serve`: a client that
//! stops reading, one that answers with pongs but never reads, a process
//! stopped with SIGSTOP, a connection reset in the middle of a frame, and a
//! half-closed socket. Each ends the way docs/RELIABILITY.md says (the
//! slow-consumer disconnect 4001, the heartbeat's 4002, or the end of the
//! session), within a bounded time, and a well-behaved subscriber on the same
//! channel receives every publication throughout.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{spawn, Child};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Heartbeat: a ping every second, a second more to answer.
const SERVE: &[&str] = &[
    "serve",
    "--ping-interval",
    "1",
    "--pong-timeout",
    "1",
    "--outbound-queue",
    "32",
];
/// How long any broken peer may last once it is broken.
const ENDS_WITHIN: Duration = Duration::from_secs(10);

/// One request over HTTP/1.1, the answer's body.
async fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    answer.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The server's metrics, by sample name.
async fn metrics(port: u16) -> HashMap<String, f64> {
    http(port, "GET", "/metrics", "")
        .await
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn disconnects(samples: &HashMap<String, f64>, code: u16) -> f64 {
    let name = format!("tether_disconnects_total{{code=\"{code}\"}}");
    samples.get(&name).copied().unwrap_or(0.0)
}

fn open_websockets(samples: &HashMap<String, f64>) -> f64 {
    let gauge = r#"tether_connections{transport="websocket"}"#;
    samples.get(gauge).copied().unwrap_or(0.0)
}

/// Waits until the metrics satisfy `done`, for at most [`ENDS_WITHIN`].
async fn until(port: u16, what: &str, done: impl Fn(&HashMap<String, f64>) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let samples = metrics(port).await;
        if done(&samples) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < ENDS_WITHIN,
            "{what}: not within {ENDS_WITHIN:?}: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A masked client text frame, with an all-zero key.
fn text_frame(text: &str) -> Vec<u8> {
    let mut out = vec![0x81];
    match text.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend((n as u16).to_be_bytes());
        }
    }
    out.extend([0; 4]);
    out.extend_from_slice(text.as_bytes());
    out
}

/// A raw WebSocket connection to `tether serve`, subscribed to `channel`
/// (its reply read, nothing after).
async fn raw_subscriber(port: u16, channel: &str) -> TcpStream {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut tcp = tether_testing::raw_websocket(addr, "/connection/websocket", "").await;
    let subscribe = format!(r#"{{"id":1,"op":"subscribe","channel":"{channel}"}}"#);
    tcp.write_all(&text_frame(&subscribe)).await.unwrap();
    // Frames until the reply (a presence push may come first).
    let reading = async {
        loop {
            let mut head = [0u8; 2];
            tcp.read_exact(&mut head).await.unwrap();
            let len = match head[1] & 0x7f {
                126 => usize::from(tcp.read_u16().await.unwrap()),
                127 => tcp.read_u64().await.unwrap() as usize,
                n => usize::from(n),
            };
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.unwrap();
            if String::from_utf8_lossy(&payload).contains(r#""id":1"#) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reading)
        .await
        .expect("subscribed");
    tcp
}

/// What the well-behaved subscriber received, and how its reading ended.
struct Received {
    publications: usize,
    /// The newest offset it saw.
    last_offset: u64,
    /// Why it stopped before having them all: a close frame, an error, or
    /// a quiet spell.
    ended: Option<String>,
}

/// The well-behaved subscriber: its reading task, and how many publications
/// it has received so far (the publisher keeps within a few of it).
struct Good {
    task: tokio::task::JoinHandle<Received>,
    progress: tokio::sync::watch::Receiver<usize>,
}

/// Publications the publisher may be ahead of the well-behaved subscriber:
/// far fewer than the server's queue of 32, so a reader slowed by a busy
/// machine (a debug build checking 13 MB of UTF-8) is still a reader that
/// keeps up, and only the peer that stopped reading is a slow consumer.
const AHEAD: usize = 8;

/// A subscriber that reads everything, subscribed (its reply read) when this
/// returns, counting publications until it has `expected` or a few seconds
/// pass without one.
async fn good_subscriber(port: u16, channel: &str, expected: usize) -> Good {
    let url = format!("ws://127.0.0.1:{port}/connection/websocket");
    let (mut ws, _) = tether::connect(&url).await.unwrap();
    let subscribe = format!(r#"{{"id":1,"op":"subscribe","channel":"{channel}"}}"#);
    ws.send(subscribe).await.unwrap();
    let replied = async {
        loop {
            match ws.recv().await {
                Ok(Some(tether::Message::Text(text))) if text.as_str().contains(r#""id":1"#) => {
                    return
                }
                Ok(Some(_)) => {}
                other => panic!("no subscribe reply: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), replied)
        .await
        .expect("subscribed");
    let (counted, progress) = tokio::sync::watch::channel(0);
    let task = tokio::spawn(async move {
        let mut received = Received {
            publications: 0,
            last_offset: 0,
            ended: None,
        };
        let mut quiet_until = Instant::now() + Duration::from_secs(20);
        while received.publications < expected {
            // Pings come every second; only publications count as news.
            match tokio::time::timeout_at(quiet_until.into(), ws.recv()).await {
                Ok(Ok(Some(tether::Message::Text(text)))) => {
                    let text = text.as_str();
                    if text.contains(r#""push":"publication""#) {
                        received.publications += 1;
                        counted.send_replace(received.publications);
                        received.last_offset = offset_in(text);
                        quiet_until = Instant::now() + Duration::from_secs(5);
                    }
                }
                Ok(Ok(Some(tether::Message::Close(frame)))) => {
                    received.ended = Some(format!("closed: {frame:?}"));
                    break;
                }
                Ok(Ok(Some(_))) => {}
                Ok(other) => {
                    received.ended = Some(format!("ended: {other:?}"));
                    break;
                }
                Err(_) => {
                    received.ended = Some("quiet for 5 s".into());
                    break;
                }
            }
        }
        received
    });
    Good { task, progress }
}

/// The `"offset"` of a publication push (0 when it has none).
fn offset_in(push: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(push).unwrap_or_default();
    value["offset"].as_u64().unwrap_or(0)
}

/// Asserts that the well-behaved subscriber received all `expected`.
fn assert_got_everything(received: Received, expected: usize) {
    assert_eq!(
        received.publications,
        expected,
        "the good subscriber got everything (newest offset {}, {})",
        received.last_offset,
        received.ended.as_deref().unwrap_or("still reading"),
    );
}

/// Publishes `count` messages of about `size` bytes on `channel`, never more
/// than [`AHEAD`] past what the well-behaved subscriber has received.
async fn publish(port: u16, channel: &str, count: usize, size: usize, good: &mut Good) {
    let data = "x".repeat(size);
    for sent in 0..count {
        let behind = sent.saturating_sub(AHEAD);
        // A subscriber that stopped shows in its count, not here.
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            good.progress.wait_for(|&received| received >= behind),
        )
        .await;
        let body = format!(r#"{{"channel":"{channel}","data":"{data}"}}"#);
        let answer = http(port, "POST", "/api/publish", &body).await;
        assert!(answer.contains("offset"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_as_a_slow_consumer() {
    let (_server, port): (Child, u16) = spawn(SERVE, Stdio::null()).await;
    let mut good = good_subscriber(port, "feed", 400).await;
    let _stalled = raw_subscriber(port, "feed").await;
    // Far more than the socket buffers and the queue of 32 hold.
    publish(port, "feed", 400, 32 << 10, &mut good).await;
    let took = until(port, "slow consumer", |m| disconnects(m, 4001) == 1.0).await;
    eprintln!("disconnected as a slow consumer {took:?} after the feed");
    until(port, "slow consumer gone", |m| open_websockets(m) == 1.0).await;
    assert_got_everything(good.task.await.unwrap(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_sends_pongs_is_cut_by_its_queue_not_kept_by_its_pongs() {
    let (_server, port): (Child, u16) = spawn(SERVE, Stdio::null()).await;
    let mut good = good_subscriber(port, "feed", 400).await;
    let mut deaf = raw_subscriber(port, "feed").await;
    // Unsolicited pongs keep it "alive" for the heartbeat; it never reads.
    let pongs = tokio::spawn(async move {
        while deaf.write_all(&[0x8a, 0x80, 0, 0, 0, 0]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    publish(port, "feed", 400, 32 << 10, &mut good).await;
    until(port, "deaf client", |m| disconnects(m, 4001) == 1.0).await;
    until(port, "deaf client gone", |m| open_websockets(m) == 1.0).await;
    pongs.abort();
    assert_got_everything(good.task.await.unwrap(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_process_is_cut_by_the_heartbeat() {
    let (_server, port): (Child, u16) = spawn(SERVE, Stdio::null()).await;
    let url = format!("ws://127.0.0.1:{port}/connection/websocket");
    let mut client = Child(
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["connect", &url, "--pipe"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    {
        use std::io::Write;
        let stdin = client.0.stdin.as_mut().unwrap();
        writeln!(stdin, r#"{{"id":1,"op":"subscribe","channel":"feed"}}"#).unwrap();
    }
    until(port, "client connected", |m| open_websockets(m) == 1.0).await;
    let pid = client.0.id().to_string();
    let stopped = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(stopped.success());
    // Silent from now: cut within ping interval + pong timeout (2 s) and a tick.
    let took = until(port, "stopped client", |m| disconnects(m, 4002) == 1.0).await;
    eprintln!("stopped process disconnected (4002) after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    until(port, "stopped client gone", |m| open_websockets(m) == 0.0).await;
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_frame_and_a_half_closed_socket_end_their_sessions_only() {
    let (_server, port): (Child, u16) = spawn(SERVE, Stdio::null()).await;
    let mut good = good_subscriber(port, "feed", 20).await;
    // Half a frame, then a reset (SO_LINGER 0 makes close send RST).
    let mut reset = raw_subscriber(port, "feed").await;
    let frame = text_frame(&format!(
        r#"{{"id":2,"op":"ping","pad":"{}"}}"#,
        "p".repeat(500)
    ));
    reset.write_all(&frame[..frame.len() / 2]).await.unwrap();
    let std = reset.into_std().unwrap();
    socket2::SockRef::from(&std)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(std);
    // Our write side shut, no close frame: the server sees EOF.
    let mut half = raw_subscriber(port, "feed").await;
    half.shutdown().await.unwrap();
    let took = until(port, "broken connections gone", |m| {
        open_websockets(m) == 1.0
    })
    .await;
    eprintln!("reset and half-closed sessions ended after {took:?}");
    // The server ended the half-closed one: our read side sees the end.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(ENDS_WITHIN, half.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the server closed its side");
    publish(port, "feed", 20, 100, &mut good).await;
    assert_got_everything(good.task.await.unwrap(), 20);
}

//! A flood of connections against a lowered descriptor limit (`prlimit`).
//! Near their limit `tether serve` and `tether echo` answer new connections
//! with 503 rather than let the kernel refuse them; with the limit lowered
//! under them while they run, so they really run out, they back off instead
//! of spinning on `EMFILE`, keep serving the connections they have, say so
//! once in the log and in `/metrics`, and accept again once descriptors free.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, Child};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Descriptors the server may hold: a few for itself, the rest for sockets.
const LIMIT: u32 = 96;
/// Connections the flood opens: past the limit, and enough to fill the
/// listener's backlog behind it.
const FLOOD: usize = 200;

/// Runs `tether ARGS --listen …` under `prlimit --nofile=LIMIT`, with its
/// log on a pipe; waits until it accepts.
async fn spawn_limited(args: &[&str]) -> (Child, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Child(
        Command::new("prlimit")
            .arg(format!("--nofile={LIMIT}:{LIMIT}"))
            .arg(env!("CARGO_BIN_EXE_tether"))
            .args(["--log", "info"])
            .args(args)
            .args(["--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prlimit (util-linux) runs"),
    );
    for _ in 0..200 {
        if TcpStream::connect(&listen).await.is_ok() {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("tether {args:?} did not start listening on {listen}");
}

/// Lowers the running process's descriptor limit to `limit`, under the
/// headroom it computed at start, so a flood really runs it out.
fn lower_limit(pid: u32, limit: u32) {
    let lowered = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(lowered.success());
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A WebSocket round trip on `ws`.
async fn round_trip(ws: &mut tether::WebSocket<tether::MaybeTlsStream>, text: &str) -> String {
    ws.send(text.to_owned()).await.unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.recv())
            .await
            .expect("answered while flooded")
            .unwrap()
            .expect("still open");
        if let tether::Message::Text(text) = message {
            return text.to_string();
        }
    }
}

/// Opens the flood: connections the kernel completes whether or not the
/// server can accept them.
async fn flood(port: u16) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..FLOOD {
        if let Ok(Ok(tcp)) = tokio::time::timeout(
            Duration::from_secs(1),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            held.push(tcp);
        }
    }
    held
}

/// A new connection, once the server accepts again (within about 6 s).
async fn connect_again(url: &str) -> tether::WebSocket<tether::MaybeTlsStream> {
    for _ in 0..50 {
        let connect = tether::connect(url);
        if let Ok(Ok((ws, _))) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            return ws;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not accepting again once descriptors freed");
}

/// One sample of `tether serve`'s `/metrics`, by its name and labels.
async fn metric(port: u16, sample: &str) -> f64 {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut metrics = String::new();
    tcp.read_to_string(&mut metrics).await.unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{sample} is counted"))
        .parse()
        .unwrap()
}

/// Everything the child logged so far (it is killed first, so this ends).
fn log_of(mut child: Child) -> String {
    let _ = child.0.kill();
    let mut log = String::new();
    use std::io::Read;
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}

#[tokio::test]
async fn serve_backs_off_while_out_of_descriptors_and_recovers() {
    let (child, port) = spawn_limited(&["serve"]).await;
    let pid = child.0.id();
    let url = format!("ws://127.0.0.1:{port}/connection/websocket");
    let (mut before, _) = tether::connect(&url).await.unwrap();
    round_trip(&mut before, r#"{"id":1,"op":"subscribe","channel":"c"}"#).await;
    lower_limit(pid, 40);
    let held = flood(port).await;
    assert!(
        held.len() > 40,
        "the flood outgrew the limit ({})",
        held.len()
    );
    // Out of descriptors now: the accept loop waits instead of spinning.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_seconds(pid) - cpu;
    assert!(
        spent < 0.5,
        "{spent} CPU seconds in 2 s while out of descriptors"
    );
    // The connection it had is served throughout.
    let reply = round_trip(&mut before, r#"{"id":2,"op":"ping"}"#).await;
    assert!(reply.contains(r#""id":2"#), "{reply}");
    // Descriptors free: it accepts again, the backlog and then new clients.
    drop(held);
    let mut after = connect_again(&url).await;
    let reply = round_trip(&mut after, r#"{"id":1,"op":"ping"}"#).await;
    assert!(reply.contains(r#""id":1"#), "{reply}");
    // And it says so: a counter, one warning, and the recovery.
    let failed = metric(port, r#"tether_accept_errors_total{reason="resources"}"#).await;
    assert!(failed >= 1.0);
    // One warning as each run of failures begins and one line as it ends
    // (a run ends early when the header timeout frees a few), not a line
    // per failed accept.
    let log = log_of(child);
    let began = log.matches("backing off").count();
    let ended = log.matches("accepting again").count();
    assert!(
        began >= 1 && ended >= 1 && began <= ended + 1 && began <= 5,
        "{log}"
    );
}

#[tokio::test]
async fn echo_backs_off_while_out_of_descriptors_and_recovers() {
    let (child, port) = spawn_limited(&["echo", "--threads", "1"]).await;
    let pid = child.0.id();
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut before, _) = tether::connect(&url).await.unwrap();
    assert_eq!(round_trip(&mut before, "hello").await, "hello");
    lower_limit(pid, 40);
    let held = flood(port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_seconds(pid) - cpu;
    assert!(
        spent < 0.5,
        "{spent} CPU seconds in 2 s while out of descriptors"
    );
    assert_eq!(round_trip(&mut before, "still").await, "still");
    drop(held);
    let mut after = connect_again(&url).await;
    assert_eq!(round_trip(&mut after, "again").await, "again");
    let log = log_of(child);
    assert!(log.contains("accepting again"), "{log}");
}

/// Floods `port` and reads what the connections past the headroom are told.
async fn refused_near_the_limit(args: &[&str], url_path: &str) -> String {
    let (child, port) = spawn_limited(args).await;
    let url = format!("ws://127.0.0.1:{port}{url_path}");
    let (mut before, _) = tether::connect(&url).await.unwrap();
    let mut held = flood(port).await;
    // The last ones came past the headroom (LIMIT - 64 descriptors): each
    // is answered at once, without sending a request.
    let mut answer = Vec::new();
    let last = held.last_mut().unwrap();
    tokio::time::timeout(Duration::from_secs(5), last.read_to_end(&mut answer))
        .await
        .expect("refused promptly")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    // The connection it had is served throughout; new ones once the flood goes.
    before
        .send(tether::Message::Ping(bytes::Bytes::new()))
        .await
        .unwrap();
    drop(held);
    let mut after = connect_again(&url).await;
    after
        .send(tether::Message::Ping(bytes::Bytes::new()))
        .await
        .unwrap();
    drop((before, after));
    if args[0] == "serve" {
        let refused = metric(
            port,
            r#"tether_rejected_handshakes_total{reason="descriptors"}"#,
        )
        .await;
        assert!(refused >= 1.0);
    }
    log_of(child)
}

#[tokio::test]
async fn serve_answers_503_near_its_descriptor_limit() {
    let log = refused_near_the_limit(&["serve"], "/connection/websocket").await;
    assert_eq!(log.matches("near the descriptor limit").count(), 1, "{log}");
    assert!(log.contains("below the descriptor limit again"), "{log}");
}

#[tokio::test]
async fn echo_answers_503_near_its_descriptor_limit() {
    let log = refused_near_the_limit(&["echo", "--threads", "1"], "/").await;
    assert_eq!(log.matches("near the descriptor limit").count(), 1, "{log}");
}

//! Memory per idle connection of `tether echo`, plain and compressed.
//!
//! `cargo bench -p tether-cli --bench idle_memory -- [CONNECTIONS]` (default 2000)
//!
//! Starts the release `tether echo` as a child process, opens CONNECTIONS
//! connections, sends one message on each (so compressed connections have
//! allocated their deflate state), then reads the server's resident set size from
//! /proc and prints KiB per connection: the growth over the idle server divided by
//! the connection count. Each mode runs against a fresh server; 3 runs, median.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tether::{ClientBuilder, Config, DeflateConfig, Message};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server is running");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn measure(connections: usize, deflate: Option<DeflateConfig>, server_args: &[&str]) -> f64 {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "echo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log",
            "warn",
        ])
        .args(server_args)
        .stdout(Stdio::null())
        .spawn()
        .expect("start tether echo");
    let server = Server(child);
    let url = format!("ws://127.0.0.1:{port}/");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Warm the server up with one connection so runtime start-up is not counted.
    let (mut warm, _) = tether::connect(&url).await.unwrap();
    warm.send("warm").await.unwrap();
    warm.recv().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(server.0.id());
    let compress = deflate.is_some();
    let config = Config::default().deflate(deflate.unwrap_or_else(DeflateConfig::disabled));
    let mut open = Vec::with_capacity(connections);
    let message = "{\"channel\":\"scores:match-42\",\"data\":{\"home\":2,\"away\":1}}".repeat(4);
    for _ in 0..connections {
        let (mut ws, _) = ClientBuilder::new(&url)
            .config(config.clone())
            .connect()
            .await
            .unwrap();
        assert_eq!(ws.is_compressed(), compress);
        ws.send(message.as_str()).await.unwrap();
        assert!(matches!(ws.recv().await.unwrap(), Some(Message::Text(_))));
        open.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(server.0.id());
    drop(open);
    (after.saturating_sub(before)) as f64 / connections as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let connections: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let context = DeflateConfig::default()
        .server_no_context_takeover(false)
        .client_no_context_takeover(false);
    let modes: [(&str, Option<DeflateConfig>, &[&str]); 3] = [
        ("plain", None, &[]),
        (
            "deflate, no context takeover (default)",
            Some(DeflateConfig::default()),
            &[],
        ),
        (
            "deflate, context takeover both ways",
            Some(context),
            &["--context-takeover"],
        ),
    ];
    println!("tether echo: server RSS per idle connection, {connections} connections, median of 3");
    for (name, deflate, server_args) in modes {
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(measure(connections, deflate.clone(), server_args).await);
        }
        println!(
            "  {name:<42} {:>8.1} KiB/connection  (runs: {runs:.1?})",
            median(runs.clone())
        );
    }
}

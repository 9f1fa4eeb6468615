//! Shared pieces of the interop tests: starting peer processes (killed by PID when
//! dropped, pass or fail), a tether server for peers to connect to, and the
//! scenarios a tether client runs against a peer's server.
//!
//! The peers come from `scripts/setup.sh`: Python `websockets` in `target/venv`,
//! Node `ws` in `tests/interop/node/node_modules`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tether::{Accept, ClientBuilder, CloseCode, CloseFrame, Config, Message};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python interpreter of the test venv.
pub fn python() -> PathBuf {
    let python = repo_root().join("target/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh",
        python.display()
    );
    python
}

/// The Node peer script, checking its dependency is installed.
pub fn node_peer() -> PathBuf {
    let dir = repo_root().join("tests/interop/node");
    assert!(
        dir.join("node_modules/ws").exists(),
        "Node ws is missing: run scripts/setup.sh"
    );
    dir.join("peer.mjs")
}

/// A peer process, killed when dropped.
#[derive(Debug)]
pub struct Peer {
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts a peer in server mode and waits for its `listening PORT` line.
pub async fn start_peer_server(program: PathBuf, args: &[&str]) -> (Peer, u16) {
    let mut child = Command::new(&program)
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("peer server started in time")
        .expect("peer stdout")
        .expect("peer printed its port");
    let port = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .expect("`listening PORT`");
    (Peer { child }, port)
}

/// Runs a peer in client mode to completion and returns its output; panics with
/// that output if it failed.
pub async fn run_peer_client(program: PathBuf, args: &[&str]) -> String {
    let child = Command::new(&program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("peer client finished in time")
        .expect("peer client output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "peer client failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// Runs a Python script of `tests/interop/python` with `args`, feeding it
/// `input` on stdin; returns its output (killed if it is still running after
/// 60 s).
pub async fn run_python_script(
    script: &str,
    args: &[&std::path::Path],
    input: &str,
) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/interop/python").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {script}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input.as_bytes())
        .await
        .expect("the script reads its input");
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} finishes in time"))
        .expect("script output")
}

/// A tether server for peers: echoes on any path, and on `/close/CODE` closes
/// right away with that code.
#[derive(Debug)]
pub struct TetherServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TetherServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TetherServer {
    /// `ws://addr`.
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

/// Starts a [`TetherServer`] with `config`.
pub async fn start_tether_server(config: Config) -> TetherServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                let mut path = String::new();
                let accepted = tether::accept_with(tcp, &config, |request, _| {
                    path = request.uri().path().to_owned();
                    Ok(Accept::default())
                })
                .await;
                let Ok(mut ws) = accepted else { return };
                if let Some(code) = path
                    .strip_prefix("/close/")
                    .and_then(|c| c.parse::<u16>().ok())
                {
                    let _ = ws.close(Some(CloseFrame::new(code, "server bye"))).await;
                    return;
                }
                while let Ok(Some(message)) = ws.recv().await {
                    if message.is_data() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    TetherServer { addr, task }
}

fn big_payload() -> Vec<u8> {
    (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(7919) & 0xff) as u8)
        .collect()
}

/// Every scenario a tether client runs against a peer's echo server at `url`
/// (which closes on `close CODE` and limits messages to 20 MiB).
pub async fn run_client_scenarios(url: &str, compress: bool) {
    let config = Config::default()
        .max_message_size(32 << 20)
        .max_frame_size(32 << 20)
        .compression(compress);
    let (mut ws, _) = ClientBuilder::new(url)
        .config(config.clone())
        .connect()
        .await
        .expect("connect to peer");
    assert_eq!(ws.is_compressed(), compress, "negotiated compression");

    for message in [
        Message::text("héllo wörld ✓"),
        Message::binary((0..=255u8).collect::<Vec<_>>()),
    ] {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(message));
    }

    let big = big_payload();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match ws.recv().await.unwrap() {
        Some(Message::Binary(got)) => assert!(got == big, "16 MiB echo differs"),
        other => panic!("expected the 16 MiB echo, got {other:?}"),
    }

    ws.feed_fragment("frag", true, false).await.unwrap();
    ws.feed(Message::Ping(Bytes::from_static(b"between")))
        .await
        .unwrap();
    ws.feed_fragment("men", false, false).await.unwrap();
    ws.feed_fragment("ted", false, true).await.unwrap();
    ws.flush().await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::Pong(Bytes::from_static(b"between")))
    );
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text("fragmented")));

    ws.send(Message::Ping(Bytes::from_static(b"ping")))
        .await
        .unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::Pong(Bytes::from_static(b"ping")))
    );

    // Client-initiated close: the peer echoes the code.
    ws.send(Message::Close(Some(CloseFrame::new(4000, "client bye"))))
        .await
        .unwrap();
    loop {
        match ws.recv().await.unwrap() {
            Some(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode(4000));
                break;
            }
            Some(other) if !other.is_data() => continue,
            other => panic!("expected the close echo, got {other:?}"),
        }
    }

    // Server-initiated close with an application code.
    let (mut ws, _) = ClientBuilder::new(url)
        .config(config.clone())
        .connect()
        .await
        .unwrap();
    ws.send("close 4002").await.unwrap();
    match ws.recv().await.unwrap() {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode(4002)),
        other => panic!("expected close 4002, got {other:?}"),
    }
    assert_eq!(ws.recv().await.unwrap(), None);

    // Over the peer's 20 MiB limit: the peer closes with 1009.
    let (mut ws, _) = ClientBuilder::new(url)
        .config(config)
        .connect()
        .await
        .unwrap();
    let _ = ws.send(Message::binary(vec![0u8; 21 << 20])).await;
    match ws.recv().await {
        Ok(Some(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::TOO_BIG),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

//! `tether serve` as a process: SIGTERM closes every client with 1001 and the
//! process exits 0; each connection logs one line when it opens and one when it
//! closes.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Child;

use tether::Message;

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Child(
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log",
                "info",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let url = format!("ws://127.0.0.1:{port}/connection/websocket");
    let mut clients = Vec::new();
    for attempt in 0.. {
        match tether::connect(&url).await {
            Ok((ws, _)) => {
                clients.push(ws);
                if clients.len() == 3 {
                    break;
                }
            }
            Err(_) if attempt < 100 => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("server did not start: {e}"),
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for mut ws in clients {
        let mut code = None;
        let read = async {
            while let Ok(Some(message)) = ws.recv().await {
                if let Message::Close(Some(frame)) = message {
                    code = Some(frame.code.0);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("closed in time");
        assert_eq!(code, Some(1001));
    }
    let mut stderr = server.0.stderr.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.0.wait();
        (status, server)
    });
    let (status, _server) = tokio::time::timeout(Duration::from_secs(15), exit)
        .await
        .expect("exited in time")
        .unwrap();
    assert!(
        status.unwrap().success(),
        "tether serve exits 0 after SIGTERM"
    );
    // One log line per session opened and closed, with its transport and
    // the reason.
    let mut log = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("session open"), 3, "{log}");
    assert_eq!(count("session closed"), 3, "{log}");
    assert_eq!(count("transport=\"websocket\""), 6, "{log}");
    assert_eq!(count("reason=\"server shutting down\""), 3, "{log}");
}

//! Starting the real `tether` binary on a free loopback port for a test.
#![allow(dead_code)] // each test binary uses a different subset

use std::process::{Command, Stdio};
use std::time::Duration;

/// A child process killed (by PID) when the test ends, pass or fail.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `tether ARGS --listen 127.0.0.1:PORT` and waits until it accepts
/// connections.
pub async fn spawn(args: &[&str], stderr: Stdio) -> (Child, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Child(
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(args)
            .args(["--listen", &listen])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(&listen).await.is_ok() {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("tether {args:?} did not start listening on {listen}");
}

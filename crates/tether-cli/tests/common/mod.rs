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
/// connections. A port taken between [`free_port`] and the child's bind
/// (another test's server, say) makes the child exit: then it tries again on
/// another port, rather than let the test talk to whoever holds this one.
pub async fn spawn(args: &[&str], stderr: Stdio) -> (Child, u16) {
    // Only the first attempt gets the caller's stderr (a `Stdio` is used once).
    let mut stderr = Some(stderr);
    for _attempt in 0..5 {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Child(
            Command::new(env!("CARGO_BIN_EXE_tether"))
                .args(args)
                .args(["--listen", &listen])
                .stdout(Stdio::null())
                .stderr(stderr.take().unwrap_or_else(Stdio::null))
                .spawn()
                .unwrap(),
        );
        for _ in 0..200 {
            if child.0.try_wait().unwrap().is_some() {
                break;
            }
            if tokio::net::TcpStream::connect(&listen).await.is_ok() {
                // A child that could not bind exits at once: make sure it
                // is this one listening.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if child.0.try_wait().unwrap().is_none() {
                    return (child, port);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    panic!("tether {args:?} did not start listening");
}

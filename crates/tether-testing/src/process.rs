//! Child processes of a test: on a free loopback port, killed by PID when
//! the test ends, pass or fail.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A child process killed (by PID) when dropped.
#[derive(Debug)]
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free loopback port")
        .local_addr()
        .expect("its address")
        .port()
}

/// Runs `binary ARGS --listen 127.0.0.1:PORT` and waits until it accepts
/// connections. A port taken between [`free_port`] and the child's bind
/// (another test's server, say) makes the child exit: then it tries again on
/// another port, rather than let the test talk to whoever holds this one.
pub async fn spawn_listening(binary: &Path, args: &[&str], stderr: Stdio) -> (Child, u16) {
    // Only the first attempt gets the caller's stderr (a `Stdio` is used once).
    let mut stderr = Some(stderr);
    for _attempt in 0..5 {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Child(
            Command::new(binary)
                .args(args)
                .args(["--listen", &listen])
                .stdout(Stdio::null())
                .stderr(stderr.take().unwrap_or_else(Stdio::null))
                .spawn()
                .expect("the binary starts"),
        );
        for _ in 0..200 {
            if child.0.try_wait().expect("its status").is_some() {
                break;
            }
            if tokio::net::TcpStream::connect(&listen).await.is_ok() {
                // A child that could not bind exits at once: make sure it
                // is this one listening.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if child.0.try_wait().expect("its status").is_none() {
                    return (child, port);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    panic!("{} {args:?} did not start listening", binary.display());
}

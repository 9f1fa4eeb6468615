//! Debian's `redis-server` for a test: on a free loopback port, without
//! persistence, killed (by PID) when the handle is dropped.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{free_port, Child};

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    /// The process; `signal` it to stop, stall or kill it.
    pub child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts one on `port` (a restart where the last one was) and waits until it answers.
    pub async fn start_on(port: u16) -> Self {
        let child = Child(
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts (scripts/setup.sh installs it)"),
        );
        for _ in 0..200 {
            if let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut pong = [0u8; 7];
                if tcp.write_all(b"PING\r\n").await.is_ok()
                    && tcp.read_exact(&mut pong).await.is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return Self { child, port };
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not answer on port {port}");
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`"KILL"`, `"STOP"`, `"CONT"`, `"TERM"`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }
}

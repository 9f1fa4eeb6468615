//! The processes a cluster run starts on free loopback ports and kills
//! when dropped: Debian's `redis-server` (no persistence), `tether serve`
//! nodes (this very binary), and Debian's `nginx` with deploy/nginx.conf's
//! settings in front of the nodes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{BenchError, Result};

/// deploy/nginx.conf, whose settings the benchmark's nginx runs with.
const NGINX_CONF: &str = include_str!("../../../../../deploy/nginx.conf");

/// A child process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub(super) struct Process {
    child: Child,
    /// Its loopback port.
    pub(super) port: u16,
}

impl Process {
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (the OS's pick, released for the child to take).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `command`, then waits until something accepts on `port`.
async fn spawn(mut command: Command, port: u16, what: &str) -> Result<Process> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Options(format!("cannot start {what}: {e}")))?;
    let mut process = Process { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(process);
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            return Err(BenchError::Options(format!("{what} exited: {status}")));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Options(format!(
                "{what} did not listen in 10 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `redis-server` with no persistence.
pub(super) async fn redis() -> Result<Process> {
    let port = free_port()?;
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stderr(Stdio::null());
    spawn(
        command,
        port,
        "redis-server (Debian's redis-server package)",
    )
    .await
}

/// A `tether serve` node (this binary) with `args`, with no per-connection
/// rate limit.
pub(super) async fn node(args: &[String]) -> Result<Process> {
    let port = free_port()?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log",
            "warn",
        ])
        // The benchmark's publishers go as fast as acknowledgements come.
        .args(["--rate-limit", "1000000000"])
        .args(args)
        .stderr(Stdio::inherit());
    spawn(command, port, "tether serve").await
}

/// nginx in front of `nodes`, one worker; its files under a temporary
/// directory removed with it.
pub(super) struct Nginx {
    pub(super) process: Process,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Nginx {
    pub(super) async fn start(nodes: &[Process]) -> Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("tether-bench-nginx-{port}"));
        std::fs::create_dir_all(dir.join("tmp"))?;
        let mut config = String::new();
        let mut upstream_written = false;
        for line in NGINX_CONF.lines() {
            if line.trim_start().starts_with("server 127.0.0.1:808") {
                if !upstream_written {
                    for node in nodes {
                        config.push_str(&format!(
                            "        server 127.0.0.1:{} max_fails=1 fail_timeout=5s;\n",
                            node.port
                        ));
                    }
                    upstream_written = true;
                }
                continue;
            }
            let line = line
                .replace(
                    "listen 127.0.0.1:8080;",
                    &format!("listen 127.0.0.1:{port};"),
                )
                .replace("worker_processes auto;", "worker_processes 1;");
            config.push_str(&line);
            config.push('\n');
        }
        let file = dir.join("nginx.conf");
        std::fs::write(&file, config)?;
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|path| !path.starts_with('/') || std::path::Path::new(path).exists())
            .unwrap_or("nginx");
        let mut command = Command::new(nginx);
        command
            .arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(&dir)
            .args(["-g", "daemon off;"])
            .stderr(Stdio::null());
        let process = spawn(command, port, "nginx (Debian's nginx package)").await?;
        Ok(Self { process, dir })
    }

    /// Its worker processes (the master only hands out connections).
    pub(super) fn workers(&self) -> Vec<u32> {
        let pid = self.process.pid();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|child| child.parse().ok())
            .collect()
    }
}

/// Redis's `used_memory`, in bytes, by `INFO memory` on a connection of its own.
pub(super) async fn redis_used_memory(port: u16) -> Result<u64> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")
        .await?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // A bulk string: `$LEN\r\n` then LEN bytes and CRLF.
    let unreadable = || BenchError::Protocol("unreadable INFO answer from Redis".into());
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(unreadable());
        }
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer);
        let Some((head, body)) = text.split_once("\r\n") else {
            continue;
        };
        let length: usize = head
            .trim_start_matches('$')
            .parse()
            .map_err(|_| unreadable())?;
        if body.len() < length {
            continue;
        }
        return body
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(unreadable);
    }
}

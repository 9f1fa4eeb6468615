//! The subscribers' side of the wire: sockets that count what passes through
//! them, and HTTP/1.1 over one kept-alive counted connection (requests with
//! their bodies, and chunked streams read chunk by chunk).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::TcpStream;

use crate::error::{BenchError, Result};

/// TCP payload bytes and HTTP requests of one transport's subscribers.
#[derive(Debug, Default)]
pub(in crate::scenario) struct Wire {
    /// Server to client.
    pub(super) down: AtomicU64,
    /// Client to server.
    pub(super) up: AtomicU64,
    pub(super) requests: AtomicU64,
    pub(super) deliveries: AtomicU64,
}

/// A socket that counts what passes through it.
pub(super) struct Counted {
    pub(super) tcp: TcpStream,
    pub(super) wire: Arc<Wire>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.tcp).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.wire.down.fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.tcp).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &result {
            self.wire.up.fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

pub(in crate::scenario) fn protocol(why: impl std::fmt::Display) -> BenchError {
    BenchError::Protocol(why.to_string())
}

/// HTTP/1.1 over one kept-alive, counted connection.
pub(in crate::scenario) struct HttpConn {
    io: BufReader<Counted>,
    host: String,
}

impl HttpConn {
    pub(in crate::scenario) async fn open(addr: &str, wire: &Arc<Wire>) -> Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let io = BufReader::new(Counted {
            tcp,
            wire: wire.clone(),
        });
        Ok(Self {
            io,
            host: addr.to_owned(),
        })
    }

    /// Sends a request; returns the status and the headers' end.
    pub(in crate::scenario) async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        extra: &str,
    ) -> Result<(u16, Option<usize>, bool)> {
        self.io
            .get_ref()
            .wire
            .requests
            .fetch_add(1, Ordering::Relaxed);
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            self.host,
            body.len()
        );
        self.io.get_mut().write_all(request.as_bytes()).await?;
        let mut status = None;
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await? == 0 {
                return Err(protocol("the server closed the connection"));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if status.is_none() {
                status = line.get(9..12).and_then(|s| s.parse().ok());
                continue;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().ok();
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        Ok((
            status.ok_or_else(|| protocol("no status line"))?,
            length,
            chunked,
        ))
    }

    /// Opens a long-poll session whose first request is `first`; returns
    /// the session's key.
    pub(in crate::scenario) async fn open_longpoll(&mut self, first: &str) -> Result<String> {
        let (status, body) = self.call("POST", "/connection/longpoll", first).await?;
        if status != 200 {
            return Err(protocol(format!("open answered {status}")));
        }
        let opened: serde_json::Value = serde_json::from_slice(&body).map_err(protocol)?;
        let key = opened["session"]
            .as_str()
            .ok_or_else(|| protocol("no session"))?;
        Ok(key.to_owned())
    }

    /// A whole request and its body.
    pub(in crate::scenario) async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, Vec<u8>)> {
        let (status, length, chunked) = self.send(method, path, body, "").await?;
        let body = if chunked {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk().await? {
                body.extend_from_slice(&chunk);
            }
            body
        } else {
            let mut body = vec![0; length.unwrap_or(0)];
            self.io.read_exact(&mut body).await?;
            body
        };
        Ok((status, body))
    }

    /// The next chunk of a chunked body; `None` at its end.
    pub(in crate::scenario) async fn chunk(&mut self) -> Result<Option<Vec<u8>>> {
        let mut line = String::new();
        if self.io.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let size =
            usize::from_str_radix(line.trim(), 16).map_err(|_| protocol("bad chunk size"))?;
        let mut chunk = vec![0; size + 2];
        self.io.read_exact(&mut chunk).await?;
        chunk.truncate(size);
        Ok((size > 0).then_some(chunk))
    }
}

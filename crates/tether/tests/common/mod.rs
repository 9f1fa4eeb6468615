//! Helpers shared by the integration tests: an in-process echo server on a free
//! loopback port.

#![allow(dead_code)]

use std::net::SocketAddr;

use tether::{Accept, Config};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An echo server task; aborted when dropped.
#[derive(Debug)]
pub struct EchoServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoServer {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an echo server with `config` that refuses Origins other than
/// `http://allowed.example` with 403 and selects the `chat` subprotocol when offered.
pub async fn echo_server(config: Config) -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let config = config.clone();
            tokio::spawn(async move {
                let ws = tether::accept_with(tcp, &config, |_, offer| {
                    if let Some(origin) = &offer.origin {
                        if origin != "http://allowed.example" {
                            return Err(tether::HandshakeError::Refused {
                                status: 403,
                                reason: "origin not allowed".into(),
                            });
                        }
                    }
                    let mut accept = Accept::default();
                    if offer.protocols.iter().any(|p| p == "chat") {
                        accept = accept.protocol("chat");
                    }
                    Ok(accept)
                })
                .await;
                let Ok(mut ws) = ws else { return };
                while let Ok(Some(message)) = ws.recv().await {
                    if message.is_data() && ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    EchoServer { addr, task }
}

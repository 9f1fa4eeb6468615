//! A TCP relay between a client and a server, for pulling the network:
//! [`Relay::cut`] resets every connection through it at once, `block` refuses
//! new ones, and `retarget` points new connections at another server (a
//! deploy behind a load balancer).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A relay on a free loopback port; everything through it stops when it is dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    target: AtomicU16,
    blocked: AtomicBool,
    pipes: Mutex<Vec<JoinHandle<()>>>,
}

impl Relay {
    /// Starts relaying to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            target: AtomicU16::new(target),
            ..Shared::default()
        });
        let state = shared.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if state.blocked.load(Ordering::SeqCst) {
                    // Refused: closed before a byte is relayed.
                    drop(inbound);
                    continue;
                }
                let target = state.target.load(Ordering::SeqCst);
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut pipes = state.pipes.lock().expect("not poisoned");
                pipes.retain(|p| !p.is_finished());
                pipes.push(pipe);
            }
        });
        Self {
            addr,
            shared,
            accepting,
        }
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends every connection through the relay now (the network pulled).
    pub fn cut(&self) {
        for pipe in self.shared.pipes.lock().expect("not poisoned").drain(..) {
            pipe.abort();
        }
    }

    /// Refuses new connections (`true`) until unblocked (`false`).
    pub fn block(&self, blocked: bool) {
        self.shared.blocked.store(blocked, Ordering::SeqCst);
    }

    /// Sends new connections to `127.0.0.1:target` from now on.
    pub fn retarget(&self, target: u16) {
        self.shared.target.store(target, Ordering::SeqCst);
    }

    /// How many connections are open through the relay.
    pub fn connections(&self) -> usize {
        let mut pipes = self.shared.pipes.lock().expect("not poisoned");
        pipes.retain(|p| !p.is_finished());
        pipes.len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}

//! The README's echo server: `cargo run -p tether --example echo-server`.

use tether::Message;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> tether::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:9001").await?;
    loop {
        let (tcp, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let mut ws = match tether::accept(tcp).await {
                Ok(ws) => ws,
                Err(e) => return eprintln!("{peer}: handshake failed: {e}"),
            };
            loop {
                match ws.recv().await {
                    Ok(Some(Message::Close(frame))) => {
                        eprintln!("{peer}: closed by peer: {frame:?}")
                    }
                    Ok(Some(message)) if message.is_data() => {
                        if let Err(e) = ws.send(message).await {
                            return eprintln!("{peer}: send failed: {e}");
                        }
                    }
                    Ok(Some(_ping_or_pong)) => {} // pongs are sent for us
                    Ok(None) => return eprintln!("{peer}: connection closed"),
                    Err(e) => return eprintln!("{peer}: connection failed: {e}"),
                }
            }
        });
    }
}

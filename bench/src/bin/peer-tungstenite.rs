//! The comparison's echo and `/broadcast` server on tokio-tungstenite, written
//! as its examples do and with the read buffer tuned: 16 KiB instead of the
//! 128 KiB default (which alone costs 128 KiB per connection).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tether_compare::room::Room;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 << 10)
        .max_message_size(Some(64 << 20))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(tether_compare::listen_arg()).await?;
    let room = Arc::new(Room::<Message>::default());
    loop {
        let (tcp, _) = listener.accept().await?;
        let room = room.clone();
        tokio::spawn(async move {
            let _ = serve(tcp, room).await;
        });
    }
}

async fn serve(tcp: TcpStream, room: Arc<Room<Message>>) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let mut path = String::new();
    // The callback's error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        path = request.uri().path().to_owned();
        Ok(response)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config())).await?;
    if path != "/broadcast" {
        // As tokio-tungstenite's own echo example does: `forward` feeds the sink
        // and flushes only when the stream has nothing ready, so pipelined
        // requests are answered in batches.
        let (sink, stream) = ws.split();
        stream
            .try_filter(|m| std::future::ready(m.is_text() || m.is_binary()))
            .forward(sink)
            .await?;
        return Ok(());
    }
    let (mut sink, mut stream) = ws.split();
    let (id, mut inbox) = room.join();
    let writer = tokio::spawn(async move {
        while let Some(first) = inbox.recv().await {
            sink.feed(first).await?;
            while let Ok(next) = inbox.try_recv() {
                sink.feed(next).await?;
            }
            sink.flush().await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    while let Some(message) = stream.next().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            room.send_all(message);
        }
    }
    room.leave(id);
    writer.abort();
    Ok(())
}

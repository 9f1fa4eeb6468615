//! The comparison's echo and `/broadcast` server on fastwebsockets (upgraded
//! through hyper, as its examples do).

use std::sync::Arc;

use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tether_compare::room::Room;
use tokio::net::TcpListener;

type Shared = Arc<Room<Bytes>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(tether_compare::listen_arg()).await?;
    let room: Shared = Arc::default();
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let room = room.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(tcp);
            let service = service_fn(move |request| upgrade_request(request, room.clone()));
            let _ = http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await;
        });
    }
}

async fn upgrade_request(
    mut request: Request<Incoming>,
    room: Shared,
) -> Result<Response<Empty<Bytes>>, fastwebsockets::WebSocketError> {
    let broadcast = request.uri().path() == "/broadcast";
    let (response, upgraded) = upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let _ = if broadcast {
            serve_broadcast(upgraded, room).await
        } else {
            serve_echo(upgraded).await
        };
    });
    Ok(response)
}

async fn serve_echo(upgraded: upgrade::UpgradeFut) -> anyhow::Result<()> {
    let mut ws = FragmentCollector::new(upgraded.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn serve_broadcast(upgraded: upgrade::UpgradeFut, room: Shared) -> anyhow::Result<()> {
    let ws = upgraded.await?;
    let (read, mut write) = ws.split(tokio::io::split);
    let mut read = FragmentCollectorRead::new(read);
    let (id, mut inbox) = room.join();
    let writer = tokio::spawn(async move {
        while let Some(message) = inbox.recv().await {
            write
                .write_frame(Frame::text(Payload::Borrowed(&message)))
                .await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    loop {
        // The load sends no pings, so nothing must be sent back from here.
        let frame = read
            .read_frame::<_, std::io::Error>(&mut |_| async { Ok(()) })
            .await;
        let Ok(frame) = frame else { break };
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => {
                room.send_all(Bytes::copy_from_slice(&frame.payload));
            }
            _ => {}
        }
    }
    room.leave(id);
    writer.abort();
    Ok(())
}

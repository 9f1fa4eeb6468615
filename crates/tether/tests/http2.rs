//! WebSockets over HTTP/2 (RFC 8441): the tether client against a hyper
//! HTTP/2 server that upgrades with `tether::upgrade`, over TLS (ALPN `h2`)
//! and in the clear (h2c); many WebSockets on one connection.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tether::{ClientBuilder, Config, Http2Error, Message};
use tokio::net::TcpListener;

/// Large enough for the 16 MiB message.
const MAX_MESSAGE: usize = 32 << 20;

fn config() -> Config {
    Config::default().max_message_size(MAX_MESSAGE)
}

/// An HTTP/2 server on a free port: every WebSocket echoes, except on
/// `/flood`, where the server sends 16 MiB without reading. `tls` is the
/// certificate's (PEM cert, PEM key), else h2c. Returns the port and the
/// count of TCP connections accepted.
async fn serve(tls: Option<(String, String)>, connect_protocol: bool) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acceptor = tls.map(|(cert, key)| {
        let mut config =
            (*tether::tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap()).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                if connect_protocol {
                    builder.enable_connect_protocol();
                }
                let service = service_fn(handle);
                let _ = match acceptor {
                    Some(acceptor) => {
                        let tls = acceptor.accept(tcp).await.unwrap();
                        builder.serve_connection(TokioIo::new(tls), service).await
                    }
                    None => builder.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    });
    (port, accepted)
}

async fn handle(
    mut request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<String>, Infallible> {
    let flood = request.uri().path() == "/flood";
    Ok(match tether::upgrade(&mut request, &config(), None) {
        Ok((response, pending)) => {
            tokio::spawn(async move {
                let mut ws = pending.finish().await.unwrap();
                if flood {
                    let chunk = vec![7u8; 256 << 10];
                    for _ in 0..64 {
                        if ws.send(Message::binary(chunk.clone())).await.is_err() {
                            return;
                        }
                    }
                }
                while let Ok(Some(message)) = ws.recv().await {
                    if message.is_data() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
            response.map(|()| String::new())
        }
        Err(e) => tether::proto::handshake::reject_response(&e),
    })
}

fn certificate() -> (String, String, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    let client = tether::tls::client_config(Some(cert_pem.as_bytes())).unwrap();
    (cert_pem, key_pem, client)
}

/// Text, binary, 16 MiB, fragmented and compressed messages, each echoed.
async fn exchange_every_kind(builder: ClientBuilder) {
    let (mut ws, response) = builder.config(config()).connect().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert!(ws.get_ref().tcp().is_none(), "not an HTTP/2 stream");
    assert!(ws.is_compressed(), "permessage-deflate was not agreed");
    ws.send("hello over h2").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::text("hello over h2"))
    );
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::binary(vec![0u8, 1, 2, 255]))
    );
    // 16 MiB of incompressible bytes: many DATA frames, flow control windows
    // refilled many times over.
    let big: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::binary(big)));
    ws.feed_fragment("frag", true, false).await.unwrap();
    ws.feed_fragment("men", false, false).await.unwrap();
    ws.feed_fragment("ted", false, true).await.unwrap();
    ws.flush().await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text("fragmented")));
    let repetitive = "tick tock ".repeat(100_000);
    ws.send(repetitive.as_str()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text(repetitive)));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn every_kind_of_message_over_tls() {
    let (cert, key, client) = certificate();
    let (port, _) = serve(Some((cert, key)), true).await;
    let url = format!("wss://localhost:{port}/echo");
    exchange_every_kind(ClientBuilder::new(url).tls_config(client).http2(true)).await;
}

#[tokio::test]
async fn every_kind_of_message_over_h2c() {
    let (port, _) = serve(None, true).await;
    let url = format!("ws://127.0.0.1:{port}/echo");
    exchange_every_kind(ClientBuilder::new(url).http2(true)).await;
}

/// `n` round trips of distinct messages on `ws`.
async fn round_trips(ws: &mut tether::WebSocket<tether::MaybeTlsStream>, id: usize, n: usize) {
    for i in 0..n {
        let text = format!("stream {id} message {i}");
        ws.send(text.as_str()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::text(text)));
    }
}

#[tokio::test]
async fn ten_websockets_share_one_connection_and_close_alone() {
    let (cert, key, client) = certificate();
    let (port, accepted) = serve(Some((cert, key)), true).await;
    let url = format!("wss://localhost:{port}/echo");
    let builder = || ClientBuilder::new(&url).tls_config(client.clone());
    let connection = builder().open_http2().await.unwrap();
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(builder().connect_over(&connection).await.unwrap().0);
    }
    // All ten at once.
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(id, mut ws)| {
            tokio::spawn(async move {
                round_trips(&mut ws, id, 200).await;
                ws
            })
        })
        .collect();
    let mut sockets = Vec::new();
    for task in tasks {
        sockets.push(task.await.unwrap());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one TCP connection");
    // One closes; its siblings, and new streams, carry on.
    let mut closed = sockets.remove(3);
    closed.close(None).await.unwrap();
    assert!(closed.send("after close").await.is_err());
    for (id, ws) in sockets.iter_mut().enumerate() {
        round_trips(ws, id, 20).await;
    }
    let (mut late, _) = builder().connect_over(&connection).await.unwrap();
    round_trips(&mut late, 10, 20).await;
    // One dropped without a close (its stream reset) harms no one either.
    drop(sockets.pop());
    for (id, ws) in sockets.iter_mut().enumerate() {
        round_trips(ws, id, 5).await;
    }
    assert!(!connection.is_closed());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stalled_reader_holds_back_only_its_own_stream() {
    let (port, _) = serve(None, true).await;
    let echo = format!("ws://127.0.0.1:{port}/echo");
    let connection = ClientBuilder::new(&echo).open_http2().await.unwrap();
    // The server sends 16 MiB here and this side reads none of it: the
    // stream's window fills and the server's sends wait.
    let (mut stalled, _) = ClientBuilder::new(format!("ws://127.0.0.1:{port}/flood"))
        .config(config())
        .connect_over(&connection)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut sibling, _) = ClientBuilder::new(&echo)
        .connect_over(&connection)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), round_trips(&mut sibling, 1, 100))
        .await
        .expect("the sibling stream was starved");
    // The stalled stream still gets all its data once read.
    let mut received = 0;
    while received < 16 << 20 {
        let message = stalled.recv().await.unwrap().unwrap();
        received += message.len();
    }
    assert_eq!(received, 16 << 20);
}

#[tokio::test]
async fn a_server_without_extended_connect_is_refused_clearly() {
    let (port, _) = serve(None, false).await;
    let error = ClientBuilder::new(format!("ws://127.0.0.1:{port}/echo"))
        .config(Config::default().handshake_timeout(Duration::from_millis(500)))
        .open_http2()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, tether::Error::Http2(e) if matches!(**e, Http2Error::NoExtendedConnect)),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_tls_server_without_h2_is_refused_clearly() {
    let (cert, key, client) = certificate();
    // rustls with no ALPN: HTTP/1.1 only.
    let server = tether::tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _tls = acceptor.accept(tcp).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let error = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .tls_config(client)
        .http2(true)
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, tether::Error::Http2(e) if matches!(**e, Http2Error::NotNegotiated)),
        "{error:?}"
    );
}

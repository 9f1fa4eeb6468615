//! WebSockets over HTTP/2 (RFC 8441): the tether client against an HTTP/2
//! server that upgrades with `tether::upgrade` (hyper's, and tether's own
//! [`Http2Server`]), over TLS (ALPN `h2`) and in the clear (h2c); many
//! WebSockets on one connection.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tether::http2_server::Http2Server;
use tether::{ClientBuilder, Config, Http2Error, Message};
use tokio::net::TcpListener;

/// Large enough for the 16 MiB message.
const MAX_MESSAGE: usize = 32 << 20;

fn config() -> Config {
    Config::default().max_message_size(MAX_MESSAGE)
}

/// Which HTTP/2 server serves the connections.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Server {
    /// hyper's, extended CONNECT enabled.
    Hyper,
    /// hyper's without extended CONNECT.
    HyperWithoutConnect,
    /// tether's [`Http2Server`]: WebSockets written straight into h2.
    Tether,
}

/// An HTTP/2 server on a free port: every WebSocket echoes, except on
/// `/flood`, where the server sends 16 MiB without reading. `tls` is the
/// certificate's (PEM cert, PEM key), else h2c. Returns the port and the
/// count of TCP connections accepted.
async fn serve(tls: Option<(String, String)>, server: Server) -> (u16, Arc<AtomicUsize>) {
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
                match acceptor {
                    Some(acceptor) => {
                        let tls = acceptor.accept(tcp).await.unwrap();
                        serve_connection(tls, server).await;
                    }
                    None => serve_connection(tcp, server).await,
                }
            });
        }
    });
    (port, accepted)
}

/// Serves one connection with `server`.
async fn serve_connection<I>(io: I, server: Server)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if server == Server::Tether {
        let _ = Http2Server::new()
            .serve_connection(io, service_fn(handle::<tether::http2_server::Http2Body>))
            .await;
        return;
    }
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    if server == Server::Hyper {
        builder.enable_connect_protocol();
    }
    let service = service_fn(handle::<hyper::body::Incoming>);
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

async fn handle<B>(mut request: hyper::Request<B>) -> Result<hyper::Response<String>, Infallible> {
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

async fn every_kind_of_message_over_tls(server: Server) {
    let (cert, key, client) = certificate();
    let (port, _) = serve(Some((cert, key)), server).await;
    let url = format!("wss://localhost:{port}/echo");
    exchange_every_kind(ClientBuilder::new(url).tls_config(client).http2(true)).await;
}

async fn every_kind_of_message_over_h2c(server: Server) {
    let (port, _) = serve(None, server).await;
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

async fn ten_websockets_share_one_connection_and_close_alone(server: Server) {
    let (cert, key, client) = certificate();
    let (port, accepted) = serve(Some((cert, key)), server).await;
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

async fn a_stalled_reader_holds_back_only_its_own_stream(server: Server) {
    let (port, _) = serve(None, server).await;
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

/// Each scenario against hyper's server and tether's own.
macro_rules! against_both_servers {
    ($($scenario:ident),* $(,)?) => {
        mod hyper_server {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Server::Hyper).await;
            })*
        }
        mod tether_server {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Server::Tether).await;
            })*
        }
    };
}

against_both_servers!(
    every_kind_of_message_over_tls,
    every_kind_of_message_over_h2c,
    ten_websockets_share_one_connection_and_close_alone,
    a_stalled_reader_holds_back_only_its_own_stream,
);

#[tokio::test]
async fn a_server_without_extended_connect_is_refused_clearly() {
    let (port, _) = serve(None, Server::HyperWithoutConnect).await;
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

/// The requests [`Http2Server`] passes on as they are: `/body` answers with
/// the request's body (bytes and trailers), `/big` with 4 MiB.
async fn plain(
    request: hyper::Request<tether::http2_server::Http2Body>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, Infallible> {
    use http_body_util::BodyExt;
    let path = request.uri().path().to_owned();
    let collected = request.into_body().collect().await.unwrap();
    let trailer = collected
        .trailers()
        .and_then(|t| t.get("x-sum"))
        .map(|v| v.to_str().unwrap().to_owned());
    let body = match path.as_str() {
        "/big" => bytes::Bytes::from(vec![b'x'; 4 << 20]),
        _ => collected.to_bytes(),
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(body));
    if let Some(trailer) = trailer {
        response
            .headers_mut()
            .insert("x-trailer-was", trailer.parse().unwrap());
    }
    // HTTP/1.1's hop headers have no place in HTTP/2: the server drops them.
    response
        .headers_mut()
        .insert(http::header::CONNECTION, "keep-alive".parse().unwrap());
    Ok(response)
}

#[tokio::test]
async fn tether_server_passes_plain_requests_and_bodies_through() {
    use http_body_util::BodyExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = Http2Server::new()
            .serve_connection(tcp, service_fn(plain))
            .await;
    });
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, Frames>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let uri = format!("http://127.0.0.1:{port}");

    // 3 MiB up, past the stream's 1 MiB window, with a trailer; echoed.
    let up: Vec<u8> = (0..3u32 << 20).map(|i| i as u8).collect();
    let request = hyper::Request::post(format!("{uri}/body"))
        .body(Frames::new(&up, "6"))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert!(response.headers().get(http::header::DATE).is_some());
    assert!(response.headers().get(http::header::CONNECTION).is_none());
    assert_eq!(response.headers()["x-trailer-was"], "6");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), up.len());
    assert!(body == up[..], "the body came back changed");

    // 4 MiB down, refilling the client's window as it reads.
    let request = hyper::Request::get(format!("{uri}/big"))
        .body(Frames::new(&[], ""))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 4 << 20);

    // HEAD: the head only.
    let request = hyper::Request::head(format!("{uri}/big"))
        .body(Frames::new(&[], ""))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
}

/// A request body of frames: the bytes in 64 KiB chunks, then a trailer
/// `x-sum` when one is given.
struct Frames(std::collections::VecDeque<http_body::Frame<bytes::Bytes>>);

impl Frames {
    fn new(bytes: &[u8], trailer: &str) -> Self {
        let mut frames: std::collections::VecDeque<_> = bytes
            .chunks(64 << 10)
            .map(|chunk| http_body::Frame::data(bytes::Bytes::copy_from_slice(chunk)))
            .collect();
        if !trailer.is_empty() {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-sum", trailer.parse().unwrap());
            frames.push_back(http_body::Frame::trailers(trailers));
        }
        Self(frames)
    }
}

impl http_body::Body for Frames {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

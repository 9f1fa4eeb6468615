//! wss:// through rustls, and upgrading inside a hyper server.

use std::convert::Infallible;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tether::{ClientBuilder, Config, MaybeTlsStream, Message};
use tokio::net::TcpListener;

#[tokio::test]
async fn echoes_over_wss_with_a_private_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.key_pair.serialize_pem();
    let server_tls = tether::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut ws = tether::accept(MaybeTlsStream::ServerTls(Box::new(tls)))
            .await
            .unwrap();
        while let Some(message) = ws.recv().await.unwrap() {
            if message.is_data() {
                ws.send(message).await.unwrap();
            }
        }
    });
    let client_tls = tether::tls::client_config(Some(cert_pem.as_bytes())).unwrap();
    let (mut ws, _) = ClientBuilder::new(format!("wss://localhost:{port}/secure"))
        .tls_config(client_tls)
        .connect()
        .await
        .unwrap();
    ws.send("over tls").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text("over tls")));
    ws.close(None).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn refuses_a_server_certificate_it_does_not_trust() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let server_tls = tether::tls::server_config(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let err = tether::connect(&format!("wss://localhost:{port}/"))
        .await
        .unwrap_err();
    assert!(matches!(err, tether::Error::Io(_)), "{err}");
}

#[tokio::test]
async fn upgrades_inside_a_hyper_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = service_fn(
            |mut request: hyper::Request<hyper::body::Incoming>| async move {
                let response = match tether::upgrade(&mut request, &Config::default(), Some("chat"))
                {
                    Ok((response, pending)) => {
                        tokio::spawn(async move {
                            let mut ws = pending.finish().await.unwrap();
                            while let Ok(Some(message)) = ws.recv().await {
                                if message.is_data() {
                                    let _ = ws.send(message).await;
                                }
                            }
                        });
                        response.map(|()| String::new())
                    }
                    Err(e) => tether::proto::handshake::reject_response(&e),
                };
                Ok::<_, Infallible>(response)
            },
        );
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades()
            .await
            .unwrap();
    });
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .protocol("chat")
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("chat"));
    assert!(ws.is_compressed());
    ws.send("through hyper").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::text("through hyper"))
    );
}

/// `finish_as` over the server's own `TcpStream`: the frame a client sent in the
/// same segment as its handshake (read by hyper along with the request) is not
/// lost.
#[tokio::test]
async fn upgrades_onto_the_tcp_stream_keeping_pipelined_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (direct_tx, direct_rx) = tokio::sync::oneshot::channel();
    let direct_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(direct_tx)));
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let direct_tx = direct_tx.clone();
            async move {
                let (response, pending) =
                    tether::upgrade(&mut request, &Config::default(), None).unwrap();
                tokio::spawn(async move {
                    let finished = pending.finish_as::<tokio::net::TcpStream>().await.unwrap();
                    let tether::Finished::Direct(mut ws) = finished else {
                        panic!("not over the TcpStream");
                    };
                    let first = ws.recv().await.unwrap();
                    let tx = direct_tx.lock().unwrap().take().unwrap();
                    tx.send(first).unwrap();
                    ws.send("bye").await.unwrap();
                });
                Ok::<_, Infallible>(response.map(|()| String::new()))
            }
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades()
            .await
            .unwrap();
    });
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The handshake and a masked text frame "hi", in one write.
    let mut bytes = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    let mask = [1u8, 2, 3, 4];
    bytes.extend_from_slice(&[0x81, 0x80 | 2]);
    bytes.extend_from_slice(&mask);
    bytes.extend(b"hi".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    tcp.write_all(&bytes).await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), direct_rx)
        .await
        .expect("the frame arrived")
        .unwrap();
    assert_eq!(first, Some(Message::text("hi")));
    let mut answer = vec![0; 512];
    let n = tcp.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        &answer[..n]
    );
}

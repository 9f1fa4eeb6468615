//! `tether serve`'s `/metrics` read by a real OpenMetrics parser (Python
//! `prometheus_client`), which refuses the whole exposition on any error, so
//! a family registered twice or a malformed sample cannot pass unnoticed.

use tether_interop::run_python_script;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `GET path` over HTTP/1.1: (head, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn the_metrics_exposition_parses_as_openmetrics() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config =
        tether_server::ServerConfig::default().allowed_origins(vec!["https://app.example".into()]);
    let server = tokio::spawn(tether_server::run(listener, config, std::future::pending()));
    // Some of everything: a connection, a publication, a refused handshake,
    // a server-initiated disconnect.
    let url = format!("ws://{addr}/connection/websocket");
    let (mut ws, _) = tether::connect(&url).await.unwrap();
    ws.send(r#"{"id":1,"op":"subscribe","channel":"m"}"#)
        .await
        .unwrap();
    ws.recv().await.unwrap();
    ws.send(r#"{"id":2,"op":"publish","channel":"m","data":1}"#)
        .await
        .unwrap();
    // Its ack, past the publication itself.
    while let Some(message) = ws.recv().await.unwrap() {
        if matches!(&message, tether::Message::Text(t) if t.starts_with(r#"{"id":2"#)) {
            break;
        }
    }
    let refused = tether::ClientBuilder::new(&url)
        .header("Origin", "https://evil.example")
        .connect()
        .await;
    assert!(refused.is_err());
    let (head, body) = get(addr, "/metrics").await;
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let output = run_python_script("parse_metrics.py", &[], &body).await;
    let samples = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the parser refused the exposition: {}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value = |name: &str| {
        samples
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample {name} in\n{samples}"))
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(value(r#"tether_connections{transport="websocket"}"#), 1.0);
    assert_eq!(
        value(r#"tether_connections_accepted_total{transport="websocket"}"#),
        1.0
    );
    assert_eq!(value("tether_subscriptions{}"), 1.0);
    assert!(value("tether_publications_total{}") >= 1.0);
    assert_eq!(
        value(r#"tether_rejected_handshakes_total{reason="origin"}"#),
        1.0
    );
    assert!(value(r#"tether_fanout_seconds_bucket{le="+Inf"}"#) >= 1.0);
    server.abort();
}

//! `tether serve --tls-cert --tls-key`: the same routes over `https://` and
//! `wss://`, HTTP/2 or HTTP/1.1 as the client's ALPN asks (checked with
//! Debian's curl, which speaks both), a WebSocket over TLS with the tether
//! client trusting the test's certificate, and a plain-HTTP client refused
//! at the handshake without harming the others.

mod common;

use common::next_json;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// curl against the server, trusting `ca`: the HTTP version it used and the body.
fn curl(
    ca: &std::path::Path,
    version: &str,
    method: &str,
    url: &str,
    body: &str,
) -> (String, String) {
    curl_with(
        &["--cacert", ca.to_str().unwrap(), version],
        method,
        url,
        body,
    )
}

/// curl with `options`: the HTTP version it used and the body.
fn curl_with(options: &[&str], method: &str, url: &str, body: &str) -> (String, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(options)
        .args([
            "-X",
            method,
            "--data-binary",
            body,
            "-w",
            "\n%{http_version}",
            url,
        ])
        .output()
        .expect("curl runs (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, version) = text.rsplit_once('\n').unwrap();
    (version.to_owned(), body.to_owned())
}

#[tokio::test]
async fn h2c_serves_http2_in_the_clear_beside_http1_and_websocket() {
    let (_serve, port) =
        common::spawn(&["serve", "--log", "warn", "--h2c", "true"], Stdio::null()).await;
    let url = format!("http://127.0.0.1:{port}/healthz");
    let (version, _) = curl_with(&["--http2-prior-knowledge"], "GET", &url, "");
    assert_eq!(version, "2");
    let (version, _) = curl_with(&["--http1.1"], "GET", &url, "");
    assert_eq!(version, "1.1");
    let publish = r#"{"channel":"news","data":1}"#;
    let api = format!("http://127.0.0.1:{port}/api/publish");
    let (version, acked) = curl_with(&["--http2-prior-knowledge"], "POST", &api, publish);
    assert_eq!(version, "2");
    assert!(acked.contains("\"offset\":1"), "{acked}");
    let (mut ws, _) =
        tether::ClientBuilder::new(format!("ws://127.0.0.1:{port}/connection/websocket"))
            .connect()
            .await
            .expect("a WebSocket over HTTP/1.1 beside h2c");
    ws.send(r#"{"id":1,"op":"ping"}"#.to_owned()).await.unwrap();
    assert_eq!(next_json(&mut ws).await["id"], 1);
}

#[tokio::test]
async fn serve_speaks_https_over_http2_and_http1_and_wss() {
    let certificate = common::TestCertificate::new();
    let cert_path = std::path::PathBuf::from(&certificate.cert);
    let (_serve, port) = common::serve_tls(&certificate, &[]).await;
    let base = format!("https://localhost:{port}");

    // A subscriber over wss://, trusting the test's certificate.
    let tls = certificate.trust();
    let (mut ws, _) =
        tether::ClientBuilder::new(format!("wss://localhost:{port}/connection/websocket"))
            .tls_config(tls)
            .connect()
            .await
            .expect("a WebSocket over TLS");
    ws.send(r#"{"id":1,"op":"subscribe","channel":"news"}"#.to_owned())
        .await
        .unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["id"], 1, "{reply}");

    // The same routes over HTTP/2 and HTTP/1.1, by ALPN.
    let (version, body) = curl(&cert_path, "--http2", "GET", &format!("{base}/healthz"), "");
    assert_eq!(version, "2", "{body}");
    let (version, _) = curl(
        &cert_path,
        "--http1.1",
        "GET",
        &format!("{base}/healthz"),
        "",
    );
    assert_eq!(version, "1.1");
    let (version, demo) = curl(&cert_path, "--http2", "GET", &format!("{base}/"), "");
    assert_eq!(version, "2");
    assert!(demo.contains("<html"), "the demo page");
    let publish = r#"{"channel":"news","data":"over h2"}"#;
    let (version, acked) = curl(
        &cert_path,
        "--http2",
        "POST",
        &format!("{base}/api/publish"),
        publish,
    );
    assert_eq!(version, "2");
    assert!(acked.contains("\"offset\":1"), "{acked}");
    let delivered = next_json(&mut ws).await;
    assert_eq!(
        (&delivered["push"], &delivered["data"]),
        (&"publication".into(), &"over h2".into())
    );
    // A long-poll session over HTTP/2.
    let open = r#"{"id":1,"op":"subscribe","channel":"news"}"#;
    let (_, opened) = curl(
        &cert_path,
        "--http2",
        "POST",
        &format!("{base}/connection/longpoll"),
        open,
    );
    let opened: Value = serde_json::from_str(&opened).unwrap();
    let key = opened["session"].as_str().unwrap();
    let (version, answer) = curl(
        &cert_path,
        "--http2",
        "GET",
        &format!("{base}/connection/longpoll/{key}?cursor=0"),
        "",
    );
    assert_eq!(version, "2");
    assert!(answer.contains("\"id\":1"), "{answer}");

    // Plain HTTP on the TLS port: refused at the handshake, counted; the
    // WebSocket above is unharmed.
    let refused = || async {
        let (_, metrics) = curl(&cert_path, "--http2", "GET", &format!("{base}/metrics"), "");
        metrics
            .lines()
            .find(|line| {
                line.starts_with(r#"tether_rejected_handshakes_total{reason="tls_handshake"}"#)
            })
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = refused().await;
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "no answer in plain HTTP"
    );
    tether_testing::eventually("the refusal counted", Duration::from_secs(5), || async {
        refused().await > before
    })
    .await;
    ws.send(r#"{"id":2,"op":"ping"}"#.to_owned()).await.unwrap();
    // Pushes (the long-poll session's join) may come first.
    let mut reply = next_json(&mut ws).await;
    while reply.get("push").is_some() {
        reply = next_json(&mut ws).await;
    }
    assert_eq!(reply["id"], 2, "{reply}");
}

/// A self-signed pair for `localhost`, written to `dir/NAME.{crt,key}`.
fn pair(dir: &std::path::Path, name: &str) -> (String, String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (
        cert.display().to_string(),
        key.display().to_string(),
        made.cert.pem(),
    )
}

/// Whether a WebSocket handshake succeeds trusting only `ca_pem`.
async fn trusted(port: u16, ca_pem: &str) -> bool {
    let tls = tether::tls::client_config(Some(ca_pem.as_bytes())).unwrap();
    tether::ClientBuilder::new(format!("wss://localhost:{port}/connection/websocket"))
        .tls_config(tls)
        .connect()
        .await
        .is_ok()
}

#[tokio::test]
async fn the_certificate_is_reloaded_on_sighup_and_on_change_without_dropping_a_connection() {
    let dir = std::env::temp_dir().join(format!("tether-serve-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, first) = pair(&dir, "served");
    let (serve, port) = common::spawn(
        &[
            "serve",
            "--log",
            "warn",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        Stdio::null(),
    )
    .await;
    let pid = serve.0.id().to_string();
    let tls = tether::tls::client_config(Some(first.as_bytes())).unwrap();
    let (mut held, _) =
        tether::ClientBuilder::new(format!("wss://localhost:{port}/connection/websocket"))
            .tls_config(tls)
            .connect()
            .await
            .unwrap();

    // A new pair, then SIGHUP: new handshakes get it.
    let (new_cert, new_key, second) = pair(&dir, "next");
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let hup = || {
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
    };
    hup();
    tether_testing::eventually(
        "the new certificate served",
        Duration::from_secs(10),
        || trusted(port, &second),
    )
    .await;
    assert!(!trusted(port, &first).await, "the old one no longer");

    // A broken pair is refused; the last good one goes on serving.
    std::fs::write(&cert, "not a certificate").unwrap();
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(trusted(port, &second).await, "still the last good pair");

    // Changed files are picked up without a signal.
    let (third_cert, third_key, third) = pair(&dir, "third");
    std::fs::copy(&third_key, &key).unwrap();
    std::fs::copy(&third_cert, &cert).unwrap();
    tether_testing::eventually("the changed files served", Duration::from_secs(10), || {
        trusted(port, &third)
    })
    .await;

    // The connection opened before all this is still up.
    held.send(r#"{"id":1,"op":"ping"}"#.to_owned())
        .await
        .unwrap();
    assert_eq!(next_json(&mut held).await["id"], 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

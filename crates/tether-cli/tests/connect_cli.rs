//! `tether connect` in pipe mode against real servers: text and binary lines,
//! TLS with `--insecure`, and the exit codes that tell how a connection ended.

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Starts `tether connect ARGS` with stdin, stdout and stderr piped.
fn spawn_connect(args: &[&str]) -> tokio::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Runs `tether connect ARGS` with `input` on stdin; returns (exit code, stdout).
async fn connect(args: &[&str], input: &str) -> (i32, String) {
    let mut child = spawn_connect(args);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("tether connect exits by itself")
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn pipes_text_and_binary_lines_and_exits_0_on_a_normal_close() {
    let (_echo, port) = common::spawn(&["echo"], Stdio::null()).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let (code, stdout) = connect(&[&url], "hello\nwörld\n").await;
    assert_eq!((code, stdout.as_str()), (0, "hello\nwörld\n"));
    let (code, stdout) = connect(&[&url, "--binary", "hex"], "deadbeef\n00ff\n").await;
    assert_eq!((code, stdout.as_str()), (0, "deadbeef\n00ff\n"));
    let (code, stdout) = connect(&[&url, "--binary", "base64", "--compress"], "3q2+7w==\n").await;
    assert_eq!((code, stdout.as_str()), (0, "3q2+7w==\n"));
}

#[tokio::test]
async fn exits_1_when_it_cannot_connect() {
    let port = common::free_port();
    let (code, _) = connect(&[&format!("ws://127.0.0.1:{port}/")], "").await;
    assert_eq!(code, 1);
}

#[tokio::test]
async fn exits_3_when_the_server_closes_with_an_error_code() {
    let (_serve, port) = common::spawn(&["serve", "--max-message-size", "64"], Stdio::null()).await;
    let url = format!("ws://127.0.0.1:{port}/connection/websocket");
    let (code, _) = connect(&[&url], &format!("{}\n", "x".repeat(200))).await;
    assert_eq!(code, 3, "1009 from the server");
}

#[tokio::test]
async fn exits_2_when_the_connection_just_drops() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tether::accept(tcp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(ws); // no close frame
    });
    // stdin stays open (no input yet): the drop is what ends it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", &format!("ws://127.0.0.1:{port}/"), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits when the server drops")
        .unwrap();
    assert_eq!(status.code(), Some(2));
    server.await.unwrap();
}

#[tokio::test]
async fn speaks_wss_to_a_self_signed_server_only_with_insecure() {
    let certificate = common::TestCertificate::new();
    let (_echo, port) = common::spawn(
        &[
            "echo",
            "--tls-cert",
            &certificate.cert,
            "--tls-key",
            &certificate.key,
        ],
        Stdio::null(),
    )
    .await;
    let url = format!("wss://localhost:{port}/");
    let (code, _) = connect(&[&url], "hi\n").await;
    assert_eq!(code, 1, "an untrusted certificate is refused by default");
    let (code, stdout) = connect(&[&url, "--insecure"], "hi\n").await;
    assert_eq!((code, stdout.as_str()), (0, "hi\n"));
    let (code, stdout) = connect(&[&url, "--ca", &certificate.cert], "ca\n").await;
    assert_eq!((code, stdout.as_str()), (0, "ca\n"));
}

#[tokio::test]
async fn channel_mode_prints_publications_and_publishes_stdin_lines() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let (_serve, port) = common::spawn(&["serve", "--log", "warn"], Stdio::null()).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = spawn_connect(&["--channel", "news", "--count", "3", &url]);
    // Subscribed before anything is published.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let said = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.starts_with("subscribed to news") {
                return line;
            }
        }
        panic!("no subscribed line");
    })
    .await
    .unwrap();
    assert_eq!(said, "subscribed to news at offset 0");
    // One publication from elsewhere, two typed in: the JSON one as JSON, the other as a string.
    let (status, _) = tether_testing::http(
        addr,
        "POST",
        "/api/publish",
        r#"{"channel":"news","data":{"from":"api"}}"#,
        "",
    )
    .await;
    assert_eq!(status, 200);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"n\":2}\nplain words\n").await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits after three publications")
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"from\":\"api\"}\n{\"n\":2}\n\"plain words\"\n"
    );
    let (_, history) = tether_testing::http(addr, "GET", "/api/history/news", "", "").await;
    assert_eq!(history["publications"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn channel_mode_exits_3_when_the_subscribe_is_refused() {
    let (_serve, port) = common::spawn(&["serve", "--log", "warn"], Stdio::null()).await;
    let url = format!("ws://127.0.0.1:{port}");
    let (code, stdout) = connect(&["--channel", "bad channel!", "--count", "1", &url], "").await;
    assert_eq!((code, stdout.as_str()), (3, ""));
}

#[tokio::test]
async fn pipes_over_http2_in_the_clear_and_over_tls() {
    // h2c: the echo server tells HTTP/2 from HTTP/1.1 by the first byte.
    let (_echo, port) = common::spawn(&["echo", "--http2"], Stdio::null()).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let (code, stdout) = connect(&[&url, "--http2"], "over h2c\nsecond\n").await;
    assert_eq!((code, stdout.as_str()), (0, "over h2c\nsecond\n"));
    let (code, stdout) = connect(
        &[&url, "--http2", "--binary", "hex", "--compress"],
        "00ff\n",
    )
    .await;
    assert_eq!((code, stdout.as_str()), (0, "00ff\n"));
    // HTTP/1.1 on the same port as before.
    let (code, stdout) = connect(&[&url], "over h1\n").await;
    assert_eq!((code, stdout.as_str()), (0, "over h1\n"));

    // TLS: ALPN picks h2; the client trusts the test's certificate.
    let certificate = common::TestCertificate::new();
    let (cert_arg, key_arg) = (certificate.cert.as_str(), certificate.key.as_str());
    let (_tls, port) = common::spawn(
        &[
            "echo",
            "--http2",
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_arg,
        ],
        Stdio::null(),
    )
    .await;
    let url = format!("wss://localhost:{port}/");
    let (code, stdout) = connect(&[&url, "--http2", "--ca", cert_arg], "over h2\n").await;
    assert_eq!((code, stdout.as_str()), (0, "over h2\n"));
    let (code, stdout) = connect(&[&url, "--ca", cert_arg], "over h1 and TLS\n").await;
    assert_eq!((code, stdout.as_str()), (0, "over h1 and TLS\n"));

    // The channel mode over HTTP/2 against `tether serve` with TLS.
    let (_serve, port) = common::serve_tls(&certificate, &[]).await;
    let server = format!("https://localhost:{port}");
    let (code, stdout) = connect(
        &[
            &server,
            "--http2",
            "--ca",
            cert_arg,
            "--channel",
            "h2:cli",
            "--count",
            "2",
        ],
        "{\"n\":1}\n{\"n\":2}\n",
    )
    .await;
    assert_eq!((code, stdout.as_str()), (0, "{\"n\":1}\n{\"n\":2}\n"));
}

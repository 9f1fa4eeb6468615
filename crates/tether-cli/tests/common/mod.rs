//! Starting the real `tether` binary on a free loopback port for a test.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::Stdio;

#[allow(unused_imports)] // each test binary uses a different subset
pub use tether_testing::{free_port, Child};

/// Runs `tether ARGS --listen 127.0.0.1:PORT` and waits until it accepts
/// connections (see [`tether_testing::spawn_listening`]).
pub async fn spawn(args: &[&str], stderr: Stdio) -> (Child, u16) {
    tether_testing::spawn_listening(Path::new(env!("CARGO_BIN_EXE_tether")), args, stderr).await
}

/// A self-signed certificate for `localhost`, its PEM files in a directory
/// of its own that goes when it is dropped.
pub struct TestCertificate {
    dir: std::path::PathBuf,
    /// The certificate's PEM file.
    pub cert: String,
    /// The key's PEM file.
    pub key: String,
    /// The certificate, PEM.
    pub pem: String,
}

impl TestCertificate {
    /// A fresh one.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tether-test-cert-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        Self {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            pem: made.cert.pem(),
            dir,
        }
    }

    /// A client configuration that trusts it.
    pub fn trust(&self) -> std::sync::Arc<rustls::ClientConfig> {
        tether::tls::client_config(Some(self.pem.as_bytes())).unwrap()
    }
}

impl Drop for TestCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `tether serve --log warn` over TLS with `certificate`, and `extra` args.
pub async fn serve_tls(certificate: &TestCertificate, extra: &[&str]) -> (Child, u16) {
    let mut args = vec![
        "serve",
        "--log",
        "warn",
        "--tls-cert",
        &certificate.cert,
        "--tls-key",
        &certificate.key,
    ];
    args.extend_from_slice(extra);
    spawn(&args, Stdio::null()).await
}

/// The next text message on `ws` as JSON (10 s at most).
pub async fn next_json(ws: &mut tether::WebSocket<tether::MaybeTlsStream>) -> serde_json::Value {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), ws.recv())
            .await
            .expect("a message in time")
            .unwrap()
            .expect("open");
        if let tether::Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

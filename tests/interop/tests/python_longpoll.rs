//! Long-polling from a plain HTTP client: Python's standard library drives a
//! whole session against `tether serve`, including a poll answer it drops on
//! purpose and fetches again by cursor.

use tether_interop::run_python_script;
use tokio::net::TcpListener;

#[tokio::test]
async fn python_drives_a_whole_long_polling_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = tether_server::ServerConfig::default();
    let server = tokio::spawn(tether_server::run(listener, config, std::future::pending()));
    let output = run_python_script("longpoll_client.py", &[], &format!("http://{addr}")).await;
    server.abort();
    assert!(
        output.status.success(),
        "the Python client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["messages"], 6, "{summary}");
}

//! tether against Python `websockets`, both directions.

use tether::Config;
use tether_interop::{
    python, repo_root, run_client_scenarios, run_peer_client, start_peer_server,
    start_tether_server,
};

#[tokio::test]
async fn python_client_against_tether_server() {
    let server = start_tether_server(
        Config::default()
            .max_message_size(32 << 20)
            .max_frame_size(32 << 20),
    )
    .await;
    let small = start_tether_server(Config::default().max_message_size(1024)).await;
    let script = repo_root().join("tests/interop/python/peer.py");
    let output = run_peer_client(
        python(),
        &[
            script.to_str().unwrap(),
            "client",
            &server.base_url(),
            &small.base_url(),
        ],
    )
    .await;
    assert_eq!(
        output.lines().filter(|l| l.starts_with("ok ")).count(),
        12,
        "{output}"
    );
}

#[tokio::test]
async fn tether_client_against_python_server() {
    let script = repo_root().join("tests/interop/python/peer.py");
    for compress in [true, false] {
        let mut args = vec![script.to_str().unwrap(), "server"];
        if compress {
            args.push("--compress");
        }
        let (_peer, port) = start_peer_server(python(), &args).await;
        run_client_scenarios(&format!("ws://127.0.0.1:{port}/"), compress).await;
    }
}

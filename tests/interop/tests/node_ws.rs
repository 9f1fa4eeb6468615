//! tether against Node `ws`, both directions.

use std::path::PathBuf;

use tether::Config;
use tether_interop::{
    node_peer, run_client_scenarios, run_peer_client, start_peer_server, start_tether_server,
};

fn node() -> PathBuf {
    PathBuf::from("node")
}

#[tokio::test]
async fn node_client_against_tether_server() {
    let server = start_tether_server(
        Config::default()
            .max_message_size(32 << 20)
            .max_frame_size(32 << 20),
    )
    .await;
    let small = start_tether_server(Config::default().max_message_size(1024)).await;
    let peer = node_peer();
    let output = run_peer_client(
        node(),
        &[
            peer.to_str().unwrap(),
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
async fn tether_client_against_node_server() {
    let peer = node_peer();
    for compress in [true, false] {
        let mut args = vec![peer.to_str().unwrap(), "server"];
        if compress {
            args.push("--compress");
        }
        let (_peer, port) = start_peer_server(node(), &args).await;
        run_client_scenarios(&format!("ws://127.0.0.1:{port}/"), compress).await;
    }
}

//! Drives the Autobahn fuzzingserver (e.g. `kosoku -m fuzzingserver`) with tether's
//! client: asks for the case count, runs every case echoing what it receives, then
//! asks the server to write its reports.
//!
//! `cargo run --release -p tether --example autobahn-client -- ws://127.0.0.1:9001`

use tether::{ClientBuilder, Config, DeflateConfig, Message};

const AGENT: &str = "tether";

async fn run_case(base: &str, case: u32) -> tether::Result<()> {
    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
    // Autobahn's 9.x cases send messages up to 16 MiB. The 13.x cases let the
    // server ask for client_no_context_takeover only if the offer hints it; the
    // default configuration does.
    let deflate = DeflateConfig::default();
    let config = Config::default()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .deflate(deflate);
    let (mut ws, _) = ClientBuilder::new(url).config(config).connect().await?;
    while let Some(message) = ws.recv().await? {
        match message {
            Message::Text(_) | Message::Binary(_) => ws.send(message).await?,
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> tether::Result<()> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let base = base.trim_end_matches('/').to_owned();
    let (mut ws, _) = tether::connect(&format!("{base}/getCaseCount")).await?;
    let count: u32 = match ws.recv().await? {
        Some(Message::Text(text)) => text
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other(format!("bad case count {text}")))?,
        other => {
            return Err(
                std::io::Error::other(format!("expected a case count, got {other:?}")).into(),
            )
        }
    };
    let _ = ws.close(None).await;
    eprintln!("running {count} cases");
    for case in 1..=count {
        if let Err(e) = run_case(&base, case).await {
            // Failing the connection is the expected outcome of many cases.
            eprintln!("case {case}: {e}");
        }
    }
    let (mut ws, _) = tether::connect(&format!("{base}/updateReports?agent={AGENT}")).await?;
    let _ = ws.close(None).await;
    Ok(())
}

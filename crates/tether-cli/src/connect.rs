//! `tether connect`: a line-oriented client.

use std::path::PathBuf;

use tether::{ClientBuilder, CloseFrame, Config, Message};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Arguments of `tether connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// ws:// or wss:// URL.
    url: String,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Subprotocol to offer (repeatable).
    #[arg(short = 'p', long = "protocol")]
    protocols: Vec<String>,
    /// Offer permessage-deflate.
    #[arg(long)]
    compress: bool,
    /// Extra CA certificate (PEM) to trust for wss://.
    #[arg(long)]
    ca: Option<PathBuf>,
}

/// Exit codes: 0 closed normally, 1 failed to connect, 2 closed abnormally or
/// with an error code.
pub async fn run(args: ConnectArgs) -> anyhow::Result<i32> {
    let mut builder =
        ClientBuilder::new(&args.url).config(Config::default().compression(args.compress));
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            anyhow::bail!("header {header:?} is not `Name: value`");
        };
        builder = builder.header(name.trim(), value.trim());
    }
    for protocol in &args.protocols {
        builder = builder.protocol(protocol);
    }
    if let Some(ca) = &args.ca {
        builder = builder.tls_config(tether::tls::client_config(Some(&std::fs::read(ca)?))?);
    }
    let (ws, _) = match builder.connect().await {
        Ok(connected) => connected,
        Err(e) => {
            eprintln!("connect failed: {e}");
            return Ok(1);
        }
    };
    eprintln!(
        "connected to {}{}",
        args.url,
        ws.protocol().map(|p| format!(" ({p})")).unwrap_or_default()
    );
    let (mut reader, writer) = ws.split();
    let input = tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if writer.send(line).await.is_err() {
                return;
            }
        }
        let _ = writer.close(Some(CloseFrame::new(1000, ""))).await;
    });
    let code = loop {
        match reader.recv().await {
            Ok(Some(Message::Text(text))) => println!("{text}"),
            Ok(Some(Message::Binary(bytes))) => println!("<binary {} bytes>", bytes.len()),
            Ok(Some(Message::Close(frame))) => {
                match &frame {
                    Some(f) => eprintln!("closed: {} {}", f.code, f.reason),
                    None => eprintln!("closed"),
                }
                break match frame {
                    Some(f) if f.code.0 != 1000 && f.code.0 != 1001 => 2,
                    _ => 0,
                };
            }
            Ok(Some(_)) => {}
            Ok(None) => break 0,
            Err(e) => {
                eprintln!("connection error: {e}");
                break 2;
            }
        }
    };
    input.abort();
    Ok(code)
}

//! `tether connect --channel CHANNEL URL`: the server's protocol through the
//! Rust client. Each publication's data is one stdout line, once and in
//! order across reconnects; each stdin line is published (as JSON when it
//! parses, else as a string); the connection's story goes to stderr.

use serde_json::Value;
use tether_client::{Client, ClientConfig, Event, SubscriptionEvent};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use super::{read_stdin, Input, EXIT_CLOSED_WITH_ERROR, EXIT_NORMAL};

/// What the channel mode needs from the command line.
#[derive(Debug)]
pub struct ChannelArgs {
    /// The server (`ws://`, `wss://`, `http://` or `https://`).
    pub url: String,
    /// The channel to subscribe to and publish on.
    pub channel: String,
    /// A token for `connect`.
    pub token: Option<String>,
    /// Handshake headers.
    pub headers: Vec<(String, String)>,
    /// Exit after this many publications (and once stdin is done).
    pub count: Option<u64>,
    /// Whom to trust for `wss://` (`--ca`, `--insecure`), if not the webpki roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Over HTTP/2 (`--http2`).
    pub http2: bool,
}

pub async fn run(args: ChannelArgs) -> anyhow::Result<i32> {
    let mut config = ClientConfig::new(&args.url);
    config.token = args.token;
    config.headers = args.headers;
    config.tls = args.tls;
    config.http2 = args.http2;
    let client = Client::new(config);
    let mut events = client.events();
    let mut subscription = client.subscribe(args.channel.clone()).await?;
    let (lines, mut input) = mpsc::channel(64);
    tokio::spawn(read_stdin(lines));
    // Lines are published one after another, in order; each waits for its ack.
    let publishing = {
        let (client, channel) = (client.clone(), args.channel.clone());
        tokio::spawn(async move {
            while let Some(Input::Line(line)) = input.recv().await {
                let data = serde_json::from_str::<Value>(&line).unwrap_or(Value::String(line));
                match client.publish(&channel, &data).await {
                    Ok(ack) => eprintln!("published at offset {}", ack.offset),
                    Err(error) => eprintln!("! publish failed: {error}"),
                }
            }
        })
    };
    tokio::pin!(publishing);
    let mut typed_all = false;
    let mut printed = 0u64;
    let mut stdout = BufWriter::new(tokio::io::stdout());
    let done = |printed: u64, typed_all: bool| {
        typed_all && args.count.map_or(true, |count| printed >= count)
    };
    let code = loop {
        tokio::select! {
            event = subscription.next() => match event {
                Some(SubscriptionEvent::Publication(publication)) => {
                    stdout.write_all(publication.data.get().as_bytes()).await?;
                    stdout.write_all(b"\n").await?;
                    stdout.flush().await?;
                    printed += 1;
                    if done(printed, typed_all) {
                        break EXIT_NORMAL;
                    }
                }
                Some(SubscriptionEvent::Subscribed { offset, recovering, .. }) => {
                    let how = if recovering { "resumed" } else { "subscribed" };
                    eprintln!("{how} to {} at offset {offset}", args.channel);
                }
                Some(SubscriptionEvent::Unrecovered { .. }) => {
                    eprintln!("! publications were missed: history no longer covers the gap");
                }
                Some(SubscriptionEvent::Failed(error)) => {
                    eprintln!("! subscribe refused: {error}");
                    break EXIT_CLOSED_WITH_ERROR;
                }
                Some(SubscriptionEvent::Join { client, .. }) => eprintln!("{client} joined"),
                Some(SubscriptionEvent::Leave { client, .. }) => eprintln!("{client} left"),
                None => break EXIT_CLOSED_WITH_ERROR,
            },
            event = events.recv() => match event {
                Ok(Event::Connected { client, .. }) => eprintln!("connected to {} as {client}", args.url),
                Ok(Event::Reconnecting { attempt, delay }) => {
                    eprintln!("reconnecting in {:.1} s (attempt {attempt})", delay.as_secs_f64());
                }
                Ok(Event::Disconnected { code, reason, reconnect }) => {
                    eprintln!("disconnected: {code} {reason}");
                    if !reconnect {
                        break EXIT_CLOSED_WITH_ERROR;
                    }
                }
                _ => {}
            },
            _ = &mut publishing, if !typed_all => {
                typed_all = true;
                if done(printed, typed_all) {
                    break EXIT_NORMAL;
                }
            }
        }
    };
    client.close().await;
    Ok(code)
}

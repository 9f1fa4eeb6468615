//! `tether connect`: an interactive WebSocket client (line editing, history,
//! commands for binary messages, pings and closes, timestamps), a pipe mode
//! for scripts (stdin lines out, messages in on stdout), and with
//! `--channel` a client of `tether serve`'s protocol (channel.rs).
//!
//! Exit codes say how the connection ended: 0 closed normally (1000 or 1001,
//! or a close this side asked for), 1 could not connect, 2 ended abnormally
//! (no close frame, a protocol or I/O error), 3 closed by the server with any
//! other code.

mod channel;
mod command;
mod terminal;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use command::{Action, Encoding};
use tether::{ClientBuilder, CloseFrame, Config, Message};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Arguments of `tether connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// ws:// or wss:// URL (with --channel: the server, http(s):// too).
    url: String,
    /// Speak `tether serve`'s protocol: subscribe to this channel and print
    /// each publication's data as a line (once, in order, resuming across
    /// reconnects), and publish each stdin line (JSON, or else a string).
    #[arg(long)]
    channel: Option<String>,
    /// With --channel: a token (JWT) for `connect`.
    #[arg(long, requires = "channel")]
    token: Option<String>,
    /// With --channel: exit after this many publications (once stdin is done).
    #[arg(long, requires = "channel")]
    count: Option<u64>,
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
    #[arg(long, conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Accept any server certificate for wss:// (testing only: anyone on the
    /// path can read and change the traffic).
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Pipe mode even on a terminal: each stdin line is one message, each
    /// message received is one stdout line, nothing else is printed there.
    /// The default when stdin is not a terminal.
    #[arg(long)]
    pipe: bool,
    /// Pipe mode: stdin lines are binary messages in this encoding, not text.
    #[arg(long, value_enum)]
    binary: Option<Encoding>,
    /// How received binary messages are shown.
    #[arg(long, value_enum, default_value = "hex")]
    show_binary: Encoding,
    /// Prefix received messages with the time (the default when interactive).
    #[arg(long, overrides_with = "no_timestamps")]
    timestamps: bool,
    /// No time prefix.
    #[arg(long)]
    no_timestamps: bool,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Open the WebSocket over HTTP/2 (RFC 8441 extended CONNECT): TLS with
    /// ALPN `h2` for wss://, HTTP/2 in the clear (h2c) for ws://.
    #[arg(long)]
    http2: bool,
}

/// Exit codes; see the module documentation.
const EXIT_NORMAL: i32 = 0;
const EXIT_CONNECT_FAILED: i32 = 1;
const EXIT_ABNORMAL: i32 = 2;
const EXIT_CLOSED_WITH_ERROR: i32 = 3;

/// One line of input, or its end.
enum Input {
    Line(String),
    End,
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<i32> {
    let tls = match (&args.ca, args.insecure) {
        (Some(ca), _) => Some(tether::tls::client_config(Some(&std::fs::read(ca)?))?),
        (None, true) => Some(tether::tls::insecure_client_config()?),
        (None, false) => None,
    };
    if let Some(channel) = args.channel.clone() {
        let headers = parse_headers(&args.headers)?;
        return channel::run(channel::ChannelArgs {
            url: args.url,
            channel,
            token: args.token,
            headers,
            count: args.count,
            tls,
            http2: args.http2,
        })
        .await;
    }
    let config = Config::default()
        .compression(args.compress)
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_message_size);
    let mut builder = ClientBuilder::new(&args.url)
        .config(config)
        .http2(args.http2);
    for (name, value) in parse_headers(&args.headers)? {
        builder = builder.header(&name, &value);
    }
    for protocol in &args.protocols {
        builder = builder.protocol(protocol);
    }
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    let (ws, _) = match builder.connect().await {
        Ok(connected) => connected,
        Err(e) => {
            eprintln!("connect failed: {e}");
            return Ok(EXIT_CONNECT_FAILED);
        }
    };
    let interactive = !args.pipe && std::io::stdin().is_terminal();
    let timestamps = args.timestamps || (interactive && !args.no_timestamps);
    eprintln!(
        "connected to {}{}{}{}",
        args.url,
        if args.http2 { " over HTTP/2" } else { "" },
        ws.protocol().map(|p| format!(" ({p})")).unwrap_or_default(),
        if ws.is_compressed() { ", deflate" } else { "" }
    );
    let (mut reader, writer) = ws.split();
    let (lines, mut input) = mpsc::channel(64);
    let mut screen = if interactive {
        eprintln!("type a message, or /help");
        terminal::Screen::interactive(lines)?
    } else {
        tokio::spawn(read_stdin(lines));
        terminal::Screen::plain()
    };
    // The close code this side sent (0: none yet): the server echoes it.
    let we_closed = Arc::new(AtomicU32::new(0));
    let sending = {
        let (we_closed, printer, binary) = (we_closed.clone(), screen.printer(), args.binary);
        tokio::spawn(async move {
            while let Some(line) = input.recv().await {
                let action = match line {
                    Input::End => Action::Close(1000, String::new()),
                    Input::Line(line) if interactive => match command::parse(&line) {
                        Ok(action) => action,
                        Err(error) => {
                            printer.note(&format!("! {error}"));
                            continue;
                        }
                    },
                    Input::Line(line) => match binary {
                        None => Action::Send(Message::text(line)),
                        Some(encoding) => match command::decode(&line, encoding) {
                            Ok(bytes) => Action::Send(Message::Binary(bytes)),
                            Err(error) => {
                                eprintln!("skipping line: {error}");
                                continue;
                            }
                        },
                    },
                };
                let sent = match action {
                    Action::Send(message) => writer.send(message).await,
                    Action::Close(code, reason) => {
                        we_closed.store(u32::from(code), Ordering::Release);
                        let sent = writer.close(Some(CloseFrame::new(code, &reason))).await;
                        if sent.is_ok() {
                            return;
                        }
                        sent
                    }
                    Action::Help => {
                        printer.note(command::HELP);
                        Ok(())
                    }
                };
                if let Err(error) = sent {
                    printer.note(&format!("! send failed: {error}"));
                    return;
                }
            }
        })
    };
    let show = |text: String| screen.show(&text, timestamps);
    let code = loop {
        let message = match reader.recv().await {
            Ok(Some(message)) => message,
            Ok(None) => break EXIT_ABNORMAL,
            Err(error) => {
                eprintln!("connection failed: {error}");
                break EXIT_ABNORMAL;
            }
        };
        match message {
            Message::Text(text) if interactive => show(format!("< {text}")),
            Message::Text(text) => show(text.to_string()),
            Message::Binary(bytes) if interactive => show(format!(
                "< [binary, {} bytes] {}",
                bytes.len(),
                command::encode(&bytes, args.show_binary)
            )),
            Message::Binary(bytes) => show(command::encode(
                &bytes,
                args.binary.unwrap_or(args.show_binary),
            )),
            Message::Ping(payload) if interactive => {
                show(format!("< ping {}", String::from_utf8_lossy(&payload)))
            }
            Message::Pong(payload) if interactive => {
                show(format!("< pong {}", String::from_utf8_lossy(&payload)))
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(frame) => {
                let ours = we_closed.load(Ordering::Acquire);
                break match frame {
                    Some(frame) => {
                        eprintln!("closed: {} {}", frame.code, frame.reason);
                        match u32::from(frame.code.0) {
                            1000 | 1001 => EXIT_NORMAL,
                            // Our own close, echoed.
                            code if code == ours => EXIT_NORMAL,
                            _ => EXIT_CLOSED_WITH_ERROR,
                        }
                    }
                    None => {
                        eprintln!("closed");
                        EXIT_NORMAL
                    }
                };
            }
        }
    };
    sending.abort();
    screen.finish();
    Ok(code)
}

/// `Name: value` headers, split.
fn parse_headers(headers: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    headers
        .iter()
        .map(|header| match header.split_once(':') {
            Some((name, value)) => Ok((name.trim().to_owned(), value.trim().to_owned())),
            None => anyhow::bail!("header {header:?} is not `Name: value`"),
        })
        .collect()
}

/// Pipe mode input: stdin lines, then its end.
async fn read_stdin(lines: mpsc::Sender<Input>) {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = stdin.next_line().await {
        if lines.send(Input::Line(line)).await.is_err() {
            return;
        }
    }
    let _ = lines.send(Input::End).await;
}

//! `tether echo`: an echo server on any path, and a broadcast room on
//! `/broadcast` (every message to every client there, the sender included), the
//! two contracts the benchmarks compare WebSocket libraries on.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use tether::broadcast::Ended;
use tether::{
    Accept, Broadcast, CloseCode, CloseFrame, Config, DeflateConfig, PreparedMessage, WebSocket,
};
use tokio::net::TcpListener;

/// Arguments of `tether echo`.
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Refuse permessage-deflate even when a client offers it.
    #[arg(long)]
    no_compression: bool,
    /// Keep the deflate context across messages (both ways): better ratio on
    /// similar messages, about 350 KiB more per connection.
    #[arg(long)]
    context_takeover: bool,
    /// Largest message accepted, in bytes (after decompression).
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// PEM certificate chain: serve wss:// instead of ws://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Bytes all connections together may hold for messages being read or
    /// inflated; past it a connection stops being read, and after
    /// --buffer-wait is closed with 1013. 0 turns the bound off. Default: a
    /// quarter of the machine's memory (or of the control group's limit).
    #[arg(long)]
    max_buffered_bytes: Option<usize>,
    /// Seconds a connection waits for room under --max-buffered-bytes.
    #[arg(long, default_value_t = 5.0)]
    buffer_wait: f64,
    /// Serving threads, each with its own listener on the address (default:
    /// the cores this process may run on).
    #[arg(long)]
    threads: Option<NonZeroUsize>,
    /// Also serve WebSockets over HTTP/2 (RFC 8441 extended CONNECT): to
    /// clients that start with the HTTP/2 preface (h2c), or with
    /// --tls-cert to those whose ALPN picks `h2`. HTTP/1.1 is served as
    /// before beside it.
    #[arg(long)]
    http2: bool,
}

/// What every serving thread shares.
struct Shared {
    config: Config,
    tls: Option<tokio_rustls::TlsAcceptor>,
    room: Broadcast,
    /// Serve HTTP/2 too (`--http2`).
    http2: bool,
}

/// Runs the echo server: one single-threaded runtime per thread, each
/// accepting on its own `SO_REUSEPORT` listener on the same address, so a
/// connection stays on the thread that accepted it and pays no work-stealing
/// or cross-thread wake-ups per message. Only `/broadcast` crosses threads.
pub fn run(args: EchoArgs) -> anyhow::Result<()> {
    let deflate = DeflateConfig::default()
        .enabled(!args.no_compression)
        .server_no_context_takeover(!args.context_takeover)
        .client_no_context_takeover(!args.context_takeover);
    let mut config = Config::default()
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_message_size)
        .deflate(deflate);
    let limit = args
        .max_buffered_bytes
        .unwrap_or_else(tether::budget::machine_default);
    if limit > 0 {
        let wait = std::time::Duration::try_from_secs_f64(args.buffer_wait)
            .map_err(|_| anyhow::anyhow!("--buffer-wait must be a number of seconds"))?;
        config = config.budget(tether::Budget::new(limit, wait));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let mut config =
                tether::tls::server_config(&std::fs::read(cert)?, &std::fs::read(key)?)?;
            if args.http2 {
                Arc::make_mut(&mut config).alpn_protocols = vec![H2.to_vec(), b"http/1.1".to_vec()];
            }
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
        _ => None,
    };
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    // The first listener takes the address (port 0 picks one); the others
    // join it.
    let first = listen(args.listen)?;
    let address = first.local_addr()?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let http = if args.http2 {
        "HTTP/2 and HTTP/1.1"
    } else {
        "HTTP/1.1"
    };
    tracing::info!("echo server listening on {scheme}://{address} ({http}, {threads} threads)");
    let shared = Arc::new(Shared {
        config,
        tls,
        room: Broadcast::default(),
        http2: args.http2,
    });
    for index in 1..threads {
        let listener = listen(address)?;
        let shared = shared.clone();
        // Serving threads run until the process ends; this one is the last.
        std::thread::Builder::new()
            .name(format!("echo-{index}"))
            .spawn(move || {
                if let Err(e) = serve(listener, shared) {
                    tracing::error!(error = %e, "serving thread failed");
                }
            })?;
    }
    serve(first, shared)
}

/// A non-blocking listener on `address` that other threads may bind too.
fn listen(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// One serving thread: its runtime, its listener, its connections.
fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::reclaim::on_park)
        .build()?;
    runtime.block_on(async {
        tokio::spawn(crate::reclaim::wake_up());
        accept_loop(listener, shared).await
    })
}

async fn accept_loop(listener: std::net::TcpListener, shared: Arc<Shared>) -> anyhow::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let mut backoff = tether::listen::AcceptBackoff::new();
    let mut descriptors = tether::listen::DescriptorGuard::new();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                descriptors.accept_failed(&e);
                match backoff.failed(&e) {
                    tether::listen::AfterFailure::Retry => {
                        tracing::debug!(error = %e, "accept failed")
                    }
                    // Out of descriptors and the like: the others are
                    // served meanwhile, and the backlog waits.
                    tether::listen::AfterFailure::Wait { delay, first } => {
                        if first {
                            tracing::warn!(error = %e, "accept failed: backing off until descriptors free");
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
                continue;
            }
        };
        if let Some(failures) = backoff.succeeded() {
            tracing::info!(failures, "accepting again");
        }
        // Near the descriptor limit: 503 now, rather than EMFILE for the
        // next connection and every one after it.
        let Some(tcp) = descriptors.admit(tcp) else {
            continue;
        };
        let shared = shared.clone();
        // The handshake runs in a task of its own that ends once the
        // connection has its own (smaller) task: an idle connection then
        // holds only what its loop needs.
        tokio::spawn(async move {
            let accepted = match &shared.tls {
                Some(tls) => match Box::pin(tls.accept(tcp)).await {
                    Ok(stream)
                        if shared.http2 && stream.get_ref().1.alpn_protocol() == Some(H2) =>
                    {
                        return serve_http2(stream, shared, peer).await;
                    }
                    Ok(stream) => {
                        let stream = tether::MaybeTlsStream::ServerTls(Box::new(stream));
                        handshake(stream, &shared.config).await
                    }
                    Err(e) => Err(e.into()),
                },
                // The HTTP/2 preface starts with `P`, a WebSocket's GET with `G`.
                None if shared.http2 && starts_with(&tcp, b'P').await => {
                    let _ = tcp.set_nodelay(true);
                    return serve_http2(tcp, shared, peer).await;
                }
                None => match tcp.set_nodelay(true) {
                    Ok(()) => handshake(tether::MaybeTlsStream::Plain(tcp), &shared.config).await,
                    Err(e) => Err(e.into()),
                },
            };
            match accepted {
                Ok((ws, path)) => run_websocket(ws, &path, shared, Some(peer)),
                Err(e) => tracing::debug!(%peer, error = %e, "handshake failed"),
            }
        });
    }
}

/// The ALPN name of HTTP/2.
const H2: &[u8] = b"h2";

/// Whether the first byte the client sent is `byte` (waits for it).
async fn starts_with(tcp: &tokio::net::TcpStream, byte: u8) -> bool {
    let mut first = [0u8; 1];
    matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == byte)
}

/// Echoes on `ws`, or joins the broadcast room when `path` is its path, in
/// a task of its own.
fn run_websocket(
    ws: WebSocket<tether::MaybeTlsStream>,
    path: &str,
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
) {
    if path == BROADCAST_PATH {
        tokio::spawn(async move { log_end(peer, broadcast(ws, &shared.room).await) });
    } else {
        tokio::spawn(echo(ws));
    }
}

/// Serves an HTTP/2 connection: every extended CONNECT becomes a WebSocket
/// on its stream, echoing or in the broadcast room as its path says.
async fn serve_http2<S>(stream: S, shared: Arc<Shared>, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(
        move |mut request: hyper::Request<tether::http2_server::Http2Body>| {
            let shared = shared.clone();
            let answer = match tether::upgrade(&mut request, &shared.config, None) {
                Ok((response, pending)) => {
                    let path = request.uri().path().to_owned();
                    tokio::spawn(async move {
                        match pending.finish_with(tether::MaybeTlsStream::Http2).await {
                            Ok(ws) => run_websocket(ws, &path, shared, None),
                            Err(e) => tracing::debug!(%peer, error = %e, "upgrade failed"),
                        }
                    });
                    response.map(|()| String::new())
                }
                Err(e) => tether_proto::handshake::reject_response(&e),
            };
            std::future::ready(Ok::<_, std::convert::Infallible>(answer))
        },
    );
    let served = tether::http2_server::Http2Server::new()
        .serve_connection(stream, service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "HTTP/2 connection ended");
    }
}

/// Completes the WebSocket handshake; returns the connection and its path.
async fn handshake(
    stream: tether::MaybeTlsStream,
    config: &Config,
) -> tether::Result<(WebSocket<tether::MaybeTlsStream>, String)> {
    let mut path = String::new();
    let ws = tether::accept_with(stream, config, |request, _| {
        path = request.uri().path().to_owned();
        Ok(Accept::default())
    })
    .await?;
    Ok((ws, path))
}

/// Logs how a connection ended (`peer` is gone once the socket is).
fn log_end(peer: Option<SocketAddr>, result: tether::Result<()>) {
    match result {
        Ok(()) => tracing::debug!(?peer, "connection closed"),
        Err(e) if no_room(&e) => tracing::warn!(?peer, error = %e, "connection closed with 1013"),
        Err(e) => tracing::debug!(?peer, error = %e, "connection ended"),
    }
}

/// Whether the connection was closed for want of room in the buffer budget
/// (worth a warning: the server is saturated, not the peer at fault).
fn no_room(error: &tether::Error) -> bool {
    matches!(
        error,
        tether::Error::Protocol(tether::ProtocolError::NoRoom { .. })
    )
}

/// Sends every message back to its sender. Replies are fed, not sent: `recv`
/// flushes them before it waits for more input, so pipelined requests are
/// answered with one write per batch.
///
/// Written as a function returning an `async move` block so the connection is
/// stored once in the future (an `async fn` keeps its argument and its working
/// copy apart): this future is most of what an idle connection costs.
#[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
///
/// The peer's address is read from the socket when the connection ends rather
/// than carried for its whole life.
fn echo(mut ws: WebSocket<tether::MaybeTlsStream>) -> impl Future<Output = ()> {
    async move {
        // One flat loop (no nested future): what the task holds is the
        // connection plus the state of one `recv` or `feed`.
        let result = loop {
            let message = match ws.recv().await {
                Ok(Some(message)) if message.is_data() => message,
                Ok(Some(_)) => continue,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if let Err(e) = ws.feed(message).await {
                break Err(e);
            }
        };
        // Asked of the socket only when it is logged (a system call per
        // connection otherwise).
        let logged =
            tracing::enabled!(tracing::Level::DEBUG) || result.as_ref().is_err_and(no_room);
        let peer = logged
            .then(|| ws.get_ref().tcp().and_then(|tcp| tcp.peer_addr().ok()))
            .flatten();
        log_end(peer, result);
    }
}

/// The path on which messages go to every client on it.
const BROADCAST_PATH: &str = "/broadcast";

/// Sends every data message to every client on the path, the sender included.
/// Each message is framed (and compressed) once into the room's ring; each
/// client's writer copies from there, one flush per burst. A client more than
/// the ring's 4096 messages behind is dropped (close 1008) so it cannot hold
/// memory or delay the others.
async fn broadcast(ws: WebSocket<tether::MaybeTlsStream>, room: &Broadcast) -> tether::Result<()> {
    let (mut reader, writer) = ws.split();
    let mut subscription = room.subscribe();
    let out = writer.clone();
    let mut writing = tokio::spawn(async move {
        match subscription.forward_to(&out).await? {
            Ended::Lagged { missed } => {
                tracing::debug!(missed, "broadcast client lagged");
                let too_slow = CloseFrame::new(CloseCode::POLICY, "too slow for the broadcast");
                out.close(Some(too_slow)).await
            }
            Ended::Closed => out.close(None).await,
        }
    });
    let result = loop {
        tokio::select! {
            message = reader.recv() => match message {
                Ok(Some(message)) => {
                    if let Some(prepared) = PreparedMessage::new(message) {
                        room.send(prepared);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            },
            written = &mut writing => {
                // Dropped as too slow: read until the client answers the close.
                let _ = written;
                while let Ok(Some(_)) = reader.recv().await {}
                return Ok(());
            }
        }
    };
    writing.abort();
    result
}

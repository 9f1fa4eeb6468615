//! Serving HTTP/2 connections with WebSockets on their streams (RFC 8441),
//! the WebSocket's frames written straight into the stream.
//!
//! hyper's HTTP/2 server hands an upgraded stream over as a boxed
//! [`hyper::upgrade::Upgraded`] whose every write is copied into a buffer
//! of its own and passed to a pump task through a channel: one allocation
//! and two task wakes per write on top of h2's own. [`Http2Server`] drives
//! `h2` itself instead: an extended CONNECT that the service answers with
//! [`crate::upgrade`] becomes an [`Http2Stream`] over h2's send and receive
//! halves, and every other request goes to the same service as a request
//! with an [`Http2Body`], its response body piped out under h2's flow
//! control.

use std::error::Error as StdError;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderName, CONNECTION, DATE, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Headers that name a hop of HTTP/1.1 and are malformed in HTTP/2
/// (RFC 9113 §8.2.2); h2 refuses a response that carries one.
const HOP_HEADERS: [HeaderName; 5] = [
    CONNECTION,
    TRANSFER_ENCODING,
    UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Serves HTTP/2 connections (TLS with ALPN `h2`, or prior knowledge) to a
/// hyper service, extended CONNECT enabled. The limits are h2's; the
/// defaults are hyper's server's.
///
/// ```no_run
/// # async fn run(tcp: tokio::net::TcpStream) {
/// use hyper::service::service_fn;
/// let service = service_fn(|mut request: http::Request<tether::http2_server::Http2Body>| async move {
///     let answer = match tether::upgrade(&mut request, &tether::Config::default(), None) {
///         Ok((response, pending)) => {
///             tokio::spawn(async move {
///                 let mut ws = pending.finish().await?;
///                 while let Some(message) = ws.recv().await? {
///                     ws.send(message).await?;
///                 }
///                 Ok::<_, tether::Error>(())
///             });
///             response.map(|()| String::new())
///         }
///         Err(e) => tether::proto::handshake::reject_response(&e),
///     };
///     Ok::<_, std::convert::Infallible>(answer)
/// });
/// let _ = tether::http2_server::Http2Server::new().serve_connection(tcp, service).await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Http2Server {
    builder: h2::server::Builder,
    /// How long the client's preface and SETTINGS may take.
    handshake_timeout: Option<std::time::Duration>,
}

impl Default for Http2Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Http2Server {
    /// A server with extended CONNECT enabled, 1 MiB windows, 16 KiB
    /// frames and header lists, 400 KiB of send buffer per stream.
    pub fn new() -> Self {
        let mut builder = h2::server::Builder::new();
        builder
            .enable_connect_protocol()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 20)
            .max_frame_size(16 << 10)
            .max_header_list_size(16 << 10)
            .max_send_buffer_size(400 << 10)
            .max_local_error_reset_streams(Some(1024));
        Self {
            builder,
            handshake_timeout: None,
        }
    }

    /// The client's preface must arrive within `timeout`, or the connection
    /// ends (a client trickling it ties up nothing for long).
    pub fn handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.builder.max_concurrent_streams(max);
        self
    }

    /// SETTINGS_MAX_HEADER_LIST_SIZE; h2 answers a larger request 431.
    pub fn max_header_list_size(mut self, max: u32) -> Self {
        self.builder.max_header_list_size(max);
        self
    }

    /// The initial flow-control window of each stream.
    pub fn stream_window(mut self, size: u32) -> Self {
        self.builder.initial_window_size(size);
        self
    }

    /// The flow-control window of the whole connection.
    pub fn connection_window(mut self, size: u32) -> Self {
        self.builder.initial_connection_window_size(size);
        self
    }

    /// Streams opened and reset by the client before they were accepted;
    /// past it, GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
    pub fn max_pending_resets(mut self, max: usize) -> Self {
        self.builder.max_pending_accept_reset_streams(max);
        self
    }

    /// Streams reset for the client's errors before the connection ends.
    pub fn max_error_resets(mut self, max: usize) -> Self {
        self.builder.max_local_error_reset_streams(Some(max));
        self
    }

    /// Serves one connection until the client or an error ends it; each
    /// stream is answered in a task of its own.
    pub async fn serve_connection<I, S, B>(&self, io: I, service: S) -> Result<(), ServeError>
    where
        I: AsyncRead + AsyncWrite + Unpin,
        S: hyper::service::Service<Request<Http2Body>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + Send,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError> + Send,
    {
        let handshake = self.builder.handshake::<_, Bytes>(io);
        let mut connection = match self.handshake_timeout {
            None => handshake.await?,
            Some(timeout) => match tokio::time::timeout(timeout, handshake).await {
                Ok(connection) => connection?,
                Err(_) => return Err(ServeError::HandshakeTimeout(timeout)),
            },
        };
        while let Some(accepted) = connection.accept().await {
            let (request, respond) = accepted?;
            tokio::spawn(answer(request, respond, service.clone()));
        }
        // The client said GOAWAY: its open streams still get served.
        Ok(poll_fn(|cx| connection.poll_closed(cx)).await?)
    }
}

/// Why [`Http2Server::serve_connection`] ended a connection early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The client's preface did not come within the handshake timeout.
    #[error("no HTTP/2 preface within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// h2's: the client's I/O failed, or the server sent GOAWAY for the
    /// client's fault (`is_go_away() && !is_remote()`: a reset flood, a
    /// malformed frame).
    #[error("HTTP/2: {0}")]
    Http2(#[from] h2::Error),
}

/// Answers one stream: the service's response, then its body, or the
/// stream handed to the WebSocket that upgraded it.
async fn answer<S, B>(request: Request<RecvStream>, mut respond: SendResponse<Bytes>, service: S)
where
    S: hyper::service::Service<Request<Http2Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, recv) = request.into_parts();
    let head_only = parts.method == Method::HEAD;
    // A CONNECT's DATA frames are the tunnel's, not a request body.
    let (body, tunnel) = if parts.method == Method::CONNECT {
        let (tx, rx) = oneshot::channel();
        parts
            .extensions
            .insert(Http2Tunnel(Arc::new(Mutex::new(Some(rx)))));
        (Http2Body::empty(), Some((recv, tx)))
    } else {
        (Http2Body::new(recv), None)
    };
    let response = match service.call(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(error = %error.into(), "HTTP/2 service failed");
            respond.send_reset(Reason::INTERNAL_ERROR);
            return;
        }
    };
    let (mut head, body) = response.into_parts();
    strip_hop_headers(&mut head.headers);
    if !head.headers.contains_key(DATE) {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        if let Ok(value) = HeaderValue::from_str(&now) {
            head.headers.insert(DATE, value);
        }
    }
    if let Some((recv, upgrade)) = tunnel {
        if head.status.is_success() {
            match respond.send_response(Response::from_parts(head, ()), false) {
                // No one waiting (the service answered 2xx without
                // upgrading): dropping the stream resets it.
                Ok(send) => drop(upgrade.send(Http2Stream::new(send, recv))),
                Err(error) => tracing::debug!(%error, "CONNECT answer not sent"),
            }
            return;
        }
    }
    let end = head_only || body.is_end_stream();
    match respond.send_response(Response::from_parts(head, ()), end) {
        Ok(send) if !end => pipe(send, body).await,
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "HTTP/2 response not sent"),
    }
}

/// Removes what HTTP/2 has no place for (RFC 9113 §8.2.2), and what a
/// `Connection` header names.
fn strip_hop_headers(headers: &mut HeaderMap) {
    if let Some(connection) = headers.remove(CONNECTION) {
        let names = connection.to_str().unwrap_or_default().to_owned();
        for name in names.split(',') {
            headers.remove(name.trim());
        }
    }
    for name in &HOP_HEADERS {
        headers.remove(name);
    }
    headers.remove(TE);
}

/// Sends `body` on `send` as the client's window allows; stops when the
/// client resets the stream (a closed SSE tab, say), dropping the body.
async fn pipe<B>(mut send: SendStream<Bytes>, body: B)
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    loop {
        let frame = poll_fn(|cx| {
            if send.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            body.as_mut().poll_frame(cx).map(Some)
        })
        .await;
        let frame = match frame {
            None => return,
            Some(None) => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Some(Ok(frame))) => frame,
            Some(Some(Err(error))) => {
                tracing::debug!(error = %error.into(), "response body failed");
                send.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let mut data = data.copy_to_bytes(data.remaining());
                while !data.is_empty() {
                    send.reserve_capacity(data.len());
                    let Ok(room) = poll_fn(|cx| poll_room(&mut send, cx)).await else {
                        return;
                    };
                    let chunk = data.split_to(room.min(data.len()));
                    if send.send_data(chunk, false).is_err() {
                        return;
                    }
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            let _ = send.send_trailers(trailers);
            return;
        }
    }
}

/// Waits until the stream may send some bytes: the capacity asked for with
/// `reserve_capacity`, as far as the windows and the send buffer allow.
fn poll_room(send: &mut SendStream<Bytes>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    loop {
        let room = send.capacity();
        if room > 0 {
            return Poll::Ready(Ok(room));
        }
        if let Poll::Ready(reset) = send.poll_reset(cx) {
            return Poll::Ready(Err(match reset {
                Ok(reason) => io::Error::new(io::ErrorKind::BrokenPipe, h2::Error::from(reason)),
                Err(error) => h2_io_error(error),
            }));
        }
        match ready!(send.poll_capacity(cx)) {
            Some(Ok(_)) => {}
            Some(Err(error)) => return Poll::Ready(Err(h2_io_error(error))),
            // The stream is no longer sending: ended or reset.
            None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
}

/// h2's error as I/O's: the socket's own error where there was one.
fn h2_io_error(error: h2::Error) -> io::Error {
    if error.is_io() {
        error
            .into_io()
            .unwrap_or_else(|| io::ErrorKind::Other.into())
    } else {
        io::Error::other(error)
    }
}

/// Where [`crate::upgrade`] finds the stream of an extended CONNECT served
/// by [`Http2Server`], in the request's extensions.
#[derive(Clone)]
pub(crate) struct Http2Tunnel(Arc<Mutex<Option<oneshot::Receiver<Http2Stream>>>>);

impl Http2Tunnel {
    /// The stream, once the `200` has gone out; taken once.
    pub(crate) fn take(&self) -> Option<oneshot::Receiver<Http2Stream>> {
        self.0.lock().ok()?.take()
    }
}

/// A request's body on an HTTP/2 stream, its window reopened as it is read.
#[derive(Debug)]
pub struct Http2Body {
    recv: Option<RecvStream>,
    data_done: bool,
}

impl Http2Body {
    fn new(recv: RecvStream) -> Self {
        Self {
            recv: Some(recv),
            data_done: false,
        }
    }

    fn empty() -> Self {
        Self {
            recv: None,
            data_done: true,
        }
    }
}

impl Body for Http2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        let Some(recv) = &mut this.recv else {
            return Poll::Ready(None);
        };
        if !this.data_done {
            match ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => this.data_done = true,
            }
        }
        let trailers = ready!(recv.poll_trailers(cx));
        this.recv = None;
        Poll::Ready(match trailers {
            Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(None) => None,
            Err(error) => Some(Err(error)),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.recv.as_ref().map_or(true, RecvStream::is_end_stream)
    }
}

/// A WebSocket's HTTP/2 stream served by [`Http2Server`]: reads take h2's
/// DATA as it came, writes go into h2's send buffer as far as the stream's
/// window allows (so a client that stops reading holds back only its own
/// stream), and the connection's task frames and sends them.
#[derive(Debug)]
pub struct Http2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received and not yet read.
    unread: Bytes,
    /// END_STREAM sent.
    ended: bool,
}

impl Http2Stream {
    fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self {
            send,
            recv,
            unread: Bytes::new(),
            ended: false,
        }
    }
}

impl AsyncRead for Http2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unread.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.unread = data,
                None => return Poll::Ready(Ok(())),
                Some(Err(error)) => {
                    return Poll::Ready(match error.reason() {
                        // The client ended or cancelled the stream: end of input.
                        Some(Reason::NO_ERROR | Reason::CANCEL) => Ok(()),
                        _ => Err(h2_io_error(error)),
                    });
                }
            }
        }
        // Whatever else has arrived too, as one read of a socket would give
        // it: the decoder then sees a burst of messages at once and the
        // answers go out as one write (and fewer DATA frames), instead of a
        // write per frame the client sent.
        let mut taken = 0;
        loop {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            taken += n;
            if !this.unread.is_empty() || buf.remaining() == 0 {
                break;
            }
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => this.unread = data,
                // An end or an error is for the next read to report.
                _ => break,
            }
        }
        let _ = this.recv.flow_control().release_capacity(taken);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Http2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        // Asked for only while there is something to send: capacity held
        // while idle would pin the connection's window (hyper#4003).
        this.send.reserve_capacity(buf.len());
        let room = ready!(poll_room(&mut this.send, cx))?;
        let n = room.min(buf.len());
        this.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(h2_io_error)?;
        Poll::Ready(Ok(n))
    }

    /// The writer's chunks gathered into one DATA payload: it copies once
    /// either way, and one `send_data` is one frame for h2 to track.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        this.send.reserve_capacity(total);
        let room = ready!(poll_room(&mut this.send, cx))?;
        let n = room.min(total);
        let mut payload = bytes::BytesMut::with_capacity(n);
        for buf in bufs {
            let take = buf.len().min(n - payload.len());
            payload.extend_from_slice(&buf[..take]);
            if payload.len() == n {
                break;
            }
        }
        this.send
            .send_data(payload.freeze(), false)
            .map_err(h2_io_error)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is h2's: the connection's task sends it.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ended {
            this.ended = true;
            let _ = this.send.send_data(Bytes::new(), true);
        }
        Poll::Ready(Ok(()))
    }
}

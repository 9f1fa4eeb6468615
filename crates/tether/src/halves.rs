//! How a stream is cut into a reading and a writing half.
//!
//! [`WebSocket::split`](crate::WebSocket::split) hands the two halves to two
//! owners. A TCP (or Unix) stream, plain `ws://` included, splits for free:
//! both halves are views of one socket, with no lock between them and one
//! shared allocation. Streams
//! whose two directions share state (TLS, an in-memory duplex, hyper's
//! upgraded connection) split with `tokio::io::split`, which puts the stream
//! behind a lock each half takes in turn.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};

use crate::MaybeTlsStream;

/// A stream a [`WebSocket`](crate::WebSocket) can be split over.
///
/// Implemented for the streams tether itself produces and accepts; wrap any
/// other stream in [`Locked`] to split it with `tokio::io::split`.
pub trait SplitStream: AsyncRead + AsyncWrite + Unpin + Sized {
    /// What the receiving half reads from.
    type ReadHalf: AsyncRead + Unpin + Send + 'static;
    /// What the sending half writes to.
    type WriteHalf: AsyncWrite + Unpin + Send + 'static;
    /// Cuts the stream in two.
    fn split_stream(self) -> (Self::ReadHalf, Self::WriteHalf);
}

impl SplitStream for tokio::net::TcpStream {
    type ReadHalf = tokio::net::tcp::OwnedReadHalf;
    type WriteHalf = tokio::net::tcp::OwnedWriteHalf;
    fn split_stream(self) -> (Self::ReadHalf, Self::WriteHalf) {
        self.into_split()
    }
}

#[cfg(unix)]
impl SplitStream for tokio::net::UnixStream {
    type ReadHalf = tokio::net::unix::OwnedReadHalf;
    type WriteHalf = tokio::net::unix::OwnedWriteHalf;
    fn split_stream(self) -> (Self::ReadHalf, Self::WriteHalf) {
        self.into_split()
    }
}

/// Streams split through `tokio::io::split`.
macro_rules! split_behind_a_lock {
    ($($stream:ty),* $(,)?) => {$(
        impl SplitStream for $stream {
            type ReadHalf = ReadHalf<$stream>;
            type WriteHalf = WriteHalf<$stream>;
            fn split_stream(self) -> (Self::ReadHalf, Self::WriteHalf) {
                tokio::io::split(self)
            }
        }
    )*};
}

split_behind_a_lock!(
    crate::UpgradedStream,
    tokio::io::DuplexStream,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
);

impl SplitStream for MaybeTlsStream {
    type ReadHalf = MaybeTlsReadHalf;
    type WriteHalf = MaybeTlsWriteHalf;
    fn split_stream(self) -> (Self::ReadHalf, Self::WriteHalf) {
        match self {
            MaybeTlsStream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (
                    MaybeTlsReadHalf::Plain(read),
                    MaybeTlsWriteHalf::Plain(write),
                )
            }
            tls => {
                let (read, write) = tokio::io::split(tls);
                (MaybeTlsReadHalf::Tls(read), MaybeTlsWriteHalf::Tls(write))
            }
        }
    }
}

/// The receiving half of a split [`MaybeTlsStream`]: a plain stream's own
/// half, or a TLS or HTTP/2 stream behind the lock its halves share (their
/// state is one object for both directions).
#[derive(Debug)]
pub enum MaybeTlsReadHalf {
    /// `ws://`.
    Plain(tokio::net::tcp::OwnedReadHalf),
    /// `wss://`, or a stream of an HTTP/2 connection.
    Tls(ReadHalf<MaybeTlsStream>),
}

/// The sending half of a split [`MaybeTlsStream`] (see [`MaybeTlsReadHalf`]).
#[derive(Debug)]
pub enum MaybeTlsWriteHalf {
    /// `ws://`.
    Plain(tokio::net::tcp::OwnedWriteHalf),
    /// `wss://`, or a stream of an HTTP/2 connection.
    Tls(WriteHalf<MaybeTlsStream>),
}

impl AsyncRead for MaybeTlsReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(half) => Pin::new(half).poll_read(cx, buf),
            Self::Tls(half) => Pin::new(half).poll_read(cx, buf),
        }
    }
}

macro_rules! either_half {
    ($self:ident, $half:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTlsWriteHalf::Plain($half) => $e,
            MaybeTlsWriteHalf::Tls($half) => $e,
        }
    };
}

impl AsyncWrite for MaybeTlsWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either_half!(self, half => Pin::new(half).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either_half!(self, half => Pin::new(half).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(half) => half.is_write_vectored(),
            Self::Tls(half) => half.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either_half!(self, half => Pin::new(half).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either_half!(self, half => Pin::new(half).poll_shutdown(cx))
    }
}

/// Any stream, split with `tokio::io::split` (for streams [`SplitStream`]
/// has no impl for).
#[derive(Debug)]
pub struct Locked<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for Locked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Locked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> SplitStream for Locked<S> {
    type ReadHalf = ReadHalf<Self>;
    type WriteHalf = WriteHalf<Self>;
    fn split_stream(self) -> (Self::ReadHalf, Self::WriteHalf) {
        tokio::io::split(self)
    }
}

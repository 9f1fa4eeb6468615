//! The stream under a client or `accept`ed WebSocket: TCP, TLS over TCP, or
//! a stream of an HTTP/2 connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A plain, TLS or HTTP/2 stream, so `ws://` and `wss://` connections over
/// either HTTP version share one type.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`, client side.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// `wss://`, server side.
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A stream of an HTTP/2 connection (RFC 8441), plain or TLS beneath.
    Http2(crate::UpgradedStream),
}

impl MaybeTlsStream {
    /// The underlying TCP stream; `None` for an HTTP/2 stream, whose
    /// connection belongs to hyper and is shared with its sibling streams.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Plain(s) => Some(s),
            Self::ClientTls(s) => Some(s.get_ref().0),
            Self::ServerTls(s) => Some(s.get_ref().0),
            Self::Http2(_) => None,
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTlsStream::Plain($s) => $e,
            MaybeTlsStream::ClientTls($s) => $e,
            MaybeTlsStream::ServerTls($s) => $e,
            MaybeTlsStream::Http2($s) => $e,
        }
    };
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::ClientTls(s) => s.is_write_vectored(),
            Self::ServerTls(s) => s.is_write_vectored(),
            Self::Http2(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

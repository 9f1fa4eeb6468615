//! The stream under a client or `accept`ed WebSocket: TCP, TLS over TCP, or
//! a stream of an HTTP/2 connection.

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

/// `AsyncRead` and `AsyncWrite` for an enum whose every variant holds one
/// stream: each call goes to the variant's.
macro_rules! delegate_io {
    ($name:ident { $($variant:ident),+ $(,)? }) => {
        impl tokio::io::AsyncRead for $name {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($name::$variant(s) => std::pin::Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }

        impl tokio::io::AsyncWrite for $name {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($name::$variant(s) => std::pin::Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($name::$variant(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),)+
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $($name::$variant(s) => s.is_write_vectored(),)+
                }
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($name::$variant(s) => std::pin::Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($name::$variant(s) => std::pin::Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}
pub(crate) use delegate_io;

delegate_io!(MaybeTlsStream {
    Plain,
    ClientTls,
    ServerTls,
    Http2
});

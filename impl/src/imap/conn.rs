//! The session's handle on its transport: the shared [`Stream`] (plain or TLS), or nothing
//! for the instant of the STARTTLS upgrade (which consumes the plain stream).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::Stream;

/// A client connection.
#[derive(Debug)]
pub enum Conn {
    /// Open.
    Open(Stream),
    /// Taken away by an upgrade that failed.
    Closed,
}

impl Conn {
    /// STARTTLS: discard `pipelined` plaintext and run the TLS handshake.
    pub async fn upgrade(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
        pipelined: &mut BytesMut,
    ) -> io::Result<()> {
        match std::mem::replace(self, Conn::Closed) {
            Conn::Open(s) => {
                *self = Conn::Open(s.upgrade_discarding(acceptor, pipelined).await?);
                Ok(())
            }
            Conn::Closed => Err(closed()),
        }
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Open(s) if s.is_tls())
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Open(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Open(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Open(s) => Pin::new(s).poll_flush(cx),
            Conn::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Open(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Closed => Poll::Ready(Ok(())),
        }
    }
}

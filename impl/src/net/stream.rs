//! A server connection that starts in plaintext and may switch to TLS (STARTTLS).
//!
//! # STARTTLS safety (CVE-2011-0411 class)
//!
//! The protocol layer must discard any plaintext bytes it has buffered after the STARTTLS
//! command line before calling [`Stream::upgrade`]: never feed them to the TLS handshake and
//! never hand them to the command parser afterwards. Otherwise an attacker in the middle can
//! pipeline plaintext commands behind `STARTTLS` that the server would then execute as if they
//! had arrived over TLS. The simplest safe rule: if the read buffer is not empty right after the
//! STARTTLS line, answer it (the protocol decides: a tagged `BAD`, or closing) instead of
//! upgrading, or drop those bytes ([`Stream::upgrade_discarding`] does the latter). Also reset all session state learned before TLS (capabilities,
//! any authentication), as RFC 3501 §6.2.1 and RFC 3656 §3.3 require.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// The transport of one server connection: plain TCP, or TLS over TCP after STARTTLS.
/// Sessions are written against `AsyncRead + AsyncWrite + Unpin`, so they do not care which.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP, before STARTTLS (or without TLS).
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large).
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// Performs the server side of the TLS handshake on a plain stream. The caller has already
    /// sent its plaintext `OK` to STARTTLS, flushed it, and discarded any buffered plaintext (see
    /// the module documentation). Upgrading a stream that is already TLS is an error of kind
    /// `InvalidInput`.
    pub async fn upgrade(self, acceptor: &TlsAcceptor) -> io::Result<Stream> {
        match self {
            Stream::Plain(tcp) => {
                let tls = acceptor.accept(tcp).await?;
                Ok(Stream::Tls(Box::new(tls)))
            }
            Stream::Tls(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "connection is already using TLS",
            )),
        }
    }

    /// [`upgrade`](Stream::upgrade) for a protocol layer that reads through `read_buffer`: the
    /// bytes still in it (plaintext pipelined after the STARTTLS line) are discarded first and
    /// logged at warn level with their count, so they can never reach the parser or the TLS
    /// handshake. Returns the upgraded stream; `read_buffer` is left empty.
    pub async fn upgrade_discarding(
        self,
        acceptor: &TlsAcceptor,
        read_buffer: &mut BytesMut,
    ) -> io::Result<Stream> {
        if !read_buffer.is_empty() {
            tracing::warn!(
                discarded = read_buffer.len(),
                "discarding plaintext pipelined after STARTTLS"
            );
            read_buffer.clear();
        }
        self.upgrade(acceptor).await
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The underlying TCP stream (for addresses and socket options).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// The negotiated TLS protocol version, if the connection is TLS.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls.get_ref().1.protocol_version(),
        }
    }
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Self {
        Stream::Plain(tcp)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

//! One client connection of a case: TCP or TLS, the framer, and deadlines on every read.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::wire::frame::{FrameError, Framer, Line};

/// Size of each socket read.
pub const READ_CHUNK: usize = 64 * 1024;

/// Why reading a line failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Nothing complete arrived before the deadline.
    #[error("no complete line within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection (EOF).
    #[error("connection closed by server")]
    Closed,
    /// The connection failed (reset, TLS error).
    #[error("connection error: {0}")]
    Io(String),
    /// The server's bytes cannot be framed.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// A write could not complete before the deadline, or failed part-way: the server stopped
    /// reading (or closed the connection) after `sent` of `total` bytes.
    #[error("server stopped reading after {sent} of {total} bytes ({why})")]
    Stalled {
        /// Bytes the socket accepted.
        sent: usize,
        /// Bytes of the write.
        total: usize,
        /// Timeout, reset, broken pipe.
        why: String,
    },
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// A connection to the target.
pub struct Conn {
    stream: Stream,
    framer: Framer,
    /// The server closed (or reset) the connection.
    pub eof: bool,
}

impl Conn {
    /// Connect to `addr` within `deadline`.
    pub async fn connect(addr: &str, deadline: Instant) -> Result<Conn, ReadError> {
        let tcp = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| ReadError::Io(format!("connect to {addr} timed out")))?
            .map_err(|e| ReadError::Io(format!("connect to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        Ok(Conn {
            stream: Stream::Plain(tcp),
            framer: Framer::default(),
            eof: false,
        })
    }

    /// Do a TLS handshake on the plain connection now. Bytes the server sent before the
    /// handshake that were not consumed as lines are dropped.
    pub async fn start_tls(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        deadline: Instant,
    ) -> Result<(), ReadError> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(ReadError::Io("TLS is already active".into()));
        };
        if !self.framer.pending().is_empty() {
            return Err(ReadError::Io(
                "the server sent bytes after its STARTTLS reply, before the handshake".into(),
            ));
        }
        let tls = timeout_at(deadline, TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| ReadError::Io("TLS handshake timed out".into()))?
            .map_err(|e| ReadError::Io(format!("TLS handshake failed: {e}")))?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Write all of `bytes` (one logical write, as many system calls as the socket needs) and
    /// flush. A write the server does not let complete before `deadline` (it stopped reading),
    /// or that fails part-way (it closed), is [`ReadError::Stalled`] with the bytes it took.
    pub async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), ReadError> {
        if matches!(self.stream, Stream::Gone) {
            return Err(ReadError::Io("write failed: connection is closed".into()));
        }
        let total = bytes.len();
        let mut sent = 0usize;
        let result = {
            let (stream, sent) = (&mut self.stream, &mut sent);
            timeout_at(deadline, async move {
                while *sent < total {
                    let rest = bytes.get(*sent..).unwrap_or_default();
                    let n = match stream {
                        Stream::Plain(s) => s.write(rest).await?,
                        Stream::Tls(s) => s.write(rest).await?,
                        Stream::Gone => 0,
                    };
                    if n == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
                    }
                    *sent += n;
                }
                match stream {
                    Stream::Plain(s) => s.flush().await,
                    Stream::Tls(s) => s.flush().await,
                    Stream::Gone => Ok(()),
                }
            })
            .await
        };
        let why = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the write did not complete within the timeout".to_string(),
        };
        Err(ReadError::Stalled { sent, total, why })
    }

    /// The next logical line, waiting until `deadline`.
    pub async fn read_line(
        &mut self,
        deadline: Instant,
        budget: Duration,
    ) -> Result<Line, ReadError> {
        loop {
            if let Some(line) = self.framer.next_line()? {
                return Ok(line);
            }
            if self.eof {
                return Err(ReadError::Closed);
            }
            let mut buf = vec![0u8; READ_CHUNK];
            let read = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut buf).await,
                    Stream::Tls(s) => s.read(&mut buf).await,
                    Stream::Gone => Ok(0),
                }
            };
            match timeout_at(deadline, read).await {
                Err(_) => return Err(ReadError::Timeout(budget)),
                Ok(Ok(0)) => {
                    self.eof = true;
                    return Err(ReadError::Closed);
                }
                Ok(Ok(n)) => self.framer.push(buf.get(..n).unwrap_or_default()),
                Ok(Err(e)) => {
                    self.eof = true;
                    return Err(ReadError::Io(e.to_string()));
                }
            }
        }
    }

    /// Bytes received that do not form a complete line yet (shown when a read times out).
    pub fn partial(&self) -> &[u8] {
        self.framer.pending()
    }

    /// Close our side.
    pub async fn shutdown(&mut self) {
        match &mut self.stream {
            Stream::Plain(s) => {
                let _ = s.shutdown().await;
            }
            Stream::Tls(s) => {
                let _ = s.shutdown().await;
            }
            Stream::Gone => {}
        }
        self.stream = Stream::Gone;
    }
}

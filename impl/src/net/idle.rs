//! Idle timeouts: a read that gives up when the client stays silent too long. Each server owns
//! its timeout values (RFC 3501 §5.4 asks for at least 30 minutes for IMAP; MUPDATE has none).

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The client sent nothing for the whole idle period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("idle timeout after {0:?}")]
pub struct IdleTimeout(pub Duration);

impl From<IdleTimeout> for io::Error {
    fn from(t: IdleTimeout) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, t)
    }
}

/// Runs `fut`, giving up with [`IdleTimeout`] if it has not completed within `idle`.
pub async fn with_idle_timeout<T>(
    idle: Duration,
    fut: impl Future<Output = T>,
) -> Result<T, IdleTimeout> {
    tokio::time::timeout(idle, fut)
        .await
        .map_err(|_| IdleTimeout(idle))
}

/// Reads more bytes into `buf` (like `AsyncReadExt::read_buf`), failing with an error of kind
/// `TimedOut` when nothing arrives within `idle`. `Ok(0)` is end of stream.
pub async fn read_with_idle_timeout<R>(
    reader: &mut R,
    buf: &mut BytesMut,
    idle: Duration,
) -> io::Result<usize>
where
    R: AsyncRead + Unpin,
{
    with_idle_timeout(idle, reader.read_buf(buf)).await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn silent_reader_times_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        client.write_all(b"abc").await.unwrap();
        let n = read_with_idle_timeout(&mut server, &mut buf, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!((n, &buf[..]), (3, &b"abc"[..]));
        // Nothing is ever written now, so the outcome does not depend on how long the wait is.
        let e = read_with_idle_timeout(&mut server, &mut buf, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(client);
        let n = read_with_idle_timeout(&mut server, &mut buf, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}

//! [`PodStream`]: one end of a TCP connection of the pod network.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::PortLease;

/// Bytes each direction of an in-memory connection holds before the writer waits for the
/// reader: enough for a loopback-like throughput without letting one connection hoard memory.
pub(crate) const PIPE_BUFFER: usize = 256 * 1024;

/// The reading half of a [`PodStream`].
pub(crate) type ReadHalf = Pin<Box<dyn AsyncRead + Send>>;
/// The writing half of a [`PodStream`].
pub(crate) type WriteHalf = Pin<Box<dyn AsyncWrite + Send>>;

/// One end of a TCP connection through the pod network: an in-memory pipe to another pod's
/// socket, or whatever an [`Outside`](super::Outside) hook connected (a fabric stream, a
/// kernel socket for egress). The host uses it as any `AsyncRead + AsyncWrite`; shutting it
/// down (`AsyncWriteExt::shutdown`) is the guest's end of file, dropping it closes the
/// connection both ways.
pub struct PodStream {
    read: ReadHalf,
    write: WriteHalf,
    /// The ephemeral port of the connecting side, held while the connection lives so no
    /// other socket of the pod binds it.
    pub(crate) lease: Option<PortLease>,
}

impl PodStream {
    /// Wraps a bidirectional byte stream, e.g. a `tokio::net::TcpStream`.
    pub fn new<S>(stream: S) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        Self::from_parts(read, write)
    }

    /// Joins a reading and a writing half, e.g. the two halves of a multiplexed stream.
    pub fn from_parts<R, W>(read: R, write: W) -> Self
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        Self {
            read: Box::pin(read),
            write: Box::pin(write),
            lease: None,
        }
    }

    /// Two connected ends of an in-memory connection (`tokio::io::duplex`) buffering
    /// `buffer` bytes each way.
    pub fn pair(buffer: usize) -> (Self, Self) {
        let (a, b) = tokio::io::duplex(buffer);
        (Self::new(a), Self::new(b))
    }

    pub(crate) fn into_parts(self) -> (ReadHalf, WriteHalf, Option<PortLease>) {
        (self.read, self.write, self.lease)
    }
}

impl std::fmt::Debug for PodStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodStream")
            .field("local", &self.lease.as_ref().map(PortLease::addr))
            .finish_non_exhaustive()
    }
}

impl AsyncRead for PodStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.read.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for PodStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.as_mut().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write.as_mut().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.write.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_pair_carries_bytes_both_ways_and_shutdown_is_end_of_file() {
        let (mut a, mut b) = PodStream::pair(16);
        let writer = tokio::spawn(async move {
            a.write_all(&[7; 1000]).await.unwrap();
            a.shutdown().await.unwrap();
            let mut reply = String::new();
            a.read_to_string(&mut reply).await.unwrap();
            reply
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [7; 1000]);
        b.write_all(b"done").await.unwrap();
        drop(b);
        assert_eq!(writer.await.unwrap(), "done");
    }
}

//! A connection's bytes as the guest's `wasi:io` input and output streams.
//!
//! Each stream works on its half of a [`PodStream`] directly, polling it from the guest's
//! calls: no task per connection. The socket keeps a handle on both halves for `shutdown`.
//! An output stream the guest drops (or shuts down) still delivers what it accepted: the
//! rest is written, then the peer sees end of file, as a kernel does after `close`.
//!
//! [`PodStream`]: crate::network::PodStream

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWriteExt, ReadBuf};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{InputStream, OutputStream, StreamError, StreamResult};

/// Most bytes one read hands the guest, and the size of the read buffer.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes an output stream accepts beyond what the connection has taken.
const WRITE_BUFFER: usize = 64 * 1024;

/// How long a closed output stream keeps delivering its last bytes to a peer that does not
/// read them before giving up (a kernel's FIN-WAIT/linger time is of this order).
const LINGER: Duration = Duration::from_secs(60);

use crate::network::{ReadHalf as Reader, WriteHalf as Writer};

/// The receiving half of a connection, shared by the socket and the guest's input stream.
#[derive(Clone)]
pub(crate) struct ReceiveHalf(Arc<Mutex<ReadState>>);

/// The sending half of a connection, shared by the socket and the guest's output stream.
#[derive(Clone)]
pub(crate) struct SendHalf(Arc<Mutex<WriteState>>);

impl ReceiveHalf {
    pub(crate) fn new(reader: Reader) -> Self {
        Self(Arc::new(Mutex::new(ReadState {
            reader: Some(reader),
            ahead: Ahead::Nothing,
            buffer: Vec::new(),
        })))
    }

    /// The guest's input stream on this half.
    pub(crate) fn stream(&self) -> GuestInput {
        GuestInput(self.clone())
    }

    /// `shutdown(receive)`: the guest reads nothing more.
    pub(crate) fn shutdown(&self) {
        let mut state = lock(&self.0);
        state.reader = None;
        state.ahead = Ahead::Nothing;
    }
}

impl SendHalf {
    pub(crate) fn new(writer: Writer) -> Self {
        Self(Arc::new(Mutex::new(WriteState {
            writer: Some(writer),
            pending: BytesMut::new(),
            failed: None,
        })))
    }

    /// The guest's output stream on this half.
    pub(crate) fn stream(&self) -> GuestOutput {
        GuestOutput(self.clone())
    }

    /// `shutdown(send)`: delivers what was written, then end of file.
    pub(crate) fn shutdown(&self) {
        lock(&self.0).close();
    }
}

/// What the connection has delivered that the guest has not read yet.
enum Ahead {
    Nothing,
    Data(Bytes),
    End,
    Failed(io::Error),
}

struct ReadState {
    /// `None` once the guest has read the end, an error, or shut reading down.
    reader: Option<Reader>,
    ahead: Ahead,
    /// Reused for every read from the connection; allocated on the first.
    buffer: Vec<u8>,
}

impl ReadState {
    /// Reads from the connection into `ahead` unless something is already there.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(reader) = &mut self.reader else {
            return Poll::Ready(());
        };
        if !matches!(self.ahead, Ahead::Nothing) {
            return Poll::Ready(());
        }
        if self.buffer.is_empty() {
            self.buffer = vec![0; READ_CHUNK];
        }
        let mut buf = ReadBuf::new(&mut self.buffer);
        match reader.as_mut().poll_read(cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => self.ahead = Ahead::End,
            Poll::Ready(Ok(())) => self.ahead = Ahead::Data(Bytes::copy_from_slice(buf.filled())),
            Poll::Ready(Err(error)) => self.ahead = Ahead::Failed(error),
        }
        Poll::Ready(())
    }

    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.reader.is_none() {
            return Err(StreamError::Closed);
        }
        if size == 0 {
            // Report an end already seen, but read nothing.
            return match self.ahead {
                Ahead::End => Err(StreamError::Closed),
                _ => Ok(Bytes::new()),
            };
        }
        let _ = self.fill(&mut Context::from_waker(Waker::noop()));
        match std::mem::replace(&mut self.ahead, Ahead::Nothing) {
            Ahead::Nothing => Ok(Bytes::new()),
            Ahead::Data(mut data) => {
                if data.len() > size {
                    self.ahead = Ahead::Data(data.split_off(size));
                }
                Ok(data)
            }
            Ahead::End => {
                self.reader = None;
                Err(StreamError::Closed)
            }
            Ahead::Failed(error) => {
                self.reader = None;
                Err(StreamError::LastOperationFailed(error.into()))
            }
        }
    }
}

struct WriteState {
    /// `None` once closed (by the guest, or by a failed write).
    writer: Option<Writer>,
    /// Bytes the guest wrote that the connection has not taken yet.
    pending: BytesMut,
    /// A write failure not yet reported to the guest.
    failed: Option<io::Error>,
}

impl WriteState {
    /// Hands pending bytes to the connection until they are all taken or it is full.
    fn push(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(writer) = &mut self.writer else {
            return Poll::Ready(());
        };
        match drain(writer, &mut self.pending, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(error)) => {
                self.failed = Some(error);
                self.writer = None;
                self.pending.clear();
                Poll::Ready(())
            }
        }
    }

    /// The error to answer a call with, if the stream cannot take bytes.
    fn unusable(&mut self) -> Option<StreamError> {
        if let Some(error) = self.failed.take() {
            return Some(StreamError::LastOperationFailed(error.into()));
        }
        self.writer.is_none().then_some(StreamError::Closed)
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let _ = self.push(&mut Context::from_waker(Waker::noop()));
        match self.unusable() {
            Some(error) => Err(error),
            None => Ok(WRITE_BUFFER - self.pending.len()),
        }
    }

    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if let Some(error) = self.unusable() {
            return Err(error);
        }
        if bytes.len() > WRITE_BUFFER - self.pending.len() {
            return Err(StreamError::trap(
                "wrote more bytes than check-write permitted",
            ));
        }
        self.pending.extend_from_slice(&bytes);
        let _ = self.push(&mut Context::from_waker(Waker::noop()));
        match self.unusable() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Closes the stream: what is pending is still delivered, then end of file. Finishes at
    /// once when it can (the usual case: nothing pending, an in-memory pipe), otherwise on a
    /// task of its own.
    fn close(&mut self) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        let mut pending = std::mem::take(&mut self.pending);
        let mut cx = Context::from_waker(Waker::noop());
        match drain(&mut writer, &mut pending, &mut cx) {
            Poll::Ready(Err(_)) => return,
            Poll::Ready(Ok(())) if writer.as_mut().poll_shutdown(&mut cx).is_ready() => return,
            _ => {}
        }
        // Outside a tokio runtime (a store dropped on a plain thread) the bytes are lost with
        // the writer, as they would be with a process killed before its socket buffers empty.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = tokio::time::timeout(LINGER, async move {
                    writer.write_all(&pending).await?;
                    writer.shutdown().await
                })
                .await;
            });
        }
    }
}

fn drain(
    writer: &mut Writer,
    pending: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !pending.is_empty() {
        match writer.as_mut().poll_write(cx, pending) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => pending.advance(n),
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
        }
    }
    Poll::Ready(Ok(()))
}

/// The guest's `input-stream` of a connection.
pub(crate) struct GuestInput(ReceiveHalf);

#[async_trait::async_trait]
impl Pollable for GuestInput {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| lock(&self.0.0).fill(cx)).await;
    }
}

impl InputStream for GuestInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        lock(&self.0.0).read(size.min(READ_CHUNK))
    }
}

/// The guest's `output-stream` of a connection. Dropping it closes the sending half.
pub(crate) struct GuestOutput(SendHalf);

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {
        // Ready once everything written has been taken: then `check-write` permits a whole
        // buffer, and a blocking flush is done.
        std::future::poll_fn(|cx| lock(&self.0.0).push(cx)).await;
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        lock(&self.0.0).write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Bytes go to the connection as soon as it takes them; `ready` waits until it has.
        let mut state = lock(&self.0.0);
        let _ = state.push(&mut Context::from_waker(Waker::noop()));
        match state.unusable() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        lock(&self.0.0).check_write()
    }
}

impl Drop for GuestOutput {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every state change under these locks is a single assignment: still consistent if a
    // holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::network::PodStream;

    fn halves(stream: PodStream) -> (ReceiveHalf, SendHalf) {
        let (read, write, _) = stream.into_parts();
        (ReceiveHalf::new(read), SendHalf::new(write))
    }

    #[tokio::test]
    async fn bytes_written_before_a_drop_still_arrive_then_end_of_file() {
        // The pipe takes 1 KiB: most of what the guest writes is still pending at the drop.
        let (guest, mut peer) = PodStream::pair(1024);
        let (_input, output) = halves(guest);
        let mut stream = output.stream();
        assert_eq!(stream.check_write().unwrap(), WRITE_BUFFER);
        stream.write(Bytes::from(vec![b'x'; WRITE_BUFFER])).unwrap();
        assert_eq!(stream.check_write().unwrap(), 1024, "the pipe took 1 KiB");
        drop(stream);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut got))
            .await
            .expect("end of file after the drop: likely deadlocked")
            .unwrap();
        assert_eq!(got.len(), WRITE_BUFFER);
    }

    #[tokio::test]
    async fn reads_wait_for_data_and_report_the_end() {
        let (guest, mut peer) = PodStream::pair(1024);
        let (input, _output) = halves(guest);
        let mut stream = input.stream();
        assert!(stream.read(10).unwrap().is_empty(), "nothing yet");
        let reader = tokio::spawn(async move {
            stream.ready().await;
            let first = stream.read(3).unwrap();
            let second = stream.read(100).unwrap();
            stream.ready().await;
            let end = stream.read(100);
            (first, second, end)
        });
        peer.write_all(b"hello").await.unwrap();
        peer.shutdown().await.unwrap();
        let (first, second, end) = reader.await.unwrap();
        assert_eq!(&first[..], b"hel");
        assert_eq!(&second[..], b"lo");
        assert!(matches!(end, Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn shutdown_receive_ends_reading() {
        let (guest, mut peer) = PodStream::pair(1024);
        let (input, _output) = halves(guest);
        let mut stream = input.stream();
        peer.write_all(b"ignored").await.unwrap();
        input.shutdown();
        assert!(matches!(stream.read(10), Err(StreamError::Closed)));
    }
}

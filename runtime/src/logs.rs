//! Guest stdout and stderr, captured line by line with timestamps into a [`LogSink`].

use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept whole; a longer one is split, so a guest that never prints a newline
/// cannot make the runtime buffer without bound.
const MAX_LINE: usize = 16 * 1024;

/// Which of the guest's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of guest output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When the runtime received the line's last byte.
    pub time: SystemTime,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The line without its newline; invalid UTF-8 replaced.
    pub line: String,
}

/// Receives a container's output. Called from the guest's thread for every line, so it must
/// not block for long: queue or buffer rather than wait on slow I/O.
pub trait LogSink: Send + Sync + 'static {
    /// Takes one line.
    fn write_line(&self, line: LogLine);
}

/// Keeps every line in memory and lets a caller wait for one; for tests and small tools.
#[derive(Default)]
pub struct MemorySink {
    lines: Mutex<Vec<LogLine>>,
    // Bumped on every line so waiters wake without polling.
    changed: tokio::sync::watch::Sender<usize>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// The text of every line of one stream so far.
    pub fn text(&self, stream: LogStream) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.stream == stream)
            .map(|line| line.line)
            .collect()
    }

    /// Waits until some line satisfies `predicate` and returns it. Never returns if none
    /// ever does: callers put a timeout around it.
    pub async fn wait_for(&self, predicate: impl Fn(&LogLine) -> bool) -> LogLine {
        let mut changed = self.changed.subscribe();
        loop {
            if let Some(line) = self.lines().into_iter().find(|line| predicate(line)) {
                return line;
            }
            if changed.changed().await.is_err() {
                // The sender lives in self, so this cannot happen while self is borrowed.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl LogSink for MemorySink {
    fn write_line(&self, line: LogLine) {
        self.lines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(line);
        self.changed.send_modify(|count| *count += 1);
    }
}

/// Writes each line to the host process's own stdout or stderr, as `skiff run` does.
#[derive(Default)]
pub struct StdioSink;

impl LogSink for StdioSink {
    fn write_line(&self, line: LogLine) {
        // A closed stdout (e.g. a pipe whose reader left) must not kill the guest.
        let _ = match line.stream {
            LogStream::Stdout => writeln!(std::io::stdout().lock(), "{}", line.line),
            LogStream::Stderr => writeln!(std::io::stderr().lock(), "{}", line.line),
        };
    }
}

/// Splits bytes into lines for one stream of one instance. The last, unterminated line is
/// delivered when the instance's streams are all dropped.
struct LineBuffer {
    stream: LogStream,
    sink: Arc<dyn LogSink>,
    pending: Mutex<Vec<u8>>,
}

impl LineBuffer {
    fn write(&self, mut bytes: &[u8]) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    pending.extend_from_slice(&bytes[..end]);
                    self.emit(&mut pending);
                    bytes = &bytes[end + 1..];
                }
                None => {
                    pending.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
            while pending.len() >= MAX_LINE {
                let rest = pending.split_off(MAX_LINE);
                self.emit(&mut pending);
                *pending = rest;
            }
        }
    }

    fn emit(&self, pending: &mut Vec<u8>) {
        if pending.last() == Some(&b'\r') {
            pending.pop();
        }
        let line = String::from_utf8_lossy(pending).into_owned();
        pending.clear();
        self.sink.write_line(LogLine {
            time: SystemTime::now(),
            stream: self.stream,
            line,
        });
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        let mut pending = std::mem::take(
            self.pending
                .get_mut()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
        if !pending.is_empty() {
            self.emit(&mut pending);
        }
    }
}

/// A guest output stream (stdout or stderr) feeding a [`LogSink`]. Writes never block and
/// never fail: a line is handed to the sink as soon as its newline arrives.
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<LineBuffer>);

impl GuestOutput {
    pub(crate) fn new(stream: LogStream, sink: Arc<dyn LogSink>) -> Self {
        Self(Arc::new(LineBuffer {
            stream,
            sink,
            pending: Mutex::new(Vec::new()),
        }))
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_flushes_the_last_partial_line_on_drop() {
        let sink = MemorySink::new();
        let output = GuestOutput::new(LogStream::Stdout, sink.clone());
        output.0.write(b"one\ntw");
        output.0.write(b"o\r\nthree");
        assert_eq!(sink.text(LogStream::Stdout), ["one", "two"]);
        drop(output);
        assert_eq!(sink.text(LogStream::Stdout), ["one", "two", "three"]);
    }

    #[test]
    fn splits_overlong_lines() {
        let sink = MemorySink::new();
        let output = GuestOutput::new(LogStream::Stderr, sink.clone());
        output.0.write(&vec![b'x'; MAX_LINE * 2 + 5]);
        drop(output);
        let lengths: Vec<usize> = sink
            .text(LogStream::Stderr)
            .iter()
            .map(String::len)
            .collect();
        assert_eq!(lengths, [MAX_LINE, MAX_LINE, 5]);
    }
}

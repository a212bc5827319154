//! kubectl's port-forward protocol: `portforward.k8s.io` over SPDY/3, server side.
//!
//! `kubectl port-forward` upgrades `POST pods/NAME/portforward` to `SPDY/3.1` and, for
//! every local connection it accepts, opens two SPDY streams whose headers name the pod
//! port and a request ID: an `error` stream (which the server writes a message to if the
//! forward fails, and closes when the connection ends) and a `data` stream (the bytes of
//! the connection, both ways). This module speaks just that much SPDY: SYN_STREAM and
//! SYN_REPLY, DATA with FIN, RST_STREAM, PING (echoed) and GOAWAY; SETTINGS,
//! WINDOW_UPDATE and HEADERS are read and ignored, as Kubernetes' own SPDY library does
//! (it implements no flow control).
//!
//! Header blocks are zlib streams, one per direction for the whole session, compressed
//! against SPDY/3's preset dictionary ([`dictionary`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::LazyLock;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The version in every control frame.
const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// A frame's payload length is 24 bits.
const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// Header blocks larger than this, once inflated, end the session: kubectl sends three
/// short headers per stream.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// The most bytes one DATA frame carries from the pod.
const DATA_CHUNK: usize = 32 * 1024;

/// SPDY/3's header compression dictionary (draft 3, section 2.6.10.1) as Go's SPDY
/// package (kubectl's) has it: the length-prefixed names below, then [`DICTIONARY_TAIL`]
/// as it stands; its Adler-32, which a client's zlib header names, is `e3c6a7c2`.
const DICTIONARY_NAMES: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICTIONARY_TAIL: &str = concat!(
    "10010120120220520630030230330430530630740240540640740840941041141241341441541641",
    "7502504505203 Non-Authoritative Information204 No Content301 Moved Permanently40",
    "0 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept O",
    "ct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,imag",
    "e/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/",
    "javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1",
    ",utf-,*,enq=0.",
);

/// The dictionary header blocks are compressed against.
fn dictionary() -> &'static [u8] {
    static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let mut bytes = Vec::new();
        for name in DICTIONARY_NAMES {
            bytes.extend_from_slice(&(name.len() as u32).to_be_bytes());
            bytes.extend_from_slice(name.as_bytes());
        }
        bytes.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        bytes
    });
    &DICTIONARY
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("reading from the client: {0}")]
    Io(#[from] std::io::Error),
    #[error("a malformed SPDY frame: {0}")]
    Protocol(String),
}

/// One session's header compression, both ways.
struct Headers {
    inflate: Decompress,
    deflate: Compress,
}

impl Headers {
    fn new() -> Headers {
        Headers {
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::default(), true),
        }
    }

    /// The name/value pairs of one header block (`name` lowercased by the sender;
    /// several values of one name are joined by NUL).
    fn read(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
        let text = self.inflate(block)?;
        let protocol = |what: &str| SpdyError::Protocol(format!("header block: {what}"));
        let mut rest = text.as_slice();
        let mut take = |n: usize| -> Result<&[u8], SpdyError> {
            if rest.len() < n {
                return Err(protocol("truncated"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let number = |bytes: &[u8]| u32::from_be_bytes(bytes.try_into().expect("4 bytes")) as usize;
        let count = number(take(4)?);
        let mut pairs = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let name_len = number(take(4)?);
            let name = String::from_utf8_lossy(take(name_len)?).into_owned();
            let value_len = number(take(4)?);
            let value = String::from_utf8_lossy(take(value_len)?).into_owned();
            pairs.push((name, value));
        }
        Ok(pairs)
    }

    fn inflate(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 256);
        let mut input = block;
        loop {
            let before = self.inflate.total_in();
            if out.capacity() - out.len() < 256 {
                out.reserve(out.len().max(1024));
            }
            match self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    let asked = error.needs_dictionary().unwrap_or_default();
                    self.inflate.set_dictionary(dictionary()).map_err(|e| {
                        SpdyError::Protocol(format!(
                            "header blocks use a dictionary (Adler-32 {asked:08x}) other than SPDY/3's: {e}"
                        ))
                    })?;
                }
                Err(error) => return Err(SpdyError::Protocol(format!("header block: {error}"))),
            }
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used..];
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Protocol("header block too large".into()));
            }
            // Done once every byte is taken and the output had room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// A compressed header block of `pairs`, flushed so the peer can read it whole.
    fn write(&mut self, pairs: &[(&str, &str)]) -> Vec<u8> {
        let block = header_block(pairs);
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = block.as_slice();
        loop {
            let before = self.deflate.total_in();
            out.reserve(256);
            let status = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("deflating into a growing buffer cannot fail");
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() && status != Status::BufError {
                return out;
            }
        }
    }
}

/// An uncompressed header block: the number of pairs, then each name and value with its
/// length, all lengths 32-bit big-endian.
fn header_block(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    block.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
    for (name, value) in pairs {
        for text in [name, value] {
            block.extend_from_slice(&(text.len() as u32).to_be_bytes());
            block.extend_from_slice(text.as_bytes());
        }
    }
    block
}

/// A control frame of `kind` with `flags` and `payload`.
fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.extend_from_slice(&((u32::from(flags) << 24) | payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A DATA frame on `stream` (FIN when `fin`).
fn data(stream: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    let flags = if fin { FLAG_FIN } else { 0 };
    frame.extend_from_slice(&((u32::from(flags) << 24) | payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// What a pair of streams forwards to.
struct Pending {
    /// The error stream, once opened.
    error: Option<u32>,
}

/// Serves one SPDY port-forward session on `io` until the client goes. `dial(port)` opens
/// a byte stream to the pod's `port`, or says why it cannot.
pub async fn serve<IO, Dial, Fut, Conn>(io: IO, dial: Dial) -> Result<(), SpdyError>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    Dial: Fn(u16) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Conn, String>> + Send + 'static,
    Conn: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let (out, mut frames) = mpsc::channel::<Vec<u8>>(64);
    let writing = tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut headers = Headers::new();
    // Data streams' inbound halves, by stream ID: `None` is the client's FIN.
    let mut inbound: HashMap<u32, mpsc::UnboundedSender<Option<Bytes>>> = HashMap::new();
    // Streams by request ID, until both have arrived.
    let mut requests: HashMap<String, Pending> = HashMap::new();
    // The connections being forwarded, aborted (with their pod connections) when the
    // session ends.
    let mut forwards = tokio::task::JoinSet::new();
    let result = loop {
        let mut head = [0u8; 8];
        match reader.read_exact(&mut head).await {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(error) => break Err(error.into()),
        }
        let word = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
        let flags = head[4];
        let length =
            (u32::from_be_bytes(head[4..8].try_into().expect("4 bytes")) & 0xff_ffff) as usize;
        let mut payload = vec![0u8; length.min(MAX_PAYLOAD)];
        if let Err(error) = reader.read_exact(&mut payload).await {
            break Err(error.into());
        }
        if word & 0x8000_0000 == 0 {
            let stream = word & 0x7fff_ffff;
            if let Some(sender) = inbound.get(&stream) {
                if !payload.is_empty() {
                    let _ = sender.send(Some(Bytes::from(payload)));
                }
                if flags & FLAG_FIN != 0 {
                    let _ = sender.send(None);
                    inbound.remove(&stream);
                }
            }
            continue;
        }
        let kind = (word & 0xffff) as u16;
        match kind {
            SYN_STREAM => {
                if payload.len() < 10 {
                    break Err(SpdyError::Protocol("SYN_STREAM too short".into()));
                }
                let stream =
                    u32::from_be_bytes(payload[..4].try_into().expect("4 bytes")) & 0x7fff_ffff;
                let pairs = match headers.read(&payload[10..]) {
                    Ok(pairs) => pairs,
                    Err(error) => break Err(error),
                };
                let value = |name: &str| {
                    pairs
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.split('\0').next().unwrap_or_default().to_string())
                };
                let mut reply = stream.to_be_bytes().to_vec();
                reply.extend(headers.write(&[]));
                if out.send(control(SYN_REPLY, 0, &reply)).await.is_err() {
                    break Ok(());
                }
                let request = value("requestid").unwrap_or_default();
                let pending = requests
                    .entry(request.clone())
                    .or_insert(Pending { error: None });
                match value("streamtype").as_deref() {
                    Some("error") => pending.error = Some(stream),
                    Some("data") => {
                        let error = pending.error;
                        requests.remove(&request);
                        let port = value("port")
                            .and_then(|p| p.parse::<u16>().ok())
                            .filter(|p| *p != 0);
                        let (sender, receiver) = mpsc::unbounded_channel();
                        inbound.insert(stream, sender);
                        while forwards.try_join_next().is_some() {}
                        forwards.spawn(forward(
                            dial.clone(),
                            port,
                            stream,
                            error,
                            receiver,
                            out.clone(),
                        ));
                    }
                    // Another stream type: answered, then left alone.
                    _ => {}
                }
            }
            RST_STREAM if payload.len() >= 4 => {
                let stream =
                    u32::from_be_bytes(payload[..4].try_into().expect("4 bytes")) & 0x7fff_ffff;
                if let Some(sender) = inbound.remove(&stream) {
                    let _ = sender.send(None);
                }
            }
            PING if out.send(control(PING, 0, &payload)).await.is_err() => break Ok(()),
            GOAWAY => break Ok(()),
            // SETTINGS, HEADERS, WINDOW_UPDATE and anything newer: nothing to do.
            _ => {}
        }
    };
    forwards.abort_all();
    while forwards.join_next().await.is_some() {}
    drop(out);
    let _ = writing.await;
    result
}

/// Forwards one connection: the client's DATA on `stream` to the pod's `port`, the pod's
/// bytes back as DATA frames; failures as text on the `error` stream, which is closed
/// when the pod side is done (the client waits for that).
async fn forward<Dial, Fut, Conn>(
    dial: Dial,
    port: Option<u16>,
    stream: u32,
    error: Option<u32>,
    mut inbound: mpsc::UnboundedReceiver<Option<Bytes>>,
    out: mpsc::Sender<Vec<u8>>,
) where
    Dial: Fn(u16) -> Fut,
    Fut: Future<Output = Result<Conn, String>>,
    Conn: AsyncRead + AsyncWrite,
{
    let finish = |message: Option<String>| {
        let out = out.clone();
        async move {
            let _ = out.send(data(stream, true, &[])).await;
            if let Some(error) = error {
                let text = message.unwrap_or_default();
                let _ = out.send(data(error, true, text.as_bytes())).await;
            }
        }
    };
    let Some(port) = port else {
        finish(Some("the stream names no valid port".into())).await;
        return;
    };
    let connection = match dial(port).await {
        Ok(connection) => connection,
        Err(message) => {
            finish(Some(message)).await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tokio::io::split(connection);
    let upstream = async {
        while let Some(Some(bytes)) = inbound.recv().await {
            if to_pod.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buffer = vec![0u8; DATA_CHUNK];
        loop {
            match from_pod.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.send(data(stream, false, &buffer[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
        finish(None).await;
    };
    tokio::join!(upstream, downstream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy_3s() {
        assert_eq!(dictionary().len(), 1423);
        // The Adler-32 a SPDY/3 client's zlib header names (its dictionary ID).
        let mut check = Decompress::new(true);
        let mut client = Compress::new(Compression::default(), true);
        client.set_dictionary(dictionary()).unwrap();
        let mut block = Vec::with_capacity(256);
        client
            .compress_vec(b"\0\0\0\0", &mut block, FlushCompress::Sync)
            .unwrap();
        let mut out = Vec::with_capacity(64);
        let asked = check
            .decompress_vec(&block, &mut out, FlushDecompress::Sync)
            .unwrap_err()
            .needs_dictionary();
        assert_eq!(asked, Some(0xe3c6_a7c2), "{asked:x?}");
    }

    /// A client's header compressor: zlib against the dictionary, flushed per block.
    fn client_block(compressor: &mut Compress, pairs: &[(&str, &str)]) -> Vec<u8> {
        let block = header_block(pairs);
        let mut out = Vec::with_capacity(block.len() + 256);
        compressor
            .compress_vec(&block, &mut out, FlushCompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn header_blocks_read_across_one_stream_and_write_back() {
        let mut client = Compress::new(Compression::best(), true);
        client.set_dictionary(dictionary()).unwrap();
        let mut server = Headers::new();
        for request in ["0", "1"] {
            let block = client_block(
                &mut client,
                &[
                    ("streamtype", "data"),
                    ("port", "8080"),
                    ("requestid", request),
                ],
            );
            let pairs = server.read(&block).unwrap();
            assert_eq!(pairs[2], ("requestid".to_string(), request.to_string()));
        }
        // What the server writes, a client reads.
        let mut reader = Decompress::new(true);
        for _ in 0..2 {
            let block = server.write(&[("status", "200")]);
            let mut out = Vec::with_capacity(256);
            reader
                .decompress_vec(&block, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(&out[..4], &1u32.to_be_bytes());
            assert!(out.ends_with(b"200"));
        }
    }

    /// A SPDY client over an in-memory pipe: one connection forwarded to an echo "pod"
    /// on port 7; a second to a port that cannot be dialled gets its error and FIN.
    #[tokio::test]
    async fn a_session_forwards_bytes_both_ways_and_reports_failures() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let dial = |port: u16| async move {
            if port != 7 {
                return Err(format!("port {port} is closed"));
            }
            let (ours, pods) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(pods);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
            Ok(ours)
        };
        let session = tokio::spawn(serve(server, dial));
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let mut compressor = Compress::new(Compression::best(), true);
        compressor.set_dictionary(dictionary()).unwrap();
        let mut syn = |id: u32, kind: &str, port: &str, request: &str| {
            let mut payload = id.to_be_bytes().to_vec();
            payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            payload.extend(client_block(
                &mut compressor,
                &[("streamtype", kind), ("port", port), ("requestid", request)],
            ));
            control(SYN_STREAM, 0, &payload)
        };
        for frame in [
            syn(1, "error", "7", "0"),
            syn(3, "data", "7", "0"),
            data(3, true, b"hello"),
            syn(5, "error", "9", "1"),
            syn(7, "data", "9", "1"),
            control(PING, 0, &9u32.to_be_bytes()),
        ] {
            to_server.write_all(&frame).await.unwrap();
        }
        // Read frames until both connections are done: streams 1 and 5 (errors) closed.
        let mut received: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut closed = Vec::new();
        let mut pinged = false;
        let mut replies = 0;
        while !(closed.contains(&1)
            && closed.contains(&5)
            && closed.contains(&3)
            && closed.contains(&7)
            && pinged)
        {
            let mut head = [0u8; 8];
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                from_server.read_exact(&mut head),
            )
            .await
            .expect("a frame within 10 s")
            .unwrap();
            let word = u32::from_be_bytes(head[..4].try_into().unwrap());
            let length = (u32::from_be_bytes(head[4..8].try_into().unwrap()) & 0xff_ffff) as usize;
            let mut payload = vec![0; length];
            from_server.read_exact(&mut payload).await.unwrap();
            if word & 0x8000_0000 != 0 {
                match (word & 0xffff) as u16 {
                    SYN_REPLY => replies += 1,
                    PING => pinged = payload == 9u32.to_be_bytes(),
                    other => panic!("unexpected control frame {other}"),
                }
                continue;
            }
            received
                .entry(word)
                .or_default()
                .extend_from_slice(&payload);
            if head[4] & FLAG_FIN != 0 {
                closed.push(word);
            }
        }
        assert_eq!(replies, 4, "every stream answered");
        assert_eq!(received[&3], b"hello", "echoed by the pod");
        assert!(
            received.get(&1).is_none_or(Vec::is_empty),
            "no error on a good forward"
        );
        assert_eq!(String::from_utf8_lossy(&received[&5]), "port 9 is closed");
        // The client goes: the session ends.
        drop((to_server, from_server));
        tokio::time::timeout(std::time::Duration::from_secs(10), session)
            .await
            .expect("the session ends once the client is gone")
            .unwrap()
            .unwrap();
    }
}

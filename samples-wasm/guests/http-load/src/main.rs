//! A load generator that runs inside a pod: one keep-alive HTTP/1.1 connection (or one TCP
//! stream) from std::net over the pod network, for `skiff bench network`.
//!
//! HTTP (default): connects to `TARGET` (`HOST:PORT`; a name such as
//! `hello.default.svc.cluster.local:80` is resolved once), sends `WARMUP` requests (default
//! 20) untimed, waits until the wall clock reaches `START_AT_MS` (Unix milliseconds, if
//! set) so that several client pods measure the same interval, then sends `GET
//! REQUEST_PATH` (default `/`) one after the other until `REQUESTS` requests are done or
//! `DURATION_MS` have passed, whichever comes first (one of them must be set). A failed or
//! non-2xx request counts as an error; a broken connection is opened again. At the end it
//! prints one line:
//!
//! ```text
//! http-load requests=N errors=E elapsed_us=T start_ms=S end_ms=F hist=LO:COUNT,LO:COUNT,...
//! ```
//!
//! `requests` counts successful requests, `start_ms`/`end_ms` are the wall clock around the
//! measurement, and `hist` is the latency histogram of the successful requests in
//! microseconds: each latency counts in the bucket named by its lower bound ([`bucket`]:
//! exact below 64 µs, then 32 to 64 buckets per power of two, so within 3%).
//!
//! TCP (`SEND_BYTES=N`): connects to `TARGET`, sends N bytes in 64 KiB writes, shuts its
//! side down, reads the server's answer line (the `tcp-echo` sample with `SINK=1` answers
//! `received N`) and prints
//! `tcp-load bytes=N elapsed_us=T answer=LINE`, timed from the connection being open to the
//! answer.
//!
//! A failure that ends the run prints `http-load: STEP: KIND (ERROR)` to stderr and exits 1.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Failed = (&'static str, std::io::Error);

fn main() {
    let result = match std::env::var("SEND_BYTES") {
        Ok(bytes) => tcp(bytes.parse().unwrap_or(0)),
        Err(_) => http(),
    };
    if let Err((step, error)) = result {
        eprintln!("http-load: {step}: {:?} ({error})", error.kind());
        std::process::exit(1);
    }
}

fn target() -> Result<(String, SocketAddr), Failed> {
    let target = std::env::var("TARGET").map_err(|_| ("TARGET", invalid("TARGET is not set")))?;
    let addr = target
        .to_socket_addrs()
        .map_err(|e| ("resolve", e))?
        .next()
        .ok_or(("resolve", invalid("no address")))?;
    Ok((target, addr))
}

fn number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message.to_string())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn http() -> Result<(), Failed> {
    let (host, addr) = target()?;
    let path = std::env::var("REQUEST_PATH").unwrap_or_else(|_| "/".to_string());
    let requests = number("REQUESTS");
    let duration = number("DURATION_MS").map(Duration::from_millis);
    if requests.is_none() && duration.is_none() {
        return Err(("REQUESTS/DURATION_MS", invalid("set one of them")));
    }
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: http-load\r\n\r\n");
    let mut connection = Connection::open(addr).map_err(|e| ("connect", e))?;
    for _ in 0..number("WARMUP").unwrap_or(20) {
        let (_, open) = connection
            .get(request.as_bytes())
            .map_err(|e| ("warm-up request", e))?;
        if !open {
            connection = Connection::open(addr).map_err(|e| ("connect", e))?;
        }
    }
    if let Some(start_at) = number("START_AT_MS") {
        let now = unix_ms();
        if start_at > now {
            std::thread::sleep(Duration::from_millis(start_at - now));
        }
    }

    let mut histogram: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut done, mut errors) = (0u64, 0u64);
    let start_ms = unix_ms();
    let started = Instant::now();
    loop {
        if requests.is_some_and(|n| done + errors >= n)
            || duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        let sent = Instant::now();
        let open = match connection.get(request.as_bytes()) {
            Ok((success, open)) => {
                if success {
                    done += 1;
                    let micros = sent.elapsed().as_micros() as u64;
                    *histogram.entry(bucket(micros)).or_default() += 1;
                } else {
                    errors += 1;
                }
                open
            }
            Err(_) => {
                errors += 1;
                false
            }
        };
        if !open {
            connection = Connection::open(addr).map_err(|e| ("reconnect", e))?;
        }
    }
    let elapsed = started.elapsed();
    let end_ms = unix_ms();
    let hist: Vec<String> = histogram
        .iter()
        .map(|(lo, n)| format!("{lo}:{n}"))
        .collect();
    println!(
        "http-load requests={done} errors={errors} elapsed_us={} start_ms={start_ms} end_ms={end_ms} hist={}",
        elapsed.as_micros(),
        hist.join(",")
    );
    Ok(())
}

/// The lower bound of the histogram bucket of `micros`: the value itself below 64, else the
/// value with all but its 6 highest bits cleared. `skiff bench network` buckets its own
/// measurements the same way.
fn bucket(micros: u64) -> u64 {
    if micros < 64 {
        return micros;
    }
    let shift = 63 - micros.leading_zeros() - 5;
    (micros >> shift) << shift
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    reader: BufReader<TcpStream>,
    line: String,
    body: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr)?;
        Ok(Connection {
            reader: BufReader::with_capacity(16 * 1024, stream),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends `request` and reads the whole response: whether its status was 2xx, and
    /// whether the connection stays open. An error leaves the connection unusable.
    fn get(&mut self, request: &[u8]) -> std::io::Result<(bool, bool)> {
        self.reader.get_mut().write_all(request)?;
        let status = self.read_line()?;
        let code: u16 = status
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| invalid("content-length"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        if chunked {
            loop {
                let size = self.read_line()?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| invalid("chunk size"))?;
                self.read_body(size)?;
                self.read_line()?;
                if size == 0 {
                    break;
                }
            }
        } else if let Some(length) = length {
            self.read_body(length)?;
        } else {
            return Err(invalid("a response without a length"));
        }
        Ok(((200..300).contains(&code), !close))
    }

    /// The next line without its line end; an error at the end of the stream.
    fn read_line(&mut self) -> std::io::Result<String> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(self.line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_body(&mut self, length: usize) -> std::io::Result<()> {
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body)
    }
}

fn tcp(bytes: u64) -> Result<(), Failed> {
    let (_, addr) = target()?;
    let stream = TcpStream::connect(addr).map_err(|e| ("connect", e))?;
    let started = Instant::now();
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = bytes;
    let mut writer = &stream;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        writer.write_all(&chunk[..n]).map_err(|e| ("write", e))?;
        left -= n as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| ("shutdown", e))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| ("read", e))?;
    println!(
        "tcp-load bytes={bytes} elapsed_us={} answer={}",
        started.elapsed().as_micros(),
        answer.trim_end()
    );
    Ok(())
}

//! Sample wasm workloads for skiff's tests and benchmarks, built from `guests/` by build.rs.
//!
//! Each constant is the path of a built `.wasm` file. Which target a sample uses decides the
//! kind of workload it is: `wasm32-wasip1` gives a core module (a WASI preview 1 command),
//! `wasm32-wasip2` a component (a `wasi:cli/run` command or a `wasi:http` service).

/// Core module (p1): prints "hello from wasm", one `arg: X` line per argument and
/// `GREETING=...` when that variable is set; "hello on stderr" to stderr; exits 0.
pub const HELLO: &str = concat!(env!("OUT_DIR"), "/hello.wasm");
/// The same program as [`HELLO`] built as a `wasi:cli/run` component (p2).
pub const HELLO_P2: &str = concat!(env!("OUT_DIR"), "/hello-p2.wasm");
/// Core module (p1): prints `tick N` every `TICK_MS` ms (default 1000), forever.
pub const TICKER: &str = concat!(env!("OUT_DIR"), "/ticker.wasm");
/// Core module (p1): after `CRASH_AFTER_MS` (default 200) exits with `EXIT_CODE` (default 3),
/// or, with `FAIL_PERCENT` set, exits 0 or `EXIT_CODE` at random, failing that percent.
/// A p1 command, because a WASI 0.2 command can only exit with success or failure (0 or 1).
pub const CRASHER: &str = concat!(env!("OUT_DIR"), "/crasher.wasm");
/// Core module (p1): aborts (wasm `unreachable`); with the argument `stack-overflow` it
/// recurses until the wasm stack is exhausted.
pub const TRAPPER: &str = concat!(env!("OUT_DIR"), "/trapper.wasm");
/// Core module (p1): allocates and touches 1 MiB every `STEP_MS` ms (default 5), forever.
pub const MEMHOG: &str = concat!(env!("OUT_DIR"), "/memhog.wasm");
/// Core module (p1): prints "spinning", then loops forever without calling the host.
pub const CPUSPIN: &str = concat!(env!("OUT_DIR"), "/cpuspin.wasm");
/// `wasi:http/incoming-handler` component: answers `hello from $POD_NAME at PATH`; paths in
/// `FAIL_PATHS` (comma separated) get a 503. With `UPSTREAM=URL` it is a frontend: each request
/// GETs that URL through `wasi:http/outgoing-handler` and the answer adds
/// `upstream STATUS: BODY`, or is a 502 with `upstream failed: ERROR`.
pub const HTTP_HELLO: &str = concat!(env!("OUT_DIR"), "/http-hello.wasm");
/// Component command (p2), std::net. Server (default): listens on `HOST`:`PORT` (default
/// 0.0.0.0:8080), prints `listening on ADDR` once bound and `connection from PEER` for each
/// connection, and echoes lines (after `PREFIX`); with `SINK=1` it reads each connection to
/// its end and answers `received N`. Client (`CONNECT=ADDR`): sends `MESSAGE` (default
/// `hello`) and prints `echoed: LINE`, or with `SEND_BYTES=N` sends N bytes, shuts down its
/// side and prints the answer. UDP server (`UDP_BIND=ADDR`): prints `udp bound to ADDR` and
/// echoes each datagram (after `PREFIX`), printing `udp datagram from PEER`. UDP client
/// (`UDP_SEND=ADDR`): sends `MESSAGE` (or `UDP_SEND_BYTES=N` bytes), printing `udp echoed:
/// TEXT` and `udp reply from PEER`, resending every `UDP_TIMEOUT_MS` up to `UDP_TRIES` times;
/// `UDP_CONNECT=1` connects the socket first. A failure prints
/// `tcp-echo: STEP: KIND (ERROR)` to stderr (KIND an `io::ErrorKind`) and exits 1.
pub const TCP_ECHO: &str = concat!(env!("OUT_DIR"), "/tcp-echo.wasm");
/// Core module (p1): writes `CONTENT` to the file named by its argument (default
/// /data/message.txt); exits 1 if the write fails. With `LINK_FROM=PATH` it makes that file
/// a hard link to PATH instead.
pub const WRITER: &str = concat!(env!("OUT_DIR"), "/writer.wasm");
/// Component command (p2): prints the file named by its argument (default
/// /data/message.txt); exits 1 if it cannot be read. With `READ_EVERY_MS` it keeps reading
/// and prints the file when it changes; with `KEEP_GOING=1` too, failed reads go to stderr
/// and the loop goes on.
pub const READER: &str = concat!(env!("OUT_DIR"), "/reader.wasm");
/// Component command (p2), std::net: a load generator inside a pod for `skiff bench
/// network`. HTTP: keep-alive GETs to `TARGET` for `REQUESTS` or `DURATION_MS`, then one
/// line `http-load requests=N errors=E elapsed_us=T start_ms=S end_ms=F hist=...`; TCP
/// (`SEND_BYTES=N`): `tcp-load bytes=N elapsed_us=T answer=LINE`.
pub const HTTP_LOAD: &str = concat!(env!("OUT_DIR"), "/http-load.wasm");

/// Every sample as (name, path), so a test can check that all of them were built.
pub const ALL: &[(&str, &str)] = &[
    ("hello", HELLO),
    ("hello-p2", HELLO_P2),
    ("ticker", TICKER),
    ("crasher", CRASHER),
    ("trapper", TRAPPER),
    ("memhog", MEMHOG),
    ("cpuspin", CPUSPIN),
    ("http-hello", HTTP_HELLO),
    ("tcp-echo", TCP_ECHO),
    ("writer", WRITER),
    ("reader", READER),
    ("http-load", HTTP_LOAD),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_sample_is_built_as_wasm() {
        for (name, path) in super::ALL {
            let bytes =
                std::fs::read(path).unwrap_or_else(|error| panic!("{name} at {path}: {error}"));
            assert_eq!(&bytes[..4], b"\0asm", "{name} is not a wasm binary");
        }
    }
}

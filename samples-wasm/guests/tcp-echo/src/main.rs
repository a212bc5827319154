//! TCP with std::net on wasip2, as a server or a client, chosen by the environment.
//!
//! Server (default): listens on `HOST`:`PORT` (default 0.0.0.0:8080), prints
//! `listening on ADDR`, then `connection from PEER` for each connection, whose lines it
//! echoes back (after `PREFIX` if set), one connection at a time. With `SINK=1` it instead
//! reads each connection to its end and answers `received N` (N bytes).
//!
//! Client (`CONNECT=ADDR`, e.g. `127.0.0.1:8080` or `localhost:8080`): with `MESSAGE=TEXT`
//! (default `hello`) sends the line, reads one line back and prints `echoed: LINE`; with
//! `SEND_BYTES=N` sends N bytes, shuts its side down and prints the server's answer line.
//!
//! UDP server (`UDP_BIND=ADDR`, e.g. `0.0.0.0:5353`): binds a UDP socket, prints
//! `udp bound to ADDR`, then for each datagram prints `udp datagram from PEER` and sends it
//! back (after `PREFIX` if set).
//!
//! UDP client (`UDP_SEND=ADDR`, a name works too): binds `UDP_BIND` if set (else
//! `0.0.0.0:0`), sends `MESSAGE` (default `hello`; with `UDP_SEND_BYTES=N`, N bytes of `x`)
//! and prints `udp echoed: TEXT` and `udp reply from PEER` for the answer. Datagrams may be
//! lost: it waits `UDP_TIMEOUT_MS` (default 1000) for an answer and sends again, `UDP_TRIES`
//! times in all (default 10). With `UDP_CONNECT=1` the socket is connected to ADDR first, so
//! that only answers from ADDR itself count. Without an answer it fails with `TimedOut`.
//!
//! Every failure is printed to stderr as `tcp-echo: STEP: KIND (ERROR)`, KIND being the
//! `std::io::ErrorKind` (e.g. `AddrInUse`, `ConnectionRefused`), and exits 1.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let result = if let Ok(addr) = std::env::var("CONNECT") {
        client(&addr)
    } else if let Ok(addr) = std::env::var("UDP_SEND") {
        udp_client(&addr)
    } else if let Ok(addr) = std::env::var("UDP_BIND") {
        udp_server(&addr)
    } else {
        server()
    };
    if let Err((step, error)) = result {
        eprintln!("tcp-echo: {step}: {:?} ({error})", error.kind());
        std::process::exit(1);
    }
}

type Failed = (&'static str, std::io::Error);

fn server() -> Result<(), Failed> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_string());
    let sink = std::env::var("SINK").is_ok_and(|value| value == "1");
    let listener = TcpListener::bind(format!("{host}:{port}")).map_err(|e| ("bind", e))?;
    let local = listener.local_addr().map_err(|e| ("local address", e))?;
    println!("listening on {local}");
    for stream in listener.incoming() {
        let stream = stream.map_err(|e| ("accept", e))?;
        if let Ok(peer) = stream.peer_addr() {
            println!("connection from {peer}");
        }
        let served = if sink { count(&stream) } else { echo(&stream) };
        // A client that goes away mid-conversation ends its connection, not the server.
        if let Err((step, error)) = served {
            eprintln!("tcp-echo: {step}: {:?} ({error})", error.kind());
        }
    }
    Ok(())
}

fn echo(stream: &TcpStream) -> Result<(), Failed> {
    let prefix = std::env::var("PREFIX").unwrap_or_default();
    let mut writer = stream;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| ("read", e))?;
        writer
            .write_all(format!("{prefix}{line}\n").as_bytes())
            .map_err(|e| ("write", e))?;
        writer.flush().map_err(|e| ("flush", e))?;
    }
    Ok(())
}

fn count(mut stream: &TcpStream) -> Result<(), Failed> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buffer).map_err(|e| ("read", e))? {
            0 => break,
            n => total += n as u64,
        }
    }
    stream
        .write_all(format!("received {total}\n").as_bytes())
        .map_err(|e| ("write", e))?;
    Ok(())
}

fn client(addr: &str) -> Result<(), Failed> {
    let stream = TcpStream::connect(addr).map_err(|e| ("connect", e))?;
    let mut writer = &stream;
    match std::env::var("SEND_BYTES") {
        Ok(bytes) => {
            let mut left: u64 = bytes.parse().unwrap_or(0);
            let chunk = vec![b'x'; 64 * 1024];
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
            println!("{}", answer.trim_end());
        }
        Err(_) => {
            let message = std::env::var("MESSAGE").unwrap_or_else(|_| "hello".to_string());
            writer
                .write_all(format!("{message}\n").as_bytes())
                .map_err(|e| ("write", e))?;
            let mut line = String::new();
            BufReader::new(&stream)
                .read_line(&mut line)
                .map_err(|e| ("read", e))?;
            println!("echoed: {}", line.trim_end());
        }
    }
    Ok(())
}

fn udp_server(addr: &str) -> Result<(), Failed> {
    let prefix = std::env::var("PREFIX").unwrap_or_default();
    let socket = UdpSocket::bind(addr).map_err(|e| ("udp bind", e))?;
    let local = socket.local_addr().map_err(|e| ("local address", e))?;
    println!("udp bound to {local}");
    let mut buffer = vec![0u8; 65536];
    loop {
        let (n, peer) = socket
            .recv_from(&mut buffer)
            .map_err(|e| ("udp receive", e))?;
        println!("udp datagram from {peer}");
        let mut reply = prefix.as_bytes().to_vec();
        reply.extend_from_slice(&buffer[..n]);
        // A peer that cannot be answered does not end the server.
        if let Err(error) = socket.send_to(&reply, peer) {
            eprintln!("tcp-echo: udp send: {:?} ({error})", error.kind());
        }
    }
}

fn udp_client(addr: &str) -> Result<(), Failed> {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let timeout = Duration::from_millis(number("UDP_TIMEOUT_MS", 1000));
    let tries = number("UDP_TRIES", 10).max(1);
    let message = match std::env::var("UDP_SEND_BYTES") {
        Ok(bytes) => vec![b'x'; bytes.parse().unwrap_or(0)],
        Err(_) => std::env::var("MESSAGE")
            .unwrap_or_else(|_| "hello".to_string())
            .into_bytes(),
    };
    let target: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| ("udp resolve", e))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| ("udp resolve", std::io::ErrorKind::NotFound.into()))?;
    let local = std::env::var("UDP_BIND").unwrap_or_else(|_| "0.0.0.0:0".to_string());
    let socket = UdpSocket::bind(local).map_err(|e| ("udp bind", e))?;
    let connected = std::env::var("UDP_CONNECT").is_ok_and(|value| value == "1");
    if connected {
        socket.connect(target).map_err(|e| ("udp connect", e))?;
    }
    // wasi-libc has no receive timeout (SO_RCVTIMEO): wait without blocking, napping between
    // looks (a nap is a wasi:clocks wait, not a busy loop).
    socket
        .set_nonblocking(true)
        .map_err(|e| ("udp nonblocking", e))?;
    let mut buffer = vec![0u8; 65536];
    let mut last_error = std::io::Error::from(std::io::ErrorKind::TimedOut);
    for _ in 0..tries {
        let sent = if connected {
            socket.send(&message)
        } else {
            socket.send_to(&message, target)
        };
        sent.map_err(|e| ("udp send", e))?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match socket.recv_from(&mut buffer) {
                Ok((n, peer)) => {
                    println!("udp echoed: {}", String::from_utf8_lossy(&buffer[..n]));
                    println!("udp reply from {peer}");
                    return Ok(());
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                // A refusal (nothing bound there yet) may pass: try again after the wait.
                Err(error) => {
                    last_error = error;
                    std::thread::sleep(timeout.min(Duration::from_millis(100)));
                    break;
                }
            }
        }
    }
    Err(("udp receive", last_error))
}

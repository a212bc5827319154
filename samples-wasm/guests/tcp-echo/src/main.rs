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
//! UDP (`UDP_BIND=ADDR`): binds a UDP socket and prints `udp bound to ADDR`.
//!
//! Every failure is printed to stderr as `tcp-echo: STEP: KIND (ERROR)`, KIND being the
//! `std::io::ErrorKind` (e.g. `AddrInUse`, `ConnectionRefused`), and exits 1.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

fn main() {
    let result = if let Ok(addr) = std::env::var("CONNECT") {
        client(&addr)
    } else if let Ok(addr) = std::env::var("UDP_BIND") {
        udp(&addr)
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

fn udp(addr: &str) -> Result<(), Failed> {
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| ("udp bind", e))?;
    let local = socket.local_addr().map_err(|e| ("local address", e))?;
    println!("udp bound to {local}");
    Ok(())
}

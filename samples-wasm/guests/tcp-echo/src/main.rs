//! A TCP server (std::net on wasip2) that echoes each line it reads back to the sender.
//! Listens on `HOST`:`PORT` (default 0.0.0.0:8080).
use std::io::{BufRead, BufReader, Write};

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_string());
    let listener = std::net::TcpListener::bind(format!("{host}:{port}"))?;
    println!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        let mut writer = &stream;
        for line in BufReader::new(&stream).lines() {
            let line = line?;
            writer.write_all(format!("{line}\n").as_bytes())?;
            writer.flush()?;
        }
    }
    Ok(())
}

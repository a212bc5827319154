//! Sockets only through a `Network` the embedder supplies.

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;

use skiff_runtime::{ExitStatus, LogStream, LoopbackNetwork};

use crate::{load, runtime, spec, within};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn tcp_echo_serves_on_a_loopback_port_chosen_by_the_test() {
    let port = free_port();
    let workload = load(skiff_samples::TCP_ECHO);
    let (mut spec, sink) = spec("tcp-echo");
    spec.env = vec![
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), port.to_string()),
    ];
    spec.network = Some(Arc::new(LoopbackNetwork));
    let container = runtime().start(&workload, spec).unwrap();
    within(
        30,
        "tcp-echo listening",
        sink.wait_for(|line| line.line.starts_with("listening on")),
    )
    .await;

    let echoed = within(
        30,
        "echo round trip",
        tokio::task::spawn_blocking(move || {
            let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut writer = &stream;
            writer.write_all(b"hello\nsecond line\n").unwrap();
            let mut reader = BufReader::new(&stream);
            let mut lines = Vec::new();
            for _ in 0..2 {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                lines.push(line);
            }
            lines
        }),
    )
    .await
    .unwrap();
    assert_eq!(echoed, ["hello\n", "second line\n"]);
    assert_eq!(
        within(10, "stop", container.stop(std::time::Duration::ZERO)).await,
        ExitStatus::Killed
    );
}

#[tokio::test]
async fn without_a_network_a_guest_has_no_sockets() {
    let workload = load(skiff_samples::TCP_ECHO);
    let (mut spec, sink) = spec("tcp-echo");
    spec.env = vec![
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), free_port().to_string()),
    ];
    let container = runtime().start(&workload, spec).unwrap();
    assert_eq!(
        within(30, "tcp-echo", container.wait()).await,
        ExitStatus::Exited(1)
    );
    assert!(
        sink.text(LogStream::Stdout).is_empty(),
        "{:?}",
        sink.lines()
    );
}

#[tokio::test]
async fn the_loopback_network_refuses_binding_every_interface() {
    let workload = load(skiff_samples::TCP_ECHO);
    let (mut spec, sink) = spec("tcp-echo");
    spec.env = vec![("PORT".into(), free_port().to_string())];
    spec.network = Some(Arc::new(LoopbackNetwork));
    let container = runtime().start(&workload, spec).unwrap();
    assert_eq!(
        within(30, "tcp-echo", container.wait()).await,
        ExitStatus::Exited(1)
    );
    assert!(
        sink.text(LogStream::Stdout).is_empty(),
        "{:?}",
        sink.lines()
    );
}

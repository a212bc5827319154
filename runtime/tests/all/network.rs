//! Guest sockets over the pod network: in-memory TCP and UDP within a pod, between pods of a
//! node and from the host, and never a kernel socket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use skiff_runtime::{Container, ExitStatus, LogStream, MemorySink, PodNetwork, VirtualNetwork};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{load, runtime, spec, within};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Starts tcp-echo in `pod` with `env`.
fn start(
    pod: Option<&PodNetwork>,
    name: &str,
    env: &[(&str, &str)],
) -> (Container, Arc<MemorySink>) {
    let (mut spec, sink) = spec(name);
    spec.env = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    spec.network = pod.cloned();
    let container = runtime()
        .start(&load(skiff_samples::TCP_ECHO), spec)
        .unwrap();
    (container, sink)
}

/// Starts a tcp-echo server in `pod` and waits until it listens.
async fn server(
    pod: &PodNetwork,
    name: &str,
    env: &[(&str, &str)],
) -> (Container, Arc<MemorySink>) {
    let (container, sink) = start(Some(pod), name, env);
    let listening = within(
        30,
        "tcp-echo listening",
        sink.wait_for(|line| {
            line.line.starts_with("listening on") || line.stream == LogStream::Stderr
        }),
    )
    .await;
    assert!(
        listening.line.starts_with("listening on"),
        "{name}: {:?}",
        sink.lines()
    );
    (container, sink)
}

/// Runs tcp-echo as a client (or anything else `env` asks) to its end: its status, stdout
/// and stderr.
async fn run(
    pod: Option<&PodNetwork>,
    env: &[(&str, &str)],
) -> (ExitStatus, Vec<String>, Vec<String>) {
    let (container, sink) = start(pod, "client", env);
    let status = within(30, "tcp-echo client", container.wait()).await;
    (
        status,
        sink.text(LogStream::Stdout),
        sink.text(LogStream::Stderr),
    )
}

#[tokio::test]
async fn two_containers_of_a_pod_talk_over_its_loopback() {
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.1.7")).unwrap();
    let (server, sink) = server(&pod, "server", &[("HOST", "127.0.0.1"), ("PORT", "8080")]).await;
    assert_eq!(
        sink.text(LogStream::Stdout),
        ["listening on 127.0.0.1:8080"]
    );

    for target in ["127.0.0.1:8080", "localhost:8080"] {
        let (status, stdout, stderr) = run(
            Some(&pod),
            &[("CONNECT", target), ("MESSAGE", "hello from the sidecar")],
        )
        .await;
        assert_eq!(status, ExitStatus::Exited(0), "{target}: {stderr:?}");
        assert_eq!(stdout, ["echoed: hello from the sidecar"], "{target}");
    }
    let peers = sink.text(LogStream::Stdout);
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert!(
        peers[1..]
            .iter()
            .all(|line| line.starts_with("connection from 127.0.0.1:")),
        "{peers:?}"
    );
    // The server listens on loopback only: not reachable at the pod's IP, from inside or out.
    let (status, _, stderr) = run(Some(&pod), &[("CONNECT", "10.244.1.7:8080")]).await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(
        stderr[0].starts_with("tcp-echo: connect: ConnectionRefused"),
        "{stderr:?}"
    );
    drop(server);
}

#[tokio::test]
async fn two_pods_listen_on_one_port_each_at_its_own_ip() {
    let net = VirtualNetwork::default();
    let a = net.attach(ip("10.244.1.7")).unwrap();
    let b = net.attach(ip("10.244.1.8")).unwrap();
    let client = net.attach(ip("10.244.1.9")).unwrap();
    let (_a, a_log) = server(&a, "a", &[("PREFIX", "a: ")]).await;
    let (_b, b_log) = server(&b, "b", &[("PREFIX", "b: ")]).await;

    for (target, expected) in [
        ("10.244.1.7:8080", "echoed: a: hi"),
        ("10.244.1.8:8080", "echoed: b: hi"),
    ] {
        let (status, stdout, stderr) =
            run(Some(&client), &[("CONNECT", target), ("MESSAGE", "hi")]).await;
        assert_eq!(status, ExitStatus::Exited(0), "{target}: {stderr:?}");
        assert_eq!(stdout, [expected]);
    }
    // A pod reaches its own listener at its own IP too.
    let (status, stdout, _) = run(
        Some(&a),
        &[("CONNECT", "10.244.1.7:8080"), ("MESSAGE", "me")],
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(stdout, ["echoed: a: me"]);
    // Each server saw its clients come from their pods' IPs, on ephemeral ports.
    let peers = |log: &MemorySink| -> Vec<(IpAddr, u16)> {
        log.text(LogStream::Stdout)
            .iter()
            .filter_map(|line| line.strip_prefix("connection from "))
            .map(|peer| {
                let peer: SocketAddr = peer.parse().unwrap();
                (peer.ip(), peer.port())
            })
            .collect()
    };
    let a_peers = peers(&a_log);
    assert_eq!(a_peers.len(), 2, "{a_peers:?}");
    assert_eq!(a_peers[0].0, ip("10.244.1.9"));
    assert_eq!(a_peers[1].0, ip("10.244.1.7"));
    assert!(
        a_peers.iter().all(|(_, port)| *port >= 32768),
        "{a_peers:?}"
    );
    assert_eq!(
        peers(&b_log).iter().map(|p| p.0).collect::<Vec<_>>(),
        [ip("10.244.1.9")]
    );
}

#[tokio::test]
async fn bulk_data_crosses_pods_and_arrives_whole_after_the_client_shuts_down() {
    let net = VirtualNetwork::default();
    let server_pod = net.attach(ip("10.244.2.7")).unwrap();
    let client_pod = net.attach(ip("10.244.2.8")).unwrap();
    let (_server, _) = server(&server_pod, "sink", &[("SINK", "1"), ("PORT", "9000")]).await;
    let bytes = (8 << 20) + 12345;
    let (status, stdout, stderr) = run(
        Some(&client_pod),
        &[
            ("CONNECT", "10.244.2.7:9000"),
            ("SEND_BYTES", &bytes.to_string()),
        ],
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0), "{stderr:?}");
    assert_eq!(stdout, [format!("received {bytes}")]);
}

#[tokio::test]
async fn the_host_reaches_a_pod_listener_as_probes_and_node_ports_will() {
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.3.7")).unwrap();
    let (_server, log) = server(&pod, "server", &[]).await;

    let stream = within(
        10,
        "connect to the pod",
        net.connect_to_pod(addr("10.244.3.7:8080"), addr("10.244.3.1:40000")),
    )
    .await
    .unwrap();
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"first\nsecond\n").await.unwrap();
    assert_eq!(
        within(10, "echo", lines.next_line())
            .await
            .unwrap()
            .as_deref(),
        Some("first")
    );
    assert_eq!(
        within(10, "echo", lines.next_line())
            .await
            .unwrap()
            .as_deref(),
        Some("second")
    );
    write.shutdown().await.unwrap();
    assert_eq!(
        within(10, "end of file", lines.next_line()).await.unwrap(),
        None
    );

    // port-forward's way: from inside the pod, to its loopback.
    let mut stream = within(
        10,
        "connect in the pod",
        pod.connect(addr("127.0.0.1:8080")),
    )
    .await
    .unwrap();
    stream.write_all(b"forwarded\n").await.unwrap();
    let mut line = String::new();
    within(10, "echo", BufReader::new(&mut stream).read_line(&mut line))
        .await
        .unwrap();
    assert_eq!(line, "forwarded\n");
    let peers = log.text(LogStream::Stdout);
    assert_eq!(peers[1], "connection from 10.244.3.1:40000", "{peers:?}");
    assert!(
        peers[2].starts_with("connection from 127.0.0.1:"),
        "{peers:?}"
    );

    assert_eq!(
        net.connect_to_pod(addr("10.244.3.7:8081"), addr("10.244.3.1:40000"))
            .await
            .unwrap_err(),
        skiff_runtime::ConnectError::Refused
    );
}

#[tokio::test]
async fn connecting_where_nothing_listens_is_refused() {
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.4.7")).unwrap();
    let _other = net.attach(ip("10.244.4.8")).unwrap();
    // Loopback, another pod, and an address outside the node (refused by default).
    for target in ["127.0.0.1:9", "10.244.4.8:80", "93.184.216.34:80"] {
        let (status, stdout, stderr) = run(Some(&pod), &[("CONNECT", target)]).await;
        assert_eq!(status, ExitStatus::Exited(1), "{target}");
        assert!(stdout.is_empty());
        assert!(
            stderr[0].starts_with("tcp-echo: connect: ConnectionRefused"),
            "{target}: {stderr:?}"
        );
    }
    // Names beyond IP literals and localhost need the node's resolver.
    let (status, _, stderr) = run(Some(&pod), &[("CONNECT", "example.com:80")]).await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(stderr[0].starts_with("tcp-echo: connect:"), "{stderr:?}");
}

#[tokio::test]
async fn a_bind_in_a_pod_never_opens_a_host_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.5.7")).unwrap();
    let (_server, sink) = server(&pod, "server", &[("PORT", &port.to_string())]).await;
    assert_eq!(
        sink.text(LogStream::Stdout),
        [format!("listening on 0.0.0.0:{port}")]
    );

    // The host's port is still free, and nothing answers on it.
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    std::net::TcpListener::bind(("0.0.0.0", port)).expect("the host port is free");
}

#[tokio::test]
async fn a_second_bind_of_a_port_in_one_pod_is_address_in_use() {
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.6.7")).unwrap();
    let (_first, _) = server(&pod, "first", &[]).await;
    let (status, stdout, stderr) = run(Some(&pod), &[("HOST", "127.0.0.1")]).await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(stdout.is_empty());
    assert!(
        stderr[0].starts_with("tcp-echo: bind: AddrInUse"),
        "{stderr:?}"
    );
    // Port 0 picks a free ephemeral port instead.
    let (second, sink) = server(&pod, "second", &[("PORT", "0")]).await;
    let line = &sink.text(LogStream::Stdout)[0];
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port >= 32768, "{line}");
    drop(second);
}

/// Starts a tcp-echo UDP server in `pod` on `addr` and waits until it is bound.
async fn udp_server(
    pod: &PodNetwork,
    name: &str,
    addr: &str,
    prefix: &str,
) -> (Container, Arc<MemorySink>) {
    let (container, sink) = start(Some(pod), name, &[("UDP_BIND", addr), ("PREFIX", prefix)]);
    let bound = within(
        30,
        "tcp-echo bound to its UDP port",
        sink.wait_for(|line| {
            line.line.starts_with("udp bound to") || line.stream == LogStream::Stderr
        }),
    )
    .await;
    assert!(
        bound.line.starts_with("udp bound to"),
        "{name}: {:?}",
        sink.lines()
    );
    (container, sink)
}

#[tokio::test]
async fn two_containers_of_a_pod_exchange_datagrams_over_its_loopback() {
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.10.7")).unwrap();
    let (_server, log) = udp_server(&pod, "server", "127.0.0.1:5353", "pong: ").await;
    assert_eq!(log.text(LogStream::Stdout), ["udp bound to 127.0.0.1:5353"]);

    for connect in ["0", "1"] {
        let (status, stdout, stderr) = run(
            Some(&pod),
            &[
                ("UDP_SEND", "127.0.0.1:5353"),
                ("UDP_CONNECT", connect),
                ("MESSAGE", "ping"),
            ],
        )
        .await;
        assert_eq!(
            status,
            ExitStatus::Exited(0),
            "connect={connect}: {stderr:?}"
        );
        assert_eq!(
            stdout,
            ["udp echoed: pong: ping", "udp reply from 127.0.0.1:5353"]
        );
    }
    let peers = log.text(LogStream::Stdout);
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert!(
        peers[1..]
            .iter()
            .all(|line| line.starts_with("udp datagram from 127.0.0.1:")),
        "{peers:?}"
    );
    // Bound to the loopback only: the pod's IP does not reach it, from inside or out.
    let (status, _, stderr) = run(
        Some(&pod),
        &[
            ("UDP_SEND", "10.244.10.7:5353"),
            ("UDP_CONNECT", "1"),
            ("UDP_TRIES", "2"),
        ],
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(
        stderr[0].starts_with("tcp-echo: udp receive: ConnectionRefused"),
        "{stderr:?}"
    );
    assert_eq!(
        net.deliver_datagram(skiff_runtime::Datagram {
            from: addr("10.244.10.1:40000"),
            to: addr("10.244.10.7:5353"),
            data: "x".into(),
        }),
        Err(skiff_runtime::DatagramError::Refused)
    );
}

#[tokio::test]
async fn two_pods_bind_one_udp_port_each_at_its_own_ip_beside_tcp() {
    let net = VirtualNetwork::default();
    let a = net.attach(ip("10.244.11.7")).unwrap();
    let b = net.attach(ip("10.244.11.8")).unwrap();
    let client = net.attach(ip("10.244.11.9")).unwrap();
    let (_a, a_log) = udp_server(&a, "a", "0.0.0.0:53", "a: ").await;
    let (_b, _) = udp_server(&b, "b", "0.0.0.0:53", "b: ").await;
    // UDP and TCP are separate port spaces: a's TCP 53 is free.
    let (_a_tcp, _) = server(&a, "a-tcp", &[("PORT", "53"), ("PREFIX", "a-tcp: ")]).await;

    for (target, expected) in [
        ("10.244.11.7:53", "udp echoed: a: hi"),
        ("10.244.11.8:53", "udp echoed: b: hi"),
    ] {
        let (status, stdout, stderr) =
            run(Some(&client), &[("UDP_SEND", target), ("MESSAGE", "hi")]).await;
        assert_eq!(status, ExitStatus::Exited(0), "{target}: {stderr:?}");
        assert_eq!(
            stdout,
            [expected.to_string(), format!("udp reply from {target}")]
        );
    }
    let (status, stdout, stderr) = run(
        Some(&client),
        &[("CONNECT", "10.244.11.7:53"), ("MESSAGE", "hi")],
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0), "{stderr:?}");
    assert_eq!(stdout, ["echoed: a-tcp: hi"]);

    // The server saw the client come from its pod's IP on an ephemeral port, and a second
    // UDP bind of the port in the pod is refused.
    let peer: SocketAddr = a_log.text(LogStream::Stdout)[1]
        .strip_prefix("udp datagram from ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(peer.ip(), ip("10.244.11.9"));
    assert!(peer.port() >= 32768, "{peer}");
    let (status, _, stderr) = run(Some(&a), &[("UDP_BIND", "10.244.11.7:53")]).await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(
        stderr[0].starts_with("tcp-echo: udp bind: AddrInUse"),
        "{stderr:?}"
    );
}

#[tokio::test]
async fn a_datagram_to_a_port_nobody_bound_gets_no_answer() {
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.12.7")).unwrap();
    let _other = net.attach(ip("10.244.12.8")).unwrap();
    for target in ["127.0.0.1:53", "10.244.12.8:53"] {
        // Connected, the client hears the port-unreachable, as from a kernel.
        let (status, stdout, stderr) = run(
            Some(&pod),
            &[
                ("UDP_SEND", target),
                ("UDP_CONNECT", "1"),
                ("UDP_TRIES", "2"),
            ],
        )
        .await;
        assert_eq!(status, ExitStatus::Exited(1), "{target}");
        assert!(stdout.is_empty(), "{target}: {stdout:?}");
        assert!(
            stderr[0].starts_with("tcp-echo: udp receive: ConnectionRefused"),
            "{target}: {stderr:?}"
        );
        // Unconnected, it only waits in vain.
        let (status, _, stderr) = run(
            Some(&pod),
            &[
                ("UDP_SEND", target),
                ("UDP_TRIES", "2"),
                ("UDP_TIMEOUT_MS", "200"),
            ],
        )
        .await;
        assert_eq!(status, ExitStatus::Exited(1), "{target}");
        assert!(
            stderr[0].starts_with("tcp-echo: udp receive: TimedOut"),
            "{target}: {stderr:?}"
        );
    }
    // Beyond the node there is no route by default.
    let (status, _, stderr) = run(Some(&pod), &[("UDP_SEND", "93.184.216.34:53")]).await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(
        stderr[0].starts_with("tcp-echo: udp send: HostUnreachable"),
        "{stderr:?}"
    );
    // Larger than a UDP datagram can be.
    let (status, _, stderr) = run(
        Some(&pod),
        &[("UDP_SEND", "127.0.0.1:53"), ("UDP_SEND_BYTES", "65508")],
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(stderr[0].starts_with("tcp-echo: udp send:"), "{stderr:?}");
    assert!(stderr[0].contains("(Message too large"), "{stderr:?}");
}

#[tokio::test]
async fn datagrams_from_the_host_reach_a_guest_and_replies_go_to_the_outside_hook() {
    /// Keeps what the pod network hands it.
    #[derive(Default)]
    struct Capture(
        std::sync::Mutex<Vec<skiff_runtime::Datagram>>,
        tokio::sync::Notify,
    );
    impl skiff_runtime::Outside for Capture {
        fn send_datagram(
            &self,
            _node: &VirtualNetwork,
            datagram: skiff_runtime::Datagram,
        ) -> Result<(), skiff_runtime::DatagramError> {
            self.0.lock().unwrap().push(datagram);
            self.1.notify_waiters();
            Ok(())
        }
    }
    let outside = Arc::new(Capture::default());
    let net = VirtualNetwork::new(outside.clone());
    let pod = net.attach(ip("10.244.13.7")).unwrap();
    let (_server, _) = udp_server(&pod, "server", "0.0.0.0:5353", "echo: ").await;

    // As the fabric or egress would: from a pod on another node, and from a Service's
    // endpoint whose replies must look as if the Service sent them.
    let translated = within(10, "two replies", async {
        let replied = outside.1.notified();
        tokio::pin!(replied);
        replied.as_mut().enable();
        net.deliver_datagram(skiff_runtime::Datagram {
            from: addr("10.244.99.5:40000"),
            to: addr("10.244.13.7:5353"),
            data: "far".into(),
        })
        .unwrap();
        replied.await;
        let other = net.attach(ip("10.244.13.8")).unwrap();
        let client = other.bind_udp(addr("0.0.0.0:0")).unwrap();
        net.translate_replies(
            addr("10.244.13.7:5353"),
            SocketAddr::new(ip("10.244.13.8"), client.local_addr().port()),
            addr("10.96.0.53:53"),
        );
        client.send_to("near", addr("10.244.13.7:5353")).unwrap();
        client.recv().await
    })
    .await;
    assert_eq!(translated.from, addr("10.96.0.53:53"));
    assert_eq!(translated.data, "echo: near");
    let sent = outside.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].from, addr("10.244.13.7:5353"));
    assert_eq!(sent[0].to, addr("10.244.99.5:40000"));
    assert_eq!(sent[0].data, "echo: far");
}

#[tokio::test]
async fn without_a_network_a_guest_has_no_sockets() {
    for env in [
        &[("HOST", "127.0.0.1")][..],
        &[("CONNECT", "127.0.0.1:8080")][..],
        &[("CONNECT", "localhost:8080")][..],
        &[("UDP_BIND", "127.0.0.1:0")][..],
        &[("UDP_SEND", "127.0.0.1:53")][..],
    ] {
        let (status, stdout, stderr) = run(None, env).await;
        assert_eq!(status, ExitStatus::Exited(1), "{env:?}");
        assert!(stdout.is_empty(), "{env:?}: {stdout:?}");
        assert!(
            stderr[0].contains(": PermissionDenied"),
            "{env:?}: {stderr:?}"
        );
    }
}

#[tokio::test]
async fn stopping_a_server_closes_its_connections_and_frees_its_port() {
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.8.7")).unwrap();
    let (server, _) = server(&pod, "server", &[]).await;
    let stream = net
        .connect_to_pod(addr("10.244.8.7:8080"), addr("10.244.8.1:40000"))
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    assert_eq!(
        within(10, "stop", server.stop(Duration::ZERO)).await,
        ExitStatus::Killed
    );
    assert_eq!(
        within(10, "end of file", lines.next_line()).await.unwrap(),
        None
    );
    // The killed server's port is free again.
    let (_again, _) = self::server(&pod, "again", &[]).await;
}

#[tokio::test]
async fn a_guest_waiting_in_accept_or_read_sleeps_until_woken() {
    let _cpu = crate::cpu_heavy().await;
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.9.7")).unwrap();
    let (server, _) = server(&pod, "server", &[]).await;
    let idle = Duration::from_millis(500);
    // A guest that polled instead of waiting would run the whole time.
    let busy = Duration::from_millis(100);

    let before = server.cpu_time();
    tokio::time::sleep(idle).await;
    let waiting_to_accept = server.cpu_time() - before;
    assert!(waiting_to_accept < busy, "accept: {waiting_to_accept:?}");

    let stream = net
        .connect_to_pod(addr("10.244.9.7:8080"), addr("10.244.9.1:40000"))
        .await
        .unwrap();
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    let before = server.cpu_time();
    tokio::time::sleep(idle).await;
    let waiting_to_read = server.cpu_time() - before;
    assert!(waiting_to_read < busy, "read: {waiting_to_read:?}");

    write.write_all(b"awake\n").await.unwrap();
    assert_eq!(
        within(10, "echo", lines.next_line())
            .await
            .unwrap()
            .as_deref(),
        Some("awake")
    );
}

#[tokio::test]
async fn a_guest_waiting_for_a_datagram_sleeps_until_one_comes() {
    let _cpu = crate::cpu_heavy().await;
    let net = VirtualNetwork::default();
    let pod = net.attach(ip("10.244.14.7")).unwrap();
    let (server, _) = udp_server(&pod, "server", "0.0.0.0:5353", "").await;
    let idle = Duration::from_millis(500);
    // A guest that polled instead of waiting would run the whole time.
    let busy = Duration::from_millis(100);
    let before = server.cpu_time();
    tokio::time::sleep(idle).await;
    let waiting = server.cpu_time() - before;
    assert!(waiting < busy, "receive: {waiting:?}");

    let other = net.attach(ip("10.244.14.8")).unwrap();
    let client = other.bind_udp(addr("0.0.0.0:0")).unwrap();
    client.send_to("awake", addr("10.244.14.7:5353")).unwrap();
    let echo = within(10, "echo", client.recv()).await;
    assert_eq!(echo.from, addr("10.244.14.7:5353"));
    assert_eq!(echo.data, "awake");
}

//! kubectl's streaming verbs against a real `skiff server`. `kubectl port-forward`:
//! kubectl's SPDY protocol (after its WebSocket attempt is refused) carries each local
//! connection to the pod's port in the pod network; a port nothing listens on is reported
//! per connection. `kubectl exec`: a wasm pod has no shell, and says what to use instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{PODS, Server, wait_for};

/// A server in `dir` with its node, running pod `name` of one container of `module`
/// (listening on 8080 if it is a server).
fn server_running(dir: &std::path::Path, name: &str, module: &str) -> Server {
    let server = Server::start_with(&dir.join("server"), &["--name", "node-0"]);
    server.create(
        PODS,
        serde_json::json!({
            "metadata": { "name": name },
            "spec": { "containers": [{
                "name": "main",
                "image": format!("file:{module}"),
                "ports": [{ "containerPort": 8080 }],
            }] },
        }),
    );
    wait_for(
        &format!("pod {name} Running"),
        Duration::from_secs(60),
        || server.get(&format!("{PODS}/{name}"))["status"]["phase"] == "Running",
    );
    server
}

#[test]
fn kubectl_port_forward_reaches_a_pods_port() {
    let kubectl = crate::kubectl::venv().join("bin/kubectl");
    let dir = tempfile::tempdir().unwrap();
    let server = server_running(dir.path(), "web", skiff_samples::HTTP_HELLO);

    // Two forwards: the server's port, and one nothing listens on. `:PORT` lets kubectl
    // pick free local ports, which it prints.
    let mut forward = Command::new(&kubectl)
        .args(["port-forward", "pod/web", ":8080", ":9999"])
        .env("KUBECONFIG", server.data_dir.join("kubeconfig"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl port-forward");
    let mut stdout = BufReader::new(forward.stdout.take().unwrap());
    let mut local = Vec::new();
    while local.len() < 2 {
        let mut line = String::new();
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "kubectl ended early"
        );
        // "Forwarding from 127.0.0.1:41234 -> 8080"
        if let Some(rest) = line.trim().strip_prefix("Forwarding from 127.0.0.1:") {
            let (port, target) = rest.split_once(" -> ").unwrap();
            local.push((port.parse::<u16>().unwrap(), target.to_string()));
        }
    }
    let port_of = |target: &str| local.iter().find(|(_, t)| t == target).unwrap().0;

    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for path in ["/first", "/second"] {
        let answer = client
            .get(format!("http://127.0.0.1:{}{path}", port_of("8080")))
            .send()
            .and_then(|r| r.text())
            .expect("an answer through the forward");
        assert!(
            answer.contains("hello from") && answer.contains(path),
            "{answer}"
        );
    }

    // Nothing listens on 9999: the connection is closed, kubectl says why.
    let mut closed = std::net::TcpStream::connect(("127.0.0.1", port_of("9999"))).unwrap();
    closed
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = closed.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = closed.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let _ = forward.kill();
    let _ = forward.wait();
    let mut errors = String::new();
    forward
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    assert!(
        errors.contains("remotePort=9999") && errors.contains("connection refused"),
        "{errors}"
    );
}

#[test]
fn kubectl_exec_says_what_to_use_instead() {
    let kubectl = crate::kubectl::venv().join("bin/kubectl");
    let dir = tempfile::tempdir().unwrap();
    let server = server_running(dir.path(), "ticker", skiff_samples::TICKER);
    let output = Command::new(&kubectl)
        .args(["exec", "ticker", "--", "sh"])
        .env("KUBECONFIG", server.data_dir.join("kubeconfig"))
        .output()
        .expect("run kubectl exec");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{errors}");
    assert!(
        errors.contains("exec is not supported") && errors.contains("kubectl logs"),
        "{errors}"
    );
}

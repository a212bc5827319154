//! A cluster is secure by default: the API is served over TLS with a certificate from the
//! cluster's own CA, which the kubeconfig carries; the CA key is readable by its owner only;
//! plain HTTP takes an explicit, loud flag.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Server, wait_for};

#[test]
fn the_api_is_served_over_tls_from_the_cluster_ca_which_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let mut server = Server::start_with(&data, &["--no-node"]);
    assert!(server.url.starts_with("https://"), "{}", server.url);

    // The kubeconfig trusts the cluster CA: the CLI works through it unchanged.
    let kubeconfig = std::fs::read_to_string(data.join("kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains("certificate-authority-data:"),
        "{kubeconfig}"
    );
    let namespaces = skiff(&data, &["get", "namespaces"]);
    assert!(namespaces.contains("default"), "{namespaces}");

    // Nothing that does not trust the cluster CA gets an answer, and plain HTTP gets none.
    let public_roots_only = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let refused = public_roots_only
        .get(format!("{}/version", server.url))
        .send();
    assert!(refused.is_err(), "{refused:?}");
    let plain = server.url.replacen("https://", "http://", 1);
    let answered = public_roots_only.get(format!("{plain}/version")).send();
    assert!(
        answered.is_err() || !answered.as_ref().unwrap().status().is_success(),
        "plain HTTP got an answer: {answered:?}"
    );

    // The CA key is the owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["pki/ca.key", "kubeconfig", "node-token"] {
            let mode = std::fs::metadata(data.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{file} is open to others: {mode:o}");
        }
    }

    // A restarted server keeps its CA: clients holding the old kubeconfig still trust it.
    let ca_before = std::fs::read(data.join("pki/ca.crt")).unwrap();
    server.kill();
    let server = Server::start_with(&data, &["--no-node"]);
    assert_eq!(std::fs::read(data.join("pki/ca.crt")).unwrap(), ca_before);
    let version = server
        .client()
        .get(format!("{}/version", server.url))
        .send();
    assert!(
        version.is_ok_and(|r| r.status().is_success()),
        "the old CA no longer verifies the server"
    );
}

#[test]
fn plain_http_takes_an_explicit_flag_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--no-node",
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("SKIFF_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let warned = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("WARNING: --insecure-http"))
    });
    wait_for(
        "the kubeconfig of the plain-HTTP server",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(data.join("kubeconfig"))
                .is_ok_and(|k| k.contains("server: http://127.0.0.1:"))
        },
    );
    let namespaces = skiff(&data, &["get", "namespaces"]);
    assert!(namespaces.contains("default"), "{namespaces}");
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned.join().unwrap(), "no warning about plain HTTP");
}

/// Runs the CLI against the cluster in `data` and returns its standard output.
fn skiff(data: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--kubeconfig")
        .arg(data.join("kubeconfig"))
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "skiff {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Pods that eat memory, blow their stack and spin get what their spec grants and no more:
/// the node stays Ready and a neighbour keeps answering every request.
#[test]
fn hostile_pods_cannot_exhaust_the_node() {
    use reqwest::Method;
    use serde_json::{Value, json};

    const PODS: &str = "/api/v1/namespaces/default/pods";
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let pod = |name: &str, module: &str, container: Value| {
        let mut container = container;
        container["name"] = json!("main");
        container["image"] = json!(format!("file:{module}"));
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "labels": { "app": name } },
            "spec": { "restartPolicy": "Never", "containers": [container] },
        })
    };
    let hostile = [
        pod(
            "memory-bomb",
            skiff_samples::MEMHOG,
            json!({ "resources": { "limits": { "memory": "32Mi" } } }),
        ),
        pod(
            "deep-recursion",
            skiff_samples::TRAPPER,
            json!({ "args": ["stack-overflow"] }),
        ),
        pod(
            "spinner",
            skiff_samples::CPUSPIN,
            json!({ "resources": { "limits": { "cpu": "200m" } } }),
        ),
        pod(
            "web",
            skiff_samples::HTTP_HELLO,
            json!({ "ports": [{ "containerPort": 8080 }] }),
        ),
    ];
    for body in hostile {
        let (status, answer) = server.send(Method::POST, PODS, Some(body));
        assert_eq!(status, 201, "{answer}");
    }
    let (status, service) = server.send(
        Method::POST,
        "/api/v1/namespaces/default/services",
        Some(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web" },
            "spec": { "type": "NodePort", "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] },
        })),
    );
    assert_eq!(status, 201, "{service}");
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().unwrap();

    // The memory bomb is stopped at its limit and the recursion traps; the spinner runs.
    let terminated = |name: &str| {
        server.get(&format!("{PODS}/{name}"))["status"]["containerStatuses"][0]["state"]
            ["terminated"]
            .clone()
    };
    wait_for(
        "the memory bomb to be stopped",
        Duration::from_secs(60),
        || terminated("memory-bomb")["reason"] == "OOMKilled",
    );
    wait_for("the recursion to trap", Duration::from_secs(60), || {
        terminated("deep-recursion").is_object()
    });
    assert_ne!(terminated("deep-recursion")["exitCode"], 0);
    wait_for("the spinner to run", Duration::from_secs(60), || {
        server.get(&format!("{PODS}/spinner"))["status"]["phase"] == "Running"
    });

    // With the spinner still spinning, the neighbour answers every request.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{node_port}/");
    wait_for("the neighbour to answer", Duration::from_secs(60), || {
        client
            .get(&url)
            .send()
            .is_ok_and(|r| r.status().is_success())
    });
    for i in 0..50 {
        let response = client.get(&url).send().unwrap();
        assert_eq!(response.status(), 200, "request {i}");
    }
    assert_eq!(
        server.get(&format!("{PODS}/spinner"))["status"]["phase"],
        "Running"
    );
    let node = server.get("/api/v1/nodes")["items"][0].clone();
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready["status"], "True", "{node}");
}

/// A node's own API (logs, port-forward) is TLS with a certificate the cluster CA signed
/// for that node, and answers the API server alone: a caller holding the node token, even
/// one trusting the cluster CA, gets no answer without the API server's client certificate.
#[test]
fn a_node_api_answers_only_the_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let mut port = 0;
    wait_for("the node's API port", Duration::from_secs(60), || {
        let node = server.get("/api/v1/nodes")["items"][0].clone();
        port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .unwrap_or(0);
        port != 0
    });
    let node_token = std::fs::read_to_string(server.data_dir.join("node-token")).unwrap();
    let url = format!("https://127.0.0.1:{port}/containerLogs/default/none/main");

    // The node's certificate is the cluster CA's, for the node's address: the handshake
    // gets as far as asking for a client certificate, which the caller does not have.
    let without_certificate = server
        .client()
        .get(&url)
        .bearer_auth(node_token.trim())
        .send();
    assert!(
        without_certificate.is_err(),
        "answered without the API server's certificate: {without_certificate:?}"
    );
    let plain = reqwest::blocking::Client::new()
        .get(url.replacen("https://", "http://", 1))
        .bearer_auth(node_token.trim())
        .timeout(Duration::from_secs(10))
        .send();
    assert!(
        plain.is_err() || !plain.as_ref().unwrap().status().is_success(),
        "plain HTTP answered: {plain:?}"
    );

    // Through the API server, which holds the client certificate, the node answers.
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "hello" },
        "spec": { "restartPolicy": "Never", "containers": [{
            "name": "main", "image": format!("file:{}", skiff_samples::HELLO),
        }] },
    });
    let (status, answer) = server.send(
        reqwest::Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod),
    );
    assert_eq!(status, 201, "{answer}");
    wait_for(
        "the pod's logs through the API server",
        Duration::from_secs(60),
        || {
            server
                .client()
                .get(format!(
                    "{}/api/v1/namespaces/default/pods/hello/log",
                    server.url
                ))
                .bearer_auth(&server.token)
                .send()
                .and_then(|r| r.text())
                .is_ok_and(|text| text.contains("hello from wasm"))
        },
    );
}

/// The fabric between nodes is TLS both ways: a caller that is no node (no certificate
/// from the cluster CA), even one holding the node token, gets no stream.
#[test]
fn the_fabric_takes_only_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let mut endpoint = String::new();
    wait_for(
        "the node's fabric endpoint",
        Duration::from_secs(60),
        || {
            let node = server.get("/api/v1/nodes")["items"][0].clone();
            endpoint = node["metadata"]["annotations"]["skiff.dev/fabric-endpoint"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            !endpoint.is_empty()
        },
    );
    let node_token = std::fs::read_to_string(server.data_dir.join("node-token")).unwrap();
    // The fabric speaks HTTP/2 CONNECT; any HTTP request is enough to be turned away before
    // a stream could open: over TLS without a client certificate, or in plain text.
    for url in [
        format!("https://{endpoint}/"),
        format!("http://{endpoint}/"),
    ] {
        let answer = server
            .client()
            .get(&url)
            .bearer_auth(node_token.trim())
            .send();
        assert!(
            answer.is_err(),
            "{url} answered a caller that is no node: {answer:?}"
        );
    }
}

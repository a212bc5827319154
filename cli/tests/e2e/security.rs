//! A cluster is secure by default: the API is served over TLS with a certificate from the
//! cluster's own CA, which the kubeconfig carries; the CA key is readable by its owner only;
//! plain HTTP takes an explicit, loud flag.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{NodeProcess, PODS, Server, start_cluster, wait_for};

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
        for file in ["pki/ca.key", "pki/node.key", "kubeconfig"] {
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

/// The key the server derives node API and fabric tokens from.
fn node_key(server: &Server) -> skiff_control_plane::apiserver::credentials::NodeKey {
    let hex = std::fs::read_to_string(server.data_dir.join("pki/node.key")).unwrap();
    skiff_control_plane::apiserver::credentials::NodeKey::from_hex(&hex).unwrap()
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
    // The very token this node's API demands of the API server.
    let node = server.get("/api/v1/nodes")["items"][0]["metadata"]["name"].clone();
    let node_token = node_key(&server).api_token(node.as_str().unwrap());
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
    let node_token = node_key(&server).fabric_token();
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

/// Nodes join with an expiring token from `skiff token create` and never hold more: the
/// node exchanges it once for a credential of its own (kept owner-only in its data
/// directory, and enough after a restart without the join token); an expired or deleted
/// join token is refused saying what to do; deleting the node's credential Secret
/// revokes it.
#[test]
fn nodes_join_with_expiring_tokens_and_keep_their_own_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("server"), &["--no-node"]);
    let node_dir = dir.path().join("n1");
    let mut node = NodeProcess::start(&server, "n1", &node_dir, &[]);
    let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1";
    let renewed = || server.get(lease)["spec"]["renewTime"].clone();
    wait_for("node n1's first heartbeat", Duration::from_secs(60), || {
        renewed().is_string()
    });

    // The node's credential is its own: not the join token, not the admin's.
    let path = node_dir.join("credential.json");
    let credential: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(credential["user"], "system:node:n1");
    let token = credential["token"].as_str().unwrap();
    assert_ne!(token, server.join_token());
    assert_ne!(token, server.token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the credential is open to others: {mode:o}"
        );
    }
    let as_node = |path: &str| {
        server
            .client()
            .get(format!("{}{path}", server.url))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(as_node("/api/v1/nodes/n1"), 200);
    assert_eq!(
        as_node("/apis/apps/v1/deployments"),
        403,
        "a node is no admin"
    );
    // The join token itself may do nothing but join.
    let listing = server
        .client()
        .get(format!("{}/api/v1/nodes", server.url))
        .bearer_auth(server.join_token())
        .send()
        .unwrap();
    assert_eq!(listing.status(), 403, "a join token listing nodes");

    // Restarted without the join token, the node carries on with its own credential.
    node.kill();
    let before = renewed();
    let mut restarted = NodeProcess {
        child: NodeProcess::command(&server, "n1", &node_dir)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    };
    wait_for(
        "node n1's heartbeat after a restart",
        Duration::from_secs(60),
        || renewed() != before,
    );

    // Revoked, its credential gets it nowhere, and it says what to do.
    restarted.kill();
    let (status, answer) = server.send(
        reqwest::Method::DELETE,
        "/api/v1/namespaces/kube-system/secrets/skiff-node-n1",
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let refused = node_fails(NodeProcess::command(&server, "n1", &node_dir));
    assert!(
        refused.contains("refused the credential kept in"),
        "{refused}"
    );
    assert_eq!(as_node("/api/v1/nodes/n1"), 401);

    // Join tokens that expired, or were deleted, join no one.
    let expiring = server.cli(&["token", "create", "--ttl", "1s", "--description", "short"]);
    assert!(expiring.status.success(), "{expiring:?}");
    let expiring = String::from_utf8(expiring.stdout)
        .unwrap()
        .trim()
        .to_string();
    let id = expiring.split('.').next().unwrap().to_string();
    wait_for("the token to expire", Duration::from_secs(30), || {
        let list = String::from_utf8(server.cli(&["token", "list"]).stdout).unwrap();
        list.lines()
            .any(|line| line.starts_with(&id) && line.contains("expired"))
    });
    let mut join = NodeProcess::command(&server, "n2", &dir.path().join("n2"));
    join.env("SKIFF_JOIN_TOKEN", &expiring);
    let refused = node_fails(join);
    assert!(refused.contains("unknown or has expired"), "{refused}");

    let deleted = server.cli(&["token", "create"]);
    let deleted = String::from_utf8(deleted.stdout)
        .unwrap()
        .trim()
        .to_string();
    let gone = server.cli(&["token", "delete", &deleted]);
    assert!(gone.status.success(), "{gone:?}");
    let mut join = NodeProcess::command(&server, "n3", &dir.path().join("n3"));
    join.env("SKIFF_JOIN_TOKEN", &deleted);
    assert!(node_fails(join).contains("unknown or has expired"));

    // Without a credential or a join token, the node says what it needs.
    let needs = node_fails(NodeProcess::command(&server, "n4", &dir.path().join("n4")));
    assert!(needs.contains("skiff token create"), "{needs}");
}

/// Runs a `skiff node` that must fail; returns its standard error.
fn node_fails(mut command: Command) -> String {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut status = None;
    wait_for("the node to give up", Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        !status.unwrap().success(),
        "the node did not fail: {stderr}"
    );
    stderr
}

/// A node reads the Secrets its pods use and no others: a pod on node-1 gets its Secret
/// (through `env`), while node-1's own credential cannot read a Secret none of its pods
/// uses, nor list Secrets.
#[test]
fn a_node_reads_the_secrets_its_pods_use_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _nodes) = start_cluster(dir.path(), 2);
    for (name, text) in [
        ("greeting", "from a secret"),
        ("unrelated", "not for node-1"),
    ] {
        server.create(
            "/api/v1/namespaces/default/secrets",
            serde_json::json!({ "metadata": { "name": name }, "stringData": { "text": text } }),
        );
    }
    server.create(
        PODS,
        serde_json::json!({
            "metadata": { "name": "greeter" },
            "spec": {
                "nodeName": "node-1",
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main",
                    "image": format!("file:{}", skiff_samples::HELLO),
                    "env": [{ "name": "GREETING", "valueFrom": {
                        "secretKeyRef": { "name": "greeting", "key": "text" } } }],
                }],
            },
        }),
    );
    let (output, _) = server.ended("greeter", "Succeeded");
    assert!(output.contains("GREETING=from a secret"), "{output}");

    let credential: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("node-1/credential.json")).unwrap())
            .unwrap();
    let as_node_1 = |path: &str| {
        server
            .client()
            .get(format!(
                "{}/api/v1/namespaces/default/secrets{path}",
                server.url
            ))
            .bearer_auth(credential["token"].as_str().unwrap())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(as_node_1("/greeting"), 200);
    assert_eq!(as_node_1("/unrelated"), 403);
    assert_eq!(as_node_1(""), 403, "listing every Secret");
}

/// A real server limits requests without valid credentials by the client's address:
/// past the burst a flood of bad tokens gets 429 with `Retry-After`, while the admin's
/// token from the same address still works.
#[test]
fn a_flood_of_bad_tokens_gets_429() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--no-node", "--max-failed-auth-per-second-per-address", "1"],
    );
    let client = server.client();
    let guess = || {
        client
            .get(format!("{}/api", server.url))
            .bearer_auth("guess")
            .send()
            .unwrap()
    };
    // The burst is 5; a token comes back every second, so a slow machine may see a
    // few more 401s before the first 429.
    let mut statuses = Vec::new();
    let refused = loop {
        let response = guess();
        statuses.push(response.status().as_u16());
        if response.status() == 429 || statuses.len() == 50 {
            break response;
        }
    };
    assert_eq!(refused.status(), 429, "{statuses:?}");
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 401));
    assert!(
        statuses.len() > 5,
        "the burst of 5 passes first: {statuses:?}"
    );
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        server.get("/api")["versions"].is_array(),
        "the admin is not held back"
    );
}

//! The pod network on a three-node cluster: pods reach each other by IP on one node and
//! across nodes, containers of a pod share a loopback, two pods on one node both listen on
//! 8080, and a Service balances connections over its replicas by every form of its DNS
//! name, moving off a replica that is gone.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{NodeProcess, PODS, Server, env, start_cluster, wait_for};

fn echo(name: &str) -> Value {
    json!({ "name": name, "image": format!("file:{}", skiff_samples::TCP_ECHO) })
}

/// A client pod on `node` that sends `message` to `address` once.
fn client(name: &str, node: &str, address: &str, message: &str) -> Value {
    let mut container = echo("client");
    container["env"] = env(&[("CONNECT", address), ("MESSAGE", message)]);
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": { "nodeName": node, "restartPolicy": "Never", "containers": [container] },
    })
}

/// Waits for a client pod to finish and returns what it printed; fails if it failed.
fn finished(server: &Server, pod: &str) -> String {
    ended(server, pod, "Succeeded")
}

/// Waits for a client pod to fail and returns what it printed.
fn failed(server: &Server, pod: &str) -> String {
    ended(server, pod, "Failed")
}

fn ended(server: &Server, pod: &str, expected: &str) -> String {
    server.ended(pod, expected).0
}

fn pod_ip(server: &Server, pod: &str) -> String {
    let mut ip = String::new();
    wait_for(&format!("{pod} listening"), Duration::from_secs(60), || {
        let found = server.get(&format!("{PODS}/{pod}"));
        ip = found["status"]["podIP"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !ip.is_empty() && server.logs(pod, None).contains("listening on")
    });
    ip
}

#[test]
fn pods_talk_over_the_pod_network_and_services_balance() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _nodes) = start_cluster(dir.path(), 3);

    // Two echo servers on node-1, both on port 8080; each answers with its own prefix.
    for (name, prefix) in [("echo-a", "a:"), ("echo-b", "b:")] {
        let mut container = echo("server");
        container["env"] = env(&[("PREFIX", prefix)]);
        server.create(
            PODS,
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
                "spec": { "nodeName": "node-1", "containers": [container] },
            }),
        );
    }
    let a = pod_ip(&server, "echo-a");
    let b = pod_ip(&server, "echo-b");
    assert_ne!(a, b);

    // From the same node and from another node, by pod IP.
    server.create(
        PODS,
        client("same-node", "node-1", &format!("{a}:8080"), "near"),
    );
    server.create(
        PODS,
        client("other-node", "node-2", &format!("{b}:8080"), "far"),
    );
    assert!(finished(&server, "same-node").contains("echoed: a:near"));
    assert!(finished(&server, "other-node").contains("echoed: b:far"));

    // Containers of one pod share its loopback: the client reaches its sibling at
    // 127.0.0.1 (retrying until the sibling listens).
    let mut server_container = echo("server");
    server_container["env"] = env(&[("PREFIX", "sibling:")]);
    let mut client_container = echo("client");
    client_container["env"] = env(&[("CONNECT", "127.0.0.1:8080"), ("MESSAGE", "hi")]);
    server.create(PODS,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "pair" },
            "spec": { "restartPolicy": "OnFailure", "containers": [server_container, client_container] },
        }),
    );
    wait_for("the sibling's echo", Duration::from_secs(60), || {
        server
            .logs("pair", Some("client"))
            .contains("echoed: sibling:hi")
    });

    // A Service over three replicas, one per node; each replica answers with its name.
    let mut replica = echo("server");
    replica["env"] = json!([{ "name": "PREFIX", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }]);
    replica["ports"] = json!([{ "name": "echo", "containerPort": 8080 }]);
    server.create(
        "/apis/apps/v1/namespaces/default/deployments",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "echo" },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": "echo" } },
                "template": {
                    "metadata": { "labels": { "app": "echo" } },
                    "spec": { "containers": [replica] },
                },
            },
        }),
    );
    server.create("/api/v1/namespaces/default/services",
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": "echo" },
            "spec": { "selector": { "app": "echo" }, "ports": [{ "port": 7000, "targetPort": "echo" }] },
        }),
    );
    wait_for("three ready endpoints", Duration::from_secs(60), || {
        server.get("/api/v1/namespaces/default/endpoints/echo")["subsets"][0]["addresses"]
            .as_array()
            .is_some_and(|a| a.len() == 3)
    });
    let replicas: Vec<Value> = server.get(&format!("{PODS}?labelSelector=app%3Decho"))["items"]
        .as_array()
        .unwrap()
        .clone();
    let replica_nodes: HashSet<&str> = replicas
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert_eq!(replica_nodes.len(), 3, "one replica per node");

    // Six clients through node-0's proxy, by every form of the name: each replica twice.
    let names = [
        "echo",
        "echo.default",
        "echo.default.svc",
        "echo.default.svc.cluster.local",
        "echo.default.svc.cluster.local",
        "echo",
    ];
    let mut answered: HashMap<String, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        let pod = format!("via-service-{i}");
        server.create(PODS, client(&pod, "node-0", &format!("{name}:7000"), "x"));
        let output = finished(&server, &pod);
        let line = output
            .lines()
            .find_map(|l| l.strip_prefix("echoed: "))
            .unwrap_or_else(|| panic!("{pod} got no echo: {output}"));
        let replica = line.strip_suffix('x').unwrap().to_string();
        *answered.entry(replica).or_default() += 1;
    }
    assert_eq!(answered.len(), 3, "every replica answered: {answered:?}");
    assert!(answered.values().all(|n| *n == 2), "{answered:?}");

    // From outside the cluster through a node port, as `curl NODE:NODEPORT` would.
    let (status, node_port) = server.send(
        Method::POST,
        "/api/v1/namespaces/default/services",
        Some(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": "echo-outside" },
            "spec": { "type": "NodePort", "selector": { "app": "echo" }, "ports": [{ "port": 7000, "targetPort": "echo" }] },
        })),
    );
    assert_eq!(status, 201, "{node_port}");
    let node_port = node_port["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    let mut reply = String::new();
    wait_for(
        "an echo through the node port",
        Duration::from_secs(30),
        || {
            use std::io::{BufRead, Write};
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", node_port as u16))
            else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if stream.write_all(b"from the host\n").is_err() {
                return false;
            }
            reply.clear();
            std::io::BufReader::new(stream)
                .read_line(&mut reply)
                .is_ok()
                && reply.ends_with("from the host\n")
        },
    );
    assert!(
        answered
            .keys()
            .any(|replica| reply.starts_with(replica.as_str())),
        "a replica answered: {reply}"
    );

    // From outside through a container's hostPort on its node.
    let host_port = free_port();
    let mut hosted = echo("server");
    hosted["env"] = env(&[("PREFIX", "hosted:")]);
    hosted["ports"] = json!([{ "containerPort": 8080, "hostPort": host_port }]);
    server.create(
        PODS,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "hosted" },
            "spec": { "containers": [hosted] },
        }),
    );
    pod_ip(&server, "hosted");
    let mut reply = String::new();
    wait_for(
        "an echo through the host port",
        Duration::from_secs(30),
        || {
            use std::io::{BufRead, Write};
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", host_port)) else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if stream.write_all(b"knock\n").is_err() {
                return false;
            }
            reply.clear();
            std::io::BufReader::new(stream)
                .read_line(&mut reply)
                .is_ok()
                && reply == "hosted:knock\n"
        },
    );

    // From this machine to a pod and to a Service through `skiff port-forward`.
    for (target, remote, expected) in [("pod/echo-a", 8080, "a:"), ("svc/echo", 7000, "echo-")] {
        let local = free_port();
        let mut forward = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--kubeconfig")
            .arg(server.data_dir.join("kubeconfig"))
            .args(["port-forward", target, &format!("{local}:{remote}")])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut reply = String::new();
        wait_for(
            &format!("an echo through port-forward to {target}"),
            Duration::from_secs(30),
            || {
                use std::io::{BufRead, Write};
                let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", local)) else {
                    return false;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                if stream.write_all(b"forwarded\n").is_err() {
                    return false;
                }
                reply.clear();
                std::io::BufReader::new(stream)
                    .read_line(&mut reply)
                    .is_ok()
                    && reply.ends_with("forwarded\n")
            },
        );
        let _ = forward.kill();
        let _ = forward.wait();
        assert!(reply.starts_with(expected), "{target}: {reply}");
    }

    // A replica goes: once the endpoints drop it, no connection reaches it and none fails.
    let gone = replicas[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = server.send(Method::DELETE, &format!("{PODS}/{gone}"), None);
    assert_eq!(status, 200);
    wait_for(
        "the endpoints to drop the deleted replica",
        Duration::from_secs(60),
        || {
            let endpoints = server.get("/api/v1/namespaces/default/endpoints/echo");
            let addresses = endpoints["subsets"][0]["addresses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            !addresses
                .iter()
                .any(|a| a["targetRef"]["name"] == gone.as_str())
        },
    );
    // The node's proxy learns of it through its own watch: wait until it stops sending
    // connections there, then every connection must succeed and avoid it.
    for i in 0..6 {
        let pod = format!("after-{i}");
        server.create(PODS, client(&pod, "node-0", "echo:7000", "y"));
        let output = finished(&server, &pod);
        assert!(
            !output.contains(&format!("echoed: {gone}")),
            "{pod} reached the deleted replica: {output}"
        );
    }

    // Host ports stay out of reach: the API server's port and another node's fabric port
    // (both on 127.0.0.1 here) are the pod's own loopback from inside a pod.
    let api_port = server.url.rsplit(':').next().unwrap().to_string();
    let fabric =
        server.get("/api/v1/nodes/node-1")["metadata"]["annotations"]["skiff.dev/fabric-endpoint"]
            .as_str()
            .unwrap()
            .to_string();
    let fabric_port = fabric.rsplit(':').next().unwrap().to_string();
    for (pod, port) in [("to-api-server", api_port), ("to-fabric", fabric_port)] {
        server.create(
            PODS,
            client(pod, "node-0", &format!("127.0.0.1:{port}"), "x"),
        );
        let output = failed(&server, pod);
        assert!(output.contains("ConnectionRefused"), "{pod}: {output}");
    }

    // A node that denies egress refuses its pods every connection beyond the cluster.
    let _closed = NodeProcess::start(
        &server,
        "node-closed",
        &dir.path().join("node-closed"),
        &["--deny-egress"],
    );
    wait_for(
        "node-closed with a pod range",
        Duration::from_secs(60),
        || server.get("/api/v1/nodes/node-closed")["spec"]["podCIDR"].is_string(),
    );
    server.create(
        PODS,
        client("closed-node", "node-closed", "192.0.2.1:80", "x"),
    );
    let output = failed(&server, "closed-node");
    assert!(output.contains("PermissionDenied"), "{output}");

    // A pod that denies itself egress cannot connect beyond the cluster.
    let mut denied = client("no-egress", "node-0", "192.0.2.1:80", "x");
    denied["metadata"]["annotations"] = json!({ "skiff.dev/deny-egress": "true" });
    server.create(PODS, denied);
    let output = failed(&server, "no-egress");
    assert!(output.contains("PermissionDenied"), "{output}");
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The frontend → backend sample: a wasi:http component whose outgoing requests name a
/// Service, the backend on another node, reached from the host through a node port.
#[test]
fn a_frontend_component_calls_its_backend_service_by_name_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _nodes) = start_cluster(dir.path(), 2);

    let http_hello = |name: &str, node: &str, app: &str, env: Value| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "labels": { "app": app } },
            "spec": { "nodeName": node, "containers": [{
                "name": "web",
                "image": format!("file:{}", skiff_samples::HTTP_HELLO),
                "env": env,
                "ports": [{ "name": "http", "containerPort": 8080 }],
            }] },
        })
    };
    let pod_name = json!({ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } });
    server.create(
        PODS,
        http_hello("backend-1", "node-1", "backend", json!([pod_name])),
    );
    server.create("/api/v1/namespaces/default/services",
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": "backend" },
            "spec": { "selector": { "app": "backend" }, "ports": [{ "port": 80, "targetPort": "http" }] },
        }),
    );
    let upstream =
        json!({ "name": "UPSTREAM", "value": "http://backend.default.svc.cluster.local/api" });
    server.create(
        PODS,
        http_hello(
            "frontend-1",
            "node-0",
            "frontend",
            json!([pod_name, upstream]),
        ),
    );
    let (status, frontend) = server.send(
        Method::POST,
        "/api/v1/namespaces/default/services",
        Some(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": "frontend" },
            "spec": { "type": "NodePort", "selector": { "app": "frontend" }, "ports": [{ "port": 80, "targetPort": "http" }] },
        })),
    );
    assert_eq!(status, 201, "{frontend}");
    let node_port = frontend["spec"]["ports"][0]["nodePort"].as_u64().unwrap();

    // The backend answers once its endpoint is known to node-0's proxy; until then the
    // frontend reports the failure (502) and the test keeps asking.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut answer = String::new();
    wait_for(
        "the frontend's answer through its backend",
        Duration::from_secs(60),
        || {
            let Ok(response) = client.get(format!("http://127.0.0.1:{node_port}/")).send() else {
                return false;
            };
            let ok = response.status() == 200;
            answer = response.text().unwrap_or_default();
            ok
        },
    );
    assert_eq!(
        answer,
        "hello from frontend-1 at /\nupstream 200: hello from backend-1 at /api\n"
    );

    // Without the backend the frontend's request fails and it says why.
    let (status, _) = server.send(Method::DELETE, &format!("{PODS}/backend-1"), None);
    assert_eq!(status, 200);
    wait_for(
        "the frontend to report its backend gone",
        Duration::from_secs(60),
        || {
            let Ok(response) = client.get(format!("http://127.0.0.1:{node_port}/")).send() else {
                return false;
            };
            let status = response.status();
            let text = response.text().unwrap_or_default();
            status == 502 && text.contains("upstream failed: ErrorCode::ConnectionRefused")
        },
    );
}

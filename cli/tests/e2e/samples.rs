//! Every sample as a pod on a three-node cluster (one server with its embedded node, two
//! `skiff node` processes): each ends the way its program and its spec say.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{NodeProcess, Server, wait_for};

const PODS: &str = "/api/v1/namespaces/default/pods";

/// A pod of one container running `module`, with extra container fields.
fn pod(name: &str, module: &str, policy: &str, container: Value) -> Value {
    let mut main = json!({ "name": "main", "image": format!("file:{module}") });
    for (field, value) in container.as_object().unwrap() {
        main[field] = value.clone();
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "restartPolicy": policy, "terminationGracePeriodSeconds": 1, "containers": [main] },
    })
}

fn logs(server: &Server, name: &str) -> String {
    server
        .client()
        .get(format!("{}{PODS}/{name}/log", server.url))
        .bearer_auth(&server.token)
        .send()
        .unwrap()
        .text()
        .unwrap()
}

#[test]
fn every_sample_runs_on_a_three_node_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("server"), &["--name", "node-0"]);
    let _node1 = NodeProcess::start(&server, "node-1", &dir.path().join("node-1"), &[]);
    let _node2 = NodeProcess::start(&server, "node-2", &dir.path().join("node-2"), &[]);
    wait_for("three Ready nodes", Duration::from_secs(60), || {
        let nodes = server.get("/api/v1/nodes");
        let ready = nodes["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        });
        ready == 3
    });

    let env = |pairs: &[(&str, &str)]| -> Value {
        pairs
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect()
    };
    let pods = [
        pod(
            "hello",
            skiff_samples::HELLO,
            "Never",
            json!({
                "args": ["x"],
                "env": [{ "name": "GREETING", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }],
            }),
        ),
        pod("hello-p2", skiff_samples::HELLO_P2, "Never", json!({})),
        pod(
            "ticker",
            skiff_samples::TICKER,
            "Always",
            json!({ "env": env(&[("TICK_MS", "100")]) }),
        ),
        pod(
            "crasher",
            skiff_samples::CRASHER,
            "Never",
            json!({ "env": env(&[("EXIT_CODE", "7")]) }),
        ),
        pod("trapper", skiff_samples::TRAPPER, "Never", json!({})),
        pod(
            "memhog",
            skiff_samples::MEMHOG,
            "Never",
            json!({ "resources": { "limits": { "memory": "16Mi" } } }),
        ),
        pod(
            "cpuspin",
            skiff_samples::CPUSPIN,
            "Always",
            json!({ "resources": { "limits": { "cpu": "100m" } } }),
        ),
        pod(
            "http-hello",
            skiff_samples::HTTP_HELLO,
            "Always",
            json!({
                "ports": [{ "containerPort": 8080 }],
                "readinessProbe": { "httpGet": { "path": "/", "port": 8080 }, "periodSeconds": 1 },
            }),
        ),
        // A socket server in the pod network: it binds its port in the pod, not the host.
        pod("tcp-echo", skiff_samples::TCP_ECHO, "Always", json!({})),
        // The writer's file, through an emptyDir, read by the reader after it.
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "shared" },
            "spec": {
                "restartPolicy": "Never",
                "volumes": [{ "name": "data", "emptyDir": {} }],
                "initContainers": [{
                    "name": "writer", "image": format!("file:{}", skiff_samples::WRITER),
                    "env": env(&[("CONTENT", "passed along")]),
                    "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
                }],
                "containers": [{
                    "name": "reader", "image": format!("file:{}", skiff_samples::READER),
                    "volumeMounts": [{ "name": "data", "mountPath": "/data", "readOnly": true }],
                }],
            },
        }),
    ];
    for pod in pods {
        let (status, answer) = server.send(Method::POST, PODS, Some(pod));
        assert_eq!(status, 201, "{answer}");
    }

    let get = |name: &str| server.get(&format!("{PODS}/{name}"));
    let terminated = |name: &str| -> Value {
        let mut last = Value::Null;
        wait_for(
            &format!("{name} to finish"),
            Duration::from_secs(60),
            || {
                last = get(name);
                matches!(
                    last["status"]["phase"].as_str(),
                    Some("Succeeded" | "Failed")
                )
            },
        );
        last
    };
    let state = |pod: &Value| pod["status"]["containerStatuses"][0]["state"]["terminated"].clone();

    let hello = terminated("hello");
    assert_eq!(hello["status"]["phase"], "Succeeded", "{hello}");
    let hello_logs = logs(&server, "hello");
    assert!(
        hello_logs.contains("hello from wasm\narg: x\n"),
        "{hello_logs}"
    );
    let hello_ip = hello["status"]["podIP"].as_str().unwrap();
    assert!(
        hello_logs.contains(&format!("GREETING={hello_ip}\n")),
        "the downward API gives the pod its address: {hello_logs}"
    );
    let hello_p2 = terminated("hello-p2");
    assert_eq!(hello_p2["status"]["phase"], "Succeeded", "{hello_p2}");
    assert!(logs(&server, "hello-p2").contains("hello from wasm"));

    let crasher = terminated("crasher");
    assert_eq!(crasher["status"]["phase"], "Failed");
    assert_eq!(state(&crasher)["exitCode"], 7, "{crasher}");
    assert_eq!(state(&crasher)["reason"], "Error");

    let trapper = terminated("trapper");
    assert_eq!(trapper["status"]["phase"], "Failed");
    let message = state(&trapper)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("wasm trap"), "{trapper}");

    let memhog = terminated("memhog");
    assert_eq!(memhog["status"]["phase"], "Failed");
    assert_eq!(state(&memhog)["reason"], "OOMKilled", "{memhog}");

    let shared = terminated("shared");
    assert_eq!(shared["status"]["phase"], "Succeeded", "{shared}");
    assert_eq!(logs(&server, "shared"), "passed along\n");

    wait_for("tcp-echo listening", Duration::from_secs(60), || {
        logs(&server, "tcp-echo").contains("listening on 0.0.0.0:8080")
    });
    wait_for("ticker ticking", Duration::from_secs(60), || {
        logs(&server, "ticker").contains("tick 3\n")
    });
    wait_for("cpuspin running", Duration::from_secs(60), || {
        get("cpuspin")["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    wait_for("http-hello Ready", Duration::from_secs(60), || {
        get("http-hello")["status"]["containerStatuses"][0]["ready"] == true
    });

    // The scheduler spread them: every node ran some.
    let pods = server.get(PODS)["items"].as_array().unwrap().clone();
    let nodes: HashSet<String> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
        .collect();
    assert_eq!(nodes.len(), 3, "pods ran on {nodes:?}");

    // Every node has a pod range of its own, and every pod an address of its own in its
    // node's range.
    let mut ranges = HashSet::new();
    for node in &nodes {
        let cidr = server.get(&format!("/api/v1/nodes/{node}"))["spec"]["podCIDR"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(ranges.insert(cidr), "{node} shares its range");
    }
    let mut addresses = HashSet::new();
    for pod in &pods {
        let node = server.get(&format!(
            "/api/v1/nodes/{}",
            pod["spec"]["nodeName"].as_str().unwrap()
        ));
        let range: ipnet::Ipv4Net = node["spec"]["podCIDR"].as_str().unwrap().parse().unwrap();
        let ip: std::net::Ipv4Addr = pod["status"]["podIP"].as_str().unwrap().parse().unwrap();
        assert!(range.contains(&ip), "{ip} is outside {range}");
        assert_eq!(pod["status"]["podIPs"], json!([{ "ip": ip.to_string() }]));
        assert!(addresses.insert(ip), "{ip} given twice");
    }
}

//! A three-node cluster of real processes: one server (with its embedded node) and two
//! `skiff node` agents. Pods spread over the nodes; a pod that fits nowhere waits with
//! a reason and is placed when a fitting node joins; a killed and restarted node agent
//! resumes its pods.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{NodeProcess, Server, wait_for};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn ready_nodes(server: &Server) -> HashSet<String> {
    let nodes = server.get("/api/v1/nodes");
    nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// The nodes of the `spread` Deployment's Running replicas, one entry per replica.
fn running_replica_nodes(server: &Server) -> Vec<String> {
    let pods = server.get(&format!("{PODS}?labelSelector=app%3Dspread"));
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .collect()
}

fn pod(server: &Server, name: &str) -> Value {
    server.get(&format!("{PODS}/{name}"))
}

#[test]
fn pods_spread_wait_for_a_fitting_node_and_survive_a_node_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("server"), &["--name", "node-0"]);
    let mut node1 = NodeProcess::start(&server, "node-1", &dir.path().join("node-1"), &[]);
    let _node2 = NodeProcess::start(&server, "node-2", &dir.path().join("node-2"), &[]);
    let all: HashSet<String> = ["node-0", "node-1", "node-2"].map(String::from).into();
    wait_for("three Ready nodes", Duration::from_secs(60), || {
        ready_nodes(&server) == all
    });

    // Six replicas spread over the three nodes, and run there.
    let ticker = format!("file:{}", skiff_samples::TICKER);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "spread" },
        "spec": {
            "replicas": 6,
            "selector": { "matchLabels": { "app": "spread" } },
            "template": { "metadata": { "labels": { "app": "spread" } }, "spec": { "containers": [{ "name": "main", "image": ticker }] } },
        },
    });
    let (status, answer) = server.send(
        Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(deployment),
    );
    assert_eq!(status, 201, "{answer}");
    wait_for(
        "six replicas Running on three nodes",
        Duration::from_secs(60),
        || {
            let nodes = running_replica_nodes(&server);
            nodes.len() == 6 && nodes.iter().collect::<HashSet<_>>().len() == 3
        },
    );

    // A pod for a node pool that does not exist yet waits, saying why.
    let picky = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "picky" },
        "spec": { "nodeSelector": { "pool": "late" }, "containers": [{ "name": "main", "image": ticker }] },
    });
    assert_eq!(server.send(Method::POST, PODS, Some(picky)).0, 201);
    wait_for(
        "picky to be reported unschedulable",
        Duration::from_secs(30),
        || {
            pod(&server, "picky")["status"]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
                })
        },
    );
    assert_eq!(pod(&server, "picky")["status"]["phase"], "Pending");
    let _late = NodeProcess::start(
        &server,
        "node-late",
        &dir.path().join("node-late"),
        &["--label", "pool=late"],
    );
    wait_for(
        "picky Running on the node that joined",
        Duration::from_secs(60),
        || {
            let p = pod(&server, "picky");
            p["spec"]["nodeName"] == "node-late" && p["status"]["phase"] == "Running"
        },
    );

    // A pod on node-1 survives its agent being killed and restarted: it runs again,
    // counted as a restart.
    let pinned = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "pinned" },
        "spec": { "nodeName": "node-1", "containers": [{ "name": "main", "image": ticker }] },
    });
    assert_eq!(server.send(Method::POST, PODS, Some(pinned)).0, 201);
    wait_for("pinned Running", Duration::from_secs(30), || {
        pod(&server, "pinned")["status"]["phase"] == "Running"
    });
    node1.kill();
    let mut node1 = NodeProcess::start(&server, "node-1", &dir.path().join("node-1"), &[]);
    wait_for(
        "pinned running again after the agent restarted",
        Duration::from_secs(60),
        || {
            let status = &pod(&server, "pinned")["status"]["containerStatuses"][0];
            status["restartCount"].as_i64() >= Some(1) && status["state"]["running"].is_object()
        },
    );

    // Draining a node moves its replicas elsewhere and keeps new ones away.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--kubeconfig")
        .arg(server.data_dir.join("kubeconfig"))
        .args(["drain", "node-2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("node/node-2 drained"));
    assert_eq!(
        server.get("/api/v1/nodes/node-2")["spec"]["unschedulable"],
        true
    );
    wait_for(
        "six replicas Running, none on the drained node",
        Duration::from_secs(60),
        || {
            let nodes = running_replica_nodes(&server);
            nodes.len() == 6 && nodes.iter().all(|n| n != "node-2")
        },
    );

    // A node dies (SIGKILL): the node lifecycle controller marks it unreachable and
    // evicts its pods, and their replicas run again on the nodes that are left.
    assert!(
        running_replica_nodes(&server).iter().any(|n| n == "node-1"),
        "node-1 runs some replicas before it dies"
    );
    let killed = std::time::Instant::now();
    node1.kill();
    wait_for(
        "six replicas Running on the nodes that are left",
        Duration::from_secs(90),
        || {
            let nodes = running_replica_nodes(&server);
            nodes.len() == 6 && nodes.iter().all(|n| n != "node-1" && n != "node-2")
        },
    );
    eprintln!(
        "replicas of a killed node running elsewhere {:.1?} after the kill",
        killed.elapsed()
    );
    let node = server.get("/api/v1/nodes/node-1");
    assert!(
        node["spec"]["taints"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable")),
        "{node}"
    );
}

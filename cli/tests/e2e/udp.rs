//! UDP over the pod network on a three-node cluster: a datagram from a pod on one node
//! reaches a pod on another by IP and comes back; a UDP Service balances its clients' flows
//! over replicas on every node, by ClusterIP and by DNS name, and the answers come from the
//! Service's address; TCP and UDP on one port number stay apart; egress denied is denied.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PODS, env, start_cluster, wait_for};

fn echo(name: &str, env: Value) -> Value {
    json!({ "name": name, "image": format!("file:{}", skiff_samples::TCP_ECHO), "env": env })
}

/// A pod on `node` that runs one tcp-echo container with `pairs` as its environment, once.
fn once(name: &str, node: &str, pairs: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": {
            "nodeName": node, "restartPolicy": "Never",
            "containers": [echo("client", env(pairs))],
        },
    })
}

/// The line of `output` after `prefix`.
fn line_after<'a>(output: &'a str, prefix: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {output:?}"))
}

#[test]
fn udp_crosses_nodes_and_reaches_services_by_cluster_ip_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _nodes) = start_cluster(dir.path(), 3);

    // A UDP echo server on node-1 and, for the Service, three replicas (one per node), each
    // with a UDP and a TCP echo container on the same port 5353 of one pod.
    server.create(PODS,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "udp-a" },
            "spec": {
                "nodeName": "node-1",
                "containers": [echo("server", env(&[("UDP_BIND", "0.0.0.0:5353"), ("PREFIX", "a:")]))],
            },
        }),
    );
    let pod_name =
        json!({ "name": "PREFIX", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } });
    let mut udp = echo(
        "udp",
        json!([pod_name, { "name": "UDP_BIND", "value": "0.0.0.0:5353" }]),
    );
    udp["ports"] = json!([{ "name": "dns", "containerPort": 5353, "protocol": "UDP" }]);
    let mut tcp = echo(
        "tcp",
        json!([pod_name, { "name": "PORT", "value": "5353" }]),
    );
    tcp["ports"] = json!([{ "name": "dns-tcp", "containerPort": 5353, "protocol": "TCP" }]);
    server.create(
        "/apis/apps/v1/namespaces/default/deployments",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "dns" },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": "dns" } },
                "template": {
                    "metadata": { "labels": { "app": "dns" } },
                    "spec": { "containers": [udp, tcp] },
                },
            },
        }),
    );
    let (status, service) = server.send(
        Method::POST,
        "/api/v1/namespaces/default/services",
        Some(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": "dns" },
            "spec": { "selector": { "app": "dns" }, "ports": [
                { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns" },
                { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": "dns-tcp" },
            ] },
        })),
    );
    assert_eq!(status, 201, "{service}");
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();

    // Pod to pod across nodes, by IP: node-2 to node-1 and back.
    let mut server_ip = String::new();
    wait_for("udp-a bound", Duration::from_secs(60), || {
        server_ip = server.get(&format!("{PODS}/udp-a"))["status"]["podIP"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !server_ip.is_empty() && server.logs("udp-a", None).contains("udp bound to")
    });
    let target = format!("{server_ip}:5353");
    server.create(
        PODS,
        once(
            "udp-far",
            "node-2",
            &[("UDP_SEND", &target), ("MESSAGE", "far")],
        ),
    );
    let (output, far) = server.ended("udp-far", "Succeeded");
    assert_eq!(line_after(&output, "udp echoed: "), "a:far", "{output}");
    assert_eq!(line_after(&output, "udp reply from "), target, "{output}");
    let far_ip = far["status"]["podIP"].as_str().unwrap();
    let seen = server.logs("udp-a", None);
    assert!(
        seen.contains(&format!("udp datagram from {far_ip}:")),
        "the server saw the client's pod IP: {seen}"
    );

    // The Service: ready endpoints on every node, both protocols resolved to port 5353.
    wait_for("three ready endpoints", Duration::from_secs(90), || {
        server.get("/api/v1/namespaces/default/endpoints/dns")["subsets"][0]["addresses"]
            .as_array()
            .is_some_and(|a| a.len() == 3)
    });
    let endpoints = server.get("/api/v1/namespaces/default/endpoints/dns");
    let ports: HashSet<(String, i64)> = endpoints["subsets"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["protocol"].as_str().unwrap().to_string(),
                p["port"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        HashSet::from([("UDP".to_string(), 5353), ("TCP".to_string(), 5353)])
    );
    let replica_nodes: HashSet<String> =
        server.get(&format!("{PODS}?labelSelector=app%3Ddns"))["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
    assert_eq!(replica_nodes.len(), 3, "one replica per node");

    // Six clients on node-0, by the ClusterIP and every form of the name. Connected ones
    // (UDP_CONNECT=1) take only answers from the address they sent to; every answer comes
    // from the Service's address, whichever replica (on whichever node) sent it.
    let targets = [
        (cluster_ip.as_str(), "0"),
        ("dns", "1"),
        ("dns.default", "1"),
        ("dns.default.svc", "0"),
        ("dns.default.svc.cluster.local", "1"),
        (cluster_ip.as_str(), "1"),
    ];
    for (i, (host, connect)) in targets.iter().enumerate() {
        server.create(
            PODS,
            once(
                &format!("via-service-{i}"),
                "node-0",
                &[
                    ("UDP_SEND", &format!("{host}:53")),
                    ("UDP_CONNECT", connect),
                    ("MESSAGE", "/x"),
                ],
            ),
        );
    }
    let mut answered: HashMap<String, usize> = HashMap::new();
    for (i, (host, _)) in targets.iter().enumerate() {
        let (output, _) = server.ended(&format!("via-service-{i}"), "Succeeded");
        assert_eq!(
            line_after(&output, "udp reply from "),
            format!("{cluster_ip}:53"),
            "{host}: {output}"
        );
        let replica = line_after(&output, "udp echoed: ")
            .strip_suffix("/x")
            .unwrap_or_else(|| panic!("{host}: {output}"))
            .to_string();
        assert!(replica.starts_with("dns-"), "{host}: {output}");
        *answered.entry(replica).or_default() += 1;
    }
    assert_eq!(answered.len(), 3, "every replica answered: {answered:?}");

    // TCP to the same port number of the Service reaches the TCP container.
    server.create(
        PODS,
        once(
            "via-service-tcp",
            "node-0",
            &[("CONNECT", "dns:53"), ("MESSAGE", "/t")],
        ),
    );
    let (output, _) = server.ended("via-service-tcp", "Succeeded");
    let replica = line_after(&output, "echoed: ").strip_suffix("/t").unwrap();
    assert!(answered.contains_key(replica), "{output}");

    // A pod denied egress may not send beyond the cluster.
    let mut denied = once(
        "udp-no-egress",
        "node-0",
        &[("UDP_SEND", "192.0.2.1:53"), ("UDP_TRIES", "1")],
    );
    denied["metadata"]["annotations"] = json!({ "skiff.dev/deny-egress": "true" });
    server.create(PODS, denied);
    let (output, _) = server.ended("udp-no-egress", "Failed");
    assert!(
        output.contains("tcp-echo: udp send: PermissionDenied"),
        "{output}"
    );
}

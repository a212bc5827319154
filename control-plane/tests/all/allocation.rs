//! Addresses the API server hands out: ClusterIPs from the service range and pod ranges
//! for nodes, unique, and given back when their object goes.

use std::collections::HashSet;

use axum::http::StatusCode;
use serde_json::{Value, json};
use skiff_control_plane::apiserver::ApiServerConfig;
use skiff_control_plane::apiserver::allocator::Ranges;

use crate::support::TestServer;

const SERVICES: &str = "/api/v1/namespaces/default/services";

fn service(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["ports"] = json!([{ "port": 80 }]);
    json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name }, "spec": spec })
}

async fn small_ranges() -> TestServer {
    TestServer::with_config(ApiServerConfig {
        ranges: Ranges {
            // 10.100.0.2 to 10.100.0.6: five addresses to hand out.
            service_cidr: "10.100.0.0/29".parse().unwrap(),
            cluster_cidr: Some("10.244.0.0/22".parse().unwrap()),
            node_cidr_mask_size: 24,
        },
        ..ApiServerConfig::default()
    })
    .await
}

#[tokio::test]
async fn services_get_unique_cluster_ips_that_are_released_on_delete() {
    let t = small_ranges().await;
    let mut ips = HashSet::new();
    for i in 0..5 {
        let created = t
            .create(SERVICES, service(&format!("s{i}"), json!({})))
            .await;
        let ip = created["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert_eq!(created["spec"]["clusterIPs"], json!([ip]));
        assert!(
            ip.starts_with("10.100.0.")
                && !["10.100.0.0", "10.100.0.1", "10.100.0.7"].contains(&ip.as_str()),
            "{ip}"
        );
        assert!(ips.insert(ip), "every service its own address");
    }

    // The range is full: a clear error naming the field, not a 5xx.
    let (status, error) = t.post(SERVICES, service("one-too-many", json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("is full"),
        "{error}"
    );

    // Headless and ExternalName services take none.
    let headless = t
        .create(
            SERVICES,
            service("headless", json!({ "clusterIP": "None" })),
        )
        .await;
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let external = t
        .create(
            SERVICES,
            service(
                "external",
                json!({ "type": "ExternalName", "externalName": "example.com" }),
            ),
        )
        .await;
    assert!(
        external["spec"]
            .get("clusterIP")
            .is_none_or(|ip| ip.as_str() == Some("")),
        "{external}"
    );

    // A deleted service gives its address back, and a new one can ask for it.
    let (_, s0) = t.get(&format!("{SERVICES}/s0")).await;
    let freed = s0["spec"]["clusterIP"].as_str().unwrap().to_string();
    let (status, _) = t.delete(&format!("{SERVICES}/s0")).await;
    assert_eq!(status, StatusCode::OK);
    let again = t
        .create(SERVICES, service("again", json!({ "clusterIP": freed })))
        .await;
    assert_eq!(again["spec"]["clusterIP"], freed.as_str());
}

#[tokio::test]
async fn requested_cluster_ips_are_checked() {
    let t = small_ranges().await;
    let taken = t
        .create(
            SERVICES,
            service("first", json!({ "clusterIP": "10.100.0.3" })),
        )
        .await;
    assert_eq!(taken["spec"]["clusterIP"], "10.100.0.3");

    for (ip, expected) in [
        ("10.100.0.3", "provided IP is already allocated"),
        ("10.200.0.3", "not in the valid range"),
        ("10.100.0.1", "not in the valid range"),
        ("banana", "valid IPv4 address"),
    ] {
        let (status, error) = t
            .post(SERVICES, service("second", json!({ "clusterIP": ip })))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{ip}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("spec.clusterIPs") && message.contains(expected),
            "{ip}: {message}"
        );
    }
    // A refused create leaked nothing: the five addresses minus the taken one are all free.
    for i in 0..4 {
        t.create(SERVICES, service(&format!("fill{i}"), json!({})))
            .await;
    }

    // Updates keep the address, also when the manifest leaves it out; changing it is refused.
    let (_, current) = t.get(&format!("{SERVICES}/first")).await;
    let mut put = service("first", json!({}));
    put["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    let (status, updated) = t.put(&format!("{SERVICES}/first"), put).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["spec"]["clusterIP"], "10.100.0.3");
    let mut moved = service("first", json!({ "clusterIP": "10.100.0.4" }));
    moved["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"].clone();
    let (status, error) = t.put(&format!("{SERVICES}/first"), moved).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
}

#[tokio::test]
async fn nodes_get_their_own_pod_range() {
    let t = small_ranges().await;
    let node =
        |name: &str| json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name } });
    let mut ranges = HashSet::new();
    for i in 0..4 {
        let created = t.create("/api/v1/nodes", node(&format!("n{i}"))).await;
        let cidr = created["spec"]["podCIDR"].as_str().unwrap().to_string();
        assert_eq!(created["spec"]["podCIDRs"], json!([cidr]));
        assert!(
            cidr.starts_with("10.244.") && cidr.ends_with("/24"),
            "{cidr}"
        );
        assert!(ranges.insert(cidr));
    }
    let (status, error) = t.post("/api/v1/nodes", node("n4")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("--pod-cidr"),
        "{error}"
    );

    let (status, _) = t.delete("/api/v1/nodes/n2").await;
    assert_eq!(status, StatusCode::OK);
    let replaced = t.create("/api/v1/nodes", node("n4")).await;
    assert!(ranges.contains(replaced["spec"]["podCIDR"].as_str().unwrap()));
}

#[tokio::test]
async fn node_port_services_get_unique_node_ports() {
    let t = small_ranges().await;
    let node_port = |name: &str, port: Value| {
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
            "spec": { "type": "NodePort", "ports": [{ "port": 80, "nodePort": port }] },
        })
    };
    let first = t.create(SERVICES, node_port("first", json!(30080))).await;
    assert_eq!(first["spec"]["ports"][0]["nodePort"], 30080);
    let any = t.create(SERVICES, node_port("any", Value::Null)).await;
    let assigned = any["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!(
        (30000..=32767).contains(&assigned) && assigned != 30080,
        "{any}"
    );

    let (status, error) = t.post(SERVICES, node_port("clash", json!(30080))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("spec.ports[0].nodePort") && message.contains("already allocated"),
        "{message}"
    );

    // A PUT without the node port keeps it; deleting the service frees it.
    let mut put = node_port("first", Value::Null);
    put["metadata"]["resourceVersion"] = first["metadata"]["resourceVersion"].clone();
    let (status, updated) = t.put(&format!("{SERVICES}/first"), put).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["spec"]["ports"][0]["nodePort"], 30080);
    t.delete(&format!("{SERVICES}/first")).await;
    let again = t.create(SERVICES, node_port("again", json!(30080))).await;
    assert_eq!(again["spec"]["ports"][0]["nodePort"], 30080);
}

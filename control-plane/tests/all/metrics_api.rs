//! The metrics API (`metrics.k8s.io/v1beta1`, what `kubectl top` reads) through
//! `Router::oneshot`, with fake node APIs: one answers `/stats/summary` with usage the test
//! chose, one never answers (and is left out after the node timeout).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use skiff_control_plane::apiserver::ApiServerConfig;
use skiff_control_plane::apiserver::credentials::NodeKey;

use crate::support::TestServer;

const ADMIN: &str = "admin-token";
/// Bound to ClusterRole `view` in namespace `default` only.
const VIEWER: &str = "viewer-token";
/// Bound to nothing.
const NOBODY: &str = "nobody-token";

struct Cluster {
    test: TestServer,
}

impl Cluster {
    async fn new(key: NodeKey) -> Cluster {
        let config = ApiServerConfig {
            node_key: Some(key),
            ..ApiServerConfig::default()
        };
        let users: &[(&str, &str, &[&str])] = &[
            (ADMIN, "admin", &["system:masters"]),
            (VIEWER, "viewer", &[]),
            (NOBODY, "nobody", &[]),
        ];
        Cluster {
            test: TestServer::with_users(config, users).await,
        }
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.test
            .send_as(token, method, path, "application/json", body)
            .await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(ADMIN, Method::GET, path, None).await
    }

    async fn create(&self, path: &str, body: Value) -> Value {
        let (status, object) = self.call(ADMIN, Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {object}");
        object
    }
}

/// A Node whose API is at 127.0.0.1:`port`.
fn node(name: &str, port: u16) -> Value {
    json!({
        "metadata": { "name": name, "labels": { "zone": name } },
        "status": {
            "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": port } },
        },
    })
}

fn pod(name: &str, app: &str, node: Option<&str>) -> Value {
    json!({
        "metadata": { "name": name, "labels": { "app": app } },
        "spec": {
            "nodeName": node,
            "containers": [{ "name": "main", "image": "file:/x.wasm" }],
        },
    })
}

/// One container's stats as a node serves them.
fn stats(name: &str, nano_cores: u64, bytes: u64) -> Value {
    json!({
        "name": name,
        "cpu": {
            "time": "2025-01-02T03:04:05Z", "windowNanoSeconds": 10_012_000_000u64,
            "usageNanoCores": nano_cores, "usageCoreNanoSeconds": 99,
        },
        "memory": { "time": "2025-01-02T03:04:05Z", "workingSetBytes": bytes },
    })
}

fn pod_stats(pod: &Value, containers: Vec<Value>) -> Value {
    json!({
        "podRef": {
            "namespace": pod["metadata"]["namespace"],
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        },
        "cpu": { "time": "2025-01-02T03:04:05Z", "windowNanoSeconds": 10_012_000_000u64, "usageNanoCores": 0 },
        "memory": { "workingSetBytes": 0 },
        "containers": containers,
    })
}

/// A node API answering `/stats/summary` with `summary` to the bearer of `token` (401 to
/// anyone else); its port.
async fn fake_node(token: String, summary: Arc<Mutex<Value>>) -> u16 {
    let app = Router::new().route(
        "/stats/summary",
        axum::routing::get(move |headers: HeaderMap| {
            let summary = summary.clone();
            let token = token.clone();
            async move {
                let given = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                if given != Some(token.as_str()) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                Ok(axum::Json(summary.lock().unwrap().clone()))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {list}"))
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn pod_and_node_metrics_come_from_the_nodes_that_answer() {
    let key = NodeKey::generate();
    let summary = Arc::new(Mutex::new(Value::Null));
    let answering = fake_node(key.api_token("node-a"), summary.clone()).await;
    // Accepts connections (the kernel does) but never reads a request from them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();

    let cluster = Cluster::new(key).await;
    cluster
        .create("/api/v1/nodes", node("node-a", answering))
        .await;
    cluster
        .create("/api/v1/nodes", node("node-b", silent_port))
        .await;
    cluster
        .create(
            "/api/v1/namespaces",
            json!({ "metadata": { "name": "other" } }),
        )
        .await;
    let pods = "/api/v1/namespaces/default/pods";
    let web = cluster
        .create(pods, pod("web", "web", Some("node-a")))
        .await;
    let db = cluster.create(pods, pod("db", "db", Some("node-a"))).await;
    cluster.create(pods, pod("pending", "web", None)).await;
    // Running, but its node keeps silent.
    cluster
        .create(
            "/api/v1/namespaces/other/pods",
            pod("far", "web", Some("node-b")),
        )
        .await;
    // The node runs web's container and db's, and reports a pod it no longer runs.
    *summary.lock().unwrap() = json!({
        "node": {
            "nodeName": "node-a",
            "cpu": { "time": "2025-01-02T03:04:05Z", "windowNanoSeconds": 10_000_000_000u64, "usageNanoCores": 262_001_234u64 },
            "memory": { "time": "2025-01-02T03:04:05Z", "workingSetBytes": 3_211_264u64 },
        },
        "pods": [
            pod_stats(&web, vec![stats("main", 250_000_000, 1_114_112)]),
            pod_stats(&db, vec![stats("main", 12_001_234, 2_097_152)]),
            pod_stats(&json!({ "metadata": { "namespace": "default", "name": "gone", "uid": "x" } }), vec![]),
        ],
    });

    // Discovery lists the group, and its resources with metrics-server's verbs.
    let (status, groups) = cluster.get("/apis").await;
    assert_eq!(status, StatusCode::OK);
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "metrics.k8s.io")
        .unwrap_or_else(|| panic!("no metrics.k8s.io in {groups}"));
    assert_eq!(group["preferredVersion"]["version"], "v1beta1");
    let (status, resources) = cluster.get("/apis/metrics.k8s.io/v1beta1").await;
    assert_eq!(status, StatusCode::OK, "{resources}");
    assert_eq!(resources["groupVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(
        resources["resources"],
        json!([
            { "name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"] },
            { "name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"] },
        ])
    );
    let (status, _) = cluster.get("/apis/metrics.k8s.io").await;
    assert_eq!(status, StatusCode::OK);

    // A namespace's pods: those the node reports, in the shape kubectl decodes.
    let (status, list) = cluster
        .get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["kind"], "PodMetricsList");
    assert_eq!(list["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(names(&list), ["db", "web"]);
    let item = &list["items"][1];
    assert_eq!(item["kind"], "PodMetrics");
    assert_eq!(item["metadata"]["namespace"], "default");
    assert_eq!(item["metadata"]["labels"], json!({ "app": "web" }));
    assert!(item["metadata"]["creationTimestamp"].is_string(), "{item}");
    assert_eq!(item["timestamp"], "2025-01-02T03:04:05Z");
    assert_eq!(item["window"], "10.012s");
    assert_eq!(
        item["containers"],
        json!([{ "name": "main", "usage": { "cpu": "250m", "memory": "1088Ki" } }])
    );
    assert_eq!(
        list["items"][0]["containers"][0]["usage"],
        json!({ "cpu": "12001234n", "memory": "2Mi" })
    );

    // `kubectl top pod -l`: the selector picks the pods.
    let (_, selected) = cluster
        .get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb")
        .await;
    assert_eq!(names(&selected), ["web"]);
    let (_, selected) = cluster
        .get(
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?fieldSelector=metadata.name%3Ddb",
        )
        .await;
    assert_eq!(names(&selected), ["db"]);

    // One pod; 404s as metrics-server words them, for a pod without metrics or none at all.
    let (status, one) = cluster
        .get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/db")
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["metadata"]["name"], "db");
    for missing in ["pending", "nosuch"] {
        let (status, error) = cluster
            .get(&format!(
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/{missing}"
            ))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
        assert_eq!(error["kind"], "Status");
        assert_eq!(error["reason"], "NotFound");
        assert_eq!(
            error["message"],
            format!("podmetrics.metrics.k8s.io \"default/{missing}\" not found")
        );
    }

    // All namespaces and all nodes, asked together: the silent node is left out once its
    // time is up, and takes nothing else with it.
    let started = Instant::now();
    let ((status, all_pods), (nodes_status, nodes)) = tokio::join!(
        cluster.get("/apis/metrics.k8s.io/v1beta1/pods"),
        cluster.get("/apis/metrics.k8s.io/v1beta1/nodes"),
    );
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{all_pods}");
    assert_eq!(names(&all_pods), ["db", "web"]);
    assert_eq!(nodes_status, StatusCode::OK, "{nodes}");
    assert_eq!(nodes["kind"], "NodeMetricsList");
    assert_eq!(names(&nodes), ["node-a"]);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "the silent node should be given up on after a few seconds, took {took:?}"
    );
    let node_a = &nodes["items"][0];
    assert_eq!(node_a["metadata"]["labels"], json!({ "zone": "node-a" }));
    assert_eq!(node_a["window"], "10s");
    assert_eq!(
        node_a["usage"],
        json!({ "cpu": "262001234n", "memory": "3136Ki" })
    );
    let (status, _) = cluster
        .get("/apis/metrics.k8s.io/v1beta1/nodes/node-a")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, error) = cluster
        .get("/apis/metrics.k8s.io/v1beta1/nodes/nosuch")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        error["message"],
        "nodemetrics.metrics.k8s.io \"nosuch\" not found"
    );

    // Read-only, and only what RBAC allows: `view` in `default` reads that namespace's
    // pod metrics, not the nodes'; a user with no role reads none.
    let (status, _) = cluster
        .call(
            ADMIN,
            Method::POST,
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    cluster
        .create(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            json!({
                "metadata": { "name": "viewer" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
                "subjects": [{ "kind": "User", "name": "viewer" }],
            }),
        )
        .await;
    let pod_metrics = "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods";
    let (status, list) = cluster.call(VIEWER, Method::GET, pod_metrics, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(names(&list), ["db", "web"]);
    let (status, denied) = cluster
        .call(
            VIEWER,
            Method::GET,
            "/apis/metrics.k8s.io/v1beta1/nodes/node-a",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{denied}");
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .contains(r#"cannot get resource "nodes" in API group "metrics.k8s.io""#),
        "{denied}"
    );
    let (status, _) = cluster.call(NOBODY, Method::GET, pod_metrics, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    drop(silent);
}

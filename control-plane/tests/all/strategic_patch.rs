//! Strategic merge patches through the API, as `kubectl patch`, `kubectl set image` and
//! client-side `kubectl apply` send them.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{TestServer, deployment};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SERVICES: &str = "/api/v1/namespaces/default/services";
const SMP: &str = "application/strategic-merge-patch+json";

#[tokio::test]
async fn containers_env_and_ports_merge_by_their_keys() {
    let t = TestServer::new().await;
    let mut web = deployment("web", 2);
    web["spec"]["template"]["spec"]["containers"] = json!([
        { "name": "main", "image": "v1.wasm", "env": [{ "name": "A", "value": "1" }],
          "ports": [{ "containerPort": 8080 }] },
        { "name": "side", "image": "side.wasm" },
    ]);
    t.create(DEPLOYMENTS, web).await;

    // What `kubectl set image deployment/web main=v2.wasm` sends.
    let (status, patched) = t
        .patch(
            &format!("{DEPLOYMENTS}/web"),
            SMP,
            json!({ "spec": { "template": { "spec": { "containers": [{ "name": "main", "image": "v2.wasm" }] } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let containers = &patched["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "v2.wasm");
    assert_eq!(containers[0]["env"], json!([{ "name": "A", "value": "1" }]));
    assert_eq!(containers[1]["name"], "side", "the other container stays");
    assert_eq!(patched["metadata"]["generation"], 2);

    let (status, patched) = t
        .patch(
            &format!("{DEPLOYMENTS}/web"),
            SMP,
            json!({ "spec": { "template": { "spec": { "containers": [{
                "name": "main",
                "env": [{ "name": "A", "value": "2" }, { "name": "B", "value": "3" }],
                "ports": [{ "containerPort": 9090 }],
            }] } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let main = &patched["spec"]["template"]["spec"]["containers"][0];
    let env: Vec<(&str, &str)> = main["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env.len(), 2);
    assert!(
        env.contains(&("A", "2")) && env.contains(&("B", "3")),
        "{env:?}"
    );
    assert_eq!(main["ports"].as_array().unwrap().len(), 2, "{main}");

    // A container removed by its key.
    let (status, patched) = t
        .patch(
            &format!("{DEPLOYMENTS}/web"),
            SMP,
            json!({ "spec": { "template": { "spec": { "containers": [{ "name": "side", "$patch": "delete" }] } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn service_ports_merge_by_port_and_the_cluster_ip_stays() {
    let t = TestServer::new().await;
    let created = t
        .create(
            SERVICES,
            json!({ "metadata": { "name": "web" }, "spec": { "selector": { "app": "web" },
                "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }, { "name": "https", "port": 443 }] } }),
        )
        .await;
    let (status, patched) = t
        .patch(
            &format!("{SERVICES}/web"),
            SMP,
            json!({ "spec": { "ports": [{ "port": 80, "targetPort": 9090 }] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["spec"]["ports"][0]["targetPort"], 9090);
    assert_eq!(patched["spec"]["ports"][0]["name"], "http");
    assert_eq!(patched["spec"]["ports"][1]["port"], 443);
    assert_eq!(patched["spec"]["clusterIP"], created["spec"]["clusterIP"]);
}

#[tokio::test]
async fn lists_without_merge_keys_are_replaced_and_bad_directives_refused() {
    let t = TestServer::new().await;
    let role = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles";
    t.create(
        role,
        json!({ "metadata": { "name": "reader" }, "rules": [
            { "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] },
            { "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] },
        ] }),
    )
    .await;
    let (status, patched) = t
        .patch(
            &format!("{role}/reader"),
            SMP,
            json!({ "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["list"] }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["rules"].as_array().unwrap().len(), 1, "{patched}");

    t.create(DEPLOYMENTS, deployment("web", 1)).await;
    let (status, error) = t
        .patch(
            &format!("{DEPLOYMENTS}/web"),
            SMP,
            json!({ "spec": { "template": { "spec": { "containers": [{ "image": "x", "$patch": "delete" }] } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .ends_with("does not contain declared merge key: name"),
        "{error}"
    );
}

#[tokio::test]
async fn scale_takes_a_strategic_merge_patch() {
    let t = TestServer::new().await;
    t.create(DEPLOYMENTS, deployment("web", 1)).await;
    let (status, scale) = t
        .patch(
            &format!("{DEPLOYMENTS}/web/scale"),
            SMP,
            json!({ "spec": { "replicas": 4 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{scale}");
    assert_eq!(scale["spec"]["replicas"], 4);
}

//! `nodes/NAME/certificate`: a node gets a certificate for itself only, signed by the
//! cluster CA for the addresses its Node lists.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_control_plane::apiserver::auth::{Authenticator, User};
use skiff_control_plane::apiserver::certificates::NodeSigner;
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::pki::ClusterCa;
use skiff_control_plane::store::sled::SledStore;
use tower::ServiceExt;

const ADMIN: &str = "admin-token";
const NODE_1: &str = "node-1-token";
const NODE_2: &str = "node-2-token";

async fn call(
    router: &axum::Router,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header(
            "content-type",
            if method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            },
        )
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn certificate_request() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec!["anything.example".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

#[tokio::test]
async fn a_node_gets_a_certificate_for_itself_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let mut auth = Authenticator::default();
    let user = |name: &str, group: &str| User {
        name: name.to_string(),
        groups: vec![group.to_string()],
    };
    auth.add_token(ADMIN, user("admin", "system:masters"));
    auth.add_token(NODE_1, user("system:node:node-1", "system:nodes"));
    auth.add_token(NODE_2, user("system:node:node-2", "system:nodes"));
    let ca = Arc::new(ClusterCa::generate().unwrap());
    let clients = ClusterCa::generate().unwrap();
    let config = ApiServerConfig {
        node_signer: Some(Arc::new(NodeSigner {
            ca: ca.clone(),
            api_server_client_ca_pem: clients.cert_pem().to_string(),
        })),
        ..ApiServerConfig::default()
    };
    let server = ApiServer::new(Arc::new(store), auth, config).await.unwrap();
    let router = server.router();

    let node = json!({
        "apiVersion": "v1", "kind": "Node", "metadata": { "name": "node-1" },
        "status": { "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }] },
    });
    let (status, created) = call(&router, ADMIN, "POST", "/api/v1/nodes", node).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // As in Kubernetes, a create ignores status: the addresses go in through status.
    let (status, _) = call(
        &router,
        ADMIN,
        "PATCH",
        "/api/v1/nodes/node-1/status",
        json!({ "status": { "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }] } }),
    )
    .await;
    assert!(status.is_success(), "{status}");

    let path = "/api/v1/nodes/node-1/certificate";
    let body = json!({ "request": certificate_request() });
    let (status, answer) = call(&router, NODE_1, "POST", path, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["kind"], "NodeCertificate");
    assert!(
        answer["certificate"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(answer["clusterCa"], ca.cert_pem());
    assert_eq!(answer["apiServerClientCa"], clients.cert_pem());

    // Another node may not get node-1's certificate.
    let (status, answer) = call(&router, NODE_2, "POST", path, body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("system:node:node-2"),
        "{answer}"
    );
    // A node that is not registered gets none; neither does a request that is not one.
    let (status, _) = call(
        &router,
        NODE_2,
        "POST",
        "/api/v1/nodes/node-2/certificate",
        body,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = call(
        &router,
        NODE_1,
        "POST",
        path,
        json!({ "request": "not PEM" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().starts_with("request: "),
        "{answer}"
    );
    let (status, answer) = call(&router, NODE_1, "POST", path, json!({ "csr": "x" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

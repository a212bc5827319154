//! The OpenAPI v3 documents kubectl reads for `explain`, `apply` and field validation.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::support::{TOKEN, TestServer};

#[tokio::test]
async fn the_root_lists_every_group_version_and_each_document_is_served() {
    let t = TestServer::new().await;
    let (status, root) = t.get("/openapi/v3").await;
    assert_eq!(status, StatusCode::OK, "{root}");
    let paths = root["paths"].as_object().unwrap();
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/coordination.k8s.io/v1",
        "apis/rbac.authorization.k8s.io/v1",
    ] {
        let url = paths[gv]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
        let (status, document) = t.get(url).await;
        assert_eq!(status, StatusCode::OK, "{gv}: {document}");
        assert_eq!(document["openapi"], "3.0.0");
        let kinds: Vec<&Value> = document["components"]["schemas"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|s| s.get("x-kubernetes-group-version-kind"))
            .collect();
        assert!(!kinds.is_empty(), "{gv} has kinds");
    }

    let (_, core) = t.get("/openapi/v3/api/v1").await;
    let pod = &core["components"]["schemas"]["Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod",
        "{pod}"
    );
    let (status, _) = t.get("/openapi/v3/apis/nothing/v1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_document_is_not_sent_again_to_a_client_that_has_it() {
    let t = TestServer::new().await;
    let request = |etag: Option<&str>| {
        let mut builder = Request::builder()
            .uri("/openapi/v3/apis/apps/v1")
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(etag) = etag {
            builder = builder.header("if-none-match", etag);
        }
        builder.body(Body::empty()).unwrap()
    };
    let response = t.router.clone().oneshot(request(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
    let response = t
        .router
        .clone()
        .oneshot(request(Some(&etag)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

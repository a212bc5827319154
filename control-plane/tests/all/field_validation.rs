//! `fieldValidation`: fields a kind does not have are dropped silently (`Ignore`), dropped
//! with a `Warning` header each (`Warn`, the default), or refused (`Strict`).

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{TOKEN, TestServer, deployment};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// Sends a JSON request and returns the status, the `Warning` headers and the body.
async fn send(
    t: &TestServer,
    method: Method,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (StatusCode, Vec<String>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), t.router.clone().oneshot(request))
        .await
        .expect("no answer in 30 s: likely deadlocked")
        .unwrap();
    let status = response.status();
    let warnings = warnings(response.headers());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, warnings, serde_json::from_slice(&bytes).unwrap())
}

fn warnings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// A Deployment with two fields no Deployment has.
fn with_unknown_fields() -> Value {
    let mut object = deployment("web", 1);
    object["spec"]["replicaz"] = json!(3);
    object["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    object
}

#[tokio::test]
async fn unknown_fields_are_warned_about_by_default_and_dropped() {
    let t = TestServer::new().await;
    let (status, warnings, created) = send(
        &t,
        Method::POST,
        DEPLOYMENTS,
        "application/json",
        &with_unknown_fields(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        warnings,
        [
            r#"299 - "unknown field \"spec.replicaz\"""#,
            r#"299 - "unknown field \"spec.template.spec.containers[0].imagePullPolicyy\"""#,
        ]
    );
    assert!(created["spec"].get("replicaz").is_none(), "{created}");

    // Warn, named, is the same; a manifest with only known fields gets no warning.
    let (status, warnings, _) = send(
        &t,
        Method::PUT,
        &format!("{DEPLOYMENTS}/web?fieldValidation=Warn"),
        "application/json",
        &with_unknown_fields(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let (status, warnings, _) = send(
        &t,
        Method::PUT,
        &format!("{DEPLOYMENTS}/web"),
        "application/json",
        &deployment("web", 2),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[tokio::test]
async fn strict_refuses_unknown_fields_in_creates_updates_and_patches() {
    let t = TestServer::new().await;
    let (status, _, error) = send(
        &t,
        Method::POST,
        &format!("{DEPLOYMENTS}?fieldValidation=Strict"),
        "application/json",
        &with_unknown_fields(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["reason"], "BadRequest");
    assert_eq!(
        error["message"],
        r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.replicaz", unknown field "spec.template.spec.containers[0].imagePullPolicyy""#
    );
    let (status, _) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");

    t.create(DEPLOYMENTS, deployment("web", 1)).await;
    let (status, _, error) = send(
        &t,
        Method::PUT,
        &format!("{DEPLOYMENTS}/web?fieldValidation=Strict"),
        "application/json",
        &with_unknown_fields(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    for content_type in [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ] {
        let (status, _, error) = send(
            &t,
            Method::PATCH,
            &format!("{DEPLOYMENTS}/web?fieldValidation=Strict"),
            content_type,
            &json!({ "spec": { "paused": true, "pasued": true } }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .ends_with(r#"strict decoding error: unknown field "spec.pasued""#),
            "{error}"
        );
    }
    let (_, stored) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert!(
        stored["spec"].get("paused").is_none(),
        "no patch was applied"
    );

    // A JSON patch is checked the same way, on the object it makes.
    let (status, _, _) = send(
        &t,
        Method::PATCH,
        &format!("{DEPLOYMENTS}/web?fieldValidation=Strict"),
        "application/json-patch+json",
        &json!([{ "op": "add", "path": "/spec/colour", "value": "red" }]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn ignore_is_silent_and_unknown_values_are_refused() {
    let t = TestServer::new().await;
    let (status, warnings, _) = send(
        &t,
        Method::POST,
        &format!("{DEPLOYMENTS}?fieldValidation=Ignore"),
        "application/json",
        &with_unknown_fields(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(warnings.is_empty(), "{warnings:?}");

    let (status, _, error) = send(
        &t,
        Method::PATCH,
        &format!("{DEPLOYMENTS}/web?fieldValidation=Loose"),
        "application/merge-patch+json",
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(
        error["message"],
        r#"PatchOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Loose": supported values: "Ignore", "Strict", "Warn""#
    );
}

//! `dryRun=All`: every write is tried in full — validated, defaulted, admitted, given its
//! name and addresses — and answered with what would be stored, and nothing is stored.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use skiff_control_plane::apiserver::ApiServerConfig;
use skiff_control_plane::apiserver::allocator::Ranges;

use crate::support::{TestServer, deployment, rv};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SERVICES: &str = "/api/v1/namespaces/default/services";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// The store's revision, from a list: it moves on every write.
async fn revision(t: &TestServer) -> String {
    let (status, list) = t.get(CONFIGMAPS).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_dry_run_create_answers_the_object_and_stores_nothing() {
    let t = TestServer::new().await;
    let before = revision(&t).await;
    let (status, answer) = t
        .post(&format!("{DEPLOYMENTS}?dryRun=All"), deployment("web", 2))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    // Defaulted and given server metadata as a real create would be.
    assert_eq!(answer["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(answer["metadata"]["generation"], 1);
    assert!(answer["metadata"]["uid"].is_string());
    assert!(answer["metadata"]["creationTimestamp"].is_string());
    assert!(
        answer["metadata"].get("resourceVersion").is_none(),
        "{answer}"
    );

    let (status, _) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(revision(&t).await, before, "nothing was written");

    // A generated name is made up, and not taken.
    let (status, answer) = t
        .post(
            &format!("{CONFIGMAPS}?dryRun=All"),
            json!({ "metadata": { "generateName": "settings-" }, "data": { "a": "b" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let name = answer["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("settings-") && name.len() == 14, "{name}");
    let (_, list) = t.get(CONFIGMAPS).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn a_dry_run_create_fails_as_the_real_one_would() {
    let t = TestServer::new().await;
    t.create(DEPLOYMENTS, deployment("web", 1)).await;
    // The name is taken.
    let (status, error) = t
        .post(&format!("{DEPLOYMENTS}?dryRun=All"), deployment("web", 1))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["reason"], "AlreadyExists");
    // Validation.
    let (status, error) = t
        .post(
            &format!("{DEPLOYMENTS}?dryRun=All"),
            deployment("other", -1),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["details"]["causes"][0]["field"], "spec.replicas");
    // The namespace must exist.
    let (status, error) = t
        .post(
            "/api/v1/namespaces/nowhere/configmaps?dryRun=All",
            json!({ "metadata": { "name": "c" } }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
}

#[tokio::test]
async fn a_dry_run_service_gets_a_free_cluster_ip_and_keeps_none() {
    let t = TestServer::with_config(ApiServerConfig {
        ranges: Ranges {
            // 10.100.0.2 to 10.100.0.6: five addresses.
            service_cidr: "10.100.0.0/29".parse().unwrap(),
            ..Ranges::default()
        },
        ..ApiServerConfig::default()
    })
    .await;
    let service = |name: &str| json!({ "metadata": { "name": name }, "spec": { "type": "NodePort", "ports": [{ "port": 80 }] } });
    for i in 0..20 {
        let (status, answer) = t
            .post(
                &format!("{SERVICES}?dryRun=All"),
                service(&format!("dry-{i}")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        let ip = answer["spec"]["clusterIP"].as_str().unwrap();
        assert!(ip.starts_with("10.100.0."), "{ip}");
        assert!(answer["spec"]["ports"][0]["nodePort"].is_u64(), "{answer}");
    }
    // Twenty dry runs later all five addresses are still free.
    let mut taken = Vec::new();
    for i in 0..5 {
        let created = t.create(SERVICES, service(&format!("real-{i}"))).await;
        taken.push(created["spec"]["clusterIP"].as_str().unwrap().to_string());
    }
    // A taken address is refused in a dry run as in a real create.
    let mut wanted = service("wants-taken");
    wanted["spec"]["clusterIP"] = json!(taken[0]);
    let (status, error) = t.post(&format!("{SERVICES}?dryRun=All"), wanted).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("already allocated"),
        "{error}"
    );
}

#[tokio::test]
async fn dry_run_updates_and_patches_answer_the_change_and_keep_the_object() {
    let t = TestServer::new().await;
    let created = t.create(DEPLOYMENTS, deployment("web", 1)).await;
    let before = revision(&t).await;

    let mut changed = created.clone();
    changed["spec"]["replicas"] = json!(5);
    let (status, answer) = t
        .put(&format!("{DEPLOYMENTS}/web?dryRun=All"), changed)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["spec"]["replicas"], 5);
    assert_eq!(answer["metadata"]["generation"], 2);
    assert_eq!(rv(&answer), rv(&created), "still the stored revision");

    let (status, answer) = t
        .patch(
            &format!("{DEPLOYMENTS}/web?dryRun=All"),
            "application/strategic-merge-patch+json",
            json!({ "spec": { "template": { "spec": { "containers": [{ "name": "main", "image": "v2.wasm" }] } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["spec"]["template"]["spec"]["containers"][0]["image"],
        "v2.wasm"
    );
    let (status, answer) = t
        .send(
            Method::PUT,
            &format!("{DEPLOYMENTS}/web/scale?dryRun=All"),
            "application/json",
            serde_json::to_vec(&json!({ "spec": { "replicas": 9 } })).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["spec"]["replicas"], 9);

    let (_, stored) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(stored, created);
    assert_eq!(revision(&t).await, before, "nothing was written");

    // Validation still applies.
    let mut invalid = created.clone();
    invalid["spec"]["replicas"] = json!(-2);
    let (status, _) = t
        .put(&format!("{DEPLOYMENTS}/web?dryRun=All"), invalid)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn dry_run_deletes_answer_and_delete_nothing() {
    let t = TestServer::new().await;
    for name in ["a", "b"] {
        t.create(CONFIGMAPS, json!({ "metadata": { "name": name } }))
            .await;
    }
    let before = revision(&t).await;
    let (status, answer) = t
        .call(Method::DELETE, &format!("{CONFIGMAPS}/a?dryRun=All"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["metadata"]["name"], "a");
    // `dryRun` in the DeleteOptions body, as client libraries send it.
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("{CONFIGMAPS}/b"),
            Some(json!({ "kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = t
        .call(Method::DELETE, &format!("{CONFIGMAPS}?dryRun=All"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = t.get(CONFIGMAPS).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(revision(&t).await, before, "nothing was written");

    // A protected namespace stays protected in a dry run.
    let (status, _) = t
        .call(
            Method::DELETE,
            "/api/v1/namespaces/default?dryRun=All",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_dry_run_values_are_refused_naming_the_parameter() {
    let t = TestServer::new().await;
    let cases: [(Method, String, Option<Value>, &str); 4] = [
        (
            Method::POST,
            format!("{CONFIGMAPS}?dryRun=Yes"),
            Some(json!({ "metadata": { "name": "c" } })),
            "CreateOptions",
        ),
        (
            Method::PUT,
            format!("{CONFIGMAPS}/c?dryRun=Yes"),
            Some(json!({ "metadata": { "name": "c" } })),
            "UpdateOptions",
        ),
        (
            Method::DELETE,
            format!("{CONFIGMAPS}/c?dryRun=Yes"),
            None,
            "DeleteOptions",
        ),
        (
            Method::DELETE,
            format!("{CONFIGMAPS}/c"),
            Some(json!({ "dryRun": ["Yes"] })),
            "DeleteOptions",
        ),
    ];
    for (method, path, body, options) in cases {
        let (status, error) = t.call(method.clone(), &path, body).await;
        // Kubernetes answers 422 Invalid on its options object, naming the parameter.
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path}: {error}"
        );
        assert_eq!(
            error["message"],
            format!(
                "{options}.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{{\"Yes\"}}: supported values: \"All\""
            )
        );
        assert_eq!(error["details"]["causes"][0]["field"], "dryRun");
    }
    let (status, error) = t
        .patch(
            &format!("{CONFIGMAPS}/c?dryRun=Yes"),
            "application/merge-patch+json",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("PatchOptions")
    );
}

#[tokio::test]
async fn a_dry_run_binding_binds_nothing() {
    let t = TestServer::new().await;
    let pods = "/api/v1/namespaces/default/pods";
    t.create(pods, crate::support::pod("p")).await;
    let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "p" }, "target": { "name": "node-1" } });
    let (status, answer) = t
        .post(&format!("{pods}/p/binding?dryRun=All"), binding.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (_, pod) = t.get(&format!("{pods}/p")).await;
    assert!(pod["spec"].get("nodeName").is_none(), "{pod}");
    let (status, _) = t.post(&format!("{pods}/p/binding"), binding).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, pod) = t.get(&format!("{pods}/p")).await;
    assert_eq!(pod["spec"]["nodeName"], "node-1");
}

//! Server-side apply (`kubectl apply --server-side`) and the `metadata.managedFields` every
//! write keeps, through the API.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{TOKEN, TestServer, rv};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";
const APPLY: &str = "application/apply-patch+yaml";

/// A Deployment as `kubectl apply --server-side` sends it (YAML): `replicas`, and a pod
/// template with one container per image when there are images.
fn web(replicas: Option<u32>, images: &[(&str, &str)]) -> String {
    let mut yaml =
        String::from("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n");
    if let Some(replicas) = replicas {
        yaml.push_str(&format!("  replicas: {replicas}\n"));
    }
    if !images.is_empty() {
        yaml.push_str(
            "  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n",
        );
    }
    for (name, image) in images {
        yaml.push_str(&format!("      - name: {name}\n        image: {image}\n"));
    }
    yaml
}

/// `PATCH` with `application/apply-patch+yaml` and the given query.
async fn apply(t: &TestServer, query: &str, yaml: &str) -> (StatusCode, Value) {
    t.send(
        Method::PATCH,
        &format!("{DEPLOYMENTS}/web?{query}"),
        APPLY,
        yaml.as_bytes().to_vec(),
    )
    .await
}

/// A request with a User-Agent, as kubectl and client libraries send one.
async fn send_as(
    t: &TestServer,
    user_agent: &str,
    method: Method,
    path: &str,
    content_type: &str,
    body: Value,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .header("user-agent", user_agent)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), t.router.clone().oneshot(request))
        .await
        .expect("no answer in 30 s: likely deadlocked")
        .expect("infallible");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Each entry of `managedFields`: (manager, operation, subresource, fieldsV1).
fn managers(object: &Value) -> Vec<(String, String, String, Value)> {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap_or_else(|| panic!("no managedFields: {object:#}"))
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_string(),
                e["operation"].as_str().unwrap().to_string(),
                e["subresource"].as_str().unwrap_or("").to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

/// The fields `manager` owns, failing if it owns none.
fn owned_by(object: &Value, manager: &str) -> Value {
    managers(object)
        .into_iter()
        .find(|(m, _, _, _)| m == manager)
        .map(|(_, _, _, fields)| fields)
        .unwrap_or_else(|| panic!("{manager} owns nothing: {:#}", object["metadata"]))
}

#[tokio::test]
async fn an_apply_creates_the_object_and_records_the_applier() {
    let t = TestServer::new().await;
    let (status, created) = apply(
        &t,
        "fieldManager=alice",
        &web(Some(2), &[("main", "a.wasm")]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["replicas"], 2);
    // Defaulted as any create; the defaults are nobody's.
    assert_eq!(created["spec"]["strategy"]["type"], "RollingUpdate");
    let entries = created["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["manager"], "alice");
    assert_eq!(entries[0]["operation"], "Apply");
    assert_eq!(entries[0]["apiVersion"], "apps/v1");
    assert_eq!(entries[0]["fieldsType"], "FieldsV1");
    let fields = &entries[0]["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        fields["f:spec"]["f:selector"],
        json!({}),
        "a selector is owned whole"
    );
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"main\"}"],
        json!({ ".": {}, "f:image": {}, "f:name": {} })
    );
    assert!(fields["f:spec"].get("f:strategy").is_none(), "{fields:#}");

    // The server returns the managed fields on a read as well.
    let (_, stored) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(
        stored["metadata"]["managedFields"],
        created["metadata"]["managedFields"]
    );

    // Applying the same configuration again changes nothing: no new revision.
    let (status, again) = apply(
        &t,
        "fieldManager=alice",
        &web(Some(2), &[("main", "a.wasm")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(rv(&again), rv(&created));
}

#[tokio::test]
async fn reapplying_without_a_field_removes_it() {
    let t = TestServer::new().await;
    let both = web(Some(3), &[("main", "a.wasm"), ("side", "s.wasm")]);
    let (status, _) = apply(&t, "fieldManager=alice", &both).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, after) = apply(&t, "fieldManager=alice", &web(None, &[("main", "a.wasm")])).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    let containers = after["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "{containers:#?}");
    assert_eq!(containers[0]["name"], "main");
    // Given up by its only owner: back to the default.
    assert_eq!(after["spec"]["replicas"], 1);
    let fields = owned_by(&after, "alice");
    assert!(fields["f:spec"].get("f:replicas").is_none(), "{fields:#}");
}

#[tokio::test]
async fn two_appliers_of_one_field_conflict_and_force_takes_it_over() {
    let t = TestServer::new().await;
    let (status, _) = apply(
        &t,
        "fieldManager=alice",
        &web(Some(2), &[("main", "a.wasm")]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, error) = apply(&t, "fieldManager=bob", &web(Some(5), &[("main", "a.wasm")])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["kind"], "Status");
    assert_eq!(error["reason"], "Conflict");
    assert_eq!(
        error["message"],
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
    );
    assert_eq!(
        error["details"]["causes"],
        json!([{ "reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".spec.replicas" }])
    );
    let (_, stored) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(stored["spec"]["replicas"], 2, "a conflict changes nothing");

    // The same value is no conflict: both own it.
    let (status, shared) = apply(&t, "fieldManager=bob", &web(Some(2), &[])).await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    assert_eq!(
        owned_by(&shared, "alice")["f:spec"]["f:replicas"],
        json!({})
    );
    assert_eq!(owned_by(&shared, "bob")["f:spec"]["f:replicas"], json!({}));

    let (status, forced) = apply(&t, "fieldManager=bob&force=true", &web(Some(5), &[])).await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    assert_eq!(forced["spec"]["replicas"], 5);
    assert!(
        owned_by(&forced, "alice")["f:spec"]
            .get("f:replicas")
            .is_none()
    );
    assert_eq!(owned_by(&forced, "bob")["f:spec"]["f:replicas"], json!({}));

    // Alice now conflicts with bob.
    let (status, error) = apply(
        &t,
        "fieldManager=alice",
        &web(Some(2), &[("main", "a.wasm")]),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(
        error["details"]["causes"][0]["message"],
        "conflict with \"bob\""
    );
}

#[tokio::test]
async fn an_update_by_another_manager_makes_the_next_apply_conflict() {
    let t = TestServer::new().await;
    let (status, _) = apply(
        &t,
        "fieldManager=alice",
        &web(Some(2), &[("main", "a.wasm")]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // What `kubectl scale` sends, named by its User-Agent.
    let (status, scaled) = send_as(
        &t,
        "kubectl/v1.30.0 (linux/amd64) kubernetes/7c48c2b",
        Method::PATCH,
        &format!("{DEPLOYMENTS}/web"),
        "application/merge-patch+json",
        json!({ "spec": { "replicas": 4 } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{scaled}");
    let kubectl = managers(&scaled)
        .into_iter()
        .find(|(m, _, _, _)| m == "kubectl")
        .expect("recorded under the program name of the User-Agent");
    assert_eq!(kubectl.1, "Update");
    assert_eq!(kubectl.3, json!({ "f:spec": { "f:replicas": {} } }));
    assert!(
        owned_by(&scaled, "alice")["f:spec"]
            .get("f:replicas")
            .is_none()
    );

    let (status, error) = apply(
        &t,
        "fieldManager=alice",
        &web(Some(2), &[("main", "a.wasm")]),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let cause = &error["details"]["causes"][0];
    assert_eq!(cause["field"], ".spec.replicas");
    assert!(
        cause["message"]
            .as_str()
            .unwrap()
            .starts_with("conflict with \"kubectl\" using apps/v1 at "),
        "{cause}"
    );
}

#[tokio::test]
async fn a_dry_run_apply_changes_nothing() {
    let t = TestServer::new().await;
    let (status, answer) = apply(
        &t,
        "fieldManager=alice&dryRun=All",
        &web(Some(2), &[("main", "a.wasm")]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["metadata"]["managedFields"][0]["manager"], "alice");
    let (status, _) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, created) = apply(
        &t,
        "fieldManager=alice",
        &web(Some(2), &[("main", "a.wasm")]),
    )
    .await;
    let (status, answer) = apply(
        &t,
        "fieldManager=bob&force=true&dryRun=All",
        &web(Some(7), &[]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["spec"]["replicas"], 7);
    let (_, stored) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(stored, created, "nothing stored");
}

#[tokio::test]
async fn an_apply_without_a_manager_or_a_type_is_refused() {
    let t = TestServer::new().await;
    let (status, error) = apply(&t, "", &web(Some(2), &[])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(
        error["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    assert_eq!(error["details"]["causes"][0]["field"], "fieldManager");

    let untyped = "metadata:\n  name: web\nspec:\n  replicas: 2\n";
    let (status, error) = apply(&t, "fieldManager=alice", untyped).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect version"),
        "{error}"
    );
    let kindless = "apiVersion: apps/v1\nmetadata:\n  name: web\n";
    let (status, error) = apply(&t, "fieldManager=alice", kindless).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("kind"),
        "{error}"
    );

    let owned =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  managedFields: []\n";
    let (status, error) = apply(&t, "fieldManager=alice", owned).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["message"], "metadata.managedFields must be nil");

    // `force` is for applies only.
    let (status, error) = t
        .patch(
            &format!("{DEPLOYMENTS}/web?force=true"),
            "application/merge-patch+json",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");

    let (status, _) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");
}

#[tokio::test]
async fn every_write_records_its_manager_and_subresource() {
    let t = TestServer::new().await;
    let (status, created) = send_as(
        &t,
        "kubectl-create/v1.30.0",
        Method::POST,
        &format!("{CONFIGMAPS}?fieldManager=creator"),
        "application/json",
        json!({ "metadata": { "name": "settings", "labels": { "app": "web" } }, "data": { "a": "1" } }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        managers(&created),
        [(
            "creator".to_string(),
            "Update".to_string(),
            String::new(),
            json!({ "f:data": { ".": {}, "f:a": {} }, "f:metadata": { "f:labels": { ".": {}, "f:app": {} } } })
        )],
        "the parameter wins over the User-Agent"
    );

    // An update by another manager takes what it changed.
    let mut changed = created.clone();
    changed["data"]["a"] = json!("2");
    changed["data"]["b"] = json!("3");
    let (status, updated) = send_as(
        &t,
        "editor/1.0",
        Method::PUT,
        &format!("{CONFIGMAPS}/settings"),
        "application/json",
        changed,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        owned_by(&updated, "editor"),
        json!({ "f:data": { "f:a": {}, "f:b": {} } })
    );
    assert_eq!(
        owned_by(&updated, "creator"),
        json!({ "f:data": {}, "f:metadata": { "f:labels": { ".": {}, "f:app": {} } } })
    );

    // A client may clear the record with `[{}]`, as in Kubernetes.
    let (status, cleared) = t
        .patch(
            &format!("{CONFIGMAPS}/settings"),
            "application/merge-patch+json",
            json!({ "metadata": { "managedFields": [{}] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert!(
        cleared["metadata"].get("managedFields").is_none(),
        "{cleared:#}"
    );

    // Status through its subresource, recorded as such and for the status alone.
    let pod = t
        .create(PODS, json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "main", "image": "a.wasm" }] } }))
        .await;
    let mut running = pod.clone();
    running["status"] = json!({ "phase": "Running" });
    let (status, updated) = send_as(
        &t,
        "skiff-node/0.1",
        Method::PUT,
        &format!("{PODS}/p/status"),
        "application/json",
        running,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let node = managers(&updated)
        .into_iter()
        .find(|(m, _, _, _)| m == "skiff-node")
        .unwrap();
    assert_eq!(node.2, "status");
    assert_eq!(node.3, json!({ "f:status": { "f:phase": {} } }));
    // The creator does not own the status the server gave the new pod.
    let creator = managers(&updated)
        .into_iter()
        .find(|(_, _, s, _)| s.is_empty())
        .unwrap();
    assert!(creator.3.get("f:status").is_none(), "{:#}", creator.3);

    // The scale subresource, recorded against the Deployment's own field.
    let (status, _) = apply(
        &t,
        "fieldManager=alice",
        &web(Some(2), &[("main", "a.wasm")]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = t
        .send(
            Method::PATCH,
            &format!("{DEPLOYMENTS}/web/scale?fieldManager=autoscaler"),
            "application/merge-patch+json",
            serde_json::to_vec(&json!({ "spec": { "replicas": 6 } })).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, scaled) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    let autoscaler = managers(&scaled)
        .into_iter()
        .find(|(m, _, _, _)| m == "autoscaler")
        .unwrap();
    assert_eq!(autoscaler.2, "scale");
    assert_eq!(autoscaler.3, json!({ "f:spec": { "f:replicas": {} } }));
}

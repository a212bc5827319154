//! Every verb and its errors, as a Kubernetes client sees them.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, deployment, pod, rv};

const PODS: &str = "/api/v1/namespaces/default/pods";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn discovery_and_public_endpoints() {
    let t = TestServer::new().await;
    let (status, api) = t.get("/api").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api["versions"], json!(["v1"]));

    let (_, groups) = t.get("/apis").await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for group in ["apps", "coordination.k8s.io", "batch"] {
        assert!(names.contains(&group), "{group} missing from {names:?}");
    }

    let (_, core) = t.get("/api/v1").await;
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .expect("pods listed");
    assert_eq!(pods["kind"], "Pod");
    assert_eq!(pods["namespaced"], true);
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(
        pods["categories"],
        json!(["all"]),
        "kubectl get all lists pods"
    );
    let subresources: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        subresources.contains(&"pods/status") && subresources.contains(&"pods/binding"),
        "{subresources:?}"
    );

    let (_, apps) = t.get("/apis/apps/v1").await;
    assert!(
        apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "deployments/scale")
    );
    assert_eq!(t.get("/apis/nope/v1").await.0, StatusCode::NOT_FOUND);

    // Health and version answer without credentials; the API does not.
    use tower::ServiceExt;
    for (path, expected) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/version", 200),
        ("/api/v1/pods", 401),
        ("/metrics", 401),
    ] {
        let request = axum::http::Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = t.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{path}");
    }
    let request = axum::http::Request::builder()
        .uri("/api/v1/pods")
        .header("authorization", "Bearer wrong")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = t.router.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong token is refused"
    );
}

#[tokio::test]
async fn initial_namespaces_exist_and_are_protected() {
    let t = TestServer::new().await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let (status, object) = t.get(&format!("/api/v1/namespaces/{ns}")).await;
        assert_eq!(status, StatusCode::OK, "{ns}");
        assert_eq!(object["status"]["phase"], "Active");
    }
    let (status, error) = t.delete("/api/v1/namespaces/default").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert_eq!(error["kind"], "Status");
}

#[tokio::test]
async fn create_sets_server_fields_and_defaults() {
    let t = TestServer::new().await;
    let created = t.create(PODS, pod("web")).await;
    let meta = &created["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert!(meta["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(
        meta["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(meta["generation"], 1);
    assert!(rv(&created) > 0);
    assert_eq!(
        created["status"]["phase"], "Pending",
        "a new pod is Pending whatever status it was sent with"
    );
    assert_eq!(created["spec"]["restartPolicy"], "Always");
    assert_eq!(created["spec"]["terminationGracePeriodSeconds"], 30);

    let (status, fetched) = t.get(&format!("{PODS}/web")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);

    let (status, error) = t.post(PODS, pod("web")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["reason"], "AlreadyExists");
    assert_eq!(error["message"], "pods \"web\" already exists");
    assert_eq!(error["details"]["name"], "web");
}

#[tokio::test]
async fn generate_name_makes_unique_names() {
    let t = TestServer::new().await;
    let mut names = std::collections::HashSet::new();
    for _ in 0..20 {
        let mut body = pod("");
        body["metadata"] = json!({ "generateName": "web-" });
        let created = t.create(PODS, body).await;
        let name = created["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert!(names.insert(name));
    }
}

#[tokio::test]
async fn namespace_must_exist_and_match() {
    let t = TestServer::new().await;
    let (status, error) = t.post("/api/v1/namespaces/nowhere/pods", pod("a")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["message"], "namespaces \"nowhere\" not found");

    let mut other = pod("a");
    other["metadata"]["namespace"] = json!("kube-system");
    let (status, _) = t.post(PODS, other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    t.create(
        "/api/v1/namespaces",
        json!({ "metadata": { "name": "team-a" } }),
    )
    .await;
    t.create("/api/v1/namespaces/team-a/pods", pod("a")).await;
    let (_, all) = t.get("/api/v1/pods").await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        1,
        "cluster-wide list sees every namespace"
    );
}

#[tokio::test]
async fn validation_names_every_bad_field() {
    let t = TestServer::new().await;
    let body = json!({
        "metadata": { "name": "Bad_Name" },
        "spec": { "containers": [
            { "name": "Main", "image": "a.wasm", "ports": [{ "containerPort": 70000 }] },
            { "name": "side", "image": "" },
        ] },
    });
    let (status, error) = t.post(PODS, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["reason"], "Invalid");
    assert_eq!(error["details"]["kind"], "Pod");
    let fields: Vec<&str> = error["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    for field in [
        "metadata.name",
        "spec.containers[0].name",
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[1].image",
    ] {
        assert!(fields.contains(&field), "{field} not in {fields:?}");
    }
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Pod \"Bad_Name\" is invalid: ["),
        "{message}"
    );
    assert!(
        message.contains("spec.containers[0].name: Invalid value: \"Main\""),
        "{message}"
    );

    let (status, error) = t
        .post(DEPLOYMENTS, {
            let mut d = deployment("web", 1);
            d["spec"]["selector"]["matchLabels"]["app"] = json!("other");
            d
        })
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "spec.template.metadata.labels"),
        "{error}"
    );
}

#[tokio::test]
async fn undecodable_bodies_are_400_naming_the_field() {
    let t = TestServer::new().await;
    let mut body = pod("a");
    body["spec"]["containers"][0]["ports"] = json!([{ "containerPort": "eighty" }]);
    let (status, error) = t.post(PODS, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("spec.containers[0].ports[0].containerPort"),
        "{error}"
    );

    let mut wrong_kind = pod("a");
    wrong_kind["kind"] = json!("Service");
    let (status, error) = t.post(PODS, wrong_kind).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("does not match the expected kind"),
        "{error}"
    );

    let mut wrong_version = pod("a");
    wrong_version["apiVersion"] = json!("v2");
    assert_eq!(t.post(PODS, wrong_version).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn yaml_bodies_are_accepted() {
    let t = TestServer::new().await;
    let yaml =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";
    let (status, created) = t
        .send(Method::POST, CONFIGMAPS, "application/yaml", yaml.into())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["data"]["mode"], "fast");
}

#[tokio::test]
async fn list_filters_by_label_and_field_and_pages() {
    let t = TestServer::new().await;
    for i in 0..7 {
        let mut p = pod(&format!("p{i}"));
        p["metadata"]["labels"] =
            json!({ "app": if i % 2 == 0 { "web" } else { "db" }, "tier": format!("t{i}") });
        if i < 3 {
            p["spec"]["nodeName"] = json!("node-a");
        }
        t.create(PODS, p).await;
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, list) = t.get(&format!("{PODS}?labelSelector=app%3Dweb")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(names(&list), ["p0", "p2", "p4", "p6"]);
    let (_, list) = t
        .get(&format!("{PODS}?labelSelector=app%20in%20(db),tier!%3Dt1"))
        .await;
    assert_eq!(names(&list), ["p3", "p5"]);
    let (_, list) = t
        .get(&format!("{PODS}?fieldSelector=spec.nodeName%3Dnode-a"))
        .await;
    assert_eq!(names(&list), ["p0", "p1", "p2"]);
    let (_, list) = t
        .get(&format!("{PODS}?fieldSelector=metadata.name%3Dp4"))
        .await;
    assert_eq!(names(&list), ["p4"]);
    let (status, error) = t.get(&format!("{PODS}?fieldSelector=spec.bogus%3Dx")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("field label not supported: spec.bogus"),
        "{error}"
    );

    let mut seen = Vec::new();
    let mut path = format!("{PODS}?limit=3");
    loop {
        let (status, page) = t.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page_names = names(&page);
        assert!(page_names.len() <= 3);
        seen.extend(page_names);
        match page["metadata"]["continue"].as_str() {
            Some(token) => path = format!("{PODS}?limit=3&continue={token}"),
            None => break,
        }
    }
    assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);

    let (_, filtered_page) = t
        .get(&format!("{PODS}?limit=2&labelSelector=app%3Ddb"))
        .await;
    assert_eq!(
        names(&filtered_page),
        ["p1", "p3"],
        "limit counts matching items"
    );
    assert!(filtered_page["metadata"]["continue"].is_string());
}

#[tokio::test]
async fn update_checks_resource_version_and_bumps_generation_on_spec_only() {
    let t = TestServer::new().await;
    let created = t.create(DEPLOYMENTS, deployment("web", 2)).await;
    let path = format!("{DEPLOYMENTS}/web");

    let mut stale = created.clone();
    stale["spec"]["replicas"] = json!(3);
    let (status, updated) = t.put(&path, stale.clone()).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        updated["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );
    assert!(rv(&updated) > rv(&created));

    // The same resourceVersion again is now stale.
    let (status, error) = t.put(&path, stale).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["reason"], "Conflict");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified"),
        "{error}"
    );

    let mut labelled = updated.clone();
    labelled["metadata"]["labels"] = json!({ "team": "a" });
    labelled["status"] = json!({ "replicas": 99 });
    let (_, labelled) = t.put(&path, labelled).await;
    assert_eq!(
        labelled["metadata"]["generation"], 2,
        "a metadata change does not bump generation"
    );
    assert!(
        labelled
            .get("status")
            .is_none_or(|s| s.get("replicas").is_none()),
        "status is ignored on the main resource: {labelled}"
    );

    let mut with_status = labelled.clone();
    with_status["status"] = json!({ "replicas": 2, "observedGeneration": 2 });
    with_status["spec"]["replicas"] = json!(10);
    let (status, after_status) = t.put(&format!("{path}/status"), with_status).await;
    assert_eq!(status, StatusCode::OK, "{after_status}");
    assert_eq!(after_status["status"]["replicas"], 2);
    assert_eq!(
        after_status["spec"]["replicas"], 3,
        "the status subresource ignores spec"
    );
    assert_eq!(after_status["metadata"]["generation"], 2);

    // Unchanged content is not written again.
    let (_, same) = t.put(&path, after_status.clone()).await;
    assert_eq!(rv(&same), rv(&after_status));

    let (status, _) = t
        .put(&format!("{DEPLOYMENTS}/missing"), deployment("missing", 1))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = t.put(&path, deployment("other", 1)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the body's name must match the URL's"
    );
}

#[tokio::test]
async fn patches_merge_and_json() {
    let t = TestServer::new().await;
    t.create(
        CONFIGMAPS,
        json!({ "metadata": { "name": "c" }, "data": { "a": "1", "b": "2" } }),
    )
    .await;
    let path = format!("{CONFIGMAPS}/c");
    let (status, merged) = t
        .patch(
            &path,
            "application/merge-patch+json",
            json!({ "data": { "b": null, "c": "3" }, "metadata": { "labels": { "x": "y" } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    assert_eq!(merged["data"], json!({ "a": "1", "c": "3" }));
    assert_eq!(merged["metadata"]["labels"]["x"], "y");

    let (status, patched) = t
        .patch(&path, "application/json-patch+json", json!([{ "op": "replace", "path": "/data/a", "value": "10" }, { "op": "add", "path": "/data/d", "value": "4" }]))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["data"], json!({ "a": "10", "c": "3", "d": "4" }));

    let (status, error) = t
        .patch(
            &path,
            "application/json-patch+json",
            json!([{ "op": "test", "path": "/data/a", "value": "nope" }]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");

    let (status, _) = t
        .patch(
            &path,
            "application/merge-patch+json",
            json!({ "metadata": { "resourceVersion": "1" } }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a patch naming a stale resourceVersion conflicts"
    );

    let (status, _) = t.patch(&path, "text/plain", json!({})).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, invalid) = t
        .patch(
            &path,
            "application/merge-patch+json",
            json!({ "metadata": { "name": "renamed" } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{invalid}");
}

#[tokio::test]
async fn delete_immediately_gracefully_and_with_finalizers() {
    let t = TestServer::new().await;
    t.create(CONFIGMAPS, json!({ "metadata": { "name": "c" } }))
        .await;
    let (status, gone) = t.delete(&format!("{CONFIGMAPS}/c")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gone["metadata"]["name"], "c");
    assert_eq!(
        t.get(&format!("{CONFIGMAPS}/c")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.delete(&format!("{CONFIGMAPS}/c")).await.0,
        StatusCode::NOT_FOUND
    );

    // A pod running on a node is marked and waits for its node to stop it.
    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("node-a");
    bound["spec"]["terminationGracePeriodSeconds"] = json!(20);
    t.create(PODS, bound).await;
    let (status, marked) = t.delete(&format!("{PODS}/bound")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 20);
    assert_eq!(t.get(&format!("{PODS}/bound")).await.0, StatusCode::OK);
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("{PODS}/bound?gracePeriodSeconds=0"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        t.get(&format!("{PODS}/bound")).await.0,
        StatusCode::NOT_FOUND,
        "grace 0 removes it"
    );

    // An unscheduled pod goes at once.
    t.create(PODS, pod("pending")).await;
    t.delete(&format!("{PODS}/pending")).await;
    assert_eq!(
        t.get(&format!("{PODS}/pending")).await.0,
        StatusCode::NOT_FOUND
    );

    // Finalizers hold an object until they are removed.
    t.create(
        CONFIGMAPS,
        json!({ "metadata": { "name": "held", "finalizers": ["example.com/cleanup"] } }),
    )
    .await;
    let (_, held) = t.delete(&format!("{CONFIGMAPS}/held")).await;
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let (status, _) = t
        .patch(
            &format!("{CONFIGMAPS}/held"),
            "application/merge-patch+json",
            json!({ "metadata": { "finalizers": ["example.com/new"] } }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no new finalizers on a deleting object"
    );
    let (status, _) = t
        .patch(
            &format!("{CONFIGMAPS}/held"),
            "application/merge-patch+json",
            json!({ "metadata": { "finalizers": null } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        t.get(&format!("{CONFIGMAPS}/held")).await.0,
        StatusCode::NOT_FOUND,
        "the last finalizer's removal deletes it"
    );

    // propagationPolicy is recorded for the garbage collector as Kubernetes does.
    t.create(DEPLOYMENTS, deployment("web", 1)).await;
    let (_, marked) = t
        .call(Method::DELETE, &format!("{DEPLOYMENTS}/web"), Some(json!({ "kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground" })))
        .await;
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("{DEPLOYMENTS}/web?propagationPolicy=Sideways"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Preconditions.
    let created = t
        .create(CONFIGMAPS, json!({ "metadata": { "name": "pre" } }))
        .await;
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("{CONFIGMAPS}/pre"),
            Some(json!({ "preconditions": { "uid": "not-the-uid" } })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("{CONFIGMAPS}/pre"),
            Some(json!({ "preconditions": { "uid": created["metadata"]["uid"] } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn delete_collection_by_label() {
    let t = TestServer::new().await;
    for (name, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        t.create(
            CONFIGMAPS,
            json!({ "metadata": { "name": name, "labels": { "app": app } } }),
        )
        .await;
    }
    let (status, _) = t
        .delete(&format!("{CONFIGMAPS}?labelSelector=app%3Dweb"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, left) = t.get(CONFIGMAPS).await;
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
    assert_eq!(left["items"][0]["metadata"]["name"], "c");
}

#[tokio::test]
async fn binding_assigns_a_node_once() {
    let t = TestServer::new().await;
    t.create(PODS, pod("p")).await;
    let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "p" }, "target": { "kind": "Node", "name": "node-a" } });
    let (status, result) = t.post(&format!("{PODS}/p/binding"), binding.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{result}");
    let (_, bound) = t.get(&format!("{PODS}/p")).await;
    assert_eq!(bound["spec"]["nodeName"], "node-a");
    let scheduled = bound["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap();
    assert_eq!(scheduled["status"], "True");
    let (status, error) = t.post(&format!("{PODS}/p/binding"), binding).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("already assigned")
    );

    // A binding decided for an earlier pod of the same name does not bind its namesake.
    let fresh = t.create(PODS, pod("q")).await;
    let stale = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": { "name": "q", "uid": "an-earlier-pod" },
        "target": { "kind": "Node", "name": "node-a" },
    });
    let (status, error) = t.post(&format!("{PODS}/q/binding"), stale).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let mut current = binding_of(&fresh);
    current["target"]["name"] = json!("node-b");
    let (status, result) = t.post(&format!("{PODS}/q/binding"), current).await;
    assert_eq!(status, StatusCode::CREATED, "{result}");
}

/// A binding of `pod` (by its uid).
fn binding_of(pod: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": { "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"] },
        "target": { "kind": "Node", "name": "node-a" },
    })
}

#[tokio::test]
async fn scale_subresource_reads_and_sets_replicas() {
    let t = TestServer::new().await;
    t.create(DEPLOYMENTS, deployment("web", 2)).await;
    let (status, scale) = t.get(&format!("{DEPLOYMENTS}/web/scale")).await;
    assert_eq!(status, StatusCode::OK, "{scale}");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");

    let (status, scaled) = t.put(&format!("{DEPLOYMENTS}/web/scale"), json!({ "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": { "name": "web" }, "spec": { "replicas": 5 } })).await;
    assert_eq!(status, StatusCode::OK, "{scaled}");
    assert_eq!(scaled["spec"]["replicas"], 5);
    let (_, deployment) = t.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(deployment["spec"]["replicas"], 5);
    assert_eq!(deployment["metadata"]["generation"], 2);

    let (status, _) = t
        .patch(
            &format!("{DEPLOYMENTS}/web/scale"),
            "application/merge-patch+json",
            json!({ "spec": { "replicas": 1 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        t.get(&format!("{DEPLOYMENTS}/web")).await.1["spec"]["replicas"],
        1
    );
    let (status, _) = t
        .patch(
            &format!("{DEPLOYMENTS}/web/scale"),
            "application/merge-patch+json",
            json!({ "spec": { "replicas": -1 } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        t.get(&format!("{PODS}/x/scale")).await.0,
        StatusCode::NOT_FOUND,
        "pods have no scale"
    );
}

#[tokio::test]
async fn concurrent_writers_lose_no_update() {
    let t = std::sync::Arc::new(TestServer::new().await);
    t.create(
        CONFIGMAPS,
        json!({ "metadata": { "name": "counter" }, "data": { "n": "0" } }),
    )
    .await;
    let path = format!("{CONFIGMAPS}/counter");
    let writers = 16;
    let each = 5;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let t = t.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..each {
                loop {
                    let (_, mut current) = t.get(&path).await;
                    let n: u64 = current["data"]["n"].as_str().unwrap().parse().unwrap();
                    current["data"]["n"] = json!((n + 1).to_string());
                    match t.put(&path, current).await.0 {
                        StatusCode::OK => break,
                        StatusCode::CONFLICT => conflicts += 1,
                        other => panic!("unexpected {other}"),
                    }
                }
            }
            // Unconditional patches from every writer: none may be lost either.
            let (status, _) = t
                .patch(
                    &path,
                    "application/merge-patch+json",
                    json!({ "metadata": { "labels": { format!("w{w}"): "x" } } }),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let (_, last) = t.get(&path).await;
    assert_eq!(
        last["data"]["n"],
        (writers * each).to_string(),
        "every increment is there ({conflicts} conflicts were retried)"
    );
    assert_eq!(
        last["metadata"]["labels"].as_object().unwrap().len(),
        writers
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let t = TestServer::new().await;
    let big = "x".repeat(4 * 1024 * 1024);
    let (status, error) = t
        .post(
            CONFIGMAPS,
            json!({ "metadata": { "name": "big" }, "data": { "k": big } }),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    assert_eq!(error["reason"], "RequestEntityTooLarge");
}

#[tokio::test]
async fn cluster_scoped_kinds_and_metrics() {
    let t = TestServer::new().await;
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "node-a", "namespace": "ignored" }, "status": { "capacity": { "cpu": "2" } } });
    let created = t.create("/api/v1/nodes", node).await;
    assert!(
        created["metadata"].get("namespace").is_none(),
        "cluster-scoped objects have no namespace"
    );
    assert_eq!(
        created["status"]["capacity"]["cpu"], "2",
        "a node may report its status at creation"
    );
    let (status, _) = t.get("/api/v1/namespaces/default/nodes/node-a").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, text) = t.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("apiserver_request_total{verb=\"POST\",code=\"201\"}"),
        "{text}"
    );
    assert!(text.contains("skiff_store_revision"));
}

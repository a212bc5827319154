//! What a read answers with, from its `Accept` header: the objects, the server-side Table
//! kubectl prints, or metadata only; and the refusals kubectl's typed clients get.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{EventReader, TOKEN, TestServer, deployment, pod};

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// What `kubectl get` sends.
const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
/// What client-go's typed clients (kubectl `describe`, `create deployment`) send.
const TYPED_CLIENT: &str = "application/vnd.kubernetes.protobuf,application/json";

/// GETs `path` with `accept`; returns the status, the answer and its Content-Type.
async fn get(t: &TestServer, path: &str, accept: &str) -> (StatusCode, Value, String) {
    let request = Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("accept", accept)
        .body(Body::empty())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), t.router.clone().oneshot(request))
        .await
        .expect("no answer in 30 s: likely deadlocked")
        .unwrap();
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap(),
        content_type,
    )
}

fn column_names(table: &Value) -> Vec<&str> {
    table["columnDefinitions"]
        .as_array()
        .expect("column definitions")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn kubectl_get_gets_a_table_with_the_columns_kubectl_shows() {
    let t = TestServer::new().await;
    t.create(DEPLOYMENTS, deployment("web", 3)).await;
    t.create(PODS, pod("a")).await;
    t.create(PODS, pod("b")).await;

    let (status, table, content_type) = get(&t, PODS, KUBECTL_GET).await;
    assert_eq!(status, StatusCode::OK, "{table}");
    assert_eq!(content_type, "application/json");
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert!(table["metadata"]["resourceVersion"].is_string(), "{table}");
    assert_eq!(
        column_names(&table),
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    let priorities: Vec<i64> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["priority"].as_i64().unwrap())
        .collect();
    assert_eq!(priorities, [0, 0, 0, 0, 0, 1, 1, 1, 1], "wide columns");
    assert_eq!(table["columnDefinitions"][0]["format"], "name");
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let cells = rows[0]["cells"].as_array().unwrap();
    assert_eq!(
        cells[..4],
        [json!("a"), json!("0/1"), json!("Pending"), json!("0")]
    );
    assert!(cells[4].as_str().unwrap().ends_with('s'), "age: {cells:?}");
    assert_eq!(
        cells[5..],
        [
            json!("<none>"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>")
        ]
    );
    // By default each row carries the object's metadata, which kubectl reads the
    // namespace and labels columns from.
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(rows[0]["object"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(rows[0]["object"]["metadata"]["labels"]["app"], "web");
    assert_eq!(rows[0]["object"]["metadata"]["namespace"], "default");
    assert!(rows[0]["object"].get("spec").is_none());

    // One object is a Table of one row; v1beta1 when only that is accepted.
    let v1beta1 = "application/json;as=Table;v=v1beta1;g=meta.k8s.io";
    let (status, table, _) = get(&t, &format!("{DEPLOYMENTS}/web"), v1beta1).await;
    assert_eq!(status, StatusCode::OK, "{table}");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(
        column_names(&table),
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "web");
    assert_eq!(cells[1], "0/3");
    assert_eq!(
        table["rows"][0]["cells"].as_array().unwrap()[5..],
        [json!("main"), json!("hello.wasm"), json!("app=web")]
    );

    // Nodes and namespaces are cluster-scoped tables like any other.
    let (_, table, _) = get(&t, "/api/v1/namespaces", KUBECTL_GET).await;
    assert_eq!(column_names(&table), ["Name", "Status", "Age"]);
    let default = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cells"][0] == "default")
        .expect("the default namespace");
    assert_eq!(default["cells"][1], "Active");
}

#[tokio::test]
async fn include_object_chooses_what_rows_carry() {
    let t = TestServer::new().await;
    t.create(PODS, pod("a")).await;
    let (_, table, _) = get(&t, &format!("{PODS}?includeObject=Object"), KUBECTL_GET).await;
    assert_eq!(table["rows"][0]["object"]["kind"], "Pod");
    assert_eq!(
        table["rows"][0]["object"]["spec"]["containers"][0]["name"],
        "main"
    );
    let (_, table, _) = get(&t, &format!("{PODS}/a?includeObject=None"), KUBECTL_GET).await;
    assert_eq!(table["rows"][0]["object"], Value::Null);
    assert_eq!(table["rows"][0]["cells"][0], "a");

    let (status, error, _) =
        get(&t, &format!("{PODS}?includeObject=Everything"), KUBECTL_GET).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["kind"], "Status");
    assert!(
        error["message"].as_str().unwrap().contains("includeObject"),
        "{error}"
    );
    // The parameter means nothing to a client that asks for the objects.
    let (status, list, _) = get(
        &t,
        &format!("{PODS}?includeObject=Everything"),
        "application/json",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["kind"], "PodList");
}

#[tokio::test]
async fn typed_clients_get_json_and_what_cannot_be_given_is_406() {
    let t = TestServer::new().await;
    t.create(PODS, pod("a")).await;
    let (status, object, content_type) = get(&t, &format!("{PODS}/a"), TYPED_CLIENT).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    assert_eq!(content_type, "application/json");
    assert_eq!(object["kind"], "Pod");
    let (_, list, _) = get(&t, PODS, "*/*").await;
    assert_eq!(list["kind"], "PodList");

    for accept in [
        "application/vnd.kubernetes.protobuf",
        "text/html",
        "application/json;as=Table;v=v1;g=apps",
        "application/json;as=Widget;v=v1;g=meta.k8s.io",
    ] {
        let (status, error, _) = get(&t, PODS, accept).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{accept}: {error}");
        assert_eq!(error["kind"], "Status");
        assert_eq!(error["reason"], "NotAcceptable");
        assert_eq!(error["code"], 406);
    }
}

#[tokio::test]
async fn metadata_only_reads() {
    let t = TestServer::new().await;
    t.create(PODS, pod("a")).await;
    let list_accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io";
    let (status, list, _) = get(&t, PODS, list_accept).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    assert!(list["metadata"]["resourceVersion"].is_string());
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(list["items"][0]["metadata"]["name"], "a");
    assert!(list["items"][0].get("spec").is_none());

    let one_accept = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io";
    let (_, one, _) = get(&t, &format!("{PODS}/a"), one_accept).await;
    assert_eq!(one["kind"], "PartialObjectMetadata");
    assert_eq!(one["metadata"]["labels"]["app"], "web");
    // A list is never a single PartialObjectMetadata.
    let (status, _, _) = get(&t, PODS, one_accept).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn kubectl_get_watch_gets_one_row_tables_with_headers_first() {
    let t = TestServer::new().await;
    t.create(PODS, pod("a")).await;
    let request = Request::builder()
        .uri(format!("{PODS}?watch=1"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("accept", KUBECTL_GET)
        .body(Body::empty())
        .unwrap();
    let response = t.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = EventReader::new(response.into_body());

    let (kind, table) = events.expect().await;
    assert_eq!(kind, "ADDED");
    assert_eq!(table["kind"], "Table");
    assert_eq!(
        column_names(&table)[..5],
        ["Name", "Ready", "Status", "Restarts", "Age"]
    );
    assert_eq!(table["rows"][0]["cells"][0], "a");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");

    t.create(PODS, pod("b")).await;
    let (kind, table) = events.expect().await;
    assert_eq!(kind, "ADDED");
    assert!(
        table["columnDefinitions"].is_null(),
        "headers only once: {table}"
    );
    assert_eq!(table["rows"][0]["cells"][0], "b");
    assert_eq!(
        table["metadata"]["resourceVersion"],
        table["rows"][0]["object"]["metadata"]["resourceVersion"]
    );

    t.delete(&format!("{PODS}/b")).await;
    let (kind, table) = events.expect().await;
    assert_eq!(kind, "DELETED");
    assert_eq!(table["rows"][0]["cells"][0], "b");

    // A watch that cannot be given as asked is refused before it starts.
    let (status, error, _) = get(
        &t,
        &format!("{PODS}?watch=1"),
        "application/vnd.kubernetes.protobuf",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{error}");
}

#[tokio::test]
async fn a_protobuf_body_is_415_saying_what_to_do_instead() {
    let t = TestServer::new().await;
    // client-go's typed clients put this envelope around the object; one skiff cannot
    // read (here: cut short) is refused, saying how to send it instead.
    let mut body = b"k8s\x00".to_vec();
    body.extend_from_slice(&[0x0a, 0x0f, 0x0a, 0x07]);
    let (status, error) = t
        .send(
            Method::POST,
            DEPLOYMENTS,
            "application/vnd.kubernetes.protobuf",
            body,
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{error}");
    assert_eq!(error["kind"], "Status");
    assert_eq!(error["reason"], "UnsupportedMediaType");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("application/json, application/yaml")
            && message.contains("--dry-run=client -o yaml | kubectl create"),
        "{message}"
    );
}

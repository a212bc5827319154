//! The etcd store beyond the conformance suite (run in `store/etcd.rs`): several stores
//! on one etcd, as several API servers are; prefixes that keep clusters apart; an API
//! server running on it; errors that name etcd once it is gone. Each test starts its own
//! etcd (Debian's `etcd-server`) on free loopback ports and kills it when it ends.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_control_plane::apiserver::auth::{Authenticator, User};
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::store::etcd::{EtcdStore, LocalEtcd};
use skiff_control_plane::store::{EventKind, ListOptions, Store, StoreError, WatchStream};
use tower::ServiceExt;

/// A fresh etcd for one test; fails (never skips) with how to install etcd if it is missing.
fn start_etcd() -> (LocalEtcd, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = LocalEtcd::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (etcd, dir)
}

async fn connect(etcd: &LocalEtcd, prefix: &str) -> EtcdStore {
    EtcdStore::connect(&[etcd.url().to_string()], prefix)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next(
    watch: &mut WatchStream,
) -> Option<Result<skiff_control_plane::store::Event, StoreError>> {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no watch event within 10 s: likely deadlocked")
}

#[tokio::test]
async fn stores_on_one_etcd_share_objects_watches_and_compaction() {
    let (etcd, _dir) = start_etcd();
    let (one, other) = (
        connect(&etcd, "/skiff").await,
        connect(&etcd, "/skiff").await,
    );
    let start = one.current_revision().await.unwrap();
    let mut watch = other.watch("/pods/", start).await.unwrap();

    let created = one.create("/pods/a", b("1")).await.unwrap();
    let updated = other
        .update("/pods/a", b("2"), created.mod_revision)
        .await
        .unwrap();
    match one.update("/pods/a", b("3"), created.mod_revision).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, updated.mod_revision),
        other => panic!("a write through one store must see the other's: {other:?}"),
    }
    let deleted = one
        .delete("/pods/a", Some(updated.mod_revision))
        .await
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = next(&mut watch).await.expect("watch open").expect("event");
        seen.push((event.kind, event.revision()));
    }
    assert_eq!(
        seen,
        [
            (EventKind::Put, created.mod_revision),
            (EventKind::Put, updated.mod_revision),
            (EventKind::Delete, deleted.mod_revision),
        ],
        "a watch through one store sees writes through another, in order"
    );

    // Compaction by one API server is what every other one reports and enforces.
    one.compact(updated.mod_revision).await.unwrap();
    assert_eq!(
        other.compacted_revision().await.unwrap(),
        updated.mod_revision
    );
    match other.watch("/pods/", created.mod_revision).await {
        Err(StoreError::Compacted { compacted, .. }) => {
            assert_eq!(compacted, updated.mod_revision)
        }
        Err(error) => panic!("expected Compacted, got {error}"),
        Ok(_) => panic!("a watch from before another store's compaction must fail"),
    }
    // Compacting again, or less far, as a second API server might, is no error.
    other.compact(created.mod_revision).await.unwrap();
    other.compact(updated.mod_revision).await.unwrap();
}

#[tokio::test]
async fn prefixes_keep_clusters_on_one_etcd_apart() {
    let (etcd, _dir) = start_etcd();
    // One prefix starts the other: `/skiff2/...` keys must not show in `/skiff`.
    let (first, second) = (
        connect(&etcd, "/skiff").await,
        connect(&etcd, "/skiff2").await,
    );
    let start = first.current_revision().await.unwrap();
    let mut watch = first.watch("", start).await.unwrap();
    let key = "/api/v1/namespaces/default/configmaps/a";
    second.create(key, b("second")).await.unwrap();
    let mine = first.create(key, b("first")).await.unwrap();

    let all = first.list("", ListOptions::default()).await.unwrap();
    assert_eq!(
        all.items,
        std::slice::from_ref(&mine),
        "a whole-store listing stays in its prefix"
    );
    assert_eq!(first.get(key).await.unwrap().unwrap().value, b("first"));
    assert_eq!(second.get(key).await.unwrap().unwrap().value, b("second"));
    let event = next(&mut watch).await.expect("watch open").expect("event");
    assert_eq!(
        event.kv, mine,
        "a whole-store watch sees its own cluster's write, not the other's before it"
    );

    // A trailing slash names the same prefix.
    let same = connect(&etcd, "/skiff/").await;
    assert_eq!(same.get(key).await.unwrap(), Some(mine));
}

/// One request through `router` as the admin (token `token`): status and JSON answer.
async fn call(
    router: &axum::Router,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", "Bearer token")
        .header("content-type", "application/json")
        .body(match body {
            Some(body) => Body::from(body.to_string()),
            None => Body::empty(),
        })
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(30), router.clone().oneshot(request))
        .await
        .expect("no answer in 30 s: likely deadlocked")
        .expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
    )
}

/// An API server over `store` whose admin token is `token`.
async fn api_server(store: Arc<dyn Store>) -> Arc<ApiServer> {
    let mut auth = Authenticator::default();
    auth.add_token(
        "token",
        User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        },
    );
    ApiServer::new(store, auth, ApiServerConfig::default())
        .await
        .expect("an API server starts on etcd")
}

/// Two API servers on one etcd, as several kube-apiservers share theirs: writes through
/// both at once get ClusterIPs that are never the same, and a watch through one sees every
/// write made through either, in order, without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_servers_on_one_etcd_allocate_uniquely_and_watch_each_others_writes() {
    let (etcd, _dir) = start_etcd();
    let one = api_server(Arc::new(connect(&etcd, "/skiff").await)).await;
    let other = api_server(Arc::new(connect(&etcd, "/skiff").await)).await;
    let (one, other) = (one.router(), other.router());
    let services = "/api/v1/namespaces/default/services";
    let (_, listed) = call(&other, Method::GET, services, None).await;
    let from = listed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let watch = Request::builder()
        .uri(format!(
            "{services}?watch=true&resourceVersion={from}&timeoutSeconds=60"
        ))
        .header("authorization", "Bearer token")
        .body(Body::empty())
        .unwrap();
    let watched = other.clone().oneshot(watch).await.unwrap();
    assert_eq!(watched.status(), StatusCode::OK);
    let mut events = watched.into_body().into_data_stream();

    const EACH: usize = 15;
    let create = |router: axum::Router, prefix: &'static str| async move {
        let mut ips = Vec::new();
        for i in 0..EACH {
            let service = json!({ "metadata": { "name": format!("{prefix}-{i}") },
                "spec": { "selector": { "app": "x" }, "ports": [{ "port": 80 }] } });
            let (status, created) = call(&router, Method::POST, services, Some(service)).await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            ips.push(created["spec"]["clusterIP"].as_str().unwrap().to_string());
        }
        ips
    };
    let (a, b) = tokio::join!(
        tokio::spawn(create(one, "one")),
        tokio::spawn(create(other.clone(), "other"))
    );
    let mut ips: Vec<String> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 2 * EACH, "a ClusterIP handed out twice");

    // The watch through `other` saw all of them, `one`'s too, in revision order.
    let mut seen = Vec::new();
    let mut buffer = Vec::new();
    while seen.len() < 2 * EACH {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("no watch event within 10 s")
            .expect("the watch ended early")
            .unwrap();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).unwrap();
            if event["type"] == "ADDED" {
                let object = &event["object"];
                let revision: u64 = object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                seen.push((
                    revision,
                    object["metadata"]["name"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "out of order: {seen:?}"
    );
    let mut names: Vec<_> = seen.into_iter().map(|(_, name)| name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 2 * EACH, "every create, once");
}

#[tokio::test]
async fn an_api_server_runs_on_etcd() {
    let (etcd, _dir) = start_etcd();
    let store = Arc::new(connect(&etcd, "/skiff").await);
    let mut auth = Authenticator::default();
    auth.add_token(
        "token",
        User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        },
    );
    let server = ApiServer::new(store.clone(), auth, ApiServerConfig::default())
        .await
        .expect("an API server starts on etcd");
    let router = server.router();

    let path = "/api/v1/namespaces/default/configmaps";
    let (status, created) = call(
        &router,
        Method::POST,
        path,
        Some(json!({ "metadata": { "name": "settings" }, "data": { "colour": "blue" } })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, read) = call(&router, Method::GET, &format!("{path}/settings"), None).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["data"]["colour"], "blue");
    assert_eq!(read["metadata"]["uid"], created["metadata"]["uid"]);
    let revision: u64 = read["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("a numeric resourceVersion");

    // The object is an etcd key under the prefix, at etcd's revision.
    let listing = store.list("/", ListOptions::default()).await.unwrap();
    let kv = listing
        .items
        .iter()
        .find(|kv| kv.key.ends_with("/configmaps/default/settings"))
        .unwrap_or_else(|| {
            let keys: Vec<_> = listing.items.iter().map(|kv| &kv.key).collect();
            panic!("no key for the ConfigMap among {keys:?}")
        });
    assert_eq!(
        kv.mod_revision, revision,
        "resourceVersion is etcd's mod_revision"
    );
    server.close_watches();
}

#[tokio::test]
async fn errors_name_etcd_once_it_is_gone() {
    let (etcd, _dir) = start_etcd();
    let url = etcd.url().to_string();
    let store = connect(&etcd, "/skiff").await;
    let mut watch = store
        .watch("/", store.current_revision().await.unwrap())
        .await
        .unwrap();
    drop(etcd);

    match next(&mut watch).await {
        Some(Err(StoreError::Backend(message))) => assert!(message.contains(&url), "{message}"),
        other => panic!("a watch on a dead etcd ends with an error, got {other:?}"),
    }
    assert!(next(&mut watch).await.is_none(), "nothing after the error");
    let error = tokio::time::timeout(Duration::from_secs(60), store.get("/x"))
        .await
        .expect("a read of a dead etcd fails rather than hangs")
        .expect_err("etcd is gone");
    assert!(
        matches!(&error, StoreError::Backend(m) if m.contains(&url)),
        "{error}"
    );
    let error = EtcdStore::connect(std::slice::from_ref(&url), "/skiff")
        .await
        .err()
        .expect("etcd is gone");
    assert!(error.to_string().contains(&url), "{error}");
}

/// etcd takes requests up to 1.5 MiB by default, below the API server's 3 MiB body limit:
/// an object between the two is refused with 413 naming the store, not a 500, and the
/// server goes on serving.
#[tokio::test]
async fn an_object_too_large_for_etcd_gets_413() {
    let (etcd, _dir) = start_etcd();
    let router = api_server(Arc::new(connect(&etcd, "/skiff").await))
        .await
        .router();
    let path = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, value: String| {
        json!({ "metadata": { "name": name }, "spec": { "containers": [{
            "name": "main", "image": "m.wasm", "env": [{ "name": "BIG", "value": value }] }] } })
    };
    let big = pod("big", "x".repeat(2 << 20));
    let (status, answer) = call(&router, Method::POST, path, Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["reason"], "RequestEntityTooLarge");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("pods \"big\" is too large for the store") && message.contains("etcd at"),
        "{message}"
    );
    let small = pod("small", "x".into());
    assert_eq!(
        call(&router, Method::POST, path, Some(small)).await.0,
        StatusCode::CREATED
    );
}

//! The etcd store beyond the conformance suite (run in `store/etcd.rs`): several stores
//! on one etcd, as several API servers are; prefixes that keep clusters apart; an API
//! server running on it; errors that name etcd once it is gone; watches and writes that
//! outlive the loss of an etcd member. Each test starts its own etcd (Debian's
//! `etcd-server`) on free loopback ports and kills it when it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_control_plane::apiserver::auth::{Authenticator, User};
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::store::etcd::{EtcdStore, LocalEtcd, LocalEtcdCluster};
use skiff_control_plane::store::{
    Event, EventKind, KeyValue, ListOptions, Revision, Store, StoreError, WatchStream,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
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

async fn next(watch: &mut WatchStream) -> Option<Result<Event, StoreError>> {
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

/// Once etcd is gone for good, the store tries other members (there are none) for a
/// bounded time, then fails naming etcd: the watch, a read, and connecting.
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

    let (watched, read, connected) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            watch.next(),
            store.get("/x"),
            EtcdStore::connect(std::slice::from_ref(&url), "/skiff")
        )
    })
    .await
    .expect("a store on a dead etcd fails within 60 s rather than hangs");
    match watched {
        Some(Err(StoreError::Backend(message))) => assert!(message.contains(&url), "{message}"),
        other => panic!("a watch on a dead etcd ends with an error, got {other:?}"),
    }
    assert!(next(&mut watch).await.is_none(), "nothing after the error");
    let error = read.expect_err("etcd is gone");
    assert!(
        matches!(&error, StoreError::Backend(m) if m.contains(&url)),
        "{error}"
    );
    let error = connected.err().expect("etcd is gone");
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

/// A fresh etcd cluster of `size` members for one test.
fn start_cluster(size: usize) -> (LocalEtcdCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = LocalEtcdCluster::start(dir.path(), size).unwrap_or_else(|e| panic!("{e}"));
    (cluster, dir)
}

/// Kills member `i` (SIGKILL) without stalling the runtime's other tasks.
fn kill(cluster: &mut LocalEtcdCluster, i: usize) {
    tokio::task::block_in_place(|| cluster.kill(i)).unwrap_or_else(|e| panic!("{e}"));
}

/// Starts member `i` again and waits until the cluster is healthy, without stalling the
/// runtime's other tasks.
fn restart(cluster: &mut LocalEtcdCluster, i: usize) {
    tokio::task::block_in_place(|| cluster.restart(i)).unwrap_or_else(|e| panic!("{e}"));
}

/// The watch delivers what is written after its etcd member dies and comes back, from
/// where it was: the one event written meanwhile, not the one before again, while it was
/// being read all along (reopening waits out the restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_where_it_was_when_its_etcd_comes_back() {
    let (mut cluster, _dir) = start_cluster(1);
    let store = EtcdStore::connect(&cluster.urls(), "/skiff")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut watch = store
        .watch("/w/", store.current_revision().await.unwrap())
        .await
        .unwrap();
    let a = store.create("/w/a", b("a")).await.unwrap();
    assert_eq!(next(&mut watch).await.unwrap().unwrap().kv, a);

    kill(&mut cluster, 0);
    // Read the watch while etcd is down: it keeps trying to open again.
    let waiting = tokio::spawn(async move {
        let event = tokio::time::timeout(Duration::from_secs(60), watch.next())
            .await
            .expect("no watch event within 60 s: likely deadlocked");
        (event, watch)
    });
    restart(&mut cluster, 0);
    let written = store.create("/w/b", b("b")).await.unwrap();
    let (event, mut watch) = waiting.await.unwrap();
    assert_eq!(
        event.expect("the watch goes on").expect("an event").kv,
        written,
        "the first event after etcd came back is the write made since, once"
    );
    let c = store.create("/w/c", b("c")).await.unwrap();
    assert_eq!(next(&mut watch).await.unwrap().unwrap().kv, c);
}

/// A watch that comes back to history compacted while it was away says so, rather than
/// skipping what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_comes_back_after_a_compaction_reports_compacted() {
    let (mut cluster, _dir) = start_cluster(1);
    let store = EtcdStore::connect(&cluster.urls(), "/skiff")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let from = store.current_revision().await.unwrap();
    let mut watch = store.watch("/w/", from).await.unwrap();
    kill(&mut cluster, 0);
    restart(&mut cluster, 0);
    store.create("/w/a", b("a")).await.unwrap();
    let last = store.create("/w/b", b("b")).await.unwrap();
    store.compact(last.mod_revision).await.unwrap();

    match next(&mut watch).await {
        Some(Err(StoreError::Compacted {
            requested,
            compacted,
        })) => {
            assert_eq!((requested, compacted), (from, last.mod_revision));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(next(&mut watch).await.is_none(), "nothing after the error");
}

/// Everything the HA test learnt about its writes and its watch.
#[derive(Default)]
struct Ledger {
    /// Acknowledged writes: key → revision.
    acked: BTreeMap<String, Revision>,
    /// Writes that failed with an error that leaves their outcome unknown (the member
    /// died while they were on the way): each may or may not be in etcd.
    unknown: BTreeSet<String>,
    /// The watch's events, as delivered: revision and key.
    delivered: Vec<(Revision, String)>,
}

impl Ledger {
    /// Takes write outcomes until `count` more writes are acknowledged; fails after
    /// `within`, as it would if writes did not get through the members left.
    async fn await_acks(
        &mut self,
        writes: &mut mpsc::UnboundedReceiver<(String, Result<KeyValue, StoreError>)>,
        count: usize,
        within: Duration,
        urls: &[String],
    ) {
        let deadline = Instant::now() + within;
        let target = self.acked.len() + count;
        while self.acked.len() < target {
            let (key, outcome) = tokio::time::timeout_at(deadline, writes.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{count} writes were not acknowledged within {within:?} ({} acked, \
                         {} unknown so far)",
                        self.acked.len(),
                        self.unknown.len()
                    )
                })
                .expect("the writer goes on");
            self.record(key, outcome, urls);
        }
    }

    fn record(&mut self, key: String, outcome: Result<KeyValue, StoreError>, urls: &[String]) {
        match outcome {
            Ok(kv) => {
                assert_eq!(kv.key, key);
                self.acked.insert(key, kv.mod_revision);
            }
            // Lost on the way: the error names etcd's endpoints.
            Err(StoreError::Backend(message)) => {
                assert!(
                    urls.iter().all(|url| message.contains(url.as_str())),
                    "{message}"
                );
                self.unknown.insert(key);
            }
            Err(error) => panic!("writing {key}: {error}"),
        }
    }

    /// Takes watch events until every acknowledged write is delivered and the last one
    /// is at `at_least`, checking that they come in order and once each.
    async fn await_delivered(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Result<Event, StoreError>>,
        at_least: Revision,
        within: Duration,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let seen: BTreeSet<&str> = self.delivered.iter().map(|(_, k)| k.as_str()).collect();
            let missing = self.acked.keys().find(|key| !seen.contains(key.as_str()));
            let last = self.delivered.last().map_or(0, |(revision, _)| *revision);
            if missing.is_none() && last >= at_least {
                return;
            }
            let event = tokio::time::timeout_at(deadline, events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the watch did not deliver {missing:?} (or up to revision {at_least}) \
                         within {within:?}; last delivered: {last}"
                    )
                })
                .expect("the watch goes on")
                .unwrap_or_else(|e| panic!("the watch failed: {e}"));
            assert_eq!(event.kind, EventKind::Put);
            assert!(
                event.revision() > last,
                "revision {} delivered after {last}: out of order or twice",
                event.revision()
            );
            self.delivered.push((event.revision(), event.kv.key));
        }
    }
}

/// Kills each member of a 3-member etcd in turn, with -9, while a store on all three
/// keeps writing and watching: writes go on through the two members left, reads and a
/// new connection work, the watch (whichever member it was on dies at some point) delivers
/// every acknowledged write in order, once, with no gap; each member comes back; at the
/// end a listing holds every acknowledged write and exactly what the watch delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_survives_losing_any_one_of_three_etcd_members() {
    const BEFORE: usize = 5;
    const WHILE_DOWN: usize = 20;
    // Generous: a write caught on its way to a dying leader waits out etcd's own request
    // time-out (7 s) before it fails; the next ones then need a new leader.
    const PROMPTLY: Duration = Duration::from_secs(30);
    let (mut cluster, _dir) = start_cluster(3);
    let urls = cluster.urls();
    let store = Arc::new(
        EtcdStore::connect(&urls, "/skiff")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let from = store.current_revision().await.unwrap();
    let mut watch = store.watch("/ha/", from).await.unwrap();

    // The watch, read all along.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = watch.next().await {
            if events_tx.send(item).is_err() {
                break;
            }
        }
    });
    // One write after another, each a new key, every outcome reported.
    let (writes_tx, mut writes) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("/ha/{n:06}");
                n += 1;
                let outcome = store.create(&key, b(&key)).await;
                if writes_tx.send((key, outcome)).is_err() {
                    break;
                }
            }
        }
    });

    let mut ledger = Ledger::default();
    for member in 0..3 {
        ledger
            .await_acks(&mut writes, BEFORE, PROMPTLY, &urls)
            .await;
        assert!(cluster.pid(member).is_some());
        kill(&mut cluster, member);
        assert!(cluster.pid(member).is_none());

        ledger
            .await_acks(&mut writes, WHILE_DOWN, PROMPTLY, &urls)
            .await;
        // Reads, and a store connecting to all three, get through too.
        let listed = store.list("/ha/", ListOptions::default()).await.unwrap();
        let listed: BTreeSet<_> = listed.items.into_iter().map(|kv| kv.key).collect();
        assert!(
            ledger.acked.keys().all(|key| listed.contains(key)),
            "a listing misses an acknowledged write"
        );
        let other = EtcdStore::connect(&urls, "/skiff")
            .await
            .unwrap_or_else(|e| panic!("connecting with member {member} down: {e}"));
        let (first, revision) = ledger.acked.iter().next().unwrap();
        assert_eq!(
            other.get(first).await.unwrap().map(|kv| kv.mod_revision),
            Some(*revision)
        );
        ledger.await_delivered(&mut events, 0, PROMPTLY).await;

        restart(&mut cluster, member);
    }
    ledger
        .await_acks(&mut writes, BEFORE, PROMPTLY, &urls)
        .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    while let Some((key, outcome)) = writes.recv().await {
        ledger.record(key, outcome, &urls);
    }

    // The listing is the truth: what the watch delivered, each at its revision, and every
    // acknowledged write among it.
    let listed = store.list("/ha/", ListOptions::default()).await.unwrap();
    let listed: Vec<(Revision, String)> = listed
        .items
        .into_iter()
        .map(|kv| (kv.mod_revision, kv.key))
        .collect();
    let newest = listed.iter().map(|(revision, _)| *revision).max().unwrap();
    ledger.await_delivered(&mut events, newest, PROMPTLY).await;
    let mut by_revision = listed.clone();
    by_revision.sort();
    assert_eq!(
        ledger.delivered, by_revision,
        "the watch delivered exactly what etcd holds, in revision order"
    );
    for (key, revision) in &ledger.acked {
        assert!(
            listed.contains(&(*revision, key.clone())),
            "acknowledged write {key} at {revision} is missing"
        );
    }
    for (_, key) in &listed {
        assert!(
            ledger.acked.contains_key(key) || ledger.unknown.contains(key),
            "{key} was never written"
        );
    }
    // A kill leaves a write or two with an unknown outcome: the one on its way to the
    // member that died, and, when that was the leader, one a follower held for it until
    // etcd's time-out (allow a third). Writes that never reached etcd, refused on
    // connecting to the dead member or turned away for want of a leader, are sent again:
    // without that, a third of the writes while a member is down would fail.
    assert!(
        ledger.unknown.len() <= 3 * 3,
        "{} writes failed; only writes lost on their way may: {:?}",
        ledger.unknown.len(),
        ledger.unknown
    );
    eprintln!(
        "{} writes acknowledged, {} with an unknown outcome ({} of those in etcd)",
        ledger.acked.len(),
        ledger.unknown.len(),
        listed.len() - ledger.acked.len()
    );
}

/// An etcd that serves TLS and requires client certificates: the store reaches it with
/// the CA and its client certificate, and not without them.
#[tokio::test]
async fn a_store_reaches_etcd_over_mutual_tls_and_only_with_its_certificates() {
    use skiff_control_plane::store::etcd::EtcdTls;
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = LocalEtcdCluster::start_tls(dir.path(), 1).unwrap_or_else(|e| panic!("{e}"));
    let urls = etcd.urls();
    assert!(urls[0].starts_with("https://"), "{urls:?}");
    let tls = etcd.tls().expect("started with TLS").client().unwrap();

    let error = EtcdStore::connect(&urls, "/skiff")
        .await
        .err()
        .expect("an https endpoint without a CA is refused");
    assert!(error.to_string().contains("--etcd-cafile"), "{error}");
    let plain = vec![urls[0].replace("https://", "http://")];
    let error = EtcdStore::connect_with(&plain, "/skiff", Some(&tls))
        .await
        .err()
        .expect("TLS options with an http endpoint are refused");
    assert!(error.to_string().contains("https://"), "{error}");
    let anonymous = EtcdTls {
        identity: None,
        ..tls.clone()
    };
    let error = EtcdStore::connect_with(&urls, "/skiff", Some(&anonymous))
        .await
        .err()
        .expect("etcd refuses a client without a certificate");
    assert!(error.to_string().contains(&urls[0]), "{error}");

    let store = EtcdStore::connect_with(&urls, "/skiff", Some(&tls))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut watch = store.watch("/tls/", 0).await.unwrap();
    let created = store.create("/tls/a", b("over TLS")).await.unwrap();
    let got = store.get("/tls/a").await.unwrap().expect("the key");
    assert_eq!(got.value, b("over TLS"));
    let event = next(&mut watch).await.expect("an event").unwrap();
    assert_eq!(event.revision(), created.mod_revision);
}

/// Nodes registering through two API servers on one etcd at once each get a pod range
/// of their own: the ranges are allocated in the store, not in a server's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_servers_on_one_etcd_hand_out_distinct_pod_ranges() {
    let (etcd, _dir) = start_etcd();
    let one = api_server(Arc::new(connect(&etcd, "/skiff").await)).await;
    let other = api_server(Arc::new(connect(&etcd, "/skiff").await)).await;
    // The default /16 in /20 blocks has 16: twelve nodes take most of them.
    const EACH: usize = 6;
    let register = |router: axum::Router, prefix: &'static str| async move {
        let mut ranges = Vec::new();
        for i in 0..EACH {
            let node = json!({ "metadata": { "name": format!("{prefix}-{i}") } });
            let (status, created) = call(&router, Method::POST, "/api/v1/nodes", Some(node)).await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            ranges.push(created["spec"]["podCIDR"].as_str().unwrap().to_string());
        }
        ranges
    };
    let (a, b) = tokio::join!(
        tokio::spawn(register(one.router(), "one")),
        tokio::spawn(register(other.router(), "other"))
    );
    let mut ranges: Vec<String> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    ranges.sort();
    ranges.dedup();
    assert_eq!(
        ranges.len(),
        2 * EACH,
        "a pod range handed out twice: {ranges:?}"
    );
}

/// A module pushed through one API server is pulled through another: servers sharing
/// etcd keep modules in it (in chunks under etcd's request limit), not in their data dirs.
#[tokio::test]
async fn a_module_pushed_through_one_server_is_pulled_through_another() {
    use skiff_control_plane::apiserver::modules::{CHUNK_BYTES, ModuleStorage};
    let (etcd, _dir) = start_etcd();
    let server = |store: EtcdStore| async move {
        let mut auth = Authenticator::default();
        auth.add_token(
            "token",
            User {
                name: "admin".into(),
                groups: vec!["system:masters".into()],
            },
        );
        let config = ApiServerConfig {
            modules: Some(ModuleStorage::Store),
            ..ApiServerConfig::default()
        };
        ApiServer::new(Arc::new(store), auth, config)
            .await
            .expect("an API server on etcd")
            .router()
    };
    let one = server(connect(&etcd, "/skiff").await).await;
    let other = server(connect(&etcd, "/skiff").await).await;
    // Larger than etcd takes in one request (1.5 MiB).
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend((0..2 * CHUNK_BYTES).map(|i| (i % 251) as u8));
    let send = |router: axum::Router, method: Method, path: &str, body: Vec<u8>| {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer token")
            .body(Body::from(body))
            .expect("request");
        async move {
            let response = router.oneshot(request).await.expect("infallible");
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, bytes)
        }
    };
    let (status, answer) = send(
        one.clone(),
        Method::PUT,
        "/skiff/v1/modules/big:v1",
        module.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer:?}");
    let (status, pulled) = send(
        other.clone(),
        Method::GET,
        "/skiff/v1/modules/big:v1",
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(pulled[..] == module[..], "the module read back whole");
    let (_, listed) = call(&other, Method::GET, "/skiff/v1/modules", None).await;
    assert_eq!(listed["items"][0]["name"], "big", "{listed}");
}

//! A small fake API server for one kind, `Thing` (`example.dev/v1`, namespaced), that
//! speaks the Kubernetes shapes the client relies on: Status errors, resourceVersions,
//! paginated lists, and watches as JSON lines, with knobs to drop watches and to
//! compact history (410 Gone).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use skiff_api::ObjectMeta;
use skiff_client::{Client, Config};

/// The test kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thing {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: ThingSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ThingStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThingSpec {
    pub value: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThingStatus {
    pub seen: i64,
}

skiff_api::impl_resource!(
    Thing,
    kind = "Thing",
    group = "example.dev",
    version = "v1",
    plural = "things",
    namespaced = true
);

impl Thing {
    pub fn new(namespace: &str, name: &str, value: i64) -> Thing {
        Thing {
            api_version: "example.dev/v1".into(),
            kind: "Thing".into(),
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            spec: ThingSpec { value },
            status: None,
        }
    }
}

const PREFIX: &str = "/apis/example.dev/v1";

/// What the next watch request gets.
#[derive(Clone, Copy, Debug)]
pub enum Script {
    /// Sends this many events, then sends no more and breaks the connection at the
    /// next [`Fake::cut_watches`] (when the test has seen those events arrive, so none
    /// is lost in a buffer: what the resumed watch gets is exactly the rest).
    AbortAfter(usize),
    /// Once the revision passed the watch's start (through changes it may not see),
    /// sends the pending events and a BOOKMARK at the current revision, then ends.
    BookmarkAndEnd,
    /// Answers HTTP 410 with a Status at once.
    HttpGone,
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    /// The `Host` header: which server (the fake or a [`Replica`]) took the request.
    pub host: Option<String>,
}

impl Seen {
    pub fn is_watch(&self) -> bool {
        self.query.get("watch").map(String::as_str) == Some("1")
    }
}

struct Change {
    revision: u64,
    type_: &'static str,
    object: Value,
}

#[derive(Default)]
struct Data {
    objects: BTreeMap<(String, String), Value>,
    revision: u64,
    history: Vec<Change>,
    /// Watches from before this revision get 410 Gone. Open watches go on.
    compacted: u64,
    scripts: VecDeque<Script>,
    /// This many next list requests fail with 500.
    failing_lists: usize,
    seen: Vec<Seen>,
}

struct Shared {
    data: Mutex<Data>,
    /// The latest revision, for open watches to wake on.
    head: tokio::sync::watch::Sender<u64>,
    /// How many requests were seen, for tests to wait on.
    requests: tokio::sync::watch::Sender<usize>,
    /// Bumped by `cut_watches`: watches waiting to be cut break their connection.
    cuts: tokio::sync::watch::Sender<u64>,
}

/// A change for [`Fake::atomically`].
pub enum Op<'a> {
    Put(&'a str, &'a str, i64),
    Remove(&'a str, &'a str),
    /// Watches from before the current revision get 410 from now on.
    Compact,
}

/// The running fake; stops when dropped.
pub struct Fake {
    shared: Arc<Shared>,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    pub async fn start() -> Fake {
        let shared = Arc::new(Shared {
            data: Mutex::new(Data::default()),
            head: tokio::sync::watch::Sender::new(0),
            requests: tokio::sync::watch::Sender::new(0),
            cuts: tokio::sync::watch::Sender::new(0),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Fake { shared, url, task }
    }

    /// Another server over the same data, as a second API server on the same etcd.
    pub fn replica(&self) -> Replica {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new()
            .fallback(handle)
            .with_state(self.shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    result = axum::serve(listener, app) => result.expect("serve"),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops the task of every connection: all close.
        });
        Replica {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn client(&self) -> Client {
        let mut config = Config::new(&self.url).expect("url");
        config.token = Some("t0k".into());
        Client::new(config).expect("client")
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.shared.data.lock().expect("lock")
    }

    /// Applies `ops` at once: an open watch sees all of them or none yet.
    pub fn atomically(&self, ops: &[Op<'_>]) -> u64 {
        let mut data = self.data();
        for op in ops {
            match *op {
                Op::Put(namespace, name, value) => {
                    let object = match data.objects.get(&(namespace.into(), name.into())) {
                        Some(current) => {
                            let mut object = current.clone();
                            object["spec"]["value"] = json!(value);
                            object
                        }
                        None => {
                            serde_json::to_value(Thing::new(namespace, name, value)).expect("json")
                        }
                    };
                    data.write(object);
                }
                Op::Remove(namespace, name) => {
                    data.remove(namespace, name).expect("exists");
                }
                Op::Compact => data.compacted = data.revision,
            }
        }
        let revision = data.revision;
        drop(data);
        self.shared.head.send_replace(revision);
        revision
    }

    /// Creates or changes `namespace/name` directly, as another client would.
    pub fn put(&self, namespace: &str, name: &str, value: i64) -> u64 {
        self.atomically(&[Op::Put(namespace, name, value)])
    }

    /// Deletes `namespace/name` directly.
    pub fn remove(&self, namespace: &str, name: &str) -> u64 {
        self.atomically(&[Op::Remove(namespace, name)])
    }

    /// Breaks the connection of every watch that sent its `AbortAfter` events.
    pub fn cut_watches(&self) {
        self.shared.cuts.send_modify(|c| *c += 1);
    }

    /// Waits until the requests seen so far satisfy `done`.
    pub async fn wait_for_requests(&self, done: impl Fn(&[Seen]) -> bool) {
        let mut count = self.shared.requests.subscribe();
        loop {
            count.borrow_and_update();
            if done(&self.seen()) {
                return;
            }
            count.changed().await.expect("the fake lives");
        }
    }

    pub fn script(&self, script: Script) {
        self.data().scripts.push_back(script);
    }

    pub fn fail_lists(&self, count: usize) {
        self.data().failing_lists = count;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.data().seen.clone()
    }

    /// The resourceVersion of every watch request so far.
    pub fn watch_versions(&self) -> Vec<String> {
        self.seen()
            .iter()
            .filter(|s| s.is_watch())
            .map(|s| s.query.get("resourceVersion").cloned().unwrap_or_default())
            .collect()
    }

    /// How many list (not watch) requests were made.
    pub fn list_count(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == Method::GET && !s.is_watch() && s.path.ends_with("/things"))
            .count()
    }

    /// Every object, sorted by namespace and name.
    pub fn things(&self) -> Vec<Thing> {
        self.data()
            .objects
            .values()
            .map(|v| serde_json::from_value(v.clone()).expect("thing"))
            .collect()
    }
}

/// A server over a [`Fake`]'s data, on a thread and runtime of its own so that
/// [`kill`](Replica::kill) ends it as a dying process ends: the listener and every
/// connection, open watches included, close at once. Killed when dropped.
pub struct Replica {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    /// Stops the server; when this returns, its port refuses connections and every
    /// connection it had is closed.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the replica's thread");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Data {
    fn write(&mut self, mut object: Value) -> u64 {
        self.revision += 1;
        let revision = self.revision;
        let key = (
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        object["metadata"]["resourceVersion"] = json!(revision.to_string());
        let type_ = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        if type_ == "ADDED" {
            object["metadata"]["uid"] = json!(format!("uid-{revision}"));
        }
        self.objects.insert(key, object.clone());
        self.history.push(Change {
            revision,
            type_,
            object,
        });
        revision
    }

    fn remove(&mut self, namespace: &str, name: &str) -> Option<u64> {
        let mut object = self.objects.remove(&(namespace.into(), name.into()))?;
        self.revision += 1;
        let revision = self.revision;
        object["metadata"]["resourceVersion"] = json!(revision.to_string());
        self.history.push(Change {
            revision,
            type_: "DELETED",
            object,
        });
        Some(revision)
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(value: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn line(type_: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({ "type": type_, "object": object })))
}

fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let target = target.as_object_mut().expect("object");
            for (key, value) in fields {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let seen = Seen {
        method: method.clone(),
        path: uri.path().to_string(),
        query: query.clone(),
        content_type: header(header::CONTENT_TYPE),
        authorization: header(header::AUTHORIZATION),
        host: header(header::HOST),
    };
    let count = {
        let mut data = shared.data.lock().expect("lock");
        data.seen.push(seen.clone());
        data.seen.len()
    };
    shared.requests.send_replace(count);

    let Some(rest) = uri.path().strip_prefix(PREFIX) else {
        // Not a Status: the client must make one.
        return (StatusCode::NOT_FOUND, "404 page not found").into_response();
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (namespace, name, sub) = match segments.as_slice() {
        ["things"] => (None, None, None),
        ["namespaces", ns, "things"] => (Some(*ns), None, None),
        ["namespaces", ns, "things", name] => (Some(*ns), Some(*name), None),
        ["namespaces", ns, "things", name, sub] => (Some(*ns), Some(*name), Some(*sub)),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", "no such path"),
    };
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };

    match (method, name, sub) {
        (Method::GET, None, _) if seen.is_watch() => {
            watch(shared, namespace.map(str::to_string), &query)
        }
        (Method::GET, None, _) => list(&shared, namespace, &query),
        (Method::POST, None, _) => {
            let mut data = shared.data.lock().expect("lock");
            let mut object = body.unwrap_or_default();
            object["metadata"]["namespace"] = json!(namespace);
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if data
                .objects
                .contains_key(&(namespace.unwrap_or_default().into(), name.clone()))
            {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("things \"{name}\" already exists"),
                );
            }
            let revision = data.write(object);
            let stored = data.objects[&(namespace.unwrap_or_default().into(), name)].clone();
            drop(data);
            shared.head.send_replace(revision);
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                stored.to_string(),
            )
                .into_response()
        }
        (method, Some(name), sub) => {
            let ns = namespace.unwrap_or_default();
            let key = (ns.to_string(), name.to_string());
            let mut data = shared.data.lock().expect("lock");
            let Some(current) = data.objects.get(&key).cloned() else {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("things \"{name}\" not found"),
                );
            };
            let changed = match (method, sub) {
                (Method::GET, None) => return ok(&current),
                (Method::POST, Some("binding")) => {
                    return ok(
                        &json!({ "kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201 }),
                    );
                }
                (Method::PUT, sub) => {
                    let object = body.unwrap_or_default();
                    let wanted = object["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default();
                    if !wanted.is_empty()
                        && wanted
                            != current["metadata"]["resourceVersion"]
                                .as_str()
                                .unwrap_or_default()
                    {
                        return status(
                            StatusCode::CONFLICT,
                            "Conflict",
                            "the object has been modified",
                        );
                    }
                    let mut next = current.clone();
                    if sub == Some("status") {
                        next["status"] = object["status"].clone();
                    } else {
                        next["spec"] = object["spec"].clone();
                        for field in ["labels", "finalizers"] {
                            match object["metadata"].get(field) {
                                Some(value) => next["metadata"][field] = value.clone(),
                                None => {
                                    _ = next["metadata"].as_object_mut().map(|m| m.remove(field))
                                }
                            }
                        }
                    }
                    next
                }
                (Method::PATCH, _) => {
                    let mut next = current.clone();
                    if seen.content_type.as_deref() == Some("application/merge-patch+json") {
                        merge(&mut next, &body.unwrap_or_default());
                    }
                    next
                }
                (Method::DELETE, None) => {
                    let held = current["metadata"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| !f.is_empty());
                    if held {
                        let mut next = current.clone();
                        next["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
                        next
                    } else {
                        let revision = data.remove(ns, name).expect("exists");
                        drop(data);
                        shared.head.send_replace(revision);
                        return ok(
                            &json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" }),
                        );
                    }
                }
                _ => return status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "no"),
            };
            let revision = data.write(changed);
            let stored = data.objects[&key].clone();
            drop(data);
            shared.head.send_replace(revision);
            ok(&stored)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "no"),
    }
}

fn list(shared: &Shared, namespace: Option<&str>, query: &BTreeMap<String, String>) -> Response {
    let mut data = shared.data.lock().expect("lock");
    if data.failing_lists > 0 {
        data.failing_lists -= 1;
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "the store is down",
        );
    }
    let all: Vec<&Value> = data
        .objects
        .iter()
        .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
        .map(|(_, v)| v)
        .collect();
    let start: usize = query
        .get("continue")
        .map(|c| c.parse().expect("continue"))
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .map(|l| l.parse().expect("limit"))
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(all.len());
    let mut metadata = json!({ "resourceVersion": data.revision.to_string() });
    if end < all.len() {
        metadata["continue"] = json!(end.to_string());
    }
    ok(&json!({
        "apiVersion": "example.dev/v1", "kind": "ThingList", "metadata": metadata, "items": all[start..end],
    }))
}

fn watch(
    shared: Arc<Shared>,
    namespace: Option<String>,
    query: &BTreeMap<String, String>,
) -> Response {
    let from: u64 = query
        .get("resourceVersion")
        .map(|rv| rv.parse().expect("resourceVersion"))
        .unwrap_or(0);
    let script = shared.data.lock().expect("lock").scripts.pop_front();
    if let Some(Script::HttpGone) = script {
        return status(StatusCode::GONE, "Expired", "too old resource version");
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut head = shared.head.subscribe();
        let mut cuts = shared.cuts.subscribe();
        let mut cursor = from;
        let mut sent = 0usize;
        let compacted = shared.data.lock().expect("lock").compacted;
        if from < compacted {
            let gone = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410, "message": "too old resource version" });
            let _ = tx.send(Ok(line("ERROR", &gone))).await;
            return;
        }
        loop {
            head.borrow_and_update();
            let (batch, revision): (Vec<(u64, Bytes)>, u64) = {
                let data = shared.data.lock().expect("lock");
                let batch = data
                    .history
                    .iter()
                    .filter(|c| c.revision > cursor)
                    .filter(|c| {
                        namespace
                            .as_deref()
                            .is_none_or(|ns| c.object["metadata"]["namespace"] == ns)
                    })
                    .map(|c| (c.revision, line(c.type_, &c.object)))
                    .collect();
                (batch, data.revision)
            };
            for (revision, line) in batch {
                if let Some(Script::AbortAfter(n)) = script
                    && sent == n
                {
                    break;
                }
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
                cursor = revision;
                sent += 1;
            }
            if let Some(Script::AbortAfter(n)) = script
                && sent == n
            {
                let _ = cuts.changed().await;
                let _ = tx
                    .send(Err(std::io::Error::other("connection dropped")))
                    .await;
                return;
            }
            if let Some(Script::BookmarkAndEnd) = script
                && revision > from
            {
                let bookmark = json!({ "kind": "Thing", "apiVersion": "example.dev/v1", "metadata": { "resourceVersion": revision.to_string() } });
                let _ = tx.send(Ok(line("BOOKMARK", &bookmark))).await;
                return;
            }
            if head.changed().await.is_err() {
                return;
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

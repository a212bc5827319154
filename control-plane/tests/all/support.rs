//! A test API server over a fresh sled store, and helpers to call it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use skiff_control_plane::apiserver::auth::{Authenticator, User};
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::store::sled::SledStore;
use tower::ServiceExt;

pub const TOKEN: &str = "test-admin-token";

pub struct TestServer {
    pub server: Arc<ApiServer>,
    pub router: Router,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn new() -> TestServer {
        Self::with_config(ApiServerConfig::default()).await
    }

    pub async fn with_config(config: ApiServerConfig) -> TestServer {
        Self::with_users(config, &[]).await
    }

    /// A server that knows [`TOKEN`] (the admin) and each `(token, user, groups)` too.
    pub async fn with_users(
        config: ApiServerConfig,
        users: &[(&str, &str, &[&str])],
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path()).expect("open store");
        let mut auth = Authenticator::default();
        auth.add_token(
            TOKEN,
            User {
                name: "admin".into(),
                groups: vec!["system:masters".into()],
            },
        );
        for (token, name, groups) in users {
            auth.add_token(
                token,
                User {
                    name: name.to_string(),
                    groups: groups.iter().map(|g| g.to_string()).collect(),
                },
            );
        }
        let server = ApiServer::new(Arc::new(store), auth, config)
            .await
            .expect("server");
        let router = server.router();
        TestServer {
            server,
            router,
            _dir: dir,
        }
    }

    /// Sends a request with the admin token; the body is JSON unless `content_type` says otherwise.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.send_as(TOKEN, method, path, content_type, body).await
    }

    /// [`TestServer::send`] with another user's `token` (JSON or protobuf answers accepted).
    pub async fn send_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .header(
                "accept",
                "application/vnd.kubernetes.protobuf,application/json",
            )
            .body(Body::from(body))
            .expect("request");
        let response = tokio::time::timeout(
            Duration::from_secs(30),
            self.router.clone().oneshot(request),
        )
        .await
        .expect("no answer in 30 s: likely deadlocked")
        .expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        self.send(method, path, "application/json", bytes).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            Method::PATCH,
            path,
            content_type,
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates and asserts 201.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (status, object) = self.post(path, body).await;
        assert_eq!(status, StatusCode::CREATED, "create {path}: {object}");
        object
    }

    /// Opens a watch and returns its body, to read events from with [`next_event`].
    pub async fn watch(&self, path: &str) -> Body {
        let request = Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body()
    }
}

/// Reads watch events from a watch body, keeping partial lines in `buffer`.
pub struct EventReader {
    body: Body,
    buffer: Vec<u8>,
}

impl EventReader {
    pub fn new(body: Body) -> Self {
        EventReader {
            body,
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("each watch line is JSON"));
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("no watch event within 10 s: likely deadlocked");
            match frame {
                None => return None,
                Some(frame) => {
                    if let Ok(data) = frame.expect("body error").into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    pub async fn expect(&mut self) -> (String, Value) {
        let event = self.next().await.expect("watch ended early");
        (
            event["type"].as_str().unwrap().to_string(),
            event["object"].clone(),
        )
    }
}

pub fn pod(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "main", "image": "hello.wasm" }] },
    })
}

pub fn deployment(name: &str, replicas: i64) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "hello.wasm" }] },
            },
        },
    })
}

pub fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion")
}

/// A test server served over real HTTP on 127.0.0.1:0, with a client for it, for
/// components that are API clients (scheduler, controllers).
pub struct HttpServer {
    pub test: TestServer,
    pub client: skiff_client::Client,
    _serve: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub async fn start() -> HttpServer {
        let test = TestServer::new().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let router = test.router.clone();
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let mut config = skiff_client::Config::new(&url).expect("config");
        config.token = Some(TOKEN.into());
        let client = skiff_client::Client::new(config).expect("client");
        HttpServer {
            test,
            client,
            _serve: serve,
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.test.server.close_watches();
        self._serve.abort();
    }
}

/// Polls `condition` every 20 ms until it returns `Some`, failing with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

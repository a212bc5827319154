//! Input limits and per-client limits: oversized bodies, JSON and YAML bombs, JSON patch
//! copy bombs, and the per-user request rate, in-flight and watch limits (issue 7).
//!
//! Every bomb is sent from a thread of its own, so a decoder that spins fails the test at
//! its deadline instead of hanging it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_control_plane::apiserver::auth::{Authenticator, User};
use skiff_control_plane::apiserver::throttle::ClientLimits;
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::store::sled::SledStore;
use tower::ServiceExt;

use crate::support::{TOKEN, TestServer, pod};

/// How long a bomb may take to be refused: generous for a debug build on a busy CI
/// machine, far below what decoding any of these bombs would take.
const DEADLINE: Duration = Duration::from_secs(20);

/// Sends one request with `token` from a thread of its own; the answer's status, headers
/// and body, or a panic at [`DEADLINE`]. A thread, not a task: a decoder that spins never
/// yields, and a runtime being dropped waits for its tasks, so the test would hang
/// instead of failing. The thread is left behind if it does not finish.
async fn send(
    router: &Router,
    token: &str,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, header::HeaderMap, Value) {
    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("request");
    let router = router.clone();
    let (answer, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _ = answer.send(runtime.block_on(async move {
            let response = router.oneshot(request).await.expect("infallible");
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.expect("body").to_bytes();
            (parts.status, parts.headers, bytes)
        }));
    });
    let (status, headers, bytes) =
        tokio::task::spawn_blocking(move || answered.recv_timeout(DEADLINE))
            .await
            .expect("waiting for the answer")
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {DEADLINE:?}"));
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}

/// Sends one request on this runtime (work the server spawns for it lives on), with a
/// deadline: for the per-client limits, where nothing spins.
async fn call(
    router: &Router,
    token: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, header::HeaderMap, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    let response = tokio::time::timeout(DEADLINE, router.clone().oneshot(request))
        .await
        .expect("no answer: likely deadlocked")
        .expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, value)
}

/// Asserts a 4xx `Status` whose message contains `says`.
fn assert_refused(what: &str, status: StatusCode, body: &Value, says: &str) {
    assert!(
        status.is_client_error(),
        "{what}: expected 4xx, got {status}: {body:.300}"
    );
    assert_eq!(body["kind"], "Status", "{what}: not a Status: {body:.300}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(says),
        "{what}: the message does not say {says:?}: {message:.300}"
    );
}

/// Nested YAML aliases, ten of each level: 10^9 strings once expanded.
fn billion_laughs() -> String {
    let mut text = String::from("a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text
}

/// `n` aliases of one anchor of `n` items: n² values from a few bytes per alias. serde_yaml
/// allows it (its limit is on alias jumps, 100 per event, not on what they expand to).
fn flat_aliases(n: usize) -> String {
    format!(
        "metadata: {{name: flat}}\nanchor: &a [{}]\nitems: [{}]\n",
        vec!["x"; n].join(","),
        vec!["*a"; n].join(",")
    )
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_naming_the_limit() {
    let t = TestServer::with_config(ApiServerConfig {
        max_body_bytes: 4096,
        ..ApiServerConfig::default()
    })
    .await;
    let pods = "/api/v1/namespaces/default/pods";
    t.create(pods, pod("small")).await;
    let mut big = pod("big");
    big["metadata"]["annotations"] = json!({ "note": "x".repeat(5000) });
    let big = serde_json::to_vec(&big).unwrap();
    let requests = [
        (Method::POST, pods.to_string(), "application/json"),
        (Method::PUT, format!("{pods}/small"), "application/json"),
        (
            Method::PATCH,
            format!("{pods}/small"),
            "application/merge-patch+json",
        ),
        (Method::POST, pods.to_string(), "application/yaml"),
    ];
    for (method, path, content_type) in requests {
        let what = format!("{method} {path} ({content_type})");
        let (status, _, body) =
            send(&t.router, TOKEN, method, &path, content_type, big.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}: {body}");
        assert_eq!(body["reason"], "RequestEntityTooLarge", "{what}");
        assert_refused(&what, status, &body, "limit of 4096 bytes");
    }
    // The default is Kubernetes' 3 MiB: one byte over is refused, a body under it is not.
    let t = TestServer::new().await;
    let mut huge = pod("huge");
    huge["data"] = json!("x".repeat(3 * 1024 * 1024));
    let huge = serde_json::to_vec(&huge).unwrap();
    let (status, _, body) = send(
        &t.router,
        TOKEN,
        Method::POST,
        pods,
        "application/json",
        huge,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_refused("a 3 MiB string", status, &body, "limit of 3145728 bytes");
    let config_map = json!({
        "metadata": { "name": "large" },
        "data": { "blob": "x".repeat(512 * 1024) },
    });
    let (status, _, body) = send(
        &t.router,
        TOKEN,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        serde_json::to_vec(&config_map).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body:.300}");
}

#[tokio::test]
async fn json_and_yaml_bombs_are_refused_in_bounded_time() {
    let t = TestServer::new().await;
    let config_maps = "/api/v1/namespaces/default/configmaps";
    let deep_json_objects = format!("{{\"metadata\":{}}}", "{\"a\":".repeat(100_000));
    let deep_block_yaml: String = (0..120).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
    let many_keys = format!(
        "{{\"metadata\":{{\"name\":\"keys\",\"labels\":{{{}}}}}}}",
        (0..300_000)
            .map(|i| format!("\"k{i}\":\"v\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let bombs: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "100,000 [ in JSON",
            "application/json",
            "[".repeat(100_000).into_bytes(),
            "nested deeper than the limit of 100 levels",
        ),
        (
            "100,000 nested JSON objects",
            "application/json",
            deep_json_objects.into_bytes(),
            "nested deeper than the limit of 100 levels",
        ),
        (
            "1 MiB of [ in YAML",
            "application/yaml",
            format!("metadata: {}", "[".repeat(1024 * 1024 - 20)).into_bytes(),
            "nested deeper than the limit of 100 levels",
        ),
        (
            "3 MiB of [ in YAML",
            "application/yaml",
            format!("metadata: {}", "[".repeat(3 * 1024 * 1024 - 20)).into_bytes(),
            "YAML longer than the limit of 1048576 bytes",
        ),
        (
            "3 MiB of plain YAML",
            "application/yaml",
            format!(
                "metadata:\n  name: big\ndata:\n  a: {}\n",
                "x".repeat(3 * 1024 * 1024 - 40)
            )
            .into_bytes(),
            "YAML longer than the limit of 1048576 bytes",
        ),
        (
            "100,000 nested YAML flow mappings",
            "application/yaml",
            format!("metadata: {}", "{a: ".repeat(100_000)).into_bytes(),
            "nested deeper than the limit of 100 levels",
        ),
        (
            "YAML block mappings 120 deep",
            "application/yaml",
            deep_block_yaml.into_bytes(),
            "nested deeper than the limit of 100 levels",
        ),
        (
            "billion laughs",
            "application/yaml",
            billion_laughs().into_bytes(),
            "limit",
        ),
        (
            "20,000 aliases of a 20,000-item anchor",
            "application/yaml",
            flat_aliases(20_000).into_bytes(),
            "too large once decoded",
        ),
        (
            "a number of a million digits",
            "application/json",
            format!(
                "{{\"metadata\":{{\"name\":\"n\"}},\"data\":{{\"a\":{}}}}}",
                "9".repeat(1_000_000)
            )
            .into_bytes(),
            "",
        ),
        (
            "300,000 keys (past the body limit: within it, keys are just data)",
            "application/json",
            many_keys.into_bytes(),
            "limit of 3145728 bytes",
        ),
        (
            "a 2 MiB label value",
            "application/json",
            serde_json::to_vec(&json!({
                "metadata": { "name": "s", "labels": { "a": "x".repeat(2 << 20) } }
            }))
            .unwrap(),
            "metadata.labels",
        ),
    ];
    for (what, content_type, body, says) in bombs {
        let (status, _, answer) = send(
            &t.router,
            TOKEN,
            Method::POST,
            config_maps,
            content_type,
            body,
        )
        .await;
        assert_refused(what, status, &answer, says);
    }
    // Still serving.
    t.create(config_maps, json!({ "metadata": { "name": "after" } }))
        .await;
}

#[tokio::test]
async fn patch_bombs_are_refused_in_bounded_time() {
    let t = TestServer::new().await;
    let path = "/api/v1/namespaces/default/configmaps/target";
    t.create(
        "/api/v1/namespaces/default/configmaps",
        json!({ "metadata": { "name": "target" }, "data": { "a": "x".repeat(1000) } }),
    )
    .await;
    // Each copy of /data into itself doubles it: 2^60 kB from 4 kB of patch.
    let doubling: Vec<Value> = (0..60)
        .map(|i| json!({ "op": "copy", "from": "/data", "path": format!("/data/m{i}") }))
        .collect();
    let too_many: Vec<Value> = (0..10_001)
        .map(|_| json!({ "op": "test", "path": "/metadata/name", "value": "target" }))
        .collect();
    // Two values 97 deep, one added inside the other: each body is within the depth
    // limit, the object they make is not.
    let deep_value = (0..97).fold(json!(1), |v, _| json!({ "a": v }));
    let deep_path: String = (0..97).map(|_| "/a").collect();
    let patches: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "a JSON patch copy bomb",
            "application/json-patch+json",
            serde_json::to_vec(&doubling).unwrap(),
            "copies more than the limit of 3145728 bytes",
        ),
        (
            "10,001 JSON patch operations",
            "application/json-patch+json",
            serde_json::to_vec(&too_many).unwrap(),
            "more than the limit of 10000",
        ),
        (
            "a JSON patch that nests the object 195 deep",
            "application/json-patch+json",
            serde_json::to_vec(&json!([
                { "op": "add", "path": "/data2", "value": deep_value },
                { "op": "add", "path": format!("/data2{deep_path}"), "value": deep_value },
            ]))
            .unwrap(),
            "nested deeper than the limit of 100 levels",
        ),
        (
            "a merge patch 100,000 deep",
            "application/merge-patch+json",
            format!("{{\"data\":{}}}", "{\"a\":".repeat(100_000)).into_bytes(),
            "nested deeper than the limit of 100 levels",
        ),
        (
            "an apply patch of aliases",
            "application/apply-patch+yaml",
            flat_aliases(20_000).into_bytes(),
            "too large once decoded",
        ),
    ];
    for (what, content_type, body, says) in patches {
        let (status, _, answer) =
            send(&t.router, TOKEN, Method::PATCH, path, content_type, body).await;
        assert_refused(what, status, &answer, says);
    }
    // Nothing was half-applied.
    let (_, current) = t.get(path).await;
    assert_eq!(
        current["data"].as_object().unwrap().len(),
        1,
        "{current:.300}"
    );
    assert_eq!(current.get("data2"), None);
    // An ordinary copy still works.
    let copy = json!([{ "op": "copy", "from": "/data/a", "path": "/data/b" }]);
    let (status, _, answer) = send(
        &t.router,
        TOKEN,
        Method::PATCH,
        path,
        "application/json-patch+json",
        serde_json::to_vec(&copy).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer:.300}");
    assert_eq!(answer["data"]["b"], answer["data"]["a"]);
}

/// A server with three users: alice (no groups, a viewer of namespace default), a node
/// and an admin.
async fn limited_server(limits: ClientLimits) -> (Arc<ApiServer>, Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open store");
    let mut auth = Authenticator::default();
    for (token, name, group) in [
        ("alice-token", "alice", None),
        ("node-token", "system:node:n1", Some("system:nodes")),
        ("admin-token", "admin", Some("system:masters")),
    ] {
        let groups = group.into_iter().map(String::from).collect();
        auth.add_token(
            token,
            User {
                name: name.into(),
                groups,
            },
        );
    }
    let config = ApiServerConfig {
        client_limits: limits,
        ..ApiServerConfig::default()
    };
    let server = ApiServer::new(Arc::new(store), auth, config)
        .await
        .expect("server");
    let router = server.router();
    let binding = json!({
        "metadata": { "name": "alice-views" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
        "subjects": [{ "kind": "User", "name": "alice" }],
    });
    let (status, _, answer) = call(
        &router,
        "admin-token",
        Method::POST,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        serde_json::to_vec(&binding).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    (server, router, dir)
}

async fn get(router: &Router, token: &str, path: &str) -> (StatusCode, header::HeaderMap, Value) {
    send(
        router,
        token,
        Method::GET,
        path,
        "application/json",
        Vec::new(),
    )
    .await
}

#[tokio::test]
async fn a_user_over_its_request_rate_gets_429_with_retry_after() {
    let limits = ClientLimits {
        requests_per_second: 0.1,
        burst: 5,
        ..ClientLimits::default()
    };
    let (_server, router, _dir) = limited_server(limits).await;
    // Discovery: every authenticated user may read it, so only the limit can refuse.
    let pods = "/api";
    for i in 0..5 {
        let (status, _, body) = get(&router, "alice-token", pods).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
    }
    let (status, headers, body) = get(&router, "alice-token", pods).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["reason"], "TooManyRequests");
    assert_refused("over the rate", status, &body, "\"alice\"");
    // One token comes back within 10 s at a tenth of a token a second.
    let retry_after: i64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=10).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(body["details"]["retryAfterSeconds"], retry_after);
    // Nodes and the admin credential (the scheduler and controllers) are never throttled.
    for token in ["node-token", "admin-token"] {
        for _ in 0..20 {
            assert_eq!(get(&router, token, pods).await.0, StatusCode::OK, "{token}");
        }
    }
    // Health checks carry no user and are not limited either.
    assert_eq!(
        get(&router, "alice-token", "/healthz").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_user_over_its_watch_limit_gets_429_until_one_closes() {
    let limits = ClientLimits {
        max_watches: 2,
        ..ClientLimits::default()
    };
    let (_server, router, _dir) = limited_server(limits).await;
    let watch = "/api/v1/namespaces/default/pods?watch=1";
    let open = |token: &'static str| {
        let router = router.clone();
        async move {
            let request = Request::builder()
                .uri(watch)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            tokio::time::timeout(DEADLINE, router.oneshot(request))
                .await
                .expect("no answer: likely deadlocked")
                .expect("infallible")
        }
    };
    let first = open("alice-token").await;
    let second = open("alice-token").await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let refused = open("alice-token").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_refused(
        "a third watch",
        StatusCode::TOO_MANY_REQUESTS,
        &body,
        "watches open",
    );
    // Other requests of the same user are not watches and still pass.
    assert_eq!(
        get(&router, "alice-token", "/api/v1/namespaces/default/pods")
            .await
            .0,
        StatusCode::OK
    );
    // A node opens as many as it needs.
    let mut node_watches = Vec::new();
    for _ in 0..5 {
        let response = open("node-token").await;
        assert_eq!(response.status(), StatusCode::OK);
        node_watches.push(response);
    }
    // Closing a watch (the client drops the stream) gives its slot back.
    drop(first);
    let again = open("alice-token").await;
    assert_eq!(again.status(), StatusCode::OK);
    drop(second);
}

/// A client flooding the API without valid credentials is answered 429 with
/// `Retry-After` once over its address's rate; valid credentials from the same address,
/// and other addresses, are not held back by it.
#[tokio::test]
async fn requests_without_valid_credentials_are_limited_per_address() {
    let limits = ClientLimits {
        failed_auth_per_second: 1.0,
        ..ClientLimits::default()
    };
    let (_server, router, _dir) = limited_server(limits).await;
    let from = |address: &str, token: &str| {
        let router = router.clone();
        let address: std::net::SocketAddr = address.parse().unwrap();
        let request = Request::builder()
            .uri("/api")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .extension(axum::extract::ConnectInfo(address))
            .body(Body::empty())
            .unwrap();
        async move {
            tokio::time::timeout(DEADLINE, router.oneshot(request))
                .await
                .expect("no answer: likely deadlocked")
                .expect("infallible")
        }
    };
    // A burst of five times the rate, then 429.
    for i in 0..5 {
        let response = from("192.0.2.1:40000", "guess").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "request {i}");
    }
    let refused = from("192.0.2.1:40001", "guess").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_refused(
        "a flood of bad tokens",
        StatusCode::TOO_MANY_REQUESTS,
        &body,
        "without valid credentials from 192.0.2.1",
    );
    assert_eq!(
        from("192.0.2.1:40002", "alice-token").await.status(),
        StatusCode::OK,
        "a valid token from the same address"
    );
    assert_eq!(
        from("192.0.2.2:40000", "guess").await.status(),
        StatusCode::UNAUTHORIZED,
        "another address"
    );
}

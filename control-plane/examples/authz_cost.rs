//! What authorization costs a request: `cargo run --release -p skiff-control-plane
//! --example authz_cost`.
//!
//! Prints, for an index of a realistic size (`BINDINGS` RoleBindings over `NAMESPACES`
//! namespaces, plus the bootstrap policy): the time to take a request's attributes
//! apart, to decide on the index, and to rebuild the index; and, side by side, the time
//! of a whole request through the router for the admin (`system:masters`: decided
//! without a lookup) and for a viewer bound by a RoleBinding (a full lookup), so the
//! difference is the lookup's share of a request.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;
use skiff_control_plane::apiserver::auth::{Authenticator, User};
use skiff_control_plane::apiserver::authz::action_of;
use skiff_control_plane::apiserver::rbac::AccessIndex;
use skiff_control_plane::apiserver::registry::Registry;
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::store::Store;
use skiff_control_plane::store::sled::SledStore;
use tower::ServiceExt;

const NAMESPACES: usize = 50;
const BINDINGS: usize = 500;
const DECISIONS: u32 = 1_000_000;
const REQUESTS: u32 = 20_000;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("store"));
    let mut auth = Authenticator::default();
    let user = |name: &str, groups: &[&str]| User {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    auth.add_token("admin", user("admin", &["system:masters"]));
    auth.add_token("viewer", user("viewer", &[]));
    let server = ApiServer::new(store.clone(), auth, ApiServerConfig::default())
        .await
        .expect("server");
    let router = server.router();
    let post = |path: String, body: serde_json::Value| {
        let router = router.clone();
        async move {
            let request = Request::builder()
                .method(Method::POST)
                .uri(&path)
                .header("authorization", "Bearer admin")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let status = router.oneshot(request).await.unwrap().status();
            assert!(status.is_success(), "POST {path}: {status}");
        }
    };
    for n in 0..NAMESPACES {
        post(
            "/api/v1/namespaces".into(),
            json!({ "metadata": { "name": format!("ns-{n}") } }),
        )
        .await;
    }
    for b in 0..BINDINGS {
        let ns = format!("ns-{}", b % NAMESPACES);
        // The viewer is bound in the last namespace only: every other binding is noise
        // the lookup must not pay for.
        let subject = if b == BINDINGS - 1 {
            "viewer".to_string()
        } else {
            format!("user-{b}")
        };
        post(
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
            json!({
                "metadata": { "name": format!("b-{b}") },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
                "subjects": [{ "kind": "User", "name": subject }, { "kind": "Group", "name": format!("team-{b}") }],
            }),
        )
        .await;
    }
    let viewer_ns = format!("ns-{}", (BINDINGS - 1) % NAMESPACES);
    let path = format!("/api/v1/namespaces/{viewer_ns}/pods/missing");

    println!("authz_cost");
    println!(
        "conditions: {} cores, {BINDINGS} RoleBindings over {NAMESPACES} namespaces plus the bootstrap policy, sled store in a temp dir, debug assertions {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if cfg!(debug_assertions) {
            "on (use --release)"
        } else {
            "off"
        },
    );

    let registry = Registry::builtin();
    let uri: axum::http::Uri = path.parse().unwrap();
    let started = Instant::now();
    for _ in 0..DECISIONS {
        std::hint::black_box(action_of(&registry, &Method::GET, &uri).unwrap());
    }
    let parse = started.elapsed() / DECISIONS;

    let index = AccessIndex::default();
    let started = Instant::now();
    index.rebuild(store.as_ref()).await.expect("rebuild");
    let rebuild = started.elapsed();
    let action = action_of(&registry, &Method::GET, &uri).unwrap();
    let viewer = user("viewer", &[]);
    let stranger = user("stranger", &["a", "b"]);
    let started = Instant::now();
    for _ in 0..DECISIONS {
        assert!(
            index
                .snapshot()
                .allows(std::hint::black_box(&viewer), &action)
        );
    }
    let allow = started.elapsed() / DECISIONS;
    let started = Instant::now();
    for _ in 0..DECISIONS {
        assert!(
            !index
                .snapshot()
                .allows(std::hint::black_box(&stranger), &action)
        );
    }
    let deny = started.elapsed() / DECISIONS;

    let mut per_request = Vec::new();
    for token in ["admin", "viewer"] {
        let started = Instant::now();
        for _ in 0..REQUESTS {
            let request = Request::builder()
                .uri(&path)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let status = router.clone().oneshot(request).await.unwrap().status();
            assert_eq!(
                status, 404,
                "{token}: the pod does not exist, but may be read"
            );
        }
        per_request.push((token, started.elapsed() / REQUESTS));
    }

    println!("attributes from method, path and query: {parse:?} per request");
    println!(
        "decision on the index: {allow:?} allowed (viewer), {deny:?} denied (two groups, no binding)"
    );
    println!("index rebuild (on each RBAC change): {rebuild:?}");
    for (token, time) in &per_request {
        println!("GET pod (404) through the router as {token}: {time:?} per request");
    }
}

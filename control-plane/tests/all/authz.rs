//! The authorization matrix: every verb on every kind, for every kind of caller.
//!
//! Callers: no token and a bad token (401 everywhere), a viewer made as `skiff create
//! token --role viewer --namespace team` makes one (a `skiff.dev/token` Secret and a
//! RoleBinding to `view`), the admin (`system:masters`), the node `node-1` on its own
//! objects and on `node-2`'s, a join token (which may only exchange itself for a node's
//! credential) and an expired one (401 everywhere). Each caller runs on a fresh server,
//! so the writes it is allowed cannot change what a later row sees.
//!
//! "Allowed" means authorization let the request through: the handler's own answer
//! (200, 201, 404, 409, 422, even a handler's 403 for a protected namespace) is not
//! what is tested here. "Denied" means 403 from the authorizer, whose message says who
//! cannot do what.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_control_plane::apiserver::auth::{Authenticator, User, token_hash_hex};
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::store::sled::SledStore;
use tower::ServiceExt;

const ADMIN: &str = "admin-token";
const NODE_1: &str = "node-1-token";
const NODE_2: &str = "node-2-token";
/// A join token (`skiff token create`), and one past its expiration.
const JOIN: &str = "abcdef.0123456789abcdef";
const EXPIRED_JOIN: &str = "zyxwvu.0123456789abcdef";
const VIEWER: &str = "viewer-token-made-at-runtime";
const VIEWER_USER: &str = "viewer-team";
const NS: &str = "team";

/// The verbs, in the order of a row's columns. Deletes come last so that a caller's
/// allowed deletes run after everything that needs the objects.
const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// One kind (or subresource) and what each caller may do with it, one letter per verb of
/// [`VERBS`]: `y` allowed, `n` denied (403), `.` not a verb of this resource.
struct Row {
    resource: &'static str,
    viewer: &'static str,
    /// node-1 on its own object: its Node, its Lease, a pod bound to it.
    node_own: &'static str,
    /// node-1 on node-2's.
    node_other: &'static str,
}

const fn row(
    resource: &'static str,
    viewer: &'static str,
    node_own: &'static str,
    node_other: &'static str,
) -> Row {
    Row {
        resource,
        viewer,
        node_own,
        node_other,
    }
}

/// The matrix. The admin may do everything; no token or a bad one, nothing (401).
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //   resource                 viewer (in team)  node-1, own   node-1, node-2's
    //                            glwcupdD          glwcupdD      glwcupdD
    row("pods",                  "yyynnnnn",       "yyynnnyn",   "yyynnnnn"),
    row("pods/status",           "y...nn..",       "n...yy..",   "n...nn.."),
    row("pods/log",              "y.......",       "n.......",   "n......."),
    row("pods/binding",          "...n....",       "...n....",   "...n...."),
    row("services",              "yyynnnnn",       "yyynnnnn",   "yyynnnnn"),
    row("endpoints",             "yyynnnnn",       "yyynnnnn",   "yyynnnnn"),
    // A node reads only the ConfigMaps and Secrets its pods use; these pods use none
    // (see `a_node_reads_only_the_config_maps_and_secrets_its_pods_use`).
    row("configmaps",            "yyynnnnn",       "nnnnnnnn",   "nnnnnnnn"),
    row("secrets",               "nnnnnnnn",       "nnnnnnnn",   "nnnnnnnn"),
    row("nodes",                 "nnnnnnnn",       "yyyyyynn",   "yyynnnnn"),
    row("nodes/status",          "n...nn..",       "n...yy..",   "n...nn.."),
    row("nodes/credential",      "...n....",       "...n....",   "...n...."),
    row("leases",                "nnnnnnnn",       "yyyyyynn",   "yyynnnnn"),
    row("events",                "yyynnnnn",       "nnnynynn",   "nnnynynn"),
    row("deployments",           "yyynnnnn",       "nnnnnnnn",   "nnnnnnnn"),
    row("replicasets",           "yyynnnnn",       "nnnnnnnn",   "nnnnnnnn"),
    row("jobs",                  "yyynnnnn",       "nnnnnnnn",   "nnnnnnnn"),
    row("roles",                 "nnnnnnnn",       "nnnnnnnn",   "nnnnnnnn"),
    row("rolebindings",          "nnnnnnnn",       "nnnnnnnn",   "nnnnnnnn"),
    row("clusterroles",          "nnnnnnnn",       "nnnnnnnn",   "nnnnnnnn"),
    row("clusterrolebindings",   "nnnnnnnn",       "nnnnnnnn",   "nnnnnnnn"),
    // A viewer bound in `team` may read namespace `team` itself, nothing else of them.
    row("namespaces",            "ynnnnnnn",       "yyynnnnn",   "yyynnnnn"),
];

/// Paths that are not resources: `(path, viewer, node)`, `y` or `n` for a GET.
#[rustfmt::skip]
const NON_RESOURCE: &[(&str, char, char)] = &[
    ("/api",                     'y', 'y'),
    ("/api/v1",                  'y', 'y'),
    ("/apis",                    'y', 'y'),
    ("/apis/apps/v1",            'y', 'y'),
    ("/apis/rbac.authorization.k8s.io/v1", 'y', 'y'),
    ("/version",                 'y', 'y'),
    ("/metrics",                 'n', 'n'),
    ("/skiff/v1/modules/hello",  'n', 'y'),
];

/// Whose object a request is about.
#[derive(Clone, Copy, PartialEq)]
enum Whose {
    Node1,
    Node2,
}

impl Whose {
    fn node(self) -> &'static str {
        match self {
            Whose::Node1 => "node-1",
            Whose::Node2 => "node-2",
        }
    }
}

/// Where a resource lives and what to send it.
struct Target {
    /// The collection path.
    collection: String,
    /// The object's name (the pod bound to the node, the node, its lease, ...).
    name: String,
    /// A subresource, if the row is one.
    subresource: Option<String>,
    /// A body for create and update.
    object: Value,
}

fn api_path(group: &str, namespace: Option<&str>, plural: &str) -> String {
    let base = if group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group}/v1")
    };
    match namespace {
        Some(ns) => format!("{base}/namespaces/{ns}/{plural}"),
        None => format!("{base}/{plural}"),
    }
}

/// The request target of `resource` for a caller working in `namespace` on `whose`'s
/// object. Leases of nodes live in kube-node-lease; the viewer's in its namespace.
fn target(resource: &str, namespace: &str, whose: Whose, lease_namespace: &str) -> Target {
    let (plural, subresource) = match resource.split_once('/') {
        Some((plural, sub)) => (plural, Some(sub)),
        None => (resource, None),
    };
    let node = whose.node();
    let (group, ns, name) = match plural {
        "pods" => ("", Some(namespace), format!("pod-on-{node}")),
        "nodes" => ("", None, node.to_string()),
        "namespaces" => ("", None, namespace.to_string()),
        "leases" => (
            "coordination.k8s.io",
            Some(lease_namespace),
            node.to_string(),
        ),
        "deployments" | "replicasets" => ("apps", Some(namespace), "x".to_string()),
        "jobs" => ("batch", Some(namespace), "x".to_string()),
        "roles" | "rolebindings" => ("rbac.authorization.k8s.io", Some(namespace), "x".into()),
        "clusterroles" | "clusterrolebindings" => ("rbac.authorization.k8s.io", None, "x".into()),
        _ => ("", Some(namespace), "x".to_string()),
    };
    Target {
        collection: api_path(group, ns, plural),
        object: manifest(plural, ns, &name, node),
        name,
        subresource: subresource.map(String::from),
    }
}

/// A valid object of each kind.
fn manifest(plural: &str, namespace: Option<&str>, name: &str, node: &str) -> Value {
    let mut object = match plural {
        "pods" => json!({ "apiVersion": "v1", "kind": "Pod",
            "spec": { "nodeName": node, "containers": [{ "name": "main", "image": "hello.wasm" }] } }),
        "services" => json!({ "apiVersion": "v1", "kind": "Service",
            "spec": { "selector": { "app": "x" }, "ports": [{ "port": 80 }] } }),
        "endpoints" => json!({ "apiVersion": "v1", "kind": "Endpoints", "subsets": [] }),
        "configmaps" => json!({ "apiVersion": "v1", "kind": "ConfigMap", "data": { "a": "b" } }),
        "secrets" => json!({ "apiVersion": "v1", "kind": "Secret", "stringData": { "a": "b" } }),
        "nodes" => json!({ "apiVersion": "v1", "kind": "Node" }),
        "namespaces" => json!({ "apiVersion": "v1", "kind": "Namespace" }),
        "leases" => json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "spec": { "holderIdentity": name, "leaseDurationSeconds": 40 } }),
        "events" => json!({ "apiVersion": "v1", "kind": "Event", "reason": "Test", "message": "m",
            "involvedObject": { "kind": "Pod", "name": "x", "namespace": namespace } }),
        "deployments" | "replicasets" => {
            let kind = if plural == "deployments" {
                "Deployment"
            } else {
                "ReplicaSet"
            };
            json!({ "apiVersion": "apps/v1", "kind": kind, "spec": {
                "replicas": 0,
                "selector": { "matchLabels": { "app": name } },
                "template": { "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": "main", "image": "hello.wasm" }] } } } })
        }
        "jobs" => {
            json!({ "apiVersion": "batch/v1", "kind": "Job", "spec": { "template": { "spec": {
            "restartPolicy": "Never", "containers": [{ "name": "main", "image": "hello.wasm" }] } } } })
        }
        "roles" | "clusterroles" => {
            let kind = if plural == "roles" {
                "Role"
            } else {
                "ClusterRole"
            };
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] }] })
        }
        "rolebindings" | "clusterrolebindings" => {
            let kind = if plural == "rolebindings" {
                "RoleBinding"
            } else {
                "ClusterRoleBinding"
            };
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
                "subjects": [{ "kind": "User", "name": "nobody" }] })
        }
        other => panic!("no manifest for {other}"),
    };
    object["metadata"] = json!({ "name": name });
    if let Some(ns) = namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    object
}

/// One request and its answer.
async fn send(
    router: &Router,
    token: Option<&str>,
    method: Method,
    path: &str,
    content_type: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .header("content-type", content_type)
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), router.clone().oneshot(request))
        .await
        .expect("no answer in 30 s: likely deadlocked")
        .expect("infallible");
    let status = response.status();
    if path.contains("watch=true") && status == StatusCode::OK {
        // A watch streams until its timeout: its status is the answer here.
        return (status, Value::Null);
    }
    let bytes = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
        .await
        .expect("no body in 30 s: likely deadlocked")
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The request for `verb` on `target`: method, path, content type, body.
fn request_for(verb: &str, t: &Target) -> (Method, String, &'static str, Option<Value>) {
    let object = format!("{}/{}", t.collection, t.name);
    let sub = |path: &str| match &t.subresource {
        Some(sub) => format!("{path}/{sub}"),
        None => path.to_string(),
    };
    let json = "application/json";
    let merge = "application/merge-patch+json";
    let patch = match t.subresource.as_deref() {
        Some("status") => json!({ "status": { "phase": "Running" } }),
        _ => json!({ "metadata": { "labels": { "touched": "yes" } } }),
    };
    match verb {
        "get" => (Method::GET, sub(&object), json, None),
        "list" => (Method::GET, t.collection.clone(), json, None),
        "watch" => (
            Method::GET,
            format!("{}?watch=true&timeoutSeconds=1", t.collection),
            json,
            None,
        ),
        "create" if t.subresource.as_deref() == Some("credential") => {
            (Method::POST, sub(&object), json, Some(json!({})))
        }
        "create" if t.subresource.as_deref() == Some("binding") => (
            Method::POST,
            sub(&object),
            json,
            Some(
                json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": t.name },
                "target": { "kind": "Node", "name": "node-1" } }),
            ),
        ),
        "create" => (
            Method::POST,
            t.collection.clone(),
            json,
            Some(t.object.clone()),
        ),
        "update" => (Method::PUT, sub(&object), json, Some(t.object.clone())),
        "patch" => (Method::PATCH, sub(&object), merge, Some(patch)),
        "delete" => (Method::DELETE, object, json, None),
        "deletecollection" => (Method::DELETE, t.collection.clone(), json, None),
        other => panic!("unknown verb {other}"),
    }
}

/// A fresh server with the tokens and objects the matrix needs.
struct Cluster {
    router: Router,
    _server: Arc<ApiServer>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path()).expect("open store");
        let mut auth = Authenticator::default();
        let user = |name: &str, group: &str| User {
            name: name.into(),
            groups: vec![group.into()],
        };
        auth.add_token(ADMIN, user("admin", "system:masters"));
        auth.add_token(NODE_1, user("system:node:node-1", "system:nodes"));
        auth.add_token(NODE_2, user("system:node:node-2", "system:nodes"));
        let server = ApiServer::new(Arc::new(store), auth, ApiServerConfig::default())
            .await
            .expect("server");
        let cluster = Cluster {
            router: server.router(),
            _server: server,
            _dir: dir,
        };
        cluster.fixtures().await;
        cluster
    }

    async fn admin(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let content_type = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let body = Some(&body).filter(|b| !b.is_null());
        send(&self.router, Some(ADMIN), method, path, content_type, body).await
    }

    async fn create(&self, path: &str, body: Value) {
        let (status, answer) = self.admin(Method::POST, path, body).await;
        assert_eq!(status, StatusCode::CREATED, "create {path}: {answer}");
    }

    /// Namespaces `team` and `other`; in each, one object of every namespaced kind (pods
    /// bound to node-1 and node-2, leases named after both nodes); both nodes and their
    /// kube-node-lease Leases; an RBAC object of each kind; and the viewer's token.
    async fn fixtures(&self) {
        for ns in [NS, "other"] {
            self.create("/api/v1/namespaces", json!({ "metadata": { "name": ns } }))
                .await;
        }
        for ns in [NS, "other"] {
            for row in MATRIX {
                if row.resource.contains('/')
                    || matches!(
                        row.resource,
                        "nodes" | "namespaces" | "clusterroles" | "clusterrolebindings"
                    )
                {
                    continue;
                }
                for whose in [Whose::Node1, Whose::Node2] {
                    let t = target(row.resource, ns, whose, ns);
                    if whose == Whose::Node2 && t.name == "x" {
                        continue;
                    }
                    self.create(&t.collection, t.object).await;
                }
            }
        }
        for whose in [Whose::Node1, Whose::Node2] {
            for resource in ["nodes", "leases"] {
                let t = target(resource, NS, whose, "kube-node-lease");
                self.create(&t.collection, t.object).await;
            }
        }
        for resource in ["clusterroles", "clusterrolebindings"] {
            let t = target(resource, NS, Whose::Node1, NS);
            self.create(&t.collection, t.object).await;
        }
        make_viewer_token(self, NS).await;
        make_join_token(self, JOIN, "2100-01-01T00:00:00Z").await;
        make_join_token(self, EXPIRED_JOIN, "2000-01-01T00:00:00Z").await;
    }
}

/// What `skiff create token --role viewer --namespace NS --name viewer-team` does: the
/// token's hash in a `skiff.dev/token` Secret in kube-system, and a RoleBinding of the
/// user to ClusterRole `view` in NS.
async fn make_viewer_token(cluster: &Cluster, namespace: &str) {
    cluster
        .create(
            "/api/v1/namespaces/kube-system/secrets",
            json!({
                "metadata": { "name": format!("skiff-token-{VIEWER_USER}") },
                "type": "skiff.dev/token",
                "stringData": { "tokenHash": token_hash_hex(VIEWER), "user": VIEWER_USER },
            }),
        )
        .await;
    cluster
        .create(
            &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings"),
            json!({
                "metadata": { "name": format!("skiff-token-{VIEWER_USER}") },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
                "subjects": [{ "kind": "User", "name": VIEWER_USER }],
            }),
        )
        .await;
}

/// What `skiff token create` makes: a bootstrap token Secret holding the token's hash.
async fn make_join_token(cluster: &Cluster, token: &str, expiration: &str) {
    let id = token.split('.').next().unwrap();
    cluster
        .create(
            "/api/v1/namespaces/kube-system/secrets",
            json!({
                "metadata": { "name": format!("bootstrap-token-{id}") },
                "type": "bootstrap.kubernetes.io/token",
                "stringData": {
                    "token-id": id,
                    "tokenHash": token_hash_hex(token),
                    "expiration": expiration,
                    "usage-bootstrap-authentication": "true",
                },
            }),
        )
        .await;
}

/// Whether an answer is the authorizer's 403 (not a handler's: a protected namespace
/// is refused with 403 too).
fn denied_by_authorizer(status: StatusCode, answer: &Value) -> bool {
    status == StatusCode::FORBIDDEN
        && answer["reason"] == "Forbidden"
        && answer["message"]
            .as_str()
            .is_some_and(|m| m.contains(" cannot "))
}

/// Runs every row for one caller and returns what went otherwise than expected.
async fn run_matrix(
    cluster: &Cluster,
    token: &str,
    expected_of: impl Fn(&Row) -> &'static str,
    namespace: &str,
    whose: Whose,
    lease_namespace: &str,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (column, verb) in VERBS.iter().enumerate() {
        for row in MATRIX {
            let expected = expected_of(row).as_bytes()[column];
            if expected == b'.' {
                continue;
            }
            let t = target(row.resource, namespace, whose, lease_namespace);
            let (method, path, content_type, body) = request_for(verb, &t);
            let (status, answer) = send(
                &cluster.router,
                Some(token),
                method.clone(),
                &path,
                content_type,
                body.as_ref(),
            )
            .await;
            let denied = denied_by_authorizer(status, &answer);
            let ok = match expected {
                b'y' => !denied && status != StatusCode::UNAUTHORIZED,
                _ => denied,
            };
            if !ok {
                wrong.push(format!(
                    "{verb} {} ({method} {path}): expected {}, got {status} {}",
                    row.resource,
                    if expected == b'y' { "allowed" } else { "403" },
                    answer["message"]
                ));
            }
        }
    }
    wrong
}

fn assert_none(who: &str, wrong: Vec<String>) {
    assert!(
        wrong.is_empty(),
        "{who}: {} unexpected answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_its_namespace_only() {
    let cluster = Cluster::start().await;
    let wrong = run_matrix(&cluster, VIEWER, |r| r.viewer, NS, Whose::Node1, NS).await;
    assert_none("viewer in its namespace", wrong);
    // The same requests in another namespace: all denied.
    let wrong = run_matrix(
        &cluster,
        VIEWER,
        |r| {
            if r.resource == "namespaces" {
                "nnnnnnnn"
            } else {
                deny_all(r.viewer)
            }
        },
        "other",
        Whose::Node1,
        "other",
    )
    .await;
    assert_none("viewer in another namespace", wrong);
}

/// `y` and `n` both become `n`; `.` stays.
fn deny_all(row: &'static str) -> &'static str {
    match row {
        r if r.starts_with("y.") || r.starts_with("n.") => {
            // Subresource rows: only their own verbs.
            Box::leak(r.replace('y', "n").into_boxed_str())
        }
        r if r.starts_with("...") => "...n....",
        _ => "nnnnnnnn",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_may_do_everything() {
    let cluster = Cluster::start().await;
    let all = |r: &Row| {
        let shape = r.viewer;
        Box::leak(shape.replace('n', "y").into_boxed_str()) as &'static str
    };
    let wrong = run_matrix(&cluster, ADMIN, all, NS, Whose::Node1, NS).await;
    assert_none("admin", wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_writes_its_own_objects_only() {
    let cluster = Cluster::start().await;
    let wrong = run_matrix(
        &cluster,
        NODE_1,
        |r| r.node_other,
        NS,
        Whose::Node2,
        "kube-node-lease",
    )
    .await;
    assert_none("node-1 on node-2's objects", wrong);
    let wrong = run_matrix(
        &cluster,
        NODE_1,
        |r| r.node_own,
        NS,
        Whose::Node1,
        "kube-node-lease",
    )
    .await;
    assert_none("node-1 on its own objects", wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_a_bad_token_gets_401_everywhere() {
    let cluster = Cluster::start().await;
    for token in [None, Some("not-a-token")] {
        for (column, verb) in VERBS.iter().enumerate() {
            for row in MATRIX {
                if row.viewer.as_bytes()[column] == b'.' {
                    continue;
                }
                let t = target(row.resource, NS, Whose::Node1, NS);
                let (method, path, content_type, body) = request_for(verb, &t);
                let (status, answer) = send(
                    &cluster.router,
                    token,
                    method,
                    &path,
                    content_type,
                    body.as_ref(),
                )
                .await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{verb} {} with {token:?}: {answer}",
                    row.resource
                );
                assert_eq!(answer["reason"], "Unauthorized");
            }
        }
        for (path, _, _) in NON_RESOURCE {
            let (status, _) = send(&cluster.router, token, Method::GET, path, "", None).await;
            let expected = if *path == "/version" {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(status, expected, "{path} with {token:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_open_to_everyone_authenticated_and_metrics_to_admins() {
    let cluster = Cluster::start().await;
    for (path, viewer, node) in NON_RESOURCE {
        for (who, token, expected) in [
            ("viewer", VIEWER, *viewer),
            ("node", NODE_1, *node),
            ("admin", ADMIN, 'y'),
        ] {
            let (status, answer) =
                send(&cluster.router, Some(token), Method::GET, path, "", None).await;
            let denied = denied_by_authorizer(status, &answer);
            assert_eq!(
                !denied,
                expected == 'y',
                "{who} GET {path}: {status} {answer}"
            );
            if denied {
                assert_eq!(
                    answer["message"],
                    format!(
                        "forbidden: User {:?} cannot get path {path:?}",
                        if who == "viewer" {
                            VIEWER_USER
                        } else {
                            "system:node:node-1"
                        }
                    )
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_user_verb_resource_and_namespace() {
    let cluster = Cluster::start().await;
    let (status, answer) = send(
        &cluster.router,
        Some(VIEWER),
        Method::GET,
        "/api/v1/namespaces/team/secrets/x",
        "",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["reason"], "Forbidden");
    assert_eq!(answer["code"], 403);
    assert_eq!(
        answer["message"],
        r#"secrets "x" is forbidden: User "viewer-team" cannot get resource "secrets" in API group "" in the namespace "team""#
    );
    assert_eq!(answer["details"]["name"], "x");
    assert_eq!(answer["details"]["kind"], "secrets");

    let (_, answer) = send(
        &cluster.router,
        Some(VIEWER),
        Method::PUT,
        "/apis/apps/v1/namespaces/team/deployments/x/scale",
        "application/json",
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        answer["message"],
        r#"deployments.apps "x" is forbidden: User "viewer-team" cannot update resource "deployments/scale" in API group "apps" in the namespace "team""#
    );

    let (status, answer) = send(
        &cluster.router,
        Some(NODE_1),
        Method::PATCH,
        "/api/v1/namespaces/team/pods/pod-on-node-2/status",
        "application/merge-patch+json",
        Some(&json!({ "status": { "phase": "Running" } })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer["message"],
        r#"pods "pod-on-node-2" is forbidden: User "system:node:node-1" cannot patch resource "pods/status" in API group "" in the namespace "team": node "node-1" can only update pod status for pods with spec.nodeName set to itself"#
    );
    // The status was not written.
    let (_, pod) = cluster
        .admin(
            Method::GET,
            "/api/v1/namespaces/team/pods/pod-on-node-2",
            Value::Null,
        )
        .await;
    assert_eq!(pod["status"]["phase"], "Pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restriction_covers_bodies_and_lease_namespaces() {
    let cluster = Cluster::start().await;
    let send_as = |token: &'static str, method: Method, path: &'static str, body: Value| {
        let router = cluster.router.clone();
        async move {
            let content_type = if method == Method::PATCH {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            let body = Some(&body).filter(|b| !b.is_null());
            send(&router, Some(token), method, path, content_type, body).await
        }
    };
    // A create names its object in the body: node-1 cannot register as node-3.
    let (status, answer) = send_as(
        NODE_1,
        Method::POST,
        "/api/v1/nodes",
        json!({ "metadata": { "name": "node-3" } }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = send_as(
        NODE_1,
        Method::POST,
        "/api/v1/nodes",
        json!({ "metadata": { "generateName": "node-" } }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a generated name is not its own: {answer}"
    );
    // Its own Lease only in kube-node-lease.
    let (status, answer) = send_as(
        NODE_1,
        Method::PATCH,
        "/apis/coordination.k8s.io/v1/namespaces/team/leases/node-1",
        json!({ "spec": { "holderIdentity": "node-1" } }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    // Deleting a pod bound to another node.
    let (status, answer) = send_as(
        NODE_1,
        Method::DELETE,
        "/api/v1/namespaces/team/pods/pod-on-node-2",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    // node-2 may do what node-1 may not, to its own objects.
    let (status, answer) = send_as(
        NODE_2,
        Method::PATCH,
        "/api/v1/namespaces/team/pods/pod-on-node-2/status",
        json!({ "status": { "phase": "Running" } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"]["phase"], "Running");
}

/// The node authorizer: a node may get the ConfigMaps and Secrets that pods bound to it
/// use (by volumes, `env` or `envFrom`), or list and watch one of them by
/// `metadata.name`, from the moment the pod is bound; nothing else of those kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reads_only_the_config_maps_and_secrets_its_pods_use() {
    let cluster = Cluster::start().await;
    for (plural, name) in [
        ("secrets", "db"),
        ("secrets", "other"),
        ("configmaps", "files"),
    ] {
        let kind = if plural == "secrets" {
            "Secret"
        } else {
            "ConfigMap"
        };
        cluster
            .create(
                &format!("/api/v1/namespaces/{NS}/{plural}"),
                json!({ "apiVersion": "v1", "kind": kind, "metadata": { "name": name } }),
            )
            .await;
    }
    let read = |token: &'static str, path: String| {
        let router = cluster.router.clone();
        async move {
            let (status, answer) = send(&router, Some(token), Method::GET, &path, "", None).await;
            if denied_by_authorizer(status, &answer) {
                'n'
            } else {
                'y'
            }
        }
    };
    let secrets = format!("/api/v1/namespaces/{NS}/secrets");
    let by_name = |name: &str| format!("{secrets}?fieldSelector=metadata.name%3D{name}");
    assert_eq!(
        read(NODE_1, format!("{secrets}/db")).await,
        'n',
        "no pod uses it yet"
    );

    // A pod bound to node-1 uses Secret db and ConfigMap files; node-1 may read them at
    // once (the node graph may not have seen the pod: the store is asked).
    cluster
        .create(
            &format!("/api/v1/namespaces/{NS}/pods"),
            json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "uses" },
                "spec": { "nodeName": "node-1",
                    "containers": [{ "name": "main", "image": "m.wasm", "env": [
                        { "name": "P", "valueFrom": { "secretKeyRef": { "name": "db", "key": "p" } } }] }],
                    "volumes": [{ "name": "v", "configMap": { "name": "files" } }] } }),
        )
        .await;
    for (token, path, expected) in [
        (NODE_1, format!("{secrets}/db"), 'y'),
        (NODE_1, by_name("db"), 'y'),
        (
            NODE_1,
            format!("{}&watch=true&timeoutSeconds=1", by_name("db")),
            'y',
        ),
        (
            NODE_1,
            format!("/api/v1/namespaces/{NS}/configmaps/files"),
            'y',
        ),
        (NODE_1, format!("{secrets}/other"), 'n'),
        (NODE_1, by_name("other"), 'n'),
        (NODE_1, secrets.clone(), 'n'),
        (
            NODE_1,
            "/api/v1/namespaces/other/secrets/db".to_string(),
            'n',
        ),
        (
            NODE_1,
            format!("/api/v1/namespaces/{NS}/secrets/files"),
            'n',
        ),
        (NODE_2, format!("{secrets}/db"), 'n'),
        (NODE_2, by_name("db"), 'n'),
    ] {
        assert_eq!(
            read(token, path.clone()).await,
            expected,
            "{token} GET {path}"
        );
    }
    // Writes stay refused.
    let (status, answer) = send(
        &cluster.router,
        Some(NODE_1),
        Method::DELETE,
        &format!("{secrets}/db"),
        "",
        None,
    )
    .await;
    assert!(denied_by_authorizer(status, &answer), "{status} {answer}");

    // Once the pod is gone, so is the right.
    let (status, _) = cluster
        .admin(
            Method::DELETE,
            &format!("/api/v1/namespaces/{NS}/pods/uses?gracePeriodSeconds=0"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = cluster
        .admin(
            Method::GET,
            &format!("/api/v1/namespaces/{NS}/pods/uses"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted at once");
    // The graph follows the store a moment behind: the right goes within a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while read(NODE_1, format!("{secrets}/db")).await == 'y' {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node-1 still reads the Secret of a pod deleted 10 s ago"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A join token may exchange itself for a node's credential (`nodes/NAME/credential`)
/// and do nothing else; past its expiration it is no credential at all (401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_token_only_joins_and_an_expired_one_nothing() {
    let cluster = Cluster::start().await;
    let only_joining = |r: &Row| -> &'static str {
        if r.resource == "nodes/credential" {
            "...y...."
        } else if r.resource == "namespaces" {
            "nnnnnnnn"
        } else {
            deny_all(r.viewer)
        }
    };
    let wrong = run_matrix(&cluster, JOIN, only_joining, NS, Whose::Node1, NS).await;
    assert_none("a join token", wrong);
    for (path, _, _) in NON_RESOURCE {
        let (status, answer) = send(&cluster.router, Some(JOIN), Method::GET, path, "", None).await;
        let expected = path.starts_with("/api") || *path == "/version";
        assert_eq!(
            !denied_by_authorizer(status, &answer),
            expected,
            "join token GET {path}: {status} {answer}"
        );
    }

    for (column, verb) in VERBS.iter().enumerate() {
        for row in MATRIX {
            if row.viewer.as_bytes()[column] == b'.' {
                continue;
            }
            let t = target(row.resource, NS, Whose::Node1, NS);
            let (method, path, content_type, body) = request_for(verb, &t);
            let (status, answer) = send(
                &cluster.router,
                Some(EXPIRED_JOIN),
                method,
                &path,
                content_type,
                body.as_ref(),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{verb} {} with an expired join token: {answer}",
                row.resource
            );
        }
    }
}

/// The exchange: a join token gets a node a credential of its own, which works at once,
/// names that node, and replaces the one it had; the join token cannot be used as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_token_gets_a_node_its_own_credential() {
    let cluster = Cluster::start().await;
    let exchange = |node: &'static str| {
        let router = cluster.router.clone();
        async move {
            send(
                &router,
                Some(JOIN),
                Method::POST,
                &format!("/api/v1/nodes/{node}/credential"),
                "application/json",
                Some(&json!({})),
            )
            .await
        }
    };
    let (status, first) = exchange("node-9").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["kind"], "NodeCredential");
    assert_eq!(first["user"], "system:node:node-9");
    let token = first["token"].as_str().unwrap().to_string();
    // It is node-9: it may register node-9 and no other.
    let register = |token: String, name: &'static str| {
        let router = cluster.router.clone();
        async move {
            send(
                &router,
                Some(&token),
                Method::POST,
                "/api/v1/nodes",
                "application/json",
                Some(&json!({ "metadata": { "name": name } })),
            )
            .await
            .0
        }
    };
    assert_eq!(register(token.clone(), "node-9").await, StatusCode::CREATED);
    assert_eq!(
        register(token.clone(), "node-8").await,
        StatusCode::FORBIDDEN
    );
    // Asking again replaces it: the first credential is revoked.
    let (_, second) = exchange("node-9").await;
    assert_ne!(second["token"], first["token"]);
    let (status, _) = send(&cluster.router, Some(&token), Method::GET, "/api", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Node names are checked.
    let (status, answer) = exchange("Not_A_Name").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("metadata.name")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_tokens_and_bindings_take_effect_at_once() {
    let cluster = Cluster::start().await;
    let pods = "/api/v1/namespaces/other/pods";
    let get = |token: &'static str| {
        let router = cluster.router.clone();
        async move {
            send(&router, Some(token), Method::GET, pods, "", None)
                .await
                .0
        }
    };
    assert_eq!(get(VIEWER).await, StatusCode::FORBIDDEN);
    // A binding in `other` is used by the very next request.
    make_binding(&cluster, "other", "view").await;
    assert_eq!(get(VIEWER).await, StatusCode::OK);
    // Deleting it takes the right away again.
    let (status, _) = cluster
        .admin(
            Method::DELETE,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/other/rolebindings/extra",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(VIEWER).await, StatusCode::FORBIDDEN);
    // Deleting the token's Secret revokes the token.
    let (status, _) = cluster
        .admin(
            Method::DELETE,
            &format!("/api/v1/namespaces/kube-system/secrets/skiff-token-{VIEWER_USER}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(VIEWER).await, StatusCode::UNAUTHORIZED);
    // A token Secret may not claim a system: identity (a node or a master).
    cluster
        .create(
            "/api/v1/namespaces/kube-system/secrets",
            json!({
                "metadata": { "name": "sneaky" },
                "type": "skiff.dev/token",
                "stringData": { "tokenHash": token_hash_hex("sneaky"), "user": "system:node:node-1" },
            }),
        )
        .await;
    assert_eq!(get("sneaky").await, StatusCode::UNAUTHORIZED);
    // A token Secret names its hash and its user.
    let (status, answer) = cluster
        .admin(
            Method::POST,
            "/api/v1/namespaces/kube-system/secrets",
            json!({
                "metadata": { "name": "incomplete" },
                "type": "skiff.dev/token",
                "stringData": { "tokenHash": token_hash_hex("incomplete") },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["details"]["causes"][0]["field"], "data[user]");
}

async fn make_binding(cluster: &Cluster, namespace: &str, role: &str) {
    cluster
        .create(
            &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings"),
            json!({
                "metadata": { "name": "extra" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
                "subjects": [{ "kind": "User", "name": VIEWER_USER }],
            }),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_objects_are_validated_and_discoverable() {
    let cluster = Cluster::start().await;
    let (status, answer) = cluster
        .admin(
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles",
            json!({ "metadata": { "name": "bad" }, "rules": [{ "verbs": [], "resources": ["pods"] }] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let fields: Vec<&str> = answer["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["rules[0].verbs", "rules[0].apiGroups"]);

    let (_, groups) = cluster.admin(Method::GET, "/apis", Value::Null).await;
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "rbac.authorization.k8s.io"),
        "{groups}"
    );
    let (_, resources) = cluster
        .admin(
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1",
            Value::Null,
        )
        .await;
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings"
        ]
    );
    // The bootstrap policy is there, and its names hold colons.
    for name in [
        "cluster-admin",
        "view",
        "edit",
        "system:node",
        "system:discovery",
    ] {
        let (status, _) = cluster
            .admin(
                Method::GET,
                &format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}");
    }
}

/// Escalation prevention: a user who may write Roles and bindings in a namespace may
/// grant only what they hold there, unless allowed to `escalate` (Roles) or `bind` (the
/// role a binding names), as in Kubernetes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_one_grants_what_they_do_not_hold() {
    const MANAGER: &str = "rbac-manager-token";
    let cluster = Cluster::start().await;
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    cluster
        .create(
            "/api/v1/namespaces/kube-system/secrets",
            json!({ "metadata": { "name": "skiff-token-manager" }, "type": "skiff.dev/token",
                "stringData": { "tokenHash": token_hash_hex(MANAGER), "user": "manager" } }),
        )
        .await;
    // The manager may write Roles and RoleBindings in `team`, and read pods there.
    let manage = json!([
        { "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
          "verbs": ["get", "create", "update", "patch"] },
        { "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"] },
    ]);
    let grant = |name: &'static str, rules: Value| {
        let cluster = &cluster;
        async move {
            cluster
                .create(
                    &format!("{rbac}/namespaces/{NS}/roles"),
                    json!({ "metadata": { "name": name }, "rules": rules }),
                )
                .await;
            cluster
                .create(
                    &format!("{rbac}/namespaces/{NS}/rolebindings"),
                    json!({ "metadata": { "name": name },
                        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
                        "subjects": [{ "kind": "User", "name": "manager" }] }),
                )
                .await;
        }
    };
    grant("manage", manage).await;
    let write = |method: Method, path: String, body: Value| {
        let router = cluster.router.clone();
        async move {
            let content_type = if method == Method::PATCH {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            send(
                &router,
                Some(MANAGER),
                method,
                &path,
                content_type,
                Some(&body),
            )
            .await
        }
    };
    let role = |name: &str, resource: &str| {
        json!({ "metadata": { "name": name },
            "rules": [{ "apiGroups": [""], "resources": [resource], "verbs": ["get"] }] })
    };
    let binding = |name: &str, kind: &str, role: &str| {
        json!({ "metadata": { "name": name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role },
            "subjects": [{ "kind": "User", "name": "someone" }] })
    };
    let roles = format!("{rbac}/namespaces/{NS}/roles");
    let bindings = format!("{rbac}/namespaces/{NS}/rolebindings");

    // What it holds, it may grant.
    let (status, answer) = write(Method::POST, roles.clone(), role("pod-reader", "pods")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = write(
        Method::POST,
        bindings.clone(),
        binding("readers", "Role", "pod-reader"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    // What it does not hold, it may not: by a new Role, by changing one, by a binding.
    let (status, answer) = write(
        Method::POST,
        roles.clone(),
        role("secret-reader", "secrets"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(
        answer["message"],
        r#"roles.rbac.authorization.k8s.io "secret-reader" is forbidden: user "manager" is attempting to grant RBAC permissions not currently held: {APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#
    );
    let (status, answer) = write(
        Method::PATCH,
        format!("{roles}/pod-reader"),
        json!({ "rules": [{ "apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get"] }] }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = write(
        Method::PUT,
        format!("{roles}/pod-reader"),
        role("pod-reader", "*"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a wildcard is held only through one: {answer}"
    );
    for (kind, name) in [
        ("ClusterRole", "cluster-admin"),
        ("ClusterRole", "view"),
        ("Role", "missing"),
    ] {
        let (status, answer) =
            write(Method::POST, bindings.clone(), binding("up", kind, name)).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "binding {kind} {name}: {answer}"
        );
    }
    let (_, unchanged) = cluster
        .admin(Method::GET, &format!("{roles}/pod-reader"), Value::Null)
        .await;
    assert_eq!(unchanged["rules"][0]["resources"], json!(["pods"]));

    // `bind` on a role lets it bind that role; `escalate` lets it write any Role.
    grant(
        "may-bind-view",
        json!([{ "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                 "resourceNames": ["view"], "verbs": ["bind"] }]),
    )
    .await;
    let (status, answer) = write(
        Method::POST,
        bindings.clone(),
        binding("viewers", "ClusterRole", "view"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, _) = write(
        Method::POST,
        bindings.clone(),
        binding("admins", "ClusterRole", "cluster-admin"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "bind on view only");
    grant(
        "may-escalate",
        json!([{ "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"] }]),
    )
    .await;
    let (status, answer) = write(Method::POST, roles, role("secret-reader", "secrets")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

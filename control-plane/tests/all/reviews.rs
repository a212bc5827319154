//! The access reviews through the router: `kubectl auth can-i` (SelfSubjectAccessReview),
//! `kubectl auth can-i --list` (SelfSubjectRulesReview), `kubectl auth whoami`
//! (SelfSubjectReview) and SubjectAccessReview, in the protobuf kubectl sends and in JSON.
//!
//! Callers: the admin (`system:masters`), a viewer made as `skiff create token --role
//! viewer --namespace team` makes one (a `skiff.dev/token` Secret and a RoleBinding to
//! `view` in `team`), and the node `node-1`, one of whose pods uses Secret `mine`.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use skiff_control_plane::apiserver::ApiServerConfig;
use skiff_control_plane::apiserver::auth::token_hash_hex;

use crate::support::TestServer;

const ADMIN: &str = "admin-token";
const NODE_1: &str = "node-1-token";
const VIEWER: &str = "viewer-token-made-at-runtime";
const VIEWER_USER: &str = "viewer-team";
const NS: &str = "team";

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const SSRR: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
const SAR: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
const SSR: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

/// Bodies as kubectl 1.37 sends them, captured from a listener (hex).
/// `kubectl auth can-i get pods -n team --subresource log`:
const CAN_I_GET_POD_LOGS_IN_TEAM: &str = "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a656374416363657373526576696577123c0a100a0012001a0022002a00320038004200121e0a1c0a047465616d12036765741a0022002a04706f647332036c6f673a001a08080012001a0020001a002200";
/// `kubectl auth can-i delete pods/foo` (namespace default):
const CAN_I_DELETE_POD_FOO: &str = "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a65637441636365737352657669657712420a100a0012001a0022002a0032003800420012240a220a0764656661756c74120664656c6574651a0022002a04706f647332003a03666f6f1a08080012001a0020001a002200";
/// `kubectl auth can-i --list -n team`:
const CAN_I_LIST_IN_TEAM: &str = "6b3873000a310a17617574686f72697a6174696f6e2e6b38732e696f2f7631121653656c665375626a65637452756c657352657669657712200a100a0012001a0022002a0032003800420012060a047465616d1a04180022001a002200";
/// `kubectl auth whoami`:
const WHOAMI: &str = "6b3873000a2d0a1861757468656e7469636174696f6e2e6b38732e696f2f7631121153656c665375626a656374526576696577121a0a100a0012001a0022002a0032003800420012060a040a0012001a002200";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

struct Cluster {
    test: TestServer,
}

impl Cluster {
    /// Namespace `team` with Secrets `mine` (used by a pod bound to node-1) and `theirs`
    /// (used by none), and the viewer's token.
    async fn start() -> Cluster {
        let test = TestServer::with_users(
            ApiServerConfig::default(),
            &[
                (ADMIN, "admin", &["system:masters"]),
                (NODE_1, "system:node:node-1", &["system:nodes"]),
            ],
        )
        .await;
        let cluster = Cluster { test };
        cluster
            .create("/api/v1/namespaces", json!({ "metadata": { "name": NS } }))
            .await;
        for name in ["mine", "theirs"] {
            cluster
                .create(
                    &format!("/api/v1/namespaces/{NS}/secrets"),
                    json!({ "metadata": { "name": name }, "stringData": { "k": "v" } }),
                )
                .await;
        }
        cluster
            .create(
                &format!("/api/v1/namespaces/{NS}/pods"),
                json!({ "metadata": { "name": "uses-mine" },
                    "spec": { "nodeName": "node-1", "containers": [{ "name": "main", "image": "m.wasm",
                        "env": [{ "name": "K", "valueFrom": { "secretKeyRef": { "name": "mine", "key": "k" } } }] }] } }),
            )
            .await;
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
                &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings"),
                json!({
                    "metadata": { "name": format!("skiff-token-{VIEWER_USER}") },
                    "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
                    "subjects": [{ "kind": "User", "name": VIEWER_USER }],
                }),
            )
            .await;
        cluster
    }

    async fn create(&self, path: &str, body: Value) {
        let (status, answer) = self
            .send(
                ADMIN,
                Method::POST,
                path,
                JSON,
                body.to_string().into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {path}: {answer}");
    }

    async fn send(
        &self,
        token: &str,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.test
            .send_as(token, method, path, content_type, body)
            .await
    }

    /// A review sent as kubectl sends it: 201 and the answer.
    async fn ask_protobuf(&self, token: &str, path: &str, body_hex: &str) -> Value {
        let (status, answer) = self
            .send(token, Method::POST, path, PROTOBUF, hex(body_hex))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
        answer
    }

    /// A review sent as JSON: 201 and the answer.
    async fn ask(&self, token: &str, path: &str, review: Value) -> Value {
        let (status, answer) = self
            .send(
                token,
                Method::POST,
                path,
                JSON,
                review.to_string().into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
        answer
    }

    /// Whether `token`'s user may do what `attributes` say (a SelfSubjectAccessReview).
    async fn can_i(&self, token: &str, attributes: Value) -> bool {
        let key = if attributes.get("path").is_some() {
            "nonResourceAttributes"
        } else {
            "resourceAttributes"
        };
        let answer = self
            .ask(
                token,
                SSAR,
                json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                        "spec": { key: attributes } }),
            )
            .await;
        answer["status"]["allowed"]
            .as_bool()
            .unwrap_or_else(|| panic!("no status.allowed in {answer}"))
    }
}

fn resource(namespace: &str, verb: &str, resource: &str) -> Value {
    json!({ "namespace": namespace, "verb": verb, "resource": resource })
}

#[tokio::test]
async fn the_admin_is_allowed_everything() {
    let cluster = Cluster::start().await;
    let answer = cluster
        .ask_protobuf(ADMIN, SSAR, CAN_I_DELETE_POD_FOO)
        .await;
    assert_eq!(
        answer,
        json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {},
            "spec": { "resourceAttributes": {
                "namespace": "default", "verb": "delete", "resource": "pods", "name": "foo" } },
            "status": { "allowed": true },
        })
    );
    for attributes in [
        resource("", "deletecollection", "secrets"),
        json!({ "verb": "*", "group": "*", "resource": "*" }),
        json!({ "verb": "post", "path": "/anything" }),
    ] {
        assert!(
            cluster.can_i(ADMIN, attributes.clone()).await,
            "{attributes}"
        );
    }
}

#[tokio::test]
async fn a_viewer_may_get_pods_but_not_delete_them() {
    let cluster = Cluster::start().await;
    let logs = cluster
        .ask_protobuf(VIEWER, SSAR, CAN_I_GET_POD_LOGS_IN_TEAM)
        .await;
    assert_eq!(logs["status"], json!({ "allowed": true }), "{logs}");
    let denied = cluster
        .ask_protobuf(VIEWER, SSAR, CAN_I_DELETE_POD_FOO)
        .await;
    // No reason when denied: kubectl prints "no" and nothing after it.
    assert_eq!(denied["status"], json!({ "allowed": false }), "{denied}");

    for (attributes, expected) in [
        (resource(NS, "get", "pods"), true),
        (resource(NS, "list", "pods"), true),
        (resource(NS, "watch", "deployments"), false), // apps, not core
        (
            json!({ "namespace": NS, "verb": "watch", "group": "apps", "resource": "deployments" }),
            true,
        ),
        (resource(NS, "delete", "pods"), false),
        (resource(NS, "create", "pods"), false),
        (resource(NS, "get", "secrets"), false),
        (resource("default", "get", "pods"), false),
        // No namespace: all of them, which a RoleBinding in one does not grant.
        (resource("", "get", "pods"), false),
        (json!({ "verb": "get", "path": "/api/v1" }), true),
        (json!({ "verb": "get", "path": "/metrics" }), false),
    ] {
        assert_eq!(
            cluster.can_i(VIEWER, attributes.clone()).await,
            expected,
            "{attributes}"
        );
    }

    // YAML asks as well as JSON and protobuf.
    let yaml = "apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\n\
                spec: { resourceAttributes: { namespace: team, verb: get, resource: pods } }\n";
    let (status, answer) = cluster
        .send(
            VIEWER,
            Method::POST,
            SSAR,
            "application/yaml",
            yaml.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["status"]["allowed"], true);
}

#[tokio::test]
async fn a_node_may_read_only_the_secrets_its_pods_use() {
    let cluster = Cluster::start().await;
    let secret =
        |name: &str| json!({ "namespace": NS, "verb": "get", "resource": "secrets", "name": name });
    assert!(cluster.can_i(NODE_1, secret("mine")).await);
    assert!(!cluster.can_i(NODE_1, secret("theirs")).await);
    assert!(
        !cluster.can_i(NODE_1, resource(NS, "list", "secrets")).await,
        "a list names no Secret"
    );
    assert!(
        cluster
            .can_i(NODE_1, json!({ "verb": "get", "resource": "nodes" }))
            .await
    );
}

#[tokio::test]
async fn whoami_names_the_user_and_groups() {
    let cluster = Cluster::start().await;
    for (token, user, groups) in [
        (
            ADMIN,
            "admin",
            json!(["system:masters", "system:authenticated"]),
        ),
        (VIEWER, VIEWER_USER, json!(["system:authenticated"])),
        (
            NODE_1,
            "system:node:node-1",
            json!(["system:nodes", "system:authenticated"]),
        ),
    ] {
        let answer = cluster.ask_protobuf(token, SSR, WHOAMI).await;
        assert_eq!(
            answer,
            json!({
                "kind": "SelfSubjectReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {},
                "status": { "userInfo": { "username": user, "groups": groups } },
            })
        );
    }
    let answer = cluster.ask(VIEWER, SSR, json!({})).await;
    assert_eq!(answer["status"]["userInfo"]["username"], VIEWER_USER);
}

#[tokio::test]
async fn the_rules_review_lists_what_the_viewer_may_do() {
    let cluster = Cluster::start().await;
    let answer = cluster.ask_protobuf(VIEWER, SSRR, CAN_I_LIST_IN_TEAM).await;
    assert_eq!(answer["kind"], "SelfSubjectRulesReview");
    assert_eq!(answer["spec"], json!({ "namespace": NS }));
    let status = &answer["status"];
    assert_eq!(status["incomplete"], false);
    let resource_rules = status["resourceRules"].as_array().unwrap();
    let has = |group: &str, resource: &str, verb: &str| {
        resource_rules.iter().any(|rule| {
            let holds = |field: &str, value: &str| {
                rule[field]
                    .as_array()
                    .is_some_and(|values| values.iter().any(|v| v == value))
            };
            holds("apiGroups", group) && holds("resources", resource) && holds("verbs", verb)
        })
    };
    // From `view`, bound in team.
    assert!(has("", "pods", "get"), "{status}");
    assert!(has("", "pods/log", "get"), "{status}");
    assert!(has("apps", "deployments", "watch"), "{status}");
    assert!(!has("", "pods", "delete"), "{status}");
    assert!(!has("", "secrets", "get"), "{status}");
    // From `system:basic-user`, bound to everyone authenticated.
    assert!(
        has("authorization.k8s.io", "selfsubjectaccessreviews", "create"),
        "{status}"
    );
    assert!(
        has("authentication.k8s.io", "selfsubjectreviews", "create"),
        "{status}"
    );
    // From `system:discovery`.
    let non_resource = status["nonResourceRules"].as_array().unwrap();
    assert!(
        non_resource.iter().any(|rule| rule["nonResourceURLs"]
            .as_array()
            .unwrap()
            .contains(&json!("/apis/*"))
            && rule["verbs"] == json!(["get"])),
        "{status}"
    );
    // A resource rule is a ResourceRule: no nonResourceURLs in it.
    assert!(
        resource_rules
            .iter()
            .all(|rule| rule.get("nonResourceURLs").is_none())
    );

    // Elsewhere the viewer holds only what everyone does.
    let elsewhere = cluster
        .ask(
            VIEWER,
            SSRR,
            json!({ "kind": "SelfSubjectRulesReview", "spec": { "namespace": "default" } }),
        )
        .await;
    let rules = elsewhere["status"]["resourceRules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .all(|rule| !rule["resources"].to_string().contains("pods")),
        "{elsewhere}"
    );

    // The admin holds everything; a node's list is incomplete (its pods' Secrets are not
    // rules).
    let admin = cluster.ask_protobuf(ADMIN, SSRR, CAN_I_LIST_IN_TEAM).await;
    assert!(
        admin["status"]["resourceRules"]
            .as_array()
            .unwrap()
            .contains(&json!({ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] })),
        "{admin}"
    );
    let node = cluster.ask_protobuf(NODE_1, SSRR, CAN_I_LIST_IN_TEAM).await;
    assert_eq!(node["status"]["incomplete"], true, "{node}");
}

#[tokio::test]
async fn subject_access_reviews_are_for_admins() {
    let cluster = Cluster::start().await;
    let review = |user: &str, groups: Value, attributes: Value| {
        json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": { "user": user, "groups": groups, "resourceAttributes": attributes } })
    };
    let about_viewer = |verb: &str| review(VIEWER_USER, json!([]), resource(NS, verb, "pods"));

    let (status, answer) = cluster
        .send(
            VIEWER,
            Method::POST,
            SAR,
            JSON,
            about_viewer("get").to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(
        answer["message"],
        "subjectaccessreviews.authorization.k8s.io is forbidden: User \"viewer-team\" cannot \
         create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the \
         cluster scope"
    );

    let allowed = |answer: Value| answer["status"]["allowed"].as_bool().unwrap();
    assert!(allowed(cluster.ask(ADMIN, SAR, about_viewer("get")).await));
    assert!(!allowed(
        cluster.ask(ADMIN, SAR, about_viewer("delete")).await
    ));
    let node_secret = |name: &str| {
        review(
            "system:node:node-1",
            json!(["system:nodes"]),
            json!({ "namespace": NS, "verb": "get", "resource": "secrets", "name": name }),
        )
    };
    assert!(allowed(cluster.ask(ADMIN, SAR, node_secret("mine")).await));
    assert!(!allowed(
        cluster.ask(ADMIN, SAR, node_secret("theirs")).await
    ));
    let echoed = cluster.ask(ADMIN, SAR, about_viewer("get")).await;
    assert_eq!(echoed["spec"]["user"], VIEWER_USER);
}

#[tokio::test]
async fn discovery_lists_the_reviews() {
    let cluster = Cluster::start().await;
    let (status, groups) = cluster
        .send(VIEWER, Method::GET, "/apis", JSON, vec![])
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for group in ["authorization.k8s.io", "authentication.k8s.io", "apps"] {
        assert!(names.contains(&group), "{group} missing from {names:?}");
    }
    let (status, group) = cluster
        .send(
            VIEWER,
            Method::GET,
            "/apis/authorization.k8s.io",
            JSON,
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "authorization.k8s.io/v1"
    );
    for (path, expected) in [
        (
            "/apis/authorization.k8s.io/v1",
            vec![
                ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
                ("selfsubjectrulesreviews", "SelfSubjectRulesReview"),
                ("subjectaccessreviews", "SubjectAccessReview"),
            ],
        ),
        (
            "/apis/authentication.k8s.io/v1",
            vec![("selfsubjectreviews", "SelfSubjectReview")],
        ),
    ] {
        let (status, list) = cluster.send(VIEWER, Method::GET, path, JSON, vec![]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {list}");
        assert_eq!(list["kind"], "APIResourceList");
        let resources: Vec<(&str, &str)> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["verbs"], json!(["create"]), "{r}");
                assert_eq!(r["namespaced"], false, "{r}");
                (r["name"].as_str().unwrap(), r["kind"].as_str().unwrap())
            })
            .collect();
        assert_eq!(resources, expected);
    }
}

#[tokio::test]
async fn bad_reviews_are_refused_as_kubernetes_refuses_them() {
    let cluster = Cluster::start().await;
    let post = |path: &'static str, content_type: &'static str, body: Value| {
        let cluster = &cluster;
        async move {
            cluster
                .send(
                    VIEWER,
                    Method::POST,
                    path,
                    content_type,
                    body.to_string().into_bytes(),
                )
                .await
        }
    };
    let (status, answer) = post(SSAR, JSON, json!({ "spec": {} })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["reason"], "Invalid");
    assert_eq!(
        answer["details"]["causes"][0]["field"],
        "spec.resourceAttributes"
    );

    let (status, answer) = post(SSRR, JSON, json!({ "spec": {} })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["message"], "no namespace on request");

    let (status, answer) = post(SSAR, JSON, json!({ "kind": "SelfSubjectRulesReview" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    let (status, answer) = post(
        SSAR,
        JSON,
        json!({ "spec": { "resourceAttributes": { "verb": 3 } } }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("spec.resourceAttributes.verb"),
        "{answer}"
    );

    // The protobuf of another review, or of a kind not read in protobuf.
    let (status, answer) = cluster
        .send(VIEWER, Method::POST, SSAR, PROTOBUF, hex(WHOAMI))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = cluster
        .send(
            VIEWER,
            Method::POST,
            SSAR,
            PROTOBUF,
            b"not protobuf".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    let (status, _) = post(SSAR, "application/merge-patch+json", json!({})).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing is stored: there is nothing to get or list.
    let (status, _) = cluster.send(ADMIN, Method::GET, SSAR, JSON, vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = cluster
        .send(ADMIN, Method::GET, &format!("{SSAR}/x"), JSON, vec![])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

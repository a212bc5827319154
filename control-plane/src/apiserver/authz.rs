//! Authorization: after authentication, every request but the public paths is checked
//! against the RBAC objects (see [`super::rbac`]), then nodes are held to their own
//! objects (Kubernetes' NodeRestriction).
//!
//! The request's attributes (verb, API group, resource, subresource, namespace, name)
//! come from the same path parsing the handlers use ([`Target::parse`]), so what is
//! authorized is what is served. A refusal is 403 with a Kubernetes `Status` whose
//! message is worded as Kubernetes words it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use skiff_api::StatusDetails;

use super::ApiServer;
use super::auth::{PUBLIC_PATHS, User};
use super::error::{ApiError, ApiResult};
use super::metrics_api;
use super::node_graph;
use super::rbac::{Action, NODE_USER_PREFIX, NODES_GROUP};
use super::registry::Registry;
use super::request::{BodyFormat, Params, Target, decode_body, read_body};
use super::reviews::{self, ReviewPath};

/// The namespace node Leases live in.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The middleware, inside authentication and the per-user limits.
pub async fn authorize(
    State(server): State<Arc<ApiServer>>,
    request: Request,
    next: Next,
) -> Response {
    if PUBLIC_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    // Authentication puts a user on every other request; none here is a bug upstream,
    // and refusing is the safe answer.
    let Some(user) = request.extensions().get::<User>() else {
        return ApiError::unauthorized().into_response();
    };
    let action = match action_of(&server.registry, request.method(), request.uri()) {
        Ok(action) => action,
        Err(error) => return error.into_response(),
    };
    if !allows(&server, user, &action).await {
        return forbidden(user, &action, None).into_response();
    }
    let node = node_name(user).map(str::to_string);
    let request = match node {
        Some(node) => match restrict_node(&server, &node, &action, request).await {
            Ok(request) => request,
            Err(error) => return error.into_response(),
        },
        None => request,
    };
    let changes_access = changes_access(&action);
    let response = next.run(request).await;
    if changes_access
        && response.status().is_success()
        && let Err(error) = server.access.rebuild(server.store.as_ref()).await
    {
        // The watch rebuilds the index in a moment anyway.
        tracing::warn!(%error, "rebuilding the RBAC index after a write failed");
    }
    response
}

/// Whether `user` may do `action`: what RBAC grants them, and to a node also what the
/// node authorizer does (the ConfigMaps and Secrets its pods use). The middleware decides
/// with this, and the access reviews answer with it (see [`super::reviews`]). A node's
/// restriction to its own objects is not part of it: as Kubernetes' NodeRestriction, it
/// looks at the request's body and the stored object, which a review has not.
pub async fn allows(server: &ApiServer, user: &User, action: &Action) -> bool {
    if server.access.snapshot().allows(user, action) {
        return true;
    }
    match node_name(user) {
        Some(node) => {
            node_graph::allows(&server.node_graph, server.store.as_ref(), node, action).await
        }
        None => false,
    }
}

/// The node a user is, by Kubernetes' convention: user `system:node:NAME` in group
/// `system:nodes`. The shared node credential (`system:node`, no name) is in the group
/// but names no node, so it is not held to one node's objects.
pub fn node_name(user: &User) -> Option<&str> {
    user.name
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|name| !name.is_empty())
        .filter(|_| user.groups.iter().any(|g| g == NODES_GROUP))
}

/// What a request asks to do: a resource request for paths under `/api` and `/apis`
/// that name a kind, a non-resource request for everything else (discovery included,
/// as in Kubernetes). Paths under `/api` and `/apis` that name nothing served answer
/// the handlers' own error (404, 400): discovery tells any caller as much.
pub fn action_of(registry: &Registry, method: &Method, uri: &Uri) -> ApiResult<Action> {
    let path = uri.path();
    let api = |prefix: &str| {
        path.strip_prefix(prefix)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let (core, rest) = match (api("/api"), api("/apis")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Ok(non_resource(method, path)),
    };
    // The access reviews are no kind of the registry (nothing of them is stored), but
    // are authorized as one: a create of `selfsubjectaccessreviews`, for example.
    if let Some(review) = reviews::parse(core, rest) {
        let ReviewPath::Review(review) = review? else {
            return Ok(non_resource(method, path));
        };
        return Ok(match resource_verb(method, false, false) {
            Some(verb) => Action::Resource {
                verb: verb.to_string(),
                group: review.group().to_string(),
                resource: review.plural().to_string(),
                subresource: None,
                namespace: None,
                name: None,
            },
            None => non_resource(method, path),
        });
    }
    // Nor is the metrics API (made on each request): its `nodes` and `pods` are resources
    // of `metrics.k8s.io`, as metrics-server's are.
    if let Some(metrics) = metrics_api::parse(core, rest) {
        let metrics = metrics?;
        let watch = Params::parse(uri.query()).is_ok_and(|p| p.is_watch());
        let verb = resource_verb(method, metrics.name().is_some(), watch);
        return Ok(match (metrics.resource(), verb) {
            (Some(resource), Some(verb)) => Action::Resource {
                verb: verb.to_string(),
                group: metrics_api::GROUP.to_string(),
                resource: resource.to_string(),
                subresource: None,
                namespace: metrics.namespace().map(str::to_string),
                name: metrics.name().map(str::to_string),
            },
            _ => non_resource(method, path),
        });
    }
    let resource = match Target::parse(registry, core, rest)? {
        Target::Resource(resource) => resource,
        _ => return Ok(non_resource(method, path)),
    };
    // A query the handlers reject reads as none: they answer 400 anyway.
    let params = Params::parse(uri.query()).ok();
    let watch = params.as_ref().is_some_and(Params::is_watch);
    let Some(verb) = resource_verb(method, resource.name.is_some(), watch) else {
        return Ok(non_resource(method, path));
    };
    // As in Kubernetes, a request about namespace NAME is in namespace NAME, so a
    // RoleBinding there may allow reading it.
    let namespace = if resource.rt.kind == "Namespace" {
        resource.name.clone()
    } else {
        resource.namespace
    };
    // As in Kubernetes, a list or watch of one object by `metadata.name` is about that
    // object, so rules (and the node authorizer) can allow it by name.
    let name = match verb {
        "list" | "watch" => params
            .as_ref()
            .and_then(|p| p.field_selector.as_deref())
            .and_then(selected_name)
            .or(resource.name),
        _ => resource.name,
    };
    Ok(Action::Resource {
        verb: verb.to_string(),
        group: resource.rt.group.to_string(),
        resource: resource.rt.plural.to_string(),
        subresource: resource.subresource,
        namespace,
        name,
    })
}

/// The verb of a request on a resource, by its method, whether it names an object, and
/// whether it asks to watch; `None` for methods that are no resource verb.
fn resource_verb(method: &Method, named: bool, watch: bool) -> Option<&'static str> {
    Some(match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => return None,
    })
}

/// The name a field selector of the single requirement `metadata.name=NAME` (or `==`)
/// selects.
fn selected_name(selector: &str) -> Option<String> {
    let (field, value) = selector
        .split_once("==")
        .or_else(|| selector.split_once('='))?;
    let value = value.trim();
    (field.trim() == "metadata.name" && !value.is_empty() && !value.contains([',', '=', '!']))
        .then(|| value.to_string())
}

fn non_resource(method: &Method, path: &str) -> Action {
    let verb = match *method {
        Method::GET | Method::HEAD => "get".to_string(),
        ref other => other.as_str().to_ascii_lowercase(),
    };
    Action::NonResource {
        verb,
        path: path.to_string(),
    }
}

/// Whether a successful request changed what the access index holds: RBAC objects, or
/// Secrets in kube-system (runtime tokens).
fn changes_access(action: &Action) -> bool {
    let Action::Resource {
        verb,
        group,
        resource,
        namespace,
        ..
    } = action
    else {
        return false;
    };
    let writes = !matches!(verb.as_str(), "get" | "list" | "watch");
    writes
        && (group == skiff_api::rbac::GROUP
            || (group.is_empty()
                && resource == "secrets"
                && namespace.as_deref() == Some("kube-system")))
}

/// 403 as Kubernetes words it: `pods "x" is forbidden: User "u" cannot get resource
/// "pods" in API group "" in the namespace "default"`, with `reason` (why a node
/// restriction refused) after a colon, as Kubernetes appends an authorizer's reason.
pub fn forbidden(user: &User, action: &Action, reason: Option<&str>) -> ApiError {
    let (message, details) = match action {
        Action::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let full = match subresource {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.clone(),
            };
            let scope = match namespace {
                Some(ns) => format!("in the namespace {ns:?}"),
                None => "at the cluster scope".to_string(),
            };
            let mut why = format!(
                "User {:?} cannot {verb} resource {full:?} in API group {group:?} {scope}",
                user.name
            );
            if let Some(reason) = reason {
                why.push_str(": ");
                why.push_str(reason);
            }
            let qualified = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            let message = match name {
                Some(name) => format!("{qualified} {name:?} is forbidden: {why}"),
                None => format!("{qualified} is forbidden: {why}"),
            };
            let details = StatusDetails {
                name: name.clone(),
                group: Some(group.clone()).filter(|g| !g.is_empty()),
                kind: Some(resource.clone()),
                ..StatusDetails::default()
            };
            (message, Some(Box::new(details)))
        }
        Action::NonResource { verb, path } => (
            format!(
                "forbidden: User {:?} cannot {verb} path {path:?}",
                user.name
            ),
            None,
        ),
    };
    ApiError {
        code: StatusCode::FORBIDDEN,
        reason: "Forbidden",
        message,
        details,
    }
}

/// NodeRestriction: a node `NAME` may write only its own Node (and its subresources),
/// its own Lease in `kube-node-lease`, and the status of, or the deletion of, pods bound
/// to it (`spec.nodeName` NAME).
///
/// RBAC cannot say this: a create names its object only in the body, and which node a pod
/// is bound to is in the stored pod. So this runs in the request path, after RBAC allowed
/// the verb. A pod's `spec.nodeName` never changes once set (binding happens once), so
/// the pod read here cannot be rebound before the handler writes it.
async fn restrict_node(
    server: &ApiServer,
    node: &str,
    action: &Action,
    request: Request,
) -> ApiResult<Request> {
    let Action::Resource {
        verb,
        group,
        resource,
        subresource,
        namespace,
        name,
    } = action
    else {
        return Ok(request);
    };
    if matches!(verb.as_str(), "get" | "list" | "watch") {
        return Ok(request);
    }
    let refuse = |why: String| Err(forbidden_node(node, action, why));
    match (group.as_str(), resource.as_str(), subresource.as_deref()) {
        ("", "nodes", _) => {
            let (request, target) = named_target(server, verb, name, request).await?;
            if target != node {
                return refuse(format!(
                    "node {node:?} is not allowed to modify node {target:?}"
                ));
            }
            Ok(request)
        }
        ("coordination.k8s.io", "leases", None) => {
            let (request, target) = named_target(server, verb, name, request).await?;
            if namespace.as_deref() != Some(NODE_LEASE_NAMESPACE) || target != node {
                return refuse(
                    "can only access node lease with the same name as the requesting node".into(),
                );
            }
            Ok(request)
        }
        ("", "pods", sub) => {
            let status_write = sub == Some("status") && matches!(verb.as_str(), "update" | "patch");
            let delete = sub.is_none() && verb == "delete";
            if !status_write && !delete {
                // Nothing else about pods is in the node role; a binding that grants
                // more is the administrator's choice, as in Kubernetes.
                return Ok(request);
            }
            let Some(name) = name else {
                return Ok(request);
            };
            let rt = server
                .registry
                .find("", "v1", "pods")
                .expect("pods are built in");
            let bound = match server.get_object(rt, namespace.as_deref(), name).await {
                Ok((_, pod)) => pod
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                // The handler answers 404 itself.
                Err(error) if error.code == StatusCode::NOT_FOUND => return Ok(request),
                Err(error) => return Err(error),
            };
            if bound.as_deref() != Some(node) {
                return refuse(if delete {
                    format!("node {node:?} can only delete pods with spec.nodeName set to itself")
                } else {
                    format!(
                        "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                    )
                });
            }
            Ok(request)
        }
        _ => Ok(request),
    }
}

/// The name of the object a write is about: from the path, or for a create from the
/// body (read here and handed on). A body that does not decode yields `""`; a create
/// refused for that is refused anyway.
async fn named_target(
    server: &ApiServer,
    verb: &str,
    name: &Option<String>,
    request: Request,
) -> ApiResult<(Request, String)> {
    match name {
        Some(name) if verb != "create" || !name.is_empty() => {
            // `nodes/NAME/certificate` is a create on a named object: the path names it.
            Ok((request, name.clone()))
        }
        _ => {
            let (parts, body) = request.into_parts();
            let bytes = read_body(body, server.config.max_body_bytes).await?;
            let name = BodyFormat::from_headers(&parts.headers)
                .ok()
                .and_then(|format| decode_body(&bytes, format).ok())
                .and_then(|object| {
                    object
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            Ok((Request::from_parts(parts, Body::from(bytes)), name))
        }
    }
}

/// A node restriction's 403: `nodes "node-2" is forbidden: User "system:node:node-1"
/// cannot patch resource "nodes" in API group "" at the cluster scope: node "node-1" is
/// not allowed to modify node "node-2"` (the reason worded as Kubernetes' NodeRestriction).
fn forbidden_node(node: &str, action: &Action, why: String) -> ApiError {
    let user = User {
        name: format!("{NODE_USER_PREFIX}{node}"),
        groups: Vec::new(),
    };
    forbidden(&user, action, Some(&why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(method: Method, uri: &str) -> Action {
        action_of(&Registry::builtin(), &method, &uri.parse().unwrap()).unwrap()
    }

    fn resource(
        verb: &str,
        group: &str,
        resource: &str,
        sub: Option<&str>,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Action {
        Action::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.map(String::from),
            namespace: namespace.map(String::from),
            name: name.map(String::from),
        }
    }

    #[test]
    fn attributes_come_from_the_method_path_and_query() {
        let pods = "/api/v1/namespaces/default/pods";
        assert_eq!(
            action(Method::GET, pods),
            resource("list", "", "pods", None, Some("default"), None)
        );
        assert_eq!(
            action(Method::GET, &format!("{pods}?watch=true&labelSelector=a")),
            resource("watch", "", "pods", None, Some("default"), None)
        );
        assert_eq!(
            action(Method::GET, "/api/v1/pods?watch=1"),
            resource("watch", "", "pods", None, None, None)
        );
        assert_eq!(
            action(Method::DELETE, pods),
            resource("deletecollection", "", "pods", None, Some("default"), None)
        );
        assert_eq!(
            action(Method::PATCH, &format!("{pods}/p/status")),
            resource(
                "patch",
                "",
                "pods",
                Some("status"),
                Some("default"),
                Some("p")
            )
        );
        // One object by name: the list or watch is about it (the watch a node keeps of
        // a Secret its pod uses).
        assert_eq!(
            action(
                Method::GET,
                "/api/v1/namespaces/a/secrets?fieldSelector=metadata.name%3Dx"
            ),
            resource("list", "", "secrets", None, Some("a"), Some("x"))
        );
        assert_eq!(
            action(
                Method::GET,
                "/api/v1/namespaces/a/secrets?watch=1&fieldSelector=metadata.name%3D%3Dx"
            ),
            resource("watch", "", "secrets", None, Some("a"), Some("x"))
        );
        for selector in [
            "metadata.name%3Dx,type%3Dy",
            "metadata.name!%3Dx",
            "type%3Dx",
        ] {
            assert_eq!(
                action(
                    Method::GET,
                    &format!("/api/v1/namespaces/a/secrets?fieldSelector={selector}")
                ),
                resource("list", "", "secrets", None, Some("a"), None),
                "{selector}"
            );
        }
        assert_eq!(
            action(Method::GET, &format!("{pods}/p/log")),
            resource("get", "", "pods", Some("log"), Some("default"), Some("p"))
        );
        assert_eq!(
            action(
                Method::PUT,
                "/apis/apps/v1/namespaces/a/deployments/d/scale"
            ),
            resource(
                "update",
                "apps",
                "deployments",
                Some("scale"),
                Some("a"),
                Some("d")
            )
        );
        assert_eq!(
            action(Method::GET, "/api/v1/namespaces/team"),
            resource("get", "", "namespaces", None, Some("team"), Some("team")),
            "a namespace is in itself"
        );
        assert_eq!(
            action(Method::GET, "/api/v1/namespaces"),
            resource("list", "", "namespaces", None, None, None)
        );
        for (method, path, verb) in [
            (Method::GET, "/apis", "get"),
            (Method::GET, "/api/v1", "get"),
            (Method::GET, "/apis/apps/v1", "get"),
            (Method::GET, "/metrics", "get"),
            (Method::POST, "/skiff/v1/modules/hello", "post"),
            (Method::GET, "/apisx", "get"),
        ] {
            assert_eq!(
                action(method, path),
                Action::NonResource {
                    verb: verb.into(),
                    path: path.into()
                }
            );
        }
        // The access reviews are no kind of the registry, but are authorized as one.
        assert_eq!(
            action(
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
            ),
            resource(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                None,
                None,
                None
            )
        );
        assert_eq!(
            action(Method::GET, "/apis/authentication.k8s.io/v1"),
            Action::NonResource {
                verb: "get".into(),
                path: "/apis/authentication.k8s.io/v1".into()
            }
        );
        let unknown = action_of(
            &Registry::builtin(),
            &Method::GET,
            &"/apis/nope/v1/things".parse().unwrap(),
        );
        assert_eq!(unknown.unwrap_err().code, StatusCode::NOT_FOUND);
    }

    #[test]
    fn refusals_are_worded_as_kubernetes_words_them() {
        let user = User {
            name: "u".into(),
            groups: vec![],
        };
        let get = resource("get", "", "pods", None, Some("default"), Some("x"));
        let error = forbidden(&user, &get, None);
        assert_eq!(error.code, StatusCode::FORBIDDEN);
        assert_eq!(error.reason, "Forbidden");
        assert_eq!(
            error.message,
            r#"pods "x" is forbidden: User "u" cannot get resource "pods" in API group "" in the namespace "default""#
        );
        let list = resource("list", "apps", "deployments", Some("scale"), None, None);
        assert_eq!(
            forbidden(&user, &list, None).message,
            r#"deployments.apps is forbidden: User "u" cannot list resource "deployments/scale" in API group "apps" at the cluster scope"#
        );
        let metrics = Action::NonResource {
            verb: "get".into(),
            path: "/metrics".into(),
        };
        assert_eq!(
            forbidden(&user, &metrics, None).message,
            r#"forbidden: User "u" cannot get path "/metrics""#
        );
    }

    #[test]
    fn only_named_nodes_are_restricted() {
        let user = |name: &str, group: &str| User {
            name: name.into(),
            groups: vec![group.into()],
        };
        assert_eq!(node_name(&user("system:node:n1", NODES_GROUP)), Some("n1"));
        assert_eq!(node_name(&user("system:node", NODES_GROUP)), None);
        assert_eq!(node_name(&user("system:node:", NODES_GROUP)), None);
        assert_eq!(node_name(&user("system:node:n1", "other")), None);
    }
}

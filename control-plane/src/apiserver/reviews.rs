//! The access reviews: questions about access, answered and never stored.
//!
//! - `authorization.k8s.io/v1` SelfSubjectAccessReview: may I do this? (`kubectl auth
//!   can-i VERB RESOURCE`)
//! - SelfSubjectRulesReview: what may I do in this namespace? (`kubectl auth can-i --list`)
//! - SubjectAccessReview: may this user do this? Asked by whoever may create
//!   `subjectaccessreviews` (administrators).
//! - `authentication.k8s.io/v1` SelfSubjectReview: who am I? (`kubectl auth whoami`)
//!
//! A create answers the object with its `status` filled, `201 Created`, as Kubernetes.
//! The answers are skiff's own decisions: [`authz::allows`], which the authorization
//! middleware decides with, and the rules of [`super::rbac`]. Everyone authenticated may
//! ask about themselves: the bootstrap ClusterRole `system:basic-user` grants it.
//!
//! kubectl sends these only in Kubernetes protobuf, so they are read in protobuf (see
//! [`super::protobuf`]) as well as in JSON and YAML. Answers are JSON, which kubectl
//! accepts as well.

use axum::Json;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use skiff_api::{FieldError, StatusDetails};

use super::ApiServer;
use super::auth::User;
use super::authz;
use super::discovery;
use super::error::{ApiError, ApiResult};
use super::protobuf;
use super::rbac::{AUTHENTICATED_GROUP, Action};
use super::request::{BodyFormat, decode_body, read_body};

/// The API group of the access reviews.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
/// The API group of SelfSubjectReview.
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
/// The one version the reviews are served in.
pub const VERSION: &str = "v1";
/// The group versions the reviews are served in, for discovery.
pub const GROUP_VERSIONS: [(&str, &str); 2] = [
    (AUTHORIZATION_GROUP, VERSION),
    (AUTHENTICATION_GROUP, VERSION),
];

/// One kind of review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Review {
    SelfSubjectAccess,
    SelfSubjectRules,
    SubjectAccess,
    SelfSubject,
}

impl Review {
    /// Every review, in discovery's order.
    pub const ALL: [Review; 4] = [
        Review::SelfSubjectAccess,
        Review::SelfSubjectRules,
        Review::SubjectAccess,
        Review::SelfSubject,
    ];

    pub fn group(self) -> &'static str {
        match self {
            Review::SelfSubject => AUTHENTICATION_GROUP,
            _ => AUTHORIZATION_GROUP,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Review::SelfSubjectAccess => "SelfSubjectAccessReview",
            Review::SelfSubjectRules => "SelfSubjectRulesReview",
            Review::SubjectAccess => "SubjectAccessReview",
            Review::SelfSubject => "SelfSubjectReview",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Review::SelfSubjectAccess => "selfsubjectaccessreviews",
            Review::SelfSubjectRules => "selfsubjectrulesreviews",
            Review::SubjectAccess => "subjectaccessreviews",
            Review::SelfSubject => "selfsubjectreviews",
        }
    }

    fn api_version(self) -> String {
        format!("{}/{VERSION}", self.group())
    }
}

/// A path under one of the reviews' group versions.
pub enum ReviewPath {
    /// `/apis/GROUP/v1`: the group version's discovery document.
    Resources { group: &'static str },
    /// `/apis/GROUP/v1/PLURAL`: one review's collection, which is created into.
    Review(Review),
}

/// The review path `rest` (the path after `/apis`, `core` false) is: `None` outside the
/// reviews' group versions, a 404 for anything there that is not served.
pub fn parse(core: bool, rest: &str) -> Option<ApiResult<ReviewPath>> {
    if core {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let [group, version, tail @ ..] = segments.as_slice() else {
        return None;
    };
    let &(group, _) = GROUP_VERSIONS
        .iter()
        .find(|(g, v)| g == group && v == version)?;
    Some(match tail {
        [] => Ok(ReviewPath::Resources { group }),
        [plural] => Review::ALL
            .into_iter()
            .find(|r| r.group() == group && r.plural() == *plural)
            .map(ReviewPath::Review)
            .ok_or_else(|| ApiError::path_not_found(&format!("/apis{rest}"))),
        _ => Err(ApiError::path_not_found(&format!("/apis{rest}"))),
    })
}

/// Serves a review path: its discovery document, or a review asked by `POST`.
pub async fn serve(
    server: &ApiServer,
    path: ReviewPath,
    parts: &Parts,
    body: Body,
) -> ApiResult<Response> {
    let method = &parts.method;
    let review = match path {
        ReviewPath::Resources { group } if *method == Method::GET => {
            let resources = discovery::resources(&server.registry, group, VERSION);
            return Ok(Json(resources).into_response());
        }
        ReviewPath::Review(review) if *method == Method::POST => review,
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {})",
                parts.uri.path()
            )));
        }
    };
    // Authentication puts a user on every request that gets here.
    let user = parts
        .extensions
        .get::<User>()
        .ok_or_else(ApiError::unauthorized)?;
    let bytes = read_body(body, server.config.max_body_bytes).await?;
    let asked = decode(review, &parts.headers, &bytes)?;
    let (spec, status) = match review {
        Review::SelfSubjectAccess | Review::SubjectAccess => {
            let spec: AccessSpec = spec_of(review, &asked)?;
            let (action, subject) = question(review, &spec, user)?;
            let allowed = authz::allows(server, &subject, &action).await;
            (Some(json!(spec)), json!({ "allowed": allowed }))
        }
        Review::SelfSubjectRules => {
            let spec: RulesSpec = spec_of(review, &asked)?;
            (Some(json!(spec)), rules_status(server, user, &spec)?)
        }
        Review::SelfSubject => (None, json!({ "userInfo": user_info(user) })),
    };
    let mut answer = json!({
        "kind": review.kind(),
        "apiVersion": review.api_version(),
        "metadata": echoed_metadata(&asked),
        "status": status,
    });
    if let Some(spec) = spec {
        answer["spec"] = spec;
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The review in a request body: protobuf (as kubectl sends it), JSON or YAML. The body's
/// `apiVersion` and `kind` may be left out; given, they must be the path's.
fn decode(review: Review, headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let object = if protobuf::is_protobuf(content_type) {
        protobuf::decode_object(bytes).map_err(|error| {
            ApiError::bad_request(format!(
                "the request body is not a {} in Kubernetes protobuf: {error}",
                review.kind()
            ))
        })?
    } else {
        match BodyFormat::from_headers(headers)? {
            format @ (BodyFormat::Json | BodyFormat::Yaml) => decode_body(bytes, format)?,
            _ => return Err(ApiError::unsupported_media_type(content_type)),
        }
    };
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    let given = |field: &str| object[field].as_str().filter(|s| !s.is_empty());
    let api_version = review.api_version();
    if given("apiVersion").is_some_and(|v| v != api_version)
        || given("kind").is_some_and(|k| k != review.kind())
    {
        return Err(ApiError::bad_request(format!(
            "the request body is {}, Kind={} where {api_version}, Kind={} was expected",
            given("apiVersion").unwrap_or(""),
            given("kind").unwrap_or(""),
            review.kind(),
        )));
    }
    Ok(object)
}

/// A review's `spec`, typed; a missing `spec` reads as an empty one.
fn spec_of<T: serde::de::DeserializeOwned>(review: Review, asked: &Value) -> ApiResult<T> {
    let spec = asked.get("spec").cloned().unwrap_or_else(|| json!({}));
    serde_path_to_error::deserialize(spec).map_err(|error| {
        ApiError::bad_request(format!(
            "{kind} in version {VERSION:?} cannot be handled as a {kind}: spec.{}: {}",
            error.path(),
            error.inner(),
            kind = review.kind(),
        ))
    })
}

/// What an access review asks about: `resourceAttributes` or `nonResourceAttributes`,
/// and, for a SubjectAccessReview, `user`, `groups` and `uid` (`extra` is echoed; RBAC
/// does not look at it).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
struct AccessSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_attributes: Option<ResourceAttributes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    non_resource_attributes: Option<NonResourceAttributes>,
    #[serde(skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<Value>,
}

/// A request on a resource. Empty means none (`subresource`, `name`) or every namespace
/// (`namespace`); `version` is echoed, RBAC does not look at it.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct ResourceAttributes {
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    verb: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    subresource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
}

/// A request on a path that is no resource (`/metrics`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct NonResourceAttributes {
    #[serde(skip_serializing_if = "String::is_empty")]
    path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    verb: String,
}

/// What a SelfSubjectRulesReview asks about: one namespace (required).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct RulesSpec {
    namespace: String,
}

/// The action an access review asks about, and whose: the caller's for a
/// SelfSubjectAccessReview, `spec.user`'s (in `spec.groups`) for a SubjectAccessReview.
/// Refused as Kubernetes refuses it (422) unless exactly one kind of attributes is given,
/// and a SubjectAccessReview without a user or a group.
fn question(review: Review, spec: &AccessSpec, caller: &User) -> ApiResult<(Action, User)> {
    let mut errors = Vec::new();
    let action = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(r), None) => {
            let given = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
            Some(Action::Resource {
                verb: r.verb.clone(),
                group: r.group.clone(),
                resource: r.resource.clone(),
                subresource: given(&r.subresource),
                namespace: given(&r.namespace),
                name: given(&r.name),
            })
        }
        (None, Some(n)) => Some(Action::NonResource {
            verb: n.verb.clone(),
            path: n.path.clone(),
        }),
        (None, None) => {
            errors.push(FieldError::invalid_rendered(
                "spec.resourceAttributes",
                "null",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
            None
        }
        (Some(_), Some(n)) => {
            errors.push(FieldError::invalid_rendered(
                "spec.nonResourceAttributes",
                json!(n).to_string(),
                "cannot be specified in combination with resourceAttributes",
            ));
            None
        }
    };
    let subject = match review {
        Review::SubjectAccess => {
            if spec.user.is_empty() && spec.groups.is_empty() {
                errors.push(FieldError::invalid(
                    "spec.user",
                    "",
                    "at least one of user or group must be specified",
                ));
            }
            User {
                name: spec.user.clone(),
                groups: spec.groups.clone(),
            }
        }
        _ => caller.clone(),
    };
    match action {
        Some(action) if errors.is_empty() => Ok((action, subject)),
        _ => Err(invalid(review, &errors)),
    }
}

/// 422 for a review, worded as Kubernetes words it: `SelfSubjectAccessReview.authorization.k8s.io
/// "" is invalid: spec.resourceAttributes: Invalid value: ...`.
fn invalid(review: Review, errors: &[FieldError]) -> ApiError {
    let details = StatusDetails {
        group: Some(review.group().to_string()),
        kind: Some(review.kind().to_string()),
        ..StatusDetails::default()
    };
    ApiError::invalid_object(
        &format!("{}.{} \"\"", review.kind(), review.group()),
        details,
        errors,
    )
}

/// A SelfSubjectRulesReview's `status`: the rules RBAC grants the caller in the namespace.
/// A node's is `incomplete`: what the node authorizer grants it (the ConfigMaps and
/// Secrets its pods use) follows its pods and is no rule.
fn rules_status(server: &ApiServer, user: &User, spec: &RulesSpec) -> ApiResult<Value> {
    if spec.namespace.is_empty() {
        // Kubernetes' words.
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let rules = server.access.snapshot().rules_for(user, &spec.namespace);
    let (non_resource, resource): (Vec<_>, Vec<_>) = rules
        .iter()
        .partition(|rule| !rule.non_resource_urls.is_empty());
    // A PolicyRule's JSON is a ResourceRule's or a NonResourceRule's: the fields of the
    // other kind are empty, so left out.
    let mut status = json!({
        "resourceRules": resource,
        "nonResourceRules": non_resource,
        "incomplete": false,
    });
    if authz::node_name(user).is_some() {
        status["incomplete"] = json!(true);
        status["evaluationError"] = json!(
            "the node authorizer's grants (the ConfigMaps and Secrets of the node's pods) are not listed"
        );
    }
    Ok(status)
}

/// A SelfSubjectReview's `status.userInfo`: the caller's name and groups, with
/// `system:authenticated`, which Kubernetes adds to every authenticated user's (skiff's
/// RBAC counts every authenticated user in it).
fn user_info(user: &User) -> Value {
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    json!({ "username": user.name, "groups": groups })
}

/// The request's `metadata`, as the answer gives it back, without the empty strings a
/// protobuf body holds for every unset field.
fn echoed_metadata(asked: &Value) -> Value {
    let metadata: Map<String, Value> = asked
        .get("metadata")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, value)| value.as_str() != Some(""))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Value::Object(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reviews_paths_are_theirs() {
        let review = |rest: &str| match parse(false, rest) {
            Some(Ok(ReviewPath::Review(review))) => Some(review),
            _ => None,
        };
        assert_eq!(
            review("/authorization.k8s.io/v1/selfsubjectaccessreviews"),
            Some(Review::SelfSubjectAccess)
        );
        assert_eq!(
            review("/authentication.k8s.io/v1/selfsubjectreviews"),
            Some(Review::SelfSubject)
        );
        assert!(matches!(
            parse(false, "/authorization.k8s.io/v1"),
            Some(Ok(ReviewPath::Resources {
                group: AUTHORIZATION_GROUP
            }))
        ));
        for not_found in [
            "/authorization.k8s.io/v1/selfsubjectreviews",
            "/authorization.k8s.io/v1/selfsubjectaccessreviews/x",
            "/authorization.k8s.io/v1/namespaces/a/localsubjectaccessreviews",
        ] {
            let error = parse(false, not_found).unwrap().err().unwrap();
            assert_eq!(error.code, StatusCode::NOT_FOUND, "{not_found}");
        }
        for not_reviews in ["/apps/v1/deployments", "/authorization.k8s.io", ""] {
            assert!(parse(false, not_reviews).is_none(), "{not_reviews}");
        }
        assert!(parse(true, "/authorization.k8s.io/v1").is_none());
    }

    fn spec(value: Value) -> AccessSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn an_access_review_asks_about_one_action() {
        let caller = User {
            name: "alice".into(),
            groups: vec!["team".into()],
        };
        let (action, subject) = question(
            Review::SelfSubjectAccess,
            &spec(json!({ "resourceAttributes": {
                "namespace": "a", "verb": "get", "resource": "pods", "subresource": "log",
                "name": "", "version": "v1",
            } })),
            &caller,
        )
        .unwrap();
        assert_eq!(
            action,
            Action::Resource {
                verb: "get".into(),
                group: String::new(),
                resource: "pods".into(),
                subresource: Some("log".into()),
                namespace: Some("a".into()),
                name: None,
            }
        );
        assert_eq!(subject, caller);

        let (action, subject) = question(
            Review::SubjectAccess,
            &spec(
                json!({ "nonResourceAttributes": { "path": "/metrics", "verb": "get" },
                          "user": "bob", "groups": ["g"] }),
            ),
            &caller,
        )
        .unwrap();
        assert_eq!(
            action,
            Action::NonResource {
                verb: "get".into(),
                path: "/metrics".into()
            }
        );
        assert_eq!(
            subject,
            User {
                name: "bob".into(),
                groups: vec!["g".into()]
            }
        );

        let error = question(Review::SelfSubjectAccess, &spec(json!({})), &caller).unwrap_err();
        assert_eq!(error.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            error.message,
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: \
             Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );
        let both = spec(json!({ "resourceAttributes": { "verb": "get" },
                                "nonResourceAttributes": { "path": "/", "verb": "get" } }));
        let error = question(Review::SelfSubjectAccess, &both, &caller).unwrap_err();
        assert!(
            error.message.contains("spec.nonResourceAttributes"),
            "{}",
            error.message
        );
        let nobody = spec(json!({ "resourceAttributes": { "verb": "get", "resource": "pods" } }));
        let error = question(Review::SubjectAccess, &nobody, &caller).unwrap_err();
        assert!(
            error
                .message
                .contains("at least one of user or group must be specified"),
            "{}",
            error.message
        );
    }

    #[test]
    fn whoami_adds_system_authenticated_once() {
        let admin = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        };
        assert_eq!(
            user_info(&admin),
            json!({ "username": "admin", "groups": ["system:masters", "system:authenticated"] })
        );
        let already = User {
            name: "x".into(),
            groups: vec![AUTHENTICATED_GROUP.into()],
        };
        assert_eq!(user_info(&already)["groups"], json!([AUTHENTICATED_GROUP]));
    }
}

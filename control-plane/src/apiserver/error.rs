//! The API's one error type: every failure becomes a Kubernetes `Status` object with the
//! right HTTP code and reason, and never carries internal detail to the caller.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use skiff_api::{FieldError, Status, StatusCause, StatusDetails};

use super::registry::ResourceType;
use crate::store::StoreError;

/// A failed API call, as the caller will see it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    /// Kubernetes' machine-readable reason: `NotFound`, `Conflict`, `Invalid`, ...
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel through many `Result`s and should stay small.
    pub details: Option<Box<StatusDetails>>,
}

/// The causes of a 422, one per field error: its reason, its message without the field
/// path in front, and the field.
fn causes(errors: &[FieldError]) -> Vec<StatusCause> {
    errors
        .iter()
        .map(|e| StatusCause {
            reason: Some(e.kind.reason().to_string()),
            message: Some(
                e.to_string()
                    .split_once(": ")
                    .map(|(_, rest)| rest.to_string())
                    .unwrap_or_default(),
            ),
            field: Some(e.field.clone()),
        })
        .collect()
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = Some(Box::new(StatusDetails {
            name: Some(name.to_string()).filter(|n| !n.is_empty()),
            group: Some(rt.group.to_string()).filter(|g| !g.is_empty()),
            kind: Some(rt.plural.to_string()),
            ..StatusDetails::default()
        }));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// A request body that cannot be decoded as the kind; names the field when it can.
    pub fn undecodable(
        rt: &ResourceType,
        field: Option<String>,
        problem: impl std::fmt::Display,
    ) -> Self {
        // Kubernetes names the version alone: `Deployment in version "v1"`.
        let version = rt.version;
        let message = match &field {
            Some(field) => format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: {field}: {problem}",
                kind = rt.kind
            ),
            None => format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: {problem}",
                kind = rt.kind
            ),
        };
        let mut error = Self::bad_request(message.clone());
        if let Some(field) = field {
            error.details = Some(Box::new(StatusDetails {
                causes: vec![StatusCause {
                    reason: Some("FieldValueInvalid".into()),
                    message: Some(problem.to_string()),
                    field: Some(field),
                }],
                ..StatusDetails::default()
            }));
        }
        error
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} {name:?} not found", rt.qualified_plural()),
        )
        .with_details(rt, name)
    }

    pub fn namespace_not_found(namespace: &str) -> Self {
        let mut error = Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces {namespace:?} not found"),
        );
        error.details = Some(Box::new(StatusDetails {
            name: Some(namespace.to_string()),
            kind: Some("namespaces".into()),
            ..StatusDetails::default()
        }));
        error
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} {name:?} already exists", rt.qualified_plural()),
        )
        .with_details(rt, name)
    }

    /// A stale resourceVersion or a failed precondition.
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                rt.qualified_plural()
            ),
        )
        .with_details(rt, name)
    }

    pub fn modified(rt: &ResourceType, name: &str) -> Self {
        Self::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// Validation failed: 422 with one cause per field, worded as Kubernetes does.
    pub fn invalid(rt: &ResourceType, name: &str, errors: &[FieldError]) -> Self {
        let details = StatusDetails {
            name: Some(name.to_string()),
            group: Some(rt.group.to_string()).filter(|g| !g.is_empty()),
            kind: Some(rt.kind.to_string()),
            ..StatusDetails::default()
        };
        Self::invalid_object(&format!("{} {name:?}", rt.kind), details, errors)
    }

    /// 422 for the object `what` names (`Deployment "web"`), with `details` and one
    /// cause per field: `what is invalid: field: Invalid value: ...`.
    pub(crate) fn invalid_object(
        what: &str,
        details: StatusDetails,
        errors: &[FieldError],
    ) -> Self {
        let summary = match errors {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: format!("{what} is invalid: {summary}"),
            details: Some(Box::new(StatusDetails {
                causes: causes(errors),
                ..details
            })),
        }
    }

    /// Options of a request Kubernetes refuses (an unknown `dryRun` or `fieldValidation`):
    /// 422 naming the options' kind (`CreateOptions`) and each bad parameter, as Kubernetes.
    pub fn invalid_options(options_kind: &str, errors: &[FieldError]) -> Self {
        let summary = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let summary = if errors.len() == 1 {
            summary
        } else {
            format!("[{summary}]")
        };
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: format!("{options_kind}.meta.k8s.io \"\" is invalid: {summary}"),
            details: Some(Box::new(StatusDetails {
                group: Some("meta.k8s.io".into()),
                kind: Some(options_kind.to_string()),
                causes: causes(errors),
                ..StatusDetails::default()
            })),
        }
    }

    /// The same error with another HTTP code (a node's answer, relayed).
    pub fn with_code(mut self, code: StatusCode) -> Self {
        self.code = code;
        self
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        let mut message = format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
        );
        // client-go's typed clients (kubectl `create deployment`, `create job`, `run` ...)
        // send protobuf and never retry with JSON: say what works instead.
        if content_type.starts_with("application/vnd.kubernetes.protobuf") {
            message.push_str(
                "; skiff reads JSON and YAML bodies, not Kubernetes protobuf: with kubectl, create the object from its manifest instead, as in `kubectl create deployment NAME --image=IMAGE --dry-run=client -o yaml | kubectl create -f -`",
            );
        }
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            message,
        )
    }

    /// None of the representations the `Accept` header names can be given.
    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json (got {accept:?})"
            ),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// A per-client limit was reached: 429, with `retry_after` (whole seconds, rounded
    /// up, at least 1) in the `Status` and the `Retry-After` header, as Kubernetes does.
    pub fn too_many_requests(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
        error.details = Some(Box::new(StatusDetails {
            retry_after_seconds: Some(seconds.clamp(1, i64::MAX as u64) as i64),
            ..StatusDetails::default()
        }));
        error
    }

    /// The resourceVersion a watch or continue token asked for is no longer kept.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub fn path_not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// Something failed inside the server: logged in full, reported without internals.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("an internal error occurred while {context}"),
        )
    }

    /// The store said no; `name` and `rt` give the message its object.
    pub fn from_store(rt: &ResourceType, name: &str, error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists { .. } => Self::already_exists(rt, name),
            StoreError::NotFound { .. } => Self::not_found(rt, name),
            StoreError::Conflict { .. } => Self::modified(rt, name),
            StoreError::Compacted {
                requested,
                compacted,
            } => Self::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::TooLarge { detail, .. } => Self {
                message: format!(
                    "{} {name:?} is too large for the store: {detail}",
                    rt.plural
                ),
                ..Self::too_large(0)
            },
            other => Self::internal("talking to the store", other),
        }
    }

    /// The `Status` object this error answers with.
    pub fn status(&self) -> Status {
        Status {
            api_version: "v1".into(),
            kind: "Status".into(),
            status: Some("Failure".into()),
            message: Some(self.message.clone()),
            reason: Some(self.reason.to_string()),
            details: self.details.as_deref().cloned(),
            code: Some(self.code.as_u16()),
            ..Status::default()
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.code.as_u16(),
            self.reason,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code, Json(self.status())).into_response();
        if let Some(seconds) = self.details.as_ref().and_then(|d| d.retry_after_seconds) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.code == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What API handlers return.
pub type ApiResult<T> = Result<T, ApiError>;

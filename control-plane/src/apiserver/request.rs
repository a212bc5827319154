//! What a request asks for: its resource path, query parameters and body.

use axum::body::Body;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use skiff_api::{FieldError, FieldErrorKind};

use super::bounded::{self, DecodeError};
use super::error::{ApiError, ApiResult};
use super::registry::{Registry, ResourceType};

/// A resource path taken apart, like Kubernetes' `RequestInfo`.
pub enum Target<'r> {
    /// `/api`, `/apis`: the group list.
    Groups { core: bool },
    /// `/apis/apps`: one group.
    Group { group: String },
    /// `/api/v1`, `/apis/apps/v1`: the resources of a group version.
    Resources { group: String, version: String },
    /// A collection, object or subresource of one kind.
    Resource(ResourcePath<'r>),
}

/// A collection, object or subresource of one kind.
pub struct ResourcePath<'r> {
    pub rt: &'r ResourceType,
    /// The namespace in the path; `None` for cluster-scoped kinds or all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl<'r> Target<'r> {
    /// Parses the path after `/api` (`core` true) or `/apis`.
    pub fn parse(registry: &'r Registry, core: bool, rest: &str) -> ApiResult<Target<'r>> {
        let full = format!("{}/{rest}", if core { "/api" } else { "/apis" });
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match (core, segments.as_slice()) {
            (_, []) => return Ok(Target::Groups { core }),
            (true, [version, rest @ ..]) => (String::new(), version.to_string(), rest),
            (false, [group]) => {
                return Ok(Target::Group {
                    group: group.to_string(),
                });
            }
            (false, [group, version, rest @ ..]) => (group.to_string(), version.to_string(), rest),
        };
        if registry.find_version(&group, &version).is_none() {
            return Err(ApiError::path_not_found(&full));
        }
        let find = |plural: &str| registry.find(&group, &version, plural);
        let path = match rest {
            [] => return Ok(Target::Resources { group, version }),
            ["namespaces", namespace, plural, tail @ ..]
                if find(plural).is_some_and(|rt| rt.namespaced) =>
            {
                let rt = find(plural).expect("checked");
                let (name, subresource) = match tail {
                    [] => (None, None),
                    [name] => (Some(name), None),
                    [name, sub] => (Some(name), Some(sub)),
                    _ => return Err(ApiError::path_not_found(&full)),
                };
                ResourcePath {
                    rt,
                    namespace: Some(namespace.to_string()),
                    name: name.map(|s| s.to_string()),
                    subresource: subresource.map(|s| s.to_string()),
                }
            }
            [plural, tail @ ..] => {
                let rt = find(plural).ok_or_else(|| ApiError::path_not_found(&full))?;
                let (name, subresource) = match tail {
                    [] => (None, None),
                    // A namespaced kind by name needs its namespace in the path.
                    [name] if !rt.namespaced => (Some(name), None),
                    [name, sub] if !rt.namespaced => (Some(name), Some(sub)),
                    _ => return Err(ApiError::path_not_found(&full)),
                };
                ResourcePath {
                    rt,
                    namespace: None,
                    name: name.map(|s| s.to_string()),
                    subresource: subresource.map(|s| s.to_string()),
                }
            }
        };
        for segment in [&path.namespace, &path.name].into_iter().flatten() {
            if segment.is_empty()
                || segment.len() > 253
                || segment == "."
                || segment == ".."
                || segment.contains('%')
            {
                return Err(ApiError::bad_request(format!(
                    "invalid name in path: {segment:?}"
                )));
            }
        }
        Ok(Target::Resource(path))
    }
}

impl Registry {
    /// Whether `group/version` is served at all.
    pub fn find_version(&self, group: &str, version: &str) -> Option<()> {
        self.types
            .iter()
            .any(|t| t.group == group && t.version == version)
            .then_some(())
    }
}

/// The query parameters of the Kubernetes API that skiff honours.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<String>,
    #[serde(rename = "continue")]
    pub continue_: Option<String>,
    pub watch: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<String>,
    pub allow_watch_bookmarks: Option<String>,
    pub grace_period_seconds: Option<String>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<String>,
    /// What each row of a Table carries: `None`, `Metadata` (the default) or `Object`.
    pub include_object: Option<String>,
    /// Whether a watch starts with the current objects and a bookmark where they end.
    pub send_initial_events: Option<String>,
    /// `All`: the write is tried in full and nothing is stored (see [`WriteOptions`]).
    pub dry_run: Option<String>,
    /// What a write does with fields the kind does not have: `Ignore`, `Warn` or `Strict`.
    pub field_validation: Option<String>,
    /// Who makes a write, for `metadata.managedFields`; required for an apply.
    pub field_manager: Option<String>,
    /// An apply takes fields over from their other managers rather than conflicting.
    pub force: Option<String>,
}

impl Params {
    /// Parses a raw query string; unknown parameters are ignored, as Kubernetes does.
    pub fn parse(raw: Option<&str>) -> ApiResult<Params> {
        let raw = raw.unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        let object: serde_json::Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        serde_json::from_value(Value::Object(object))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }

    pub fn is_watch(&self) -> bool {
        matches!(self.watch.as_deref(), Some("1" | "true" | "True"))
    }

    pub fn bookmarks(&self) -> bool {
        matches!(
            self.allow_watch_bookmarks.as_deref(),
            Some("1" | "true" | "True")
        )
    }

    /// `sendInitialEvents`, if given.
    pub fn send_initial_events(&self) -> ApiResult<Option<bool>> {
        match self.send_initial_events.as_deref() {
            None | Some("") => Ok(None),
            Some("true" | "1" | "True") => Ok(Some(true)),
            Some("false" | "0" | "False") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!(
                "sendInitialEvents: invalid value {other:?}: must be true or false"
            ))),
        }
    }

    /// A non-negative integer parameter, with an error naming it.
    pub fn number(name: &str, value: &Option<String>) -> ApiResult<Option<i64>> {
        match value {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "{name}: invalid value {v:?}: must be a non-negative integer"
                ))),
            },
        }
    }
}

/// What a write asks for beyond its body: whether it is only tried (`dryRun=All`) and
/// what becomes of unknown fields (`fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Validate, default, admit and allocate as for a real write, answer what would be
    /// stored, and store nothing. Default false.
    pub dry_run: bool,
    /// Default [`FieldValidation::Warn`], as in Kubernetes.
    pub field_validation: FieldValidation,
}

/// What a create, update or patch does with fields its kind does not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them, and say so in a `Warning` header for each. The default.
    #[default]
    Warn,
    /// Refuse the request (400) naming them.
    Strict,
}

impl WriteOptions {
    /// The options of a write from its query; `options_kind` (`CreateOptions`,
    /// `UpdateOptions`, `PatchOptions`, `DeleteOptions`) names them in errors, which are
    /// Kubernetes' own: 422 naming the parameter and the values it takes.
    pub fn parse(params: &Params, options_kind: &str) -> ApiResult<WriteOptions> {
        Ok(WriteOptions {
            dry_run: dry_run(params.dry_run.as_deref(), options_kind)?,
            field_validation: match params.field_validation.as_deref() {
                None | Some("") | Some("Warn") => FieldValidation::Warn,
                Some("Ignore") => FieldValidation::Ignore,
                Some("Strict") => FieldValidation::Strict,
                Some(other) => {
                    return Err(ApiError::invalid_options(
                        options_kind,
                        &[FieldError::not_supported(
                            "fieldValidation",
                            other,
                            &["Ignore", "Strict", "Warn"],
                        )],
                    ));
                }
            },
        })
    }
}

/// The most bytes a field manager's name may have, as in Kubernetes.
const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// Who makes a write, as Kubernetes names it in `metadata.managedFields`: the
/// `fieldManager` parameter (checked: at most 128 bytes, printable), else the program
/// name of the User-Agent (`kubectl/v1.30.0 (linux/amd64)` is `kubectl`).
pub fn field_manager(
    params: &Params,
    headers: &HeaderMap,
    options_kind: &str,
) -> ApiResult<String> {
    let errors = field_manager_errors(params.field_manager.as_deref().unwrap_or(""));
    if !errors.is_empty() {
        return Err(ApiError::invalid_options(options_kind, &errors));
    }
    match params.field_manager.as_deref().filter(|m| !m.is_empty()) {
        Some(manager) => Ok(manager.to_string()),
        None => Ok(user_agent_program(
            headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )),
    }
}

fn field_manager_errors(manager: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if manager.len() > FIELD_MANAGER_MAX_LENGTH {
        errors.push(FieldError::too_long(
            "fieldManager",
            FIELD_MANAGER_MAX_LENGTH,
        ));
    }
    if let Some(index) = manager.chars().position(char::is_control) {
        errors.push(FieldError::invalid(
            "fieldManager",
            manager,
            format!("invalid characters at index {index}"),
        ));
    }
    errors
}

/// What comes before the first `/` of a User-Agent, without unprintable characters and
/// cut at 128 bytes (Kubernetes' `prefixFromUserAgent`).
fn user_agent_program(user_agent: &str) -> String {
    let mut program = String::new();
    for c in user_agent.split('/').next().unwrap_or("").chars() {
        if c.is_control() {
            continue;
        }
        if program.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        program.push(c);
    }
    program
}

/// Whether a patch is forced (`force`), checked as Kubernetes checks `PatchOptions`:
/// `force` only for an apply, and an apply names its `fieldManager`.
pub fn patch_force(params: &Params, format: BodyFormat) -> ApiResult<bool> {
    let apply = format == BodyFormat::ApplyPatch;
    let force = match params.force.as_deref() {
        None | Some("") => None,
        Some("true" | "True" | "TRUE" | "t" | "T" | "1") => Some(true),
        Some("false" | "False" | "FALSE" | "f" | "F" | "0") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "force: invalid value {other:?}: must be true or false"
            )));
        }
    };
    let mut errors = Vec::new();
    if !apply && force.is_some() {
        errors.push(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if apply && params.field_manager.as_deref().is_none_or(str::is_empty) {
        errors.push(FieldError::required(
            "fieldManager",
            "is required for apply patch",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_options("PatchOptions", &errors));
    }
    Ok(force.unwrap_or(false))
}

/// Whether `dryRun` (a query parameter, or `DeleteOptions.dryRun`) asks for a dry run:
/// `All` does, nothing does not, anything else is refused as Kubernetes refuses it.
pub fn dry_run(value: Option<&str>, options_kind: &str) -> ApiResult<bool> {
    match value {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::invalid_options(
            options_kind,
            &[FieldError {
                kind: FieldErrorKind::NotSupported,
                field: "dryRun".into(),
                // As Go prints the `[]string` Kubernetes holds it in.
                value: Some(format!("[]string{{{other:?}}}")),
                detail: "supported values: \"All\"".into(),
            }],
        )),
    }
}

/// How a request body is encoded, from its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    MergePatch,
    JsonPatch,
    StrategicMergePatch,
    ApplyPatch,
}

impl BodyFormat {
    pub fn from_headers(headers: &HeaderMap) -> ApiResult<BodyFormat> {
        let content_type = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Ok(match media.as_str() {
            "" | "application/json" | "*/*" => BodyFormat::Json,
            "application/yaml" | "application/x-yaml" | "text/yaml" => BodyFormat::Yaml,
            "application/merge-patch+json" => BodyFormat::MergePatch,
            "application/json-patch+json" => BodyFormat::JsonPatch,
            "application/strategic-merge-patch+json" => BodyFormat::StrategicMergePatch,
            "application/apply-patch+yaml" => BodyFormat::ApplyPatch,
            _ => return Err(ApiError::unsupported_media_type(content_type)),
        })
    }
}

/// Reads at most `limit` bytes of body.
pub async fn read_body(body: Body, limit: usize) -> ApiResult<bytes::Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request(format!("reading the request body: {error}"))
        }
    })
}

/// Decodes a JSON or YAML body into one JSON value (objects only for object bodies).
///
/// What the body may decode to is bounded by its own length (see [`bounded`]), so YAML
/// aliases cannot multiply it; nesting deeper than [`bounded::MAX_DEPTH`] is refused.
/// Bodies at least this large decode off the async workers ([`off_the_workers`]).
const COSTLY_BODY: usize = 64 * 1024;

/// Runs a decode that may take long (serde_yaml spends about a second of CPU per MiB)
/// without stalling the other requests of its worker thread: on a multi-threaded runtime
/// the worker first hands its queued tasks to the others (`block_in_place`). Small bodies,
/// and single-threaded runtimes (tests), decode in place.
fn off_the_workers<T>(len: usize, decode: impl FnOnce() -> T) -> T {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if len >= COSTLY_BODY && multi_threaded {
        tokio::task::block_in_place(decode)
    } else {
        decode()
    }
}

pub fn decode_body(bytes: &[u8], format: BodyFormat) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let budget = bounded::budget_for(bytes.len());
    let (what, decoded) = match format {
        BodyFormat::Yaml | BodyFormat::ApplyPatch => (
            "YAML",
            off_the_workers(bytes.len(), || bounded::yaml(bytes, budget)),
        ),
        _ => ("JSON", bounded::json(bytes, budget)),
    };
    decoded.map_err(|error| match error {
        DecodeError::Syntax(problem) => {
            ApiError::bad_request(format!("the request body is not valid {what}: {problem}"))
        }
        DecodeError::YamlTooLong => ApiError {
            message: format!("the request body is {}", DecodeError::YamlTooLong),
            ..ApiError::too_large(bounded::MAX_YAML_BYTES)
        },
        limit => ApiError::bad_request(format!("the request body is {limit}")),
    })
}

#[cfg(test)]
mod field_manager_tests {
    use super::*;

    fn params(query: &str) -> Params {
        Params::parse(Some(query)).unwrap()
    }

    #[test]
    fn the_manager_is_the_parameter_else_the_user_agents_program() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::USER_AGENT,
            "kubectl/v1.30.0 (linux/amd64) kubernetes/abc"
                .parse()
                .unwrap(),
        );
        let manager = field_manager(
            &params("fieldManager=kubectl-edit"),
            &headers,
            "UpdateOptions",
        );
        assert_eq!(manager.unwrap(), "kubectl-edit");
        assert_eq!(
            field_manager(&params(""), &headers, "UpdateOptions").unwrap(),
            "kubectl"
        );
        assert_eq!(
            field_manager(&params(""), &HeaderMap::new(), "UpdateOptions").unwrap(),
            ""
        );
        let long = format!("fieldManager={}", "m".repeat(129));
        let error = field_manager(&params(&long), &headers, "CreateOptions").unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(
            error.message,
            "CreateOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: must have at most 128 bytes"
        );
    }

    #[test]
    fn an_apply_needs_a_manager_and_only_an_apply_may_force() {
        let error = patch_force(&params(""), BodyFormat::ApplyPatch).unwrap_err();
        assert_eq!(
            error.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        let error = patch_force(&params("force=true"), BodyFormat::MergePatch).unwrap_err();
        assert_eq!(error.code, 422);
        assert!(
            error
                .message
                .contains("force: Forbidden: may not be specified for non-apply patch")
        );
        assert!(
            patch_force(
                &params("fieldManager=me&force=true"),
                BodyFormat::ApplyPatch
            )
            .unwrap()
        );
        assert!(!patch_force(&params("fieldManager=me"), BodyFormat::ApplyPatch).unwrap());
        assert!(!patch_force(&params(""), BodyFormat::MergePatch).unwrap());
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    /// A YAML list of `n` small maps, well over [`COSTLY_BODY`] for large `n`.
    fn big_yaml(n: usize) -> Vec<u8> {
        let mut yaml = String::from("items:\n");
        for i in 0..n {
            yaml.push_str(&format!("- {{ name: item-{i}, value: {i} }}\n"));
        }
        yaml.into_bytes()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_yaml_decodes_off_the_workers_on_a_multi_threaded_runtime() {
        let yaml = big_yaml(5_000);
        assert!(yaml.len() >= COSTLY_BODY);
        let value = decode_body(&yaml, BodyFormat::Yaml).unwrap();
        assert_eq!(value["items"][4_999]["name"], "item-4999");
    }

    #[tokio::test]
    async fn large_yaml_decodes_in_place_on_a_single_threaded_runtime() {
        // block_in_place would panic here: the decode must not use it.
        let value = decode_body(&big_yaml(5_000), BodyFormat::Yaml).unwrap();
        assert_eq!(value["items"][0]["value"], 0);
    }
}

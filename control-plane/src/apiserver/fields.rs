//! `fieldValidation`: what a create, update or patch does with fields its kind does not
//! have. The typed decode drops them whatever is asked; `Warn` (the default, as in
//! Kubernetes) says so in a `Warning` header for each, `Strict` refuses the request with
//! Kubernetes' `strict decoding error`, `Ignore` stays silent.
//!
//! Unknown fields are found by walking the object along its kind's schema (see
//! [`super::openapi`]), which is derived from the same types the decode uses.

use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::openapi::Catalog;
use super::registry::ResourceType;
use super::request::FieldValidation;

/// Checks `object` for fields its kind does not have, as `validation` says: refuses it
/// (`Strict`), or returns it with the warnings to send (`Warn`; none for `Ignore`).
pub fn check(
    rt: &ResourceType,
    object: Value,
    validation: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    if validation == FieldValidation::Ignore {
        return Ok((object, Vec::new()));
    }
    let unknown = unknown_fields(rt, &object);
    if unknown.is_empty() {
        return Ok((object, Vec::new()));
    }
    let problems: Vec<String> = unknown
        .iter()
        .map(|field| format!("unknown field {field:?}"))
        .collect();
    match validation {
        FieldValidation::Strict => Err(ApiError::undecodable(
            rt,
            None,
            format!("strict decoding error: {}", problems.join(", ")),
        )),
        _ => Ok((object, problems)),
    }
}

/// The paths of the fields in `object` that its kind does not have, in Kubernetes'
/// notation (`spec.template.spec.containers[0].foo`).
pub fn unknown_fields(rt: &ResourceType, object: &Value) -> Vec<String> {
    let catalog = Catalog::get();
    let mut found = Vec::new();
    if let Some(schema) = catalog.kind(rt) {
        walk(catalog, schema, object, &mut String::new(), &mut found);
    }
    found
}

fn walk(
    catalog: &Catalog,
    schema: &Value,
    value: &Value,
    path: &mut String,
    found: &mut Vec<String>,
) {
    let schema = catalog.resolve(schema);
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    let len = path.len();
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, value) in map {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    match properties.get(key) {
                        Some(property) => walk(catalog, property, value, path, found),
                        None => found.push(path.clone()),
                    }
                    path.truncate(len);
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|s| s.is_object())
            {
                for (key, value) in map {
                    path.push_str(&format!("[{key}]"));
                    walk(catalog, values, value, path, found);
                    path.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    path.push_str(&format!("[{index}]"));
                    walk(catalog, item_schema, item, path, found);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// `response` with a `Warning` header (`299 - "TEXT"`) for each warning, as Kubernetes
/// sends them; kubectl prints each as `Warning: TEXT`.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {}", quote(warning));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response
                .headers_mut()
                .append(axum::http::header::WARNING, value);
        }
    }
    response
}

/// `text` as an HTTP quoted string: quotes and backslashes escaped, control characters
/// and anything past ASCII (which a header may not carry) replaced.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_ascii() && !c.is_ascii_control() => quoted.push(c),
            _ => quoted.push('?'),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::registry::Registry;

    fn unknown(plural: &str, object: Value) -> Vec<String> {
        let registry = Registry::builtin();
        let rt = registry.types.iter().find(|t| t.plural == plural).unwrap();
        unknown_fields(rt, &object)
    }

    #[test]
    fn unknown_fields_are_named_by_their_path() {
        let found = unknown(
            "deployments",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "web", "labels": { "any": "label" }, "colour": "red" },
                "spec": {
                    "replicas": 2, "foo": 1,
                    "template": { "spec": { "containers": [
                        { "name": "a", "image": "a.wasm" },
                        { "name": "b", "image": "b.wasm", "imagePullPolicyy": "Always",
                          "env": [{ "name": "X", "value": "1", "valueFrm": {} }] },
                    ] } },
                },
            }),
        );
        assert_eq!(
            found,
            [
                "metadata.colour",
                "spec.foo",
                "spec.template.spec.containers[1].env[0].valueFrm",
                "spec.template.spec.containers[1].imagePullPolicyy",
            ]
        );
    }

    #[test]
    fn known_fields_maps_and_free_form_fields_are_not_unknown() {
        let found = unknown(
            "pods",
            json!({
                "metadata": { "name": "p", "annotations": { "a": "b" } },
                "spec": {
                    "containers": [{ "name": "a", "image": "a.wasm",
                        "resources": { "limits": { "cpu": 1, "memory": "64Mi" } },
                        "securityContext": { "runAsUser": 1000, "anything": true } }],
                    "nodeSelector": { "disk": "ssd" },
                },
                "status": { "phase": "Pending" },
            }),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn strict_refuses_warn_warns_ignore_is_silent() {
        let registry = Registry::builtin();
        let rt = registry.find("", "v1", "configmaps").unwrap();
        let object = json!({ "metadata": { "name": "c" }, "data": {}, "extra": 1 });
        let error = check(rt, object.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(error.code, 400);
        assert_eq!(
            error.message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"extra\""
        );
        let (_, warnings) = check(rt, object.clone(), FieldValidation::Warn).unwrap();
        assert_eq!(warnings, ["unknown field \"extra\""]);
        let (_, warnings) = check(rt, object, FieldValidation::Ignore).unwrap();
        assert!(warnings.is_empty());
    }

    #[test]
    fn warnings_are_quoted_as_kubernetes_sends_them() {
        let response = with_warnings(
            Response::new(axum::body::Body::empty()),
            &["unknown field \"spec.foo\"".to_string()],
        );
        assert_eq!(
            response.headers()["warning"],
            "299 - \"unknown field \\\"spec.foo\\\"\""
        );
    }
}

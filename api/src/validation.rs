//! Field errors in Kubernetes' words, and the checks every kind shares.
//!
//! The `is_*` functions check one string and return Kubernetes' messages for it (empty
//! when it is valid); the `validate_*` functions check a part of an object and return
//! [`FieldError`]s carrying the field path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::meta::ObjectMeta;

/// What is wrong with a field; the names are Kubernetes' `field.ErrorType`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Invalid value`
    Invalid,
    /// `Required value`
    Required,
    /// `Duplicate value`
    Duplicate,
    /// `Unsupported value`
    NotSupported,
    /// `Forbidden`
    Forbidden,
    /// `Too long`
    TooLong,
    /// `Not found`: a reference to something that does not exist (a volume mount naming
    /// no volume).
    NotFound,
}

impl FieldErrorKind {
    /// The reason a `StatusCause` carries: `FieldValueInvalid`, ...
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::NotFound => "Not found",
        }
    }
}

/// One problem with one field, displayed as Kubernetes does:
/// `spec.containers[0].name: Invalid value: "Foo": a lowercase RFC 1123 label ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    /// The field path: `metadata.name`, `spec.containers[0].ports[1].containerPort`.
    pub field: String,
    /// The offending value, already rendered (strings quoted), if there is one to show.
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    /// `Invalid value`: `value` (rendered with `{:?}`, so strings are quoted) is wrong
    /// for the reason in `detail`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl fmt::Debug,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            value: Some(format!("{value:?}")),
            detail: detail.into(),
        }
    }

    /// `Required value`: the field is missing or empty.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: FieldErrorKind::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// `Duplicate value`: `value` appears twice where it must be unique.
    pub fn duplicate(field: impl Into<String>, value: impl fmt::Debug) -> Self {
        FieldError {
            kind: FieldErrorKind::Duplicate,
            field: field.into(),
            value: Some(format!("{value:?}")),
            detail: String::new(),
        }
    }

    pub fn not_supported(
        field: impl Into<String>,
        value: impl fmt::Debug,
        supported: &[&str],
    ) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            kind: FieldErrorKind::NotSupported,
            field: field.into(),
            value: Some(format!("{value:?}")),
            detail: format!("supported values: {}", quoted.join(", ")),
        }
    }

    /// `Forbidden`: the field may not be set (or changed) here.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: FieldErrorKind::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// `Not found`: `value` names something that does not exist.
    pub fn not_found(field: impl Into<String>, value: impl fmt::Debug) -> Self {
        FieldError {
            kind: FieldErrorKind::NotFound,
            field: field.into(),
            value: Some(format!("{value:?}")),
            detail: String::new(),
        }
    }

    /// `Invalid value` with a value already rendered (a selector or map as JSON).
    pub fn invalid_rendered(
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// `Too long`: the field holds more than `max` bytes.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            kind: FieldErrorKind::TooLong,
            field: field.into(),
            value: None,
            detail: format!("must have at most {max} bytes"),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind.phrase())?;
        if let Some(value) = &self.value {
            write!(f, ": {value}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldError {}

// ---------------------------------------------------------------------------------------
// Checks of one string, in Kubernetes' words (k8s.io/apimachinery/pkg/util/validation).

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_NAME_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_MSG: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";
const HTTP_HEADER_NAME_FMT: &str = "[-A-Za-z0-9]+";
const HTTP_HEADER_NAME_MSG: &str =
    "a valid HTTP header must consist of alphanumeric characters or '-'";

/// Longest DNS-1123 / DNS-1035 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest label value and name part of a qualified name.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Most bytes all annotations of one object may hold together (keys and values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Kubernetes' `RegexError`: the message, examples and the regular expression.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = msg.to_string();
    if examples.is_empty() {
        out.push_str(&format!(" (regex used for validation is '{fmt}')"));
        return out;
    }
    out.push_str(" (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{example}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

const EMPTY_ERROR: &str = "must be non-empty";

/// The message of a value outside `lo..=hi`: `must be between 1 and 65535, inclusive`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1035_label(value: &str) -> bool {
    matches_dns1123_label(value) && value.as_bytes()[0].is_ascii_lowercase()
}

fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Messages for a DNS-1123 label (`my-name`): at most 63 lowercase alphanumerics or
/// `-`, starting and ending alphanumeric. Namespace names, container and volume names.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errors.push("must not contain dots".to_string());
        } else {
            errors.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errors
}

/// Messages for a DNS-1123 subdomain (`example.com`): dot-separated labels, at most 253
/// characters. The name of most objects.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

/// Messages for a DNS-1035 label (`my-name`): a DNS-1123 label that starts with a
/// letter. Service names, since they become DNS names and environment variables.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errors.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errors
}

/// Messages for a qualified name (`app`, `example.com/my-key`): an optional DNS
/// subdomain prefix and `/`, then at most 63 alphanumerics, `-`, `_` or `.`. Label and
/// annotation keys, finalizers.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push(format!("prefix part {EMPTY_ERROR}"));
            } else {
                errors.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push(format!("name part {EMPTY_ERROR}"));
    } else if name.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(format!(
            "name part {}",
            max_len_error(LABEL_VALUE_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errors
}

/// Messages for a label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`
/// starting and ending alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errors.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

/// Messages for an IANA service name, the form of port names (`http`, `metrics-1`): at
/// most 15 lowercase alphanumerics or `-`, at least one letter, no `--`, no `-` at
/// either end.
pub fn is_iana_svc_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 15 {
        errors.push(max_len_error(15));
    }
    if value.is_empty() || !value.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        errors.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !value.bytes().any(|c| c.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".to_string());
    }
    if value.contains("--") {
        errors.push("must not contain consecutive hyphens".to_string());
    }
    if value.starts_with('-') || value.ends_with('-') {
        errors.push("must not begin or end with a hyphen".to_string());
    }
    errors
}

/// Messages for a port number: 1–65535.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// `.` and `..` would make a name a path that escapes its directory.
fn has_chdir_prefix(value: &str) -> Option<String> {
    match value {
        "." => Some("must not be '.'".to_string()),
        ".." => Some("must not be '..'".to_string()),
        _ if value.starts_with("..") => Some("must not start with '..'".to_string()),
        _ => None,
    }
}

/// Messages for an environment variable name (`MY_VAR`, `my.env-name`): alphanumerics,
/// `_`, `-` or `.`, not starting with a digit.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let b = value.as_bytes();
    let valid = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !valid {
        errors.push(regex_error(
            ENV_VAR_NAME_MSG,
            ENV_VAR_NAME_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errors.extend(has_chdir_prefix(value));
    errors
}

/// Messages for a ConfigMap or Secret key (`key.name`, `KEY_NAME`): at most 253
/// alphanumerics, `-`, `_` or `.`, and not `.` or `..` (keys become file names).
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if value.is_empty()
        || !value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errors.push(regex_error(
            CONFIG_MAP_KEY_MSG,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errors.extend(has_chdir_prefix(value));
    errors
}

/// Messages for a percentage such as `25%`.
pub fn is_valid_percent(value: &str) -> Vec<String> {
    let digits = value.strip_suffix('%').unwrap_or("");
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        Vec::new()
    } else {
        vec![regex_error(PERCENT_MSG, PERCENT_FMT, &["1%", "93%"])]
    }
}

/// Messages for an HTTP header name (`X-Header-Name`).
pub fn is_http_header_name(value: &str) -> Vec<String> {
    if !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
    {
        Vec::new()
    } else {
        vec![regex_error(
            HTTP_HEADER_NAME_MSG,
            HTTP_HEADER_NAME_FMT,
            &["X-Header-Name"],
        )]
    }
}

/// Messages for an IPv4 or IPv6 address.
pub fn is_valid_ip(value: &str) -> Vec<String> {
    if value.parse::<std::net::IpAddr>().is_ok() {
        Vec::new()
    } else {
        vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()]
    }
}

// ---------------------------------------------------------------------------------------
// Checks of fields, with paths.

/// The message of a negative number where only zero or more is allowed.
pub const NEGATIVE_ERROR: &str = "must be greater than or equal to 0";
/// The message of a number that must be at least one.
pub const NOT_POSITIVE_ERROR: &str = "must be greater than zero";
/// The message of a changed field that may not change.
pub const IMMUTABLE_ERROR: &str = "field is immutable";

/// `path: Invalid value: -1: must be greater than or equal to 0` when `value` < 0.
pub fn validate_nonnegative(value: i64, path: &str) -> Vec<FieldError> {
    if value < 0 {
        vec![FieldError::invalid(path, value, NEGATIVE_ERROR)]
    } else {
        Vec::new()
    }
}

/// `path: Invalid value: 0: must be greater than zero` when `value` < 1.
pub fn validate_positive(value: i64, path: &str) -> Vec<FieldError> {
    if value < 1 {
        vec![FieldError::invalid(path, value, NOT_POSITIVE_ERROR)]
    } else {
        Vec::new()
    }
}

/// `path: Invalid value: NEW: field is immutable` when `new` differs from `old`.
pub fn validate_immutable<T: PartialEq + fmt::Debug>(
    new: &T,
    old: &T,
    path: &str,
) -> Vec<FieldError> {
    if new == old {
        Vec::new()
    } else {
        vec![FieldError::invalid(path, new, IMMUTABLE_ERROR)]
    }
}

/// One error per message of `check(value)`, each `Invalid` at `path`.
pub fn invalid_each(path: &str, value: &str, messages: Vec<String>) -> Vec<FieldError> {
    messages
        .into_iter()
        .map(|m| FieldError::invalid(path, value, m))
        .collect()
}

/// A label key: a qualified name; errors at `path`.
pub fn validate_label_name(key: &str, path: &str) -> Vec<FieldError> {
    invalid_each(path, key, is_qualified_name(key))
}

/// Labels: keys are qualified names, values label values. As Kubernetes, the errors
/// carry the path of the whole map (`metadata.labels`) and the offending key or value.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        errors.extend(validate_label_name(key, path));
        errors.extend(invalid_each(path, value, is_valid_label_value(value)));
    }
    errors
}

/// Annotations: keys are qualified names (of any case), and keys and values together
/// hold at most 256 KiB.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut total = 0;
    for (key, value) in annotations {
        errors.extend(invalid_each(
            path,
            key,
            is_qualified_name(&key.to_lowercase()),
        ));
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errors
}

/// Kubernetes' `IsValidPathSegmentName`: a name that can be one segment of a URL path.
/// With `prefix` (a `generateName`), `.` and `..` are fine: a suffix follows.
pub fn is_path_segment_name(name: &str, prefix: bool) -> Vec<String> {
    let mut errors = Vec::new();
    if !prefix && (name == "." || name == "..") {
        errors.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errors.push(format!("may not contain '{bad}'"));
        }
    }
    errors
}

/// Which names a kind's objects may have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameRule {
    /// `my-app.v2`: dot-separated DNS-1123 labels, at most 253 characters. Most kinds.
    #[default]
    Dns1123Subdomain,
    /// `my-app`: at most 63 lowercase alphanumerics or `-`. Namespaces.
    Dns1123Label,
    /// A DNS-1123 label that starts with a letter. Services.
    Dns1035Label,
    /// Anything that is one URL path segment: not `.` or `..`, no `/` or `%`. RBAC
    /// kinds, whose built-in names hold colons (`system:node`), as in Kubernetes.
    PathSegment,
}

impl NameRule {
    /// Kubernetes' messages for `name` under this rule; empty when valid. With `prefix`,
    /// `name` is a `generateName` and may end in `-` (the suffix completes it).
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = match name.strip_suffix('-') {
            Some(stem) if prefix => {
                masked = format!("{stem}a");
                masked.as_str()
            }
            _ => name,
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => is_path_segment_name(name, prefix),
        }
    }
}

/// Checks the metadata of a new object (or of an update, as a new object), as
/// Kubernetes' `ValidateObjectMeta`: a name (`name or generateName is required`)
/// following `rule`; a namespace (a DNS-1123 label) for namespaced kinds and none for
/// cluster-scoped ones; labels, annotations, owner references (apiVersion, kind, name,
/// uid; at most one controller) and finalizers (qualified names).
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    rule: NameRule,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        errors.extend(invalid_each(
            "metadata.generateName",
            generate_name,
            rule.check(generate_name, true),
        ));
    }
    let name = meta.name();
    if name.is_empty() {
        if generate_name.is_empty() {
            errors.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        errors.extend(invalid_each("metadata.name", name, rule.check(name, false)));
    }

    let namespace = meta.namespace();
    if namespaced {
        if namespace.is_empty() {
            errors.push(FieldError::required("metadata.namespace", ""));
        } else {
            errors.extend(invalid_each(
                "metadata.namespace",
                namespace,
                is_dns1123_label(namespace),
            ));
        }
    } else if !namespace.is_empty() {
        errors.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }

    if let Some(generation) = meta.generation {
        errors.extend(validate_nonnegative(generation, "metadata.generation"));
    }
    errors.extend(validate_labels(&meta.labels, "metadata.labels"));
    errors.extend(validate_annotations(
        &meta.annotations,
        "metadata.annotations",
    ));
    errors.extend(validate_owner_references(meta));
    errors.extend(validate_finalizers(&meta.finalizers, "metadata.finalizers"));
    errors
}

fn validate_owner_references(meta: &ObjectMeta) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut controller: Option<String> = None;
    for (i, reference) in meta.owner_references.iter().enumerate() {
        let path = format!("metadata.ownerReferences[{i}]");
        // `group/version` or `version`: the version part must be there.
        let version = reference.api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errors.push(FieldError::invalid(
                format!("{path}.apiVersion"),
                &reference.api_version,
                "version must not be empty",
            ));
        }
        if reference.kind.is_empty() {
            errors.push(FieldError::invalid(
                format!("{path}.kind"),
                &reference.kind,
                "kind must not be empty",
            ));
        }
        if reference.name.is_empty() {
            errors.push(FieldError::invalid(
                format!("{path}.name"),
                &reference.name,
                "name must not be empty",
            ));
        }
        if reference.uid.is_empty() {
            errors.push(FieldError::invalid(
                format!("{path}.uid"),
                &reference.uid,
                "uid must not be empty",
            ));
        }
        if reference.controller == Some(true) {
            let this = format!("{}/{}", reference.kind, reference.name);
            match &controller {
                Some(first) => errors.push(FieldError::invalid(
                    format!("{path}.controller"),
                    true,
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"),
                )),
                None => controller = Some(this),
            }
        }
    }
    errors
}

/// Finalizers: qualified names, and not both `orphan` and `foregroundDeletion`.
pub fn validate_finalizers(finalizers: &[String], path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for finalizer in finalizers {
        errors.extend(invalid_each(path, finalizer, is_qualified_name(finalizer)));
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    if has("orphan") && has("foregroundDeletion") {
        errors.push(FieldError::invalid(
            path,
            finalizers,
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errors
}

/// Checks what an update may not change in metadata, as Kubernetes'
/// `ValidateObjectMetaUpdate`: name, namespace, uid and creationTimestamp are
/// immutable (`field is immutable`), and no finalizer may be added once deletion has
/// begun. The rest of the new metadata is checked by [`validate_object_meta`], which the
/// server runs on updates too.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    let mut errors = Vec::new();
    errors.extend(validate_immutable(
        &new.name(),
        &old.name(),
        "metadata.name",
    ));
    errors.extend(validate_immutable(
        &new.namespace(),
        &old.namespace(),
        "metadata.namespace",
    ));
    errors.extend(validate_immutable(
        &new.uid.as_deref().unwrap_or(""),
        &old.uid.as_deref().unwrap_or(""),
        "metadata.uid",
    ));
    errors.extend(validate_immutable(
        &new.creation_timestamp.as_deref().unwrap_or(""),
        &old.creation_timestamp.as_deref().unwrap_or(""),
        "metadata.creationTimestamp",
    ));
    if old.deletion_timestamp.is_some() {
        let old_finalizers: BTreeSet<&String> = old.finalizers.iter().collect();
        let added: Vec<&String> = new
            .finalizers
            .iter()
            .filter(|f| !old_finalizers.contains(f))
            .collect();
        if !added.is_empty() {
            errors.push(FieldError::forbidden(
                "metadata.finalizers",
                format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::OwnerReference;

    fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: namespace.map(str::to_string),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn dns1123_label_uses_kubernetes_wording() {
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(is_dns1123_label("123-abc").is_empty());
        assert_eq!(
            is_dns1123_label("My_Name"),
            vec![
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(is_dns1123_label("-a").len(), 1);
        assert_eq!(is_dns1123_label("a-").len(), 1);
        assert_eq!(is_dns1123_label(""), is_dns1123_label("-"));
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn dns1123_subdomain_allows_dots() {
        assert!(is_dns1123_subdomain("example.com").is_empty());
        assert!(is_dns1123_subdomain("a").is_empty());
        assert_eq!(
            is_dns1123_subdomain("a..b"),
            vec![
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(is_dns1123_subdomain(".a").len(), 1);
        assert_eq!(is_dns1123_subdomain("A.com").len(), 1);
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 characters"]
        );
    }

    #[test]
    fn dns1035_label_starts_with_a_letter() {
        assert!(is_dns1035_label("web-1").is_empty());
        assert_eq!(
            is_dns1035_label("1web"),
            vec![
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn qualified_names_take_an_optional_prefix() {
        assert!(is_qualified_name("app").is_empty());
        assert!(is_qualified_name("My.Name_1").is_empty());
        assert!(is_qualified_name("example.com/my-key").is_empty());
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert_eq!(
            is_qualified_name("/a"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name("Example.com/a"),
            vec![
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(
            is_qualified_name("a/").len(),
            2,
            "empty name part and the regex"
        );
        assert_eq!(is_qualified_name("a/b/c").len(), 1);
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
        assert_eq!(
            is_qualified_name("-a"),
            vec![
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            ]
        );
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
    }

    #[test]
    fn label_values_may_be_empty() {
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("v1.2_3-x").is_empty());
        assert_eq!(is_valid_label_value("a b").len(), 1);
        assert_eq!(is_valid_label_value("_a").len(), 1);
        assert_eq!(
            is_valid_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn port_names_are_iana_service_names() {
        assert!(is_iana_svc_name("http").is_empty());
        assert!(is_iana_svc_name("h2c-8080").is_empty());
        assert_eq!(
            is_iana_svc_name("8080"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            is_iana_svc_name("a--b"),
            vec!["must not contain consecutive hyphens"]
        );
        assert_eq!(
            is_iana_svc_name("-ab"),
            vec!["must not begin or end with a hyphen"]
        );
        assert_eq!(
            is_iana_svc_name("HTTP"),
            vec![
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)"
            ]
        );
        assert_eq!(
            is_iana_svc_name("a-very-long-port-name"),
            vec!["must be no more than 15 characters"]
        );
    }

    #[test]
    fn env_var_names_and_config_map_keys() {
        assert!(is_env_var_name("MY_VAR").is_empty());
        assert!(is_env_var_name("my.env-name").is_empty());
        assert_eq!(is_env_var_name("1VAR").len(), 1);
        assert_eq!(is_env_var_name("A=B").len(), 1);
        assert_eq!(is_env_var_name(".."), vec!["must not be '..'"]);
        assert!(is_config_map_key("config.yaml").is_empty());
        assert!(is_config_map_key("1st").is_empty());
        assert_eq!(is_config_map_key("."), vec!["must not be '.'"]);
        assert_eq!(
            is_config_map_key("..data"),
            vec!["must not start with '..'"]
        );
        assert_eq!(
            is_config_map_key("a/b"),
            vec![
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
    }

    #[test]
    fn percents_ports_ips_headers() {
        assert!(is_valid_percent("25%").is_empty());
        assert_eq!(is_valid_percent("25").len(), 1);
        assert_eq!(is_valid_percent("%").len(), 1);
        assert_eq!(is_valid_percent("-5%").len(), 1);
        assert!(is_valid_port_num(1).is_empty());
        assert!(is_valid_port_num(65535).is_empty());
        assert_eq!(
            is_valid_port_num(0),
            vec!["must be between 1 and 65535, inclusive"]
        );
        assert_eq!(is_valid_port_num(65536).len(), 1);
        assert!(is_valid_ip("10.0.0.1").is_empty());
        assert!(is_valid_ip("2001:db8::1").is_empty());
        assert_eq!(
            is_valid_ip("10.0.0"),
            vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
        );
        assert!(is_http_header_name("X-Custom-Header").is_empty());
        assert_eq!(is_http_header_name("X Header").len(), 1);
    }

    #[test]
    fn labels_and_annotations() {
        let labels = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("bad key".to_string(), "ok".to_string()),
        ]);
        let errors = validate_labels(&labels, "metadata.labels");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.labels");
        assert_eq!(errors[0].value.as_deref(), Some("\"bad key\""));
        let labels = BTreeMap::from([("app".to_string(), "not valid".to_string())]);
        assert_eq!(
            validate_labels(&labels, "metadata.labels")[0]
                .value
                .as_deref(),
            Some("\"not valid\"")
        );

        let annotations = BTreeMap::from([(
            "Example.COM/Note".to_string(),
            "any text at all, even / and spaces".to_string(),
        )]);
        assert!(validate_annotations(&annotations, "metadata.annotations").is_empty());
        let annotations =
            BTreeMap::from([("big".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT))]);
        let errors = validate_annotations(&annotations, "metadata.annotations");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "metadata.annotations: Too long: must have at most 262144 bytes"
        );
    }

    #[test]
    fn object_meta_needs_a_name_or_generate_name() {
        let errors =
            validate_object_meta(&ObjectMeta::default(), false, NameRule::Dns1123Subdomain);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );

        let generated = ObjectMeta {
            generate_name: Some("web-".into()),
            ..ObjectMeta::default()
        };
        assert!(validate_object_meta(&generated, false, NameRule::Dns1123Subdomain).is_empty());
        let bad = ObjectMeta {
            generate_name: Some("Web-".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(
            validate_object_meta(&bad, false, NameRule::Dns1123Subdomain)[0].field,
            "metadata.generateName"
        );
    }

    #[test]
    fn object_meta_name_follows_the_rule() {
        let m = meta("my.app", None);
        assert!(validate_object_meta(&m, false, NameRule::Dns1123Subdomain).is_empty());
        let errors = validate_object_meta(&m, false, NameRule::Dns1123Label);
        assert_eq!(
            errors[0].to_string(),
            "metadata.name: Invalid value: \"my.app\": must not contain dots"
        );
        let errors = validate_object_meta(&meta("1web", None), false, NameRule::Dns1035Label);
        assert_eq!(errors[0].field, "metadata.name");
        assert!(errors[0].detail.starts_with("a DNS-1035 label"));
    }

    #[test]
    fn object_meta_namespace_required_or_forbidden() {
        let errors = validate_object_meta(&meta("a", None), true, NameRule::Dns1123Subdomain);
        assert_eq!(errors[0].to_string(), "metadata.namespace: Required value");
        let errors =
            validate_object_meta(&meta("a", Some("ns")), false, NameRule::Dns1123Subdomain);
        assert_eq!(
            errors[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
        let errors =
            validate_object_meta(&meta("a", Some("Bad_NS")), true, NameRule::Dns1123Subdomain);
        assert_eq!(errors[0].field, "metadata.namespace");
        assert!(
            validate_object_meta(
                &meta("a", Some("default")),
                true,
                NameRule::Dns1123Subdomain
            )
            .is_empty()
        );
    }

    #[test]
    fn object_meta_owner_references_and_finalizers() {
        let owner = |name: &str, controller: bool| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: name.into(),
            uid: "u1".into(),
            controller: Some(controller),
            block_owner_deletion: None,
        };
        let mut m = meta("a", Some("ns"));
        m.owner_references = vec![owner("one", true), owner("two", false)];
        assert!(validate_object_meta(&m, true, NameRule::Dns1123Subdomain).is_empty());
        m.owner_references.push(owner("three", true));
        let errors = validate_object_meta(&m, true, NameRule::Dns1123Subdomain);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.ownerReferences[2].controller");
        assert!(
            errors[0]
                .detail
                .contains("ReplicaSet/one and ReplicaSet/three")
        );

        m.owner_references = vec![OwnerReference {
            api_version: "apps/".into(),
            ..OwnerReference::default()
        }];
        let fields: Vec<String> = validate_object_meta(&m, true, NameRule::Dns1123Subdomain)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "metadata.ownerReferences[0].apiVersion",
                "metadata.ownerReferences[0].kind",
                "metadata.ownerReferences[0].name",
                "metadata.ownerReferences[0].uid"
            ]
        );

        m.owner_references.clear();
        m.finalizers = vec!["kubernetes".into(), "example.com/cleanup".into()];
        assert!(validate_object_meta(&m, true, NameRule::Dns1123Subdomain).is_empty());
        m.finalizers.push("not valid".into());
        assert_eq!(
            validate_object_meta(&m, true, NameRule::Dns1123Subdomain)[0].field,
            "metadata.finalizers"
        );
    }

    #[test]
    fn object_meta_update_keeps_identity() {
        let mut old = meta("a", Some("ns"));
        old.uid = Some("u1".into());
        old.creation_timestamp = Some("2024-01-01T00:00:00Z".into());
        let mut new = old.clone();
        new.labels.insert("changed".into(), "yes".into());
        assert!(validate_object_meta_update(&new, &old).is_empty());

        new.name = Some("b".into());
        new.uid = Some("u2".into());
        new.creation_timestamp = None;
        new.namespace = Some("other".into());
        let errors: Vec<String> = validate_object_meta_update(&new, &old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "metadata.name: Invalid value: \"b\": field is immutable",
                "metadata.namespace: Invalid value: \"other\": field is immutable",
                "metadata.uid: Invalid value: \"u2\": field is immutable",
                "metadata.creationTimestamp: Invalid value: \"\": field is immutable",
            ]
        );
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let mut old = meta("a", None);
        old.deletion_timestamp = Some("2024-01-01T00:00:00Z".into());
        old.finalizers = vec!["a.io/x".into()];
        let mut new = old.clone();
        new.finalizers = vec![];
        assert!(validate_object_meta_update(&new, &old).is_empty());
        new.finalizers = vec!["a.io/y".into()];
        let errors = validate_object_meta_update(&new, &old);
        assert_eq!(errors[0].kind, FieldErrorKind::Forbidden);
        assert_eq!(errors[0].field, "metadata.finalizers");
    }
}

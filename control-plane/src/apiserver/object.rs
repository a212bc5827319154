//! Helpers on objects as JSON values: metadata access, server-owned fields, encoding
//! for the store and back.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use super::registry::ResourceType;
use crate::store::KeyValue;

/// The object's `metadata`, created empty if missing; an error if it is not an object.
pub fn meta_mut(object: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata: must be an object"))
}

/// A string field of `metadata`, if set.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

pub fn name_of(object: &Value) -> &str {
    meta_str(object, "name").unwrap_or("")
}

/// Fills in `apiVersion` and `kind`, or refuses a body that names another kind.
pub fn check_type(rt: &ResourceType, object: &mut Value) -> ApiResult<()> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let expected = rt.api_version();
    match map.get("apiVersion") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if v.is_empty() || *v == expected => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({expected})",
                other
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| other.to_string())
            )));
        }
    }
    match map.get("kind") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) if k.is_empty() || k == rt.kind => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({}) does not match the expected kind ({})",
                other
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| other.to_string()),
                rt.kind
            )));
        }
    }
    map.insert("apiVersion".into(), Value::String(expected));
    map.insert("kind".into(), Value::String(rt.kind.into()));
    Ok(())
}

/// The bytes stored for an object: its JSON without `resourceVersion`, which is the
/// store's revision and is put back on read.
pub fn encode(object: &Value) -> ApiResult<Bytes> {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal("encoding an object", e))
}

/// An object as read from the store, with `resourceVersion` set from its revision.
pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
    decode_at(&kv.value, kv.mod_revision)
}

/// Stored bytes as an object at `revision`.
pub fn decode_at(value: &[u8], revision: u64) -> ApiResult<Value> {
    let mut object: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::internal("decoding a stored object", e))?;
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    Ok(object)
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// `now` plus `seconds`.
pub fn now_plus(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(seconds),
    )
    .to_string()
}

/// A random suffix for `generateName`, from Kubernetes' alphabet (no vowels, no
/// look-alike characters).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Parses a `resourceVersion` given by a client.
pub fn parse_revision(value: &str) -> ApiResult<u64> {
    value
        .parse()
        .map_err(|_| ApiError::bad_request(format!("metadata.resourceVersion: Invalid value: {value:?}: must be a resource version returned by the server")))
}

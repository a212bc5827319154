//! `skiff apply -f`: create what does not exist, and change what does to match the
//! manifest, the way client-side `kubectl apply` does: the last applied manifest is
//! kept in an annotation, and the change sent is a JSON merge patch from it to the new
//! manifest — so fields the manifest dropped are removed, and fields others set
//! (status, a ClusterIP, replicas changed by a scaler the manifest never named) stay.

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use crate::api::Api;
use crate::manifests::{self, Manifest};
use crate::resources::Kinds;

/// The annotation kubectl keeps the last applied manifest in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Manifest files, directories, or `-` for standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
}

pub async fn run(api: &Api, namespace: Option<&str>, args: ApplyArgs) -> Result<u8> {
    let manifests = manifests::read_all(&args.files)?;
    let kinds = Kinds::discover(api).await?;
    let mut failed = false;
    for manifest in manifests {
        match apply_one(api, &kinds, namespace, &manifest).await {
            Ok(line) => outln!("{line}"),
            Err(error) => {
                eprintln!("error: {}: {error:#}", manifest.source);
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

async fn apply_one(
    api: &Api,
    kinds: &Kinds,
    namespace: Option<&str>,
    manifest: &Manifest,
) -> Result<String> {
    let object = &manifest.object;
    let kind = kinds.for_manifest(
        object["apiVersion"].as_str().unwrap_or_default(),
        object["kind"].as_str().unwrap_or_default(),
    )?;
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| namespace.map(str::to_string))
        .unwrap_or_else(|| api.default_namespace.clone());
    let ns = Some(namespace.as_str()).filter(|_| kind.namespaced);
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();

    let mut desired = object.clone();
    let applied = serde_json::to_string(&without_last_applied(object))?;
    desired["metadata"]
        .as_object_mut()
        .context("metadata must be an object")?
        .entry("annotations")
        .or_insert_with(|| json!({}))[LAST_APPLIED] = Value::String(applied.clone());

    let existing = if name.is_empty() {
        None
    } else {
        match api.get(&kind.path(ns, Some(&name))).await {
            Ok(live) => Some(live),
            Err(error) if error.is_not_found() => None,
            Err(error) => return Err(error.into()),
        }
    };
    let Some(live) = existing else {
        let created = api
            .call(
                skiff_client::Method::POST,
                &kind.path(ns, None),
                Some(desired),
            )
            .await?;
        let created_name = created
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(&name);
        return Ok(format!("{}/{created_name} created", kind.display()));
    };

    let previous: Value = live
        .pointer(&format!(
            "/metadata/annotations/{}",
            LAST_APPLIED.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| json!({}));
    let mut patch = merge_diff(&previous, &without_last_applied(object));
    let live_applied = live
        .pointer(&format!(
            "/metadata/annotations/{}",
            LAST_APPLIED.replace('/', "~1")
        ))
        .and_then(Value::as_str);
    if patch.as_object().is_some_and(|p| p.is_empty()) && live_applied == Some(applied.as_str()) {
        // Nothing the manifest says has changed: no request, as kubectl.
        return Ok(format!("{}/{name} unchanged", kind.display()));
    }
    // The annotation itself always follows the manifest.
    let patch_map = patch.as_object_mut().context("a manifest is an object")?;
    let meta = patch_map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
        .expect("made an object")
        .entry("annotations")
        .or_insert_with(|| json!({}));
    if let Some(annotations) = meta["annotations"].as_object_mut() {
        annotations.insert(LAST_APPLIED.into(), Value::String(applied));
    }
    api.client()
        .request_patch(
            &kind.path(ns, Some(&name)),
            &skiff_client::Patch::Merge(patch),
        )
        .await?;
    Ok(format!("{}/{name} configured", kind.display()))
}

fn without_last_applied(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            object["metadata"]
                .as_object_mut()
                .expect("has annotations")
                .remove("annotations");
        }
    }
    object
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`: removed keys become
/// `null`, changed values are replaced, nested objects are diffed key by key.
pub fn merge_diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut patch = Map::new();
            for key in a.keys() {
                if !b.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            for (key, new) in b {
                match a.get(key) {
                    Some(old) if old == new => {}
                    Some(old @ Value::Object(_)) if new.is_object() => {
                        patch.insert(key.clone(), merge_diff(old, new));
                    }
                    _ => {
                        patch.insert(key.clone(), new.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_diff_removes_changes_and_keeps_the_rest() {
        let from = json!({ "spec": { "replicas": 2, "paused": true, "template": { "image": "a" } }, "keep": 1 });
        let to = json!({ "spec": { "replicas": 3, "template": { "image": "a" } }, "keep": 1, "new": [1] });
        assert_eq!(
            merge_diff(&from, &to),
            json!({ "spec": { "replicas": 3, "paused": null }, "new": [1] })
        );
        let mut live = json!({ "spec": { "replicas": 2, "paused": true, "template": { "image": "a" } }, "keep": 1, "status": { "x": 1 } });
        json_patch_merge(&mut live, &merge_diff(&from, &to));
        assert_eq!(
            live,
            json!({ "spec": { "replicas": 3, "template": { "image": "a" } }, "keep": 1, "new": [1], "status": { "x": 1 } })
        );
    }

    fn json_patch_merge(target: &mut Value, patch: &Value) {
        if let (Value::Object(t), Value::Object(p)) = (&mut *target, patch) {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    json_patch_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        } else {
            *target = patch.clone();
        }
    }
}

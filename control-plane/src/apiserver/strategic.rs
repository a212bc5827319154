//! Strategic merge patch (`application/strategic-merge-patch+json`), applied as Kubernetes'
//! `strategicpatch.StrategicMergePatch` applies it on the server.
//!
//! A JSON merge patch, except for lists: a list whose field is tagged `merge` with a merge
//! key (containers by `name`, ports by `containerPort`, see
//! [`super::openapi::PATCH_TAGS`]) merges element by element, matched on the key; a
//! primitive list tagged `merge` (finalizers) becomes the union; every other list is
//! replaced whole. Directives, as kubectl sends them:
//! - `$patch: replace` in a map replaces the map; `$patch: delete` empties it; in a list's
//!   element, `$patch: delete` removes the element with that key and `$patch: replace`
//!   replaces the whole list with the patch's other elements;
//! - `$retainKeys: [..]` drops every field of the map not named (a Volume changing source);
//! - `$deleteFromPrimitiveList/FIELD: [..]` removes values from a primitive list;
//! - `$setElementOrder/FIELD: [..]` gives the order of a merged list's elements.
//!
//! The metadata comes from the kind's schema, walked along with the patch; fields the
//! schema does not know (which field validation then reports) merge like any JSON value.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::openapi::Catalog;

/// Why a strategic merge patch could not be applied; worded as Kubernetes words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("unknown patch type: {0} in map: {1}")]
    UnknownDirective(String, String),
    #[error("map: {0} does not contain declared merge key: {1}")]
    NoMergeKey(String, String),
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    #[error("cannot merge lists without merge key for {0}")]
    NoMergeKeyDeclared(String),
    #[error("invalid patch format of retainKeys")]
    RetainKeys,
    #[error("invalid patch format of primitive list")]
    PrimitiveList,
    #[error("invalid patch format of setElementOrder list")]
    SetElementOrder,
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` to `original`, guided by `schema` (the kind's, from the [`Catalog`];
/// `None` merges every list atomically).
pub fn apply(
    catalog: &Catalog,
    schema: Option<&Value>,
    original: Value,
    patch: Map<String, Value>,
) -> Result<Value, PatchError> {
    let original = match original {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let schema = Schema {
        catalog,
        schema: schema.map(|s| catalog.resolve(s)),
    };
    merge_map(original, patch, schema).map(Value::Object)
}

/// A place in the kind's schema: what a map's fields and a list's elements are.
#[derive(Clone, Copy)]
struct Schema<'a> {
    catalog: &'a Catalog,
    schema: Option<&'a Value>,
}

/// A field's `x-kubernetes-patch-merge-key` and `x-kubernetes-patch-strategy`.
#[derive(Default)]
struct Tags<'a> {
    key: Option<&'a str>,
    strategy: &'a str,
}

impl Tags<'_> {
    fn has(&self, strategy: &str) -> bool {
        self.strategy.split(',').any(|s| s.trim() == strategy)
    }
}

impl<'a> Schema<'a> {
    fn none(&self) -> Schema<'a> {
        Schema {
            catalog: self.catalog,
            schema: None,
        }
    }

    /// The schema of field `key` of this map, and its patch tags.
    fn field(&self, key: &str) -> (Schema<'a>, Tags<'a>) {
        let Some(schema) = self.schema else {
            return (self.none(), Tags::default());
        };
        if let Some(property) = schema.get("properties").and_then(|p| p.get(key)) {
            let tags = Tags {
                key: property
                    .get("x-kubernetes-patch-merge-key")
                    .and_then(Value::as_str),
                strategy: property
                    .get("x-kubernetes-patch-strategy")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            };
            let schema = Schema {
                catalog: self.catalog,
                schema: Some(self.catalog.resolve(property)),
            };
            return (schema, tags);
        }
        match schema.get("additionalProperties").filter(|s| s.is_object()) {
            Some(values) => (
                Schema {
                    catalog: self.catalog,
                    schema: Some(self.catalog.resolve(values)),
                },
                Tags::default(),
            ),
            None => (self.none(), Tags::default()),
        }
    }

    /// The schema of this list's elements.
    fn items(&self) -> Schema<'a> {
        Schema {
            catalog: self.catalog,
            schema: self
                .schema
                .and_then(|s| s.get("items"))
                .map(|items| self.catalog.resolve(items)),
        }
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema<'_>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            // The patch is the map: merged into nothing, so its own directives go too.
            Some("replace") => return merge_map(Map::new(), patch, schema),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::UnknownDirective(
                    directive.to_string(),
                    Value::Object(patch).to_string(),
                ));
            }
        }
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        let keys: HashSet<&str> = retain
            .as_array()
            .ok_or(PatchError::RetainKeys)?
            .iter()
            .map(|k| k.as_str().ok_or(PatchError::RetainKeys))
            .collect::<Result<_, _>>()?;
        let outside = patch.iter().any(|(k, v)| {
            !v.is_null()
                && !k.starts_with(SET_ORDER)
                && !k.starts_with(DELETE_FROM)
                && !keys.contains(k.as_str())
        });
        if outside {
            return Err(PatchError::RetainKeys);
        }
        original.retain(|k, _| keys.contains(k.as_str()));
    }
    let directive_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER) || k.starts_with(DELETE_FROM))
        .cloned()
        .collect();
    let mut orders = Vec::new();
    for key in directive_keys {
        let value = patch.remove(&key).expect("listed from the patch");
        if let Some(field) = key.strip_prefix(SET_ORDER) {
            let order = match value {
                Value::Array(order) => order,
                _ => return Err(PatchError::SetElementOrder),
            };
            // Arranged against the list as the server had it, before the merge.
            let server = match original.get(field) {
                Some(Value::Array(list)) => list.clone(),
                _ => Vec::new(),
            };
            orders.push((field.to_string(), order, server));
        } else if let Some(field) = key.strip_prefix(DELETE_FROM) {
            let Value::Array(values) = value else {
                return Err(PatchError::PrimitiveList);
            };
            let gone: HashSet<String> = values.iter().map(Value::to_string).collect();
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !gone.contains(&v.to_string()));
            }
        }
    }
    for (key, value) in patch {
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let (field_schema, tags) = schema.field(&key);
        let merged = match (original.remove(&key), value) {
            (Some(Value::Object(old)), Value::Object(new)) if !tags.has("replace") => {
                Value::Object(merge_map(old, new, field_schema)?)
            }
            (Some(Value::Array(old)), Value::Array(new)) if tags.has("merge") => {
                Value::Array(merge_list(old, new, field_schema.items(), tags.key)?)
            }
            (_, new) => fresh(new, field_schema, &tags)?,
        };
        original.insert(key, merged);
    }
    for (field, order, server) in orders {
        let key = schema.field(&field).1.key;
        if let Some(Value::Array(list)) = original.get_mut(&field) {
            *list = arrange(std::mem::take(list), &order, &server, key);
        }
    }
    Ok(original)
}

/// A patch value that replaces whatever was there, its directives applied to nothing.
fn fresh(value: Value, schema: Schema<'_>, tags: &Tags<'_>) -> Result<Value, PatchError> {
    Ok(match value {
        Value::Object(map) => Value::Object(merge_map(Map::new(), map, schema)?),
        Value::Array(list) if tags.has("merge") => {
            Value::Array(merge_list(Vec::new(), list, schema.items(), tags.key)?)
        }
        Value::Array(list) => {
            let items = schema.items();
            Value::Array(
                list.into_iter()
                    .map(|item| fresh(item, items, &Tags::default()))
                    .collect::<Result<_, _>>()?,
            )
        }
        other => other,
    })
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    items: Schema<'_>,
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let maps = original.iter().chain(&patch).any(Value::is_object);
    if !maps {
        // A set of primitives: the union, in order.
        let mut seen: HashSet<String> = original.iter().map(Value::to_string).collect();
        let mut merged = original.clone();
        for value in &patch {
            if seen.insert(value.to_string()) {
                merged.push(value.clone());
            }
        }
        return Ok(arrange(merged, &patch, &original, None));
    }
    let Some(key) = key else {
        return Err(PatchError::NoMergeKeyDeclared(
            Value::Array(patch).to_string(),
        ));
    };
    // Elements that are directives: deletions by key, or a replacement of the list.
    let mut merged = original.clone();
    let mut elements = Vec::new();
    let mut replace = false;
    for element in patch {
        let Value::Object(mut element) = element else {
            elements.push(element);
            continue;
        };
        match element.remove(DIRECTIVE) {
            None => elements.push(Value::Object(element)),
            Some(directive) => match directive.as_str() {
                Some("delete") => {
                    let value = element.get(key).cloned().ok_or_else(|| {
                        PatchError::NoMergeKey(
                            Value::Object(element.clone()).to_string(),
                            key.into(),
                        )
                    })?;
                    merged.retain(|m| m.get(key) != Some(&value));
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(PatchError::MergeDirectiveInList),
                _ => {
                    return Err(PatchError::UnknownDirective(
                        directive.to_string(),
                        Value::Object(element).to_string(),
                    ));
                }
            },
        }
    }
    if replace {
        return elements
            .into_iter()
            .map(|e| fresh(e, items, &Tags::default()))
            .collect();
    }
    let mut index: HashMap<String, usize> = merged
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((m.get(key)?.to_string(), i)))
        .collect();
    for element in &elements {
        let Value::Object(map) = element else {
            merged.push(element.clone());
            continue;
        };
        let value = map
            .get(key)
            .ok_or_else(|| PatchError::NoMergeKey(element.to_string(), key.into()))?;
        match index.get(&value.to_string()) {
            Some(&at) => {
                let old = match std::mem::take(&mut merged[at]) {
                    Value::Object(old) => old,
                    _ => Map::new(),
                };
                merged[at] = Value::Object(merge_map(old, map.clone(), items)?);
            }
            None => {
                index.insert(value.to_string(), merged.len());
                merged.push(Value::Object(merge_map(Map::new(), map.clone(), items)?));
            }
        }
    }
    Ok(arrange(merged, &elements, &original, Some(key)))
}

/// Orders a merged list as Kubernetes does: the elements `listed` (the patch's, or its
/// `$setElementOrder`) in their listed order, the others in the order the server had
/// them, the two merged by the server's order (an element new to the server comes
/// where the listing puts it).
fn arrange(
    merged: Vec<Value>,
    listed: &[Value],
    server: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let identity = |value: &Value| match key {
        Some(key) => value.get(key).map(Value::to_string).unwrap_or_default(),
        None => value.to_string(),
    };
    let positions = |list: &[Value]| -> HashMap<String, usize> {
        let mut positions = HashMap::new();
        for (i, value) in list.iter().enumerate() {
            positions.entry(identity(value)).or_insert(i);
        }
        positions
    };
    let in_listing = positions(listed);
    let in_server = positions(server);
    let (mut patch_items, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| in_listing.contains_key(&identity(v)));
    patch_items.sort_by_key(|v| in_listing[&identity(v)]);
    server_only.sort_by_key(|v| in_server.get(&identity(v)).copied().unwrap_or(usize::MAX));
    let mut arranged = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => matches!(
                (in_server.get(&identity(l)), in_server.get(&identity(r))),
                (Some(li), Some(ri)) if li < ri
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        arranged.extend(next);
    }
    arranged
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::registry::Registry;

    fn patch_kind(plural: &str, original: Value, patch: Value) -> Result<Value, PatchError> {
        let registry = Registry::builtin();
        let rt = registry.types.iter().find(|t| t.plural == plural).unwrap();
        let catalog = Catalog::get();
        let Value::Object(patch) = patch else {
            panic!("a map")
        };
        apply(catalog, catalog.kind(rt), original, patch)
    }

    fn deployment(containers: Value) -> Value {
        json!({ "metadata": { "name": "web" }, "spec": { "replicas": 2, "template": { "spec": { "containers": containers } } } })
    }

    fn containers(object: &Value) -> &Value {
        &object["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn containers_merge_by_name_keeping_what_the_patch_leaves_out() {
        let original = deployment(json!([
            { "name": "main", "image": "v1", "env": [{ "name": "A", "value": "1" }, { "name": "B", "value": "2" }] },
            { "name": "side", "image": "s1" },
        ]));
        let patched = patch_kind(
            "deployments",
            original,
            json!({ "spec": { "template": { "spec": { "containers": [
                { "name": "main", "image": "v2", "env": [{ "name": "B", "value": "3" }] },
            ] } } } }),
        )
        .unwrap();
        assert_eq!(
            *containers(&patched),
            json!([
                { "name": "main", "image": "v2", "env": [{ "name": "A", "value": "1" }, { "name": "B", "value": "3" }] },
                { "name": "side", "image": "s1" },
            ])
        );
        assert_eq!(patched["spec"]["replicas"], 2);
    }

    #[test]
    fn a_new_element_comes_first_as_in_kubernetes_unless_an_order_is_set() {
        let original = deployment(json!([{ "name": "a", "image": "a" }]));
        let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "b", "image": "b" }] } } } });
        let patched = patch_kind("deployments", original.clone(), patch).unwrap();
        let names: Vec<&str> = containers(&patched)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["b", "a"]);

        // kubectl apply says where every element goes.
        let patch = json!({ "spec": { "template": { "spec": {
            "$setElementOrder/containers": [{ "name": "a" }, { "name": "b" }],
            "containers": [{ "name": "b", "image": "b" }],
        } } } });
        let patched = patch_kind("deployments", original, patch).unwrap();
        let names: Vec<&str> = containers(&patched)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(
            patched["spec"]["template"]["spec"]
                .get("$setElementOrder/containers")
                .is_none()
        );
    }

    #[test]
    fn delete_and_replace_directives_in_lists_and_maps() {
        let original =
            deployment(json!([{ "name": "a", "image": "a" }, { "name": "b", "image": "b" }]));
        let patched = patch_kind(
            "deployments",
            original.clone(),
            json!({ "spec": { "template": { "spec": { "containers": [{ "name": "a", "$patch": "delete" }] } } } }),
        )
        .unwrap();
        assert_eq!(
            *containers(&patched),
            json!([{ "name": "b", "image": "b" }])
        );

        let patched = patch_kind(
            "deployments",
            original.clone(),
            json!({ "spec": { "template": { "spec": { "containers": [{ "$patch": "replace" }, { "name": "c", "image": "c" }] } } } }),
        )
        .unwrap();
        assert_eq!(
            *containers(&patched),
            json!([{ "name": "c", "image": "c" }])
        );

        let patched = patch_kind(
            "deployments",
            original.clone(),
            json!({ "spec": { "template": { "$patch": "replace", "spec": { "containers": [{ "name": "x", "image": "x" }] } } } }),
        )
        .unwrap();
        assert_eq!(
            patched["spec"]["template"],
            json!({ "spec": { "containers": [{ "name": "x", "image": "x" }] } })
        );

        let error = patch_kind(
            "deployments",
            original.clone(),
            json!({ "spec": { "template": { "spec": { "containers": [{ "image": "x", "$patch": "delete" }] } } } }),
        )
        .unwrap_err();
        assert!(
            matches!(error, PatchError::NoMergeKey(_, ref key) if key == "name"),
            "{error}"
        );
        let error = patch_kind(
            "deployments",
            original,
            json!({ "spec": { "$patch": "explode" } }),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("unknown patch type: \"explode\""),
            "{error}"
        );
    }

    #[test]
    fn ports_merge_by_their_key_and_atomic_lists_are_replaced() {
        let service = json!({ "spec": { "ports": [{ "port": 80, "targetPort": 8080 }, { "port": 443 }], "selector": { "app": "web" } } });
        let patched = patch_kind(
            "services",
            service,
            json!({ "spec": { "ports": [{ "port": 80, "targetPort": 9090 }] } }),
        )
        .unwrap();
        assert_eq!(
            patched["spec"]["ports"],
            json!([{ "port": 80, "targetPort": 9090 }, { "port": 443 }])
        );

        // Tolerations have no merge key in Kubernetes: the list is replaced.
        let pod = json!({ "spec": { "tolerations": [{ "key": "a", "operator": "Exists" }], "containers": [] } });
        let patched = patch_kind(
            "pods",
            pod,
            json!({ "spec": { "tolerations": [{ "key": "b", "operator": "Exists" }] } }),
        )
        .unwrap();
        assert_eq!(
            patched["spec"]["tolerations"],
            json!([{ "key": "b", "operator": "Exists" }])
        );

        // RBAC rules too.
        let role =
            json!({ "rules": [{ "verbs": ["get"], "resources": ["pods"], "apiGroups": [""] }] });
        let patched = patch_kind(
            "roles",
            role,
            json!({ "rules": [{ "verbs": ["list"], "resources": ["pods"], "apiGroups": [""] }] }),
        )
        .unwrap();
        assert_eq!(patched["rules"].as_array().unwrap().len(), 1);
        assert_eq!(patched["rules"][0]["verbs"], json!(["list"]));
    }

    #[test]
    fn primitive_lists_tagged_merge_are_sets() {
        let object = json!({ "metadata": { "name": "c", "finalizers": ["a", "b"] } });
        let patched = patch_kind(
            "configmaps",
            object.clone(),
            json!({ "metadata": { "finalizers": ["c", "a"] } }),
        )
        .unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let patched = patch_kind(
            "configmaps",
            object,
            json!({ "metadata": { "$deleteFromPrimitiveList/finalizers": ["a"] } }),
        )
        .unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn retain_keys_drops_the_fields_not_named() {
        let pod = json!({ "spec": { "containers": [], "volumes": [{ "name": "data", "emptyDir": {} }] } });
        let patched = patch_kind(
            "pods",
            pod.clone(),
            json!({ "spec": { "volumes": [{ "name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": { "path": "/srv" } }] } }),
        )
        .unwrap();
        assert_eq!(
            patched["spec"]["volumes"],
            json!([{ "name": "data", "hostPath": { "path": "/srv" } }])
        );
        let error = patch_kind(
            "pods",
            pod,
            json!({ "spec": { "volumes": [{ "name": "data", "$retainKeys": ["name"], "hostPath": { "path": "/srv" } }] } }),
        )
        .unwrap_err();
        assert_eq!(error, PatchError::RetainKeys);
    }

    #[test]
    fn nulls_delete_and_maps_merge() {
        let object = json!({ "metadata": { "name": "c", "labels": { "a": "1", "b": "2" } }, "data": { "x": "1" } });
        let patched = patch_kind(
            "configmaps",
            object,
            json!({ "metadata": { "labels": { "a": null, "c": "3" } }, "data": null }),
        )
        .unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({ "b": "2", "c": "3" }));
        assert!(patched.get("data").is_none());
    }
}

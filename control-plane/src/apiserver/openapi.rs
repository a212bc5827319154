//! The schemas of the kinds skiff serves, and the OpenAPI v3 documents made of them
//! (`/openapi/v3`, `/openapi/v3/api/v1`, `/openapi/v3/apis/GROUP/VERSION`).
//!
//! The schemas are derived from the Rust types (`schemars`), so they name exactly the
//! fields the server reads, with the types' doc comments as descriptions; Kubernetes'
//! `patchMergeKey`/`patchStrategy` tags are added from [`PATCH_TAGS`]. kubectl reads the
//! documents for `explain`, to compute client-side `apply` patches, and to learn that the
//! server validates fields itself (`fieldValidation` on every PATCH). The server reads
//! the same schemas to find unknown fields (see [`super::fields`]), to apply strategic
//! merge patches (see [`super::strategic`]) and for server-side apply (see
//! [`super::apply`]: the list types derived from the merge keys, and [`ATOMIC`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use skiff_api::Resource;
use skiff_api::schemars::JsonSchema;
use skiff_api::schemars::generate::SchemaSettings;

use super::error::{ApiError, ApiResult};
use super::registry::{Registry, ResourceType};

/// Kubernetes' `patchMergeKey` and `patchStrategy` struct tags of k8s.io/api, for the
/// fields skiff's types have: (type, field, merge key, strategy). Lists with no entry
/// are replaced whole by a strategic merge patch (`atomic`), as in Kubernetes: RBAC
/// rules and subjects, tolerations, taints, args, selectors' expressions.
pub const PATCH_TAGS: &[(&str, &str, Option<&str>, &str)] = &[
    ("ObjectMeta", "finalizers", None, "merge"),
    ("ObjectMeta", "ownerReferences", Some("uid"), "merge"),
    ("PodSpec", "containers", Some("name"), "merge"),
    ("PodSpec", "initContainers", Some("name"), "merge"),
    ("PodSpec", "volumes", Some("name"), "merge,retainKeys"),
    ("PodSpec", "imagePullSecrets", Some("name"), "merge"),
    ("Container", "ports", Some("containerPort"), "merge"),
    ("Container", "env", Some("name"), "merge"),
    ("Container", "volumeMounts", Some("mountPath"), "merge"),
    ("PodStatus", "conditions", Some("type"), "merge"),
    ("PodStatus", "podIPs", Some("ip"), "merge"),
    ("PodStatus", "hostIPs", Some("ip"), "merge"),
    ("ServiceSpec", "ports", Some("port"), "merge"),
    ("NodeSpec", "podCIDRs", None, "merge"),
    ("NodeStatus", "conditions", Some("type"), "merge"),
    ("NodeStatus", "addresses", Some("type"), "merge"),
    ("NamespaceStatus", "conditions", Some("type"), "merge"),
    ("DeploymentSpec", "strategy", None, "retainKeys"),
    ("DeploymentStatus", "conditions", Some("type"), "merge"),
    ("ReplicaSetStatus", "conditions", Some("type"), "merge"),
    ("JobStatus", "conditions", Some("type"), "merge"),
];

/// Types and fields server-side apply treats as one value (Kubernetes' `+structType=atomic`
/// and `+mapType=atomic`): an applier owns the whole selector, not each of its labels.
/// (type, field): `None` marks the type itself; the schemas carry
/// `x-kubernetes-map-type: atomic`, as Kubernetes' documents do.
pub const ATOMIC: &[(&str, Option<&str>)] = &[
    ("LabelSelector", None),
    ("LocalObjectReference", None),
    ("ConfigMapKeySelector", None),
    ("SecretKeySelector", None),
    ("ObjectFieldSelector", None),
    ("ResourceFieldSelector", None),
    ("NodeSelector", None),
    ("NodeSelectorTerm", None),
    ("PodSpec", Some("nodeSelector")),
    ("ServiceSpec", Some("selector")),
];

/// Where component schemas are referred to from.
const REF_PREFIX: &str = "#/components/schemas/";

/// Every kind's schema and the components they are made of.
pub struct Catalog {
    /// Component name (the Rust type's) to its schema, Kubernetes-style.
    pub components: Map<String, Value>,
    /// (group, version, kind) to the kind's component name.
    kinds: BTreeMap<(String, String, String), String>,
    /// Each group version's document, as served, and its hash.
    documents: BTreeMap<String, (bytes::Bytes, String)>,
}

impl Catalog {
    /// The catalog of the built-in kinds, made on first use.
    pub fn get() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| Catalog::build(&Registry::builtin()))
    }

    /// The schema of a kind, if it has one.
    pub fn kind(&self, rt: &ResourceType) -> Option<&Value> {
        let key = (
            rt.group.to_string(),
            rt.version.to_string(),
            rt.kind.to_string(),
        );
        self.components.get(self.kinds.get(&key)?)
    }

    /// `schema` with a `$ref` (alone or in a one-element `allOf`) followed to its
    /// component; other schemas as they are.
    pub fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut schema = schema;
        if let Some([only]) = schema
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            schema = only;
        }
        match schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
            .and_then(|name| self.components.get(name))
        {
            Some(component) => component,
            None => schema,
        }
    }

    fn build(registry: &Registry) -> Catalog {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let mut kinds = BTreeMap::new();
        macro_rules! kinds {
            ($($ty:ty),* $(,)?) => {$(
                generator.subschema_for::<$ty>();
                kinds.insert(
                    (
                        <$ty as Resource>::GROUP.to_string(),
                        <$ty as Resource>::VERSION.to_string(),
                        <$ty as Resource>::KIND.to_string(),
                    ),
                    <$ty as JsonSchema>::schema_name().into_owned(),
                );
            )*};
        }
        {
            use skiff_api::{apps, batch, coordination, core, rbac};
            kinds!(
                core::Namespace,
                core::Node,
                core::Pod,
                core::Service,
                core::Endpoints,
                core::ConfigMap,
                core::Secret,
                core::Event,
                coordination::Lease,
                apps::ReplicaSet,
                apps::Deployment,
                batch::Job,
                rbac::Role,
                rbac::ClusterRole,
                rbac::RoleBinding,
                rbac::ClusterRoleBinding,
            );
        }
        let mut components = generator.take_definitions(true);
        for schema in components.values_mut() {
            kubernetes_style(schema);
        }
        for (type_name, field, key, strategy) in PATCH_TAGS {
            let Some(property) = components
                .get_mut(*type_name)
                .and_then(|c| c.pointer_mut(&format!("/properties/{field}")))
            else {
                continue; // the tests check that every tag finds its field
            };
            tag_property(property, *key, strategy);
        }
        for (type_name, field) in ATOMIC {
            let pointer = field
                .map(|f| format!("/properties/{f}"))
                .unwrap_or_default();
            if let Some(Value::Object(schema)) = components
                .get_mut(*type_name)
                .and_then(|c| c.pointer_mut(&pointer))
            {
                schema.insert("x-kubernetes-map-type".into(), json!("atomic"));
            }
        }
        for ((group, version, kind), name) in &kinds {
            if let Some(component) = components.get_mut(name) {
                component["x-kubernetes-group-version-kind"] =
                    json!([{ "group": group, "version": version, "kind": kind }]);
            }
        }
        let mut catalog = Catalog {
            components,
            kinds,
            documents: BTreeMap::new(),
        };
        for (group, version) in registry.group_versions() {
            let document = catalog.document(registry, group, version);
            let bytes = serde_json::to_vec(&document).expect("a JSON value serializes");
            let hash = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>();
            catalog
                .documents
                .insert(group_version_path(group, version), (bytes.into(), hash));
        }
        catalog
    }

    /// The OpenAPI v3 document of one group version: its paths, each operation tagged
    /// with its kind, and the components its kinds use.
    fn document(&self, registry: &Registry, group: &str, version: &str) -> Value {
        let mut paths = Map::new();
        let mut used = BTreeSet::new();
        for rt in registry
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
        {
            let Some(name) = self.kinds.get(&(
                rt.group.to_string(),
                rt.version.to_string(),
                rt.kind.to_string(),
            )) else {
                continue;
            };
            self.collect(name, &mut used);
            for (path, item) in paths_of(rt, name) {
                paths.insert(path, item);
            }
        }
        let schemas: Map<String, Value> = used
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.components.get(&name)?.clone())))
            .collect();
        json!({
            "openapi": "3.0.0",
            "info": { "title": "Kubernetes", "version": super::discovery::version()["gitVersion"] },
            "paths": paths,
            "components": { "schemas": schemas },
        })
    }

    /// Adds `name` and every component it refers to, directly or not, to `used`.
    fn collect(&self, name: &str, used: &mut BTreeSet<String>) {
        if !used.insert(name.to_string()) {
            return;
        }
        let mut refs = Vec::new();
        if let Some(schema) = self.components.get(name) {
            refs_in(schema, &mut refs);
        }
        for r in refs {
            self.collect(&r, used);
        }
    }
}

/// The components `schema` refers to.
fn refs_in(schema: &Value, refs: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "$ref"
                    && let Some(name) = value.as_str().and_then(|r| r.strip_prefix(REF_PREFIX))
                {
                    refs.push(name.to_string());
                } else {
                    refs_in(value, refs);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs_in(item, refs)),
        _ => {}
    }
}

/// Rewrites a generated schema into the shape of Kubernetes' own documents: no
/// `nullable` (an optional field is one that is not `required`), no `default` (defaults
/// are the server's), free-form fields marked as keeping unknown fields, and a `$ref`
/// that carries anything beside it wrapped in `allOf`.
fn kubernetes_style(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    map.remove("nullable");
    map.remove("default");
    map.remove("$schema");
    map.remove("title");
    // An optional struct is `anyOf: [{$ref}, {enum: [null]}]`: keep the struct alone.
    if let Some(Value::Array(alternatives)) = map.get("anyOf") {
        let mut present = alternatives.iter().filter(|a| !is_null(a));
        if let (Some(only), None) = (present.next(), present.next())
            && alternatives.len() > 1
        {
            let only = only.clone();
            map.remove("anyOf");
            match only {
                Value::Object(only) if only.contains_key("$ref") => {
                    map.insert("allOf".into(), json!([only]));
                }
                Value::Object(only) => map.extend(only),
                _ => {}
            }
        }
    }
    if let Some(Value::String(description)) = map.get_mut("description") {
        *description = unwrap_lines(description);
    }
    // A `serde_json::Value` field (any JSON, kept as given) has no shape at all.
    const SHAPES: &[&str] = &[
        "type",
        "properties",
        "items",
        "additionalProperties",
        "$ref",
        "allOf",
        "anyOf",
        "oneOf",
        "enum",
        "const",
    ];
    if !SHAPES.iter().any(|key| map.contains_key(*key)) {
        map.insert("type".into(), json!("object"));
        map.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
        return;
    }
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Value::Object(properties) = value {
                    properties.values_mut().for_each(kubernetes_style);
                }
            }
            "items" | "additionalProperties" => kubernetes_style(value),
            "allOf" | "anyOf" | "oneOf" => {
                if let Value::Array(items) = value {
                    items.iter_mut().for_each(kubernetes_style);
                }
            }
            _ => {}
        }
    }
}

/// Whether a schema only admits `null`.
fn is_null(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
        || schema.get("enum") == Some(&json!([null]))
        || schema.get("const") == Some(&Value::Null)
}

/// A doc comment's text with the lines of each paragraph joined: the reader (kubectl
/// explain) wraps text to its own width.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Puts a merge key and strategy on a property, as Kubernetes' documents carry them, and
/// the list type server-side apply merges by: a list merged by key is a `map` keyed by it,
/// one merged without a key a `set`. (Lists with neither are `atomic`, the default.)
fn tag_property(property: &mut Value, key: Option<&str>, strategy: &str) {
    let Value::Object(map) = property else {
        return;
    };
    if map.contains_key("$ref") {
        // Nothing may stand beside a `$ref`: wrap it, as Kubernetes does.
        let reference = map.remove("$ref").expect("checked");
        map.insert("allOf".into(), json!([{ "$ref": reference }]));
    }
    if let Some(key) = key {
        map.insert("x-kubernetes-patch-merge-key".into(), json!(key));
    }
    map.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
    let merged = strategy.split(',').any(|s| s.trim() == "merge");
    if merged && map.get("type").and_then(Value::as_str) == Some("array") {
        match key {
            Some(key) => {
                map.insert("x-kubernetes-list-type".into(), json!("map"));
                map.insert("x-kubernetes-list-map-keys".into(), json!([key]));
            }
            None => {
                map.insert("x-kubernetes-list-type".into(), json!("set"));
            }
        }
    }
}

/// `api/v1` or `apis/apps/v1`: where a group version's document is, under `/openapi/v3/`.
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The paths of one kind: its collections and its objects, with their operations.
fn paths_of(rt: &ResourceType, component: &str) -> Vec<(String, Value)> {
    let gvk = json!({ "group": rt.group, "version": rt.version, "kind": rt.kind });
    let object = json!({ "$ref": format!("{REF_PREFIX}{component}") });
    let base = format!("/{}", group_version_path(rt.group, rt.version));
    let collection = if rt.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{base}/{}", rt.plural)
    };
    let query = |name: &str, description: &str| json!({ "name": name, "in": "query", "description": description, "schema": { "type": "string" }, "uniqueItems": true });
    let dry_run = query(
        "dryRun",
        "When present (`All`), the request is validated, defaulted and admitted in full, and nothing is stored.",
    );
    let field_validation = query(
        "fieldValidation",
        "What becomes of fields the kind does not have: Ignore (dropped), Warn (dropped, with a Warning header; the default) or Strict (the request is refused).",
    );
    let field_manager = query("fieldManager", "The name of the actor making the change.");
    let path_params = |named: bool| {
        let mut params = Vec::new();
        if named {
            params.push(json!({ "name": "name", "in": "path", "required": true, "description": format!("name of the {}", rt.kind), "schema": { "type": "string" }, "uniqueItems": true }));
        }
        if rt.namespaced {
            params.push(json!({ "name": "namespace", "in": "path", "required": true, "description": "object name and auth scope, such as for teams and projects", "schema": { "type": "string" }, "uniqueItems": true }));
        }
        params
    };
    let answer = |code: &str| json!({ code: { "description": "OK", "content": { "application/json": { "schema": object } } } });
    let operation = |id: &str, action: &str, description: String, params: Vec<Value>| {
        json!({
            "description": description,
            "operationId": format!("{id}{}", rt.kind),
            "parameters": params,
            "responses": answer(if action == "post" { "201" } else { "200" }),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        })
    };
    let body = |types: &[&str]| {
        let content: Map<String, Value> = types
            .iter()
            .map(|t| (t.to_string(), json!({ "schema": object })))
            .collect();
        json!({ "required": true, "content": content })
    };
    let mut create = operation(
        "create",
        "post",
        format!("create a {}", rt.kind),
        vec![
            dry_run.clone(),
            field_manager.clone(),
            field_validation.clone(),
        ],
    );
    create["requestBody"] = body(&["application/json", "application/yaml"]);
    let mut replace = operation(
        "replace",
        "put",
        format!("replace the specified {}", rt.kind),
        vec![
            dry_run.clone(),
            field_manager.clone(),
            field_validation.clone(),
        ],
    );
    replace["requestBody"] = body(&["application/json", "application/yaml"]);
    let mut patch = operation(
        "patch",
        "patch",
        format!("partially update the specified {}", rt.kind),
        vec![
            dry_run.clone(),
            field_manager,
            field_validation,
            query("force", "Force is going to \"force\" Apply requests."),
        ],
    );
    patch["requestBody"] = body(&[
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ]);
    let list_params = vec![
        query(
            "labelSelector",
            "A selector to restrict the list of returned objects by their labels.",
        ),
        query(
            "fieldSelector",
            "A selector to restrict the list of returned objects by their fields.",
        ),
        query("limit", "The most objects to return in one page."),
        query("continue", "The continue token of the previous page."),
        query("resourceVersion", "Where a list or watch starts."),
        query("watch", "Watch for changes, as a stream of events."),
    ];
    let mut list = operation(
        "list",
        "list",
        format!("list or watch objects of kind {}", rt.kind),
        list_params,
    );
    list["responses"] = json!({ "200": { "description": "OK" } });
    let mut delete_collection = operation(
        "deletecollection",
        "deletecollection",
        format!("delete collection of {}", rt.kind),
        vec![dry_run.clone()],
    );
    delete_collection["responses"] = json!({ "200": { "description": "OK" } });
    let collection_item = json!({
        "get": list,
        "post": create,
        "delete": delete_collection,
        "parameters": path_params(false),
    });
    let item = json!({
        "get": operation("read", "get", format!("read the specified {}", rt.kind), Vec::new()),
        "put": replace,
        "patch": patch,
        "delete": operation("delete", "delete", format!("delete a {}", rt.kind), vec![dry_run]),
        "parameters": path_params(true),
    });
    vec![
        (collection.clone(), collection_item),
        (format!("{collection}/{{name}}"), item),
    ]
}

/// `/openapi/v3` and `/openapi/v3/api/v1`, `/openapi/v3/apis/GROUP/VERSION`.
pub fn serve(path: &str, headers: &HeaderMap) -> ApiResult<Response> {
    let catalog = Catalog::get();
    let rest = path.strip_prefix("/openapi/v3").unwrap_or(path);
    let rest = rest.trim_matches('/');
    if rest.is_empty() {
        let paths: Map<String, Value> = catalog
            .documents
            .iter()
            .map(|(gv, (_, hash))| {
                (
                    gv.clone(),
                    json!({ "serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}") }),
                )
            })
            .collect();
        return Ok(axum::Json(json!({ "paths": paths })).into_response());
    }
    let (bytes, hash) = catalog
        .documents
        .get(rest)
        .ok_or_else(|| ApiError::path_not_found(path))?;
    let etag = format!("\"{hash}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::ETAG, etag),
        ],
        bytes.clone(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_has_a_schema_tagged_with_its_kind() {
        let registry = Registry::builtin();
        let catalog = Catalog::get();
        for rt in &registry.types {
            let schema = catalog
                .kind(rt)
                .unwrap_or_else(|| panic!("{} has no schema", rt.kind));
            assert_eq!(
                schema["x-kubernetes-group-version-kind"],
                json!([{ "group": rt.group, "version": rt.version, "kind": rt.kind }])
            );
            assert!(schema["properties"]["metadata"].is_object(), "{}", rt.kind);
        }
    }

    #[test]
    fn every_patch_tag_names_a_list_or_object_field_of_its_type() {
        let catalog = Catalog::get();
        for (type_name, field, key, _) in PATCH_TAGS {
            let property = catalog
                .components
                .get(*type_name)
                .and_then(|c| c.pointer(&format!("/properties/{field}")))
                .unwrap_or_else(|| panic!("{type_name}.{field} is not a field"));
            assert!(
                property["x-kubernetes-patch-strategy"].is_string(),
                "{type_name}.{field}"
            );
            if let Some(key) = key {
                let item = catalog.resolve(&property["items"]);
                assert!(
                    item["properties"][*key].is_object(),
                    "{type_name}.{field}: items have no {key}"
                );
            }
        }
    }

    #[test]
    fn lists_merged_by_key_are_list_maps_and_atomic_types_are_marked() {
        let catalog = Catalog::get();
        let containers = &catalog.components["PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let finalizers = &catalog.components["ObjectMeta"]["properties"]["finalizers"];
        assert_eq!(finalizers["x-kubernetes-list-type"], "set");
        let tolerations = &catalog.components["PodSpec"]["properties"]["tolerations"];
        assert!(
            tolerations.get("x-kubernetes-list-type").is_none(),
            "atomic"
        );
        for (type_name, field) in ATOMIC {
            let pointer = field
                .map(|f| format!("/properties/{f}"))
                .unwrap_or_default();
            let schema = catalog
                .components
                .get(*type_name)
                .and_then(|c| c.pointer(&pointer))
                .unwrap_or_else(|| panic!("{type_name} {field:?} is not in the catalog"));
            assert_eq!(schema["x-kubernetes-map-type"], "atomic", "{type_name}");
        }
    }

    #[test]
    fn containers_merge_by_name_and_descriptions_come_from_the_doc_comments() {
        let catalog = Catalog::get();
        let spec = &catalog.components["PodSpec"];
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            spec["properties"]["containers"]["items"]["$ref"],
            "#/components/schemas/Container"
        );
        let deployment = &catalog.components["DeploymentSpec"];
        assert!(
            deployment["properties"]["replicas"]["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{deployment:#}"
        );
        // No schema says `nullable` or carries a default: Kubernetes' documents do not.
        let text = serde_json::to_string(&catalog.components).unwrap();
        assert!(!text.contains("\"nullable\""));
        assert!(!text.contains("\"default\""));
        // An optional struct is its struct, as kubectl's patch code expects.
        assert!(!text.contains("\"anyOf\""), "{text}");
        assert_eq!(
            deployment["properties"]["selector"]["allOf"],
            json!([{ "$ref": "#/components/schemas/LabelSelector" }])
        );
    }

    #[test]
    fn each_group_version_document_holds_its_kinds_and_what_they_use() {
        let catalog = Catalog::get();
        let (bytes, _) = &catalog.documents["apis/apps/v1"];
        let document: Value = serde_json::from_slice(bytes).unwrap();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("Deployment") && schemas.contains_key("PodSpec"));
        assert!(!schemas.contains_key("Pod"), "only what apps/v1 uses");
        let patch =
            &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({ "group": "apps", "version": "v1", "kind": "Deployment" })
        );
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(params.contains(&"fieldValidation") && params.contains(&"dryRun"));
    }
}
